"""The local runner's mechanics on a two-task KFP pipeline (seconds, no TF).

Layout, run.json, the cache (hits, --no-cache, a changed parameter), typed
file artifacts, and failures (the step and error named, then a resume that
reruns only the failed step), on components that start in about a second.

No `from __future__ import annotations` here: the components below are KFP
components, whose annotations KFP reads unevaluated.
"""

import json
import os
import shutil

from kfp import compiler
from kfp import dsl
import pytest
import yaml

from contracts import artifacts
from pipeline import runner
from pipeline import runs


def make_numbers(run_id: str, count: int, publish: bool,
                 numbers: dsl.Output[dsl.Dataset]) -> str:
  import json  # pylint: disable=all
  import os  # pylint: disable=all
  from contracts import artifacts  # pylint: disable=all
  if not publish:
    return "forgot to publish"
  with artifacts.write_artifact(numbers.path, "Numbers", "MakeNumbers",
                                run_id, {"count": count}) as w:
    with open(os.path.join(w.uri, "numbers.json"), "w") as f:
      json.dump(list(range(count)), f)
    w.summary = {"count": count}
  print(f"made {count} numbers")
  return f"{count} numbers"


def add_up(run_id: str, fail: bool, numbers: dsl.Input[dsl.Dataset],
           total: dsl.Output[dsl.Metrics],
           note: dsl.Output[dsl.Markdown]) -> str:
  import json  # pylint: disable=all
  import os  # pylint: disable=all
  from contracts import artifacts  # pylint: disable=all
  if fail:
    raise ValueError("boom: asked to fail\nsecond line of the message")
  with open(os.path.join(numbers.path, "numbers.json")) as f:
    value = sum(json.load(f))
  with artifacts.write_artifact(total.path, "Total", "AddUp", run_id, {},
                                {"numbers": numbers.path}) as w:
    w.summary = {"total": value}
  total.log_metric("total", value)
  with open(note.path, "w") as f:
    f.write(f"# total {value}\n")
  return f"total {value}"


def _spec(tmp_path) -> dict:
  make = dsl.component(base_image="python:3.11", install_kfp_package=False)
  make_c, add_c = make(make_numbers), make(add_up)

  @dsl.pipeline(name="toy")
  def toy(count: int = 4, fail: bool = False, publish: bool = True):
    numbers = make_c(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, count=count,
                     publish=publish).set_display_name("MakeNumbers")
    add_c(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, fail=fail,
          numbers=numbers.outputs["numbers"]).set_display_name("AddUp")

  path = str(tmp_path / "toy.yaml")
  compiler.Compiler().compile(toy, path)
  with open(path) as f:
    return yaml.safe_load(f)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("toy")
  return _spec(tmp), str(tmp / "runs")


def _run(toy_spec, root, lines=None, **kwargs):
  arguments = {k: kwargs.pop(k) for k in ("count", "fail", "publish")
               if k in kwargs}
  return runner.run_spec(toy_spec, arguments, root,
                         log=(lines.append if lines is not None
                              else lambda m: None), **kwargs)


def _read(run_dir):
  with open(os.path.join(run_dir, runner.RUN_FILE)) as f:
    return json.load(f)


