"""The real pipeline run locally through its KFP definition, then rerun.

`small_run` (conftest) is the first run: the compiled KFP pipeline executed
by pipeline/runner.py on synthetic data. These tests rerun it: unchanged
(every step reused, a fraction of the time), with a changed trainer setting
(only the trainer and what follows rerun), with a Pusher that fails (the run
names it) and after the cause is fixed (the run resumes at the Pusher).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from contracts import artifacts
from conftest import small_config
from pipeline import cli
from pipeline import runner

STEPS = ["ExampleGen", "StatisticsGen", "ExampleValidator", "Transform",
         "Trainer", "Evaluator", "Pusher"]


def _run_json(run_dir):
  with open(os.path.join(run_dir, runner.RUN_FILE)) as f:
    return json.load(f)


@pytest.mark.slow
def test_unchanged_rerun_reuses_every_step(small_run, capsys):
  first = _run_json(small_run.run_dir)
  assert [s["status"] for s in first["steps"]] == ["succeeded"] * len(STEPS)
  root = os.path.dirname(small_run.run_dir)
  lines = []
  start = time.time()
  again = runner.run_pipeline(small_config(), root, first["serving_root"],
                              log=lines.append)
  seconds = time.time() - start
  run = _run_json(again.run_dir)
  assert [(s["name"], s["status"], s["cached_from"]) for s in run["steps"]] == [
      (name, "cached", small_run.run_id) for name in STEPS]
  ratio = seconds / first["seconds"]
  with capsys.disabled():
    print(f"\nfirst run {first['seconds']:.1f}s, unchanged rerun "
          f"{seconds:.2f}s: ratio {ratio:.3f}")
  assert ratio < 0.1, (seconds, first["seconds"])
  assert sum(line.endswith(" there)") and " ... cached (run " in line
             for line in lines) == len(STEPS)
  # The new run is complete on its own: every artifact, same content.
  assert set(again.uris) == set(small_run.uris)
  for key, uri in again.uris.items():
    assert uri.startswith(again.run_dir + os.sep)
    assert run["artifacts"][key]["fingerprint"] == first["artifacts"][key][
        "fingerprint"]
    if os.path.isdir(uri):
      assert artifacts.read_metadata(uri)["fingerprint"] == run["artifacts"][
          key]["fingerprint"]
  # Nothing new was pushed.
  assert again.pushed == small_run.pushed
  assert os.listdir(os.path.dirname(small_run.pushed["destination"])) == [
      str(small_run.pushed["version"])]
  # Lineage, read back from run.json alone.
  assert cli.main(["runs", "show", again.run_id, "--root", root]) == 0
  shown = capsys.readouterr().out
  assert f"Trainer: cached from run {small_run.run_id}" in shown
  assert ("<- transform_graph: Transform/transform_graph  " +
          run["artifacts"]["Transform/transform_graph"]["fingerprint"][:12]
          ) in shown


@pytest.mark.slow
def test_changed_step_reruns_and_a_failed_run_resumes(small_run, tmp_path):
  root = os.path.dirname(small_run.run_dir)
  config = small_config(
      trainer={"epochs": 1, "batch_size": 256, "embedding_dim": 16})
  serving_root = tmp_path / "serving"
  serving_root.write_text("a file where the Pusher needs a directory")
  with pytest.raises(runner.StepFailed) as failure:
    runner.run_pipeline(config, root, str(serving_root), log=lambda m: None)
  assert str(failure.value).startswith("step Pusher failed: ")
  failed = _run_json(failure.value.run_dir)
  assert failed["status"] == "failed" and failed["failed_step"] == "Pusher"
  assert failed["error"] == failed["steps"][-1]["error"]
  assert str(failure.value) == (
      f"step Pusher failed: {failed['error'].splitlines()[0]}")
  # Only the trainer and what depends on it ran: the data steps were reused.
  assert [s["status"] for s in failed["steps"]] == [
      "cached", "cached", "cached", "cached", "succeeded", "succeeded",
      "failed"]
  assert failed["artifacts"]["Trainer/model"]["summary"]["epochs"] == 1

  serving_root.unlink()  # fix the cause, rerun the same command
  resumed = runner.run_pipeline(config, root, str(serving_root),
                                log=lambda m: None)
  assert [s["status"] for s in resumed.steps] == [
      "cached", "cached", "cached", "cached", "cached", "cached", "succeeded"]
  assert resumed.steps[4]["cached_from"] == failed["run_id"]
  assert resumed.pushed["pushed"]
  assert resumed.pushed["destination"].startswith(str(serving_root))