def test_layout_cache_failure_and_resume(toy):
  spec, root = toy
  lines = []
  first = _run(spec, root, lines, count=4)
  # <root>/<run_id>/<Component>/<output>; file artifacts keep a suffix.
  assert first.uris == {
      "MakeNumbers/numbers": os.path.join(first.run_dir, "MakeNumbers",
                                          "numbers"),
      "AddUp/total": os.path.join(first.run_dir, "AddUp", "total"),
      "AddUp/note": os.path.join(first.run_dir, "AddUp", "note.md")}
  run = _read(first.run_dir)
  assert run["status"] == "succeeded"
  assert [(s["name"], s["status"]) for s in run["steps"]] == [
      ("MakeNumbers", "succeeded"), ("AddUp", "succeeded")]
  assert run["artifacts"]["AddUp/total"]["summary"] == {"total": 6}
  assert run["artifacts"]["AddUp/total"]["inputs"]["numbers"][
      "artifact"] == "MakeNumbers/numbers"
  assert run["artifacts"]["AddUp/note"]["type"] == "Markdown"
  with open(first.uris["AddUp/note"]) as f:
    assert f.read() == "# total 6\n"
  # The run id placeholder resolved to the run's own id.
  assert artifacts.read_metadata(first.uris["MakeNumbers/numbers"])[
      "run_id"] == first.run_id
  assert "      made 4 numbers" in lines  # the child's output, indented
  assert "      total 6" in lines  # the step's summary
  assert not any("KFP Executor" in line for line in lines)

  # Nothing changed: every step reused, its outputs linked into the new run.
  lines = []
  second = _run(spec, root, lines, count=4)
  run = _read(second.run_dir)
  assert [(s["status"], s["cached_from"]) for s in run["steps"]] == [
      ("cached", first.run_id), ("cached", first.run_id)]
  assert any(line.startswith("[1/2] MakeNumbers ... cached") for line in lines)
  for key, uri in second.uris.items():
    assert uri.startswith(second.run_dir)
    assert run["artifacts"][key]["fingerprint"] == _read(
        first.run_dir)["artifacts"][key]["fingerprint"]
  assert os.path.samefile(
      os.path.join(second.uris["MakeNumbers/numbers"], "numbers.json"),
      os.path.join(first.uris["MakeNumbers/numbers"], "numbers.json"))

  # --no-cache reruns everything.
  third = _run(spec, root, count=4, use_cache=False)
  assert [s["status"] for s in third.steps] == ["succeeded", "succeeded"]

  # A changed parameter reruns the step that takes it and what follows.
  fourth = _run(spec, root, count=5)
  assert [s["status"] for s in fourth.steps] == ["succeeded", "succeeded"]
  assert _read(fourth.run_dir)["artifacts"]["AddUp/total"]["summary"] == {
      "total": 10}

  # A step that raises fails the run, named with its error ...
  with pytest.raises(runner.StepFailed) as e:
    _run(spec, root, count=6, fail=True)
  assert str(e.value) == "step AddUp failed: ValueError: boom: asked to fail"
  run = _read(e.value.run_dir)
  assert run["status"] == "failed" and run["failed_step"] == "AddUp"
  assert run["steps"][-1]["error"] == run["error"] == (
      "ValueError: boom: asked to fail\nsecond line of the message")
  assert "Traceback" in run["steps"][-1]["traceback"]
  assert not os.path.exists(os.path.join(e.value.run_dir, "AddUp", "total"))

  # ... and the rerun resumes there: MakeNumbers(6) succeeded, so it is reused.
  resumed = _run(spec, root, count=6, fail=False)
  assert [s["status"] for s in resumed.steps] == ["cached", "succeeded"]
  assert resumed.steps[0]["cached_from"] == os.path.basename(e.value.run_dir)

  listed = runs.format_runs(runs.load_runs(root))
  assert "failed at AddUp" in listed and "0 ran, 2 cached" in listed


def test_a_step_that_publishes_nothing_fails(toy):
  spec, root = toy
  with pytest.raises(runner.StepFailed) as e:
    _run(spec, root, count=3, publish=False)
  assert str(e.value).startswith(
      "step MakeNumbers failed: IncompleteOutput: MakeNumbers returned "
      "without publishing numbers")
  with pytest.raises(runner.StepFailed):  # a failure is never reused
    _run(spec, root, count=3, publish=False)


def test_cache_entry_with_a_deleted_copy_is_a_miss(toy):
  spec, root = toy
  first = _run(spec, root, count=7)
  second = _run(spec, root, count=7)
  assert [s["status"] for s in second.steps] == ["cached", "cached"]
  # Removing one copy leaves the other: still a hit.
  shutil.rmtree(first.run_dir)
  third = _run(spec, root, count=7)
  assert [s["status"] for s in third.steps] == ["cached", "cached"]
  # Removing every copy makes it a miss.
  shutil.rmtree(second.run_dir)
  shutil.rmtree(third.run_dir)
  fourth = _run(spec, root, count=7)
  assert [s["status"] for s in fourth.steps] == ["succeeded", "succeeded"]
