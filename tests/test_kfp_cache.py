"""What the cache key covers: per-step code versions and config fields read
from the source, data source stamps, and when a recorded copy is reusable."""

from __future__ import annotations

import os
import textwrap

import pytest

from contracts import artifacts
from pipeline import cache
from pipeline import config as config_lib
from pipeline import kfp_pipeline
from pipeline import step_deps
from pipeline import task_launcher
from conftest import small_config

COMPONENT_A = textwrap.dedent("""
    def comp_a(config_json: str) -> str:
      from pipeline import steps
      from pipeline import task_io
      config = task_io.load_config(config_json)
      return steps.a_step(config, 1)
    """)
COMPONENT_B = COMPONENT_A.replace("comp_a", "comp_b").replace(
    "a_step", "b_step")


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  existed = path.exists()
  path.write_text(textwrap.dedent(text))
  if existed:  # a new mtime even on coarse clocks
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.fixture
def project(tmp_path, monkeypatch):
  """A miniature project: two steps sharing a helper module."""
  monkeypatch.setattr(step_deps, "PROJECT_ROOT", str(tmp_path))
  for package in ("pipeline", "components"):
    _write(tmp_path / package / "__init__.py", "")
  _write(tmp_path / "pipeline" / "steps.py", """
      from components import shared

      def helper(config):
        return config.gamma

      def a_step(config, n):
        from components import a
        return a.run(config.alpha) + helper(config) + shared.X

      def b_step(config, n):
        from components import b
        return b.run(config)
      """)
  _write(tmp_path / "components" / "shared.py", "X = 1\n")
  _write(tmp_path / "components" / "a.py", "def run(x):\n  return x\n")
  _write(tmp_path / "components" / "b.py", """
      def run(cfg):
        return cfg.beta
      """)
  return tmp_path


def test_code_version_follows_only_what_a_step_can_run(project):
  a0, covered = step_deps.code_version(COMPONENT_A, "comp_a")
  b0, _ = step_deps.code_version(COMPONENT_B, "comp_b")
  assert "components.a" in covered and "components.shared" in covered
  assert "components.b" not in covered
  # Editing step b (its module or its function in steps.py) keeps a's version.
  _write(project / "components" / "b.py", "def run(cfg):\n  return 2\n")
  steps = (project / "pipeline" / "steps.py").read_text()
  _write(project / "pipeline" / "steps.py",
         steps.replace("return b.run(config)", "return b.run(config) + 1"))
  assert step_deps.code_version(COMPONENT_A, "comp_a")[0] == a0
  assert step_deps.code_version(COMPONENT_B, "comp_b")[0] != b0
  # Editing what a runs (its module, a shared one, a helper) changes it.
  for path, old, new in (("components/a.py", "return x", "return -x"),
                         ("components/shared.py", "X = 1", "X = 2"),
                         ("pipeline/steps.py", "config.gamma",
                          "config.gamma * 2")):
    before = step_deps.code_version(COMPONENT_A, "comp_a")[0]
    _write(project / path, (project / path).read_text().replace(old, new))
    assert step_deps.code_version(COMPONENT_A, "comp_a")[0] != before, path
  # The component's own source counts too.
  assert step_deps.code_version(
      COMPONENT_A.replace("a_step(config, 1)", "a_step(config, 2)"),
      "comp_a")[0] != step_deps.code_version(COMPONENT_A, "comp_a")[0]


def test_config_fields_follow_the_config_into_project_functions(project):
  fields = {"alpha", "beta", "gamma", "delta"}
  assert step_deps.config_fields(COMPONENT_A, "comp_a", fields) == {
      "alpha", "gamma"}
  assert step_deps.config_fields(COMPONENT_B, "comp_b", fields) == {"beta"}
  # A use the analysis cannot follow means "all of it".
  _write(project / "components" / "b.py", """
      import json
      def run(cfg):
        return json.dumps(cfg)
      """)
  assert step_deps.config_fields(COMPONENT_B, "comp_b", fields) is None
  _write(project / "components" / "b.py", """
      def run(cfg):
        return cfg.model_copy(update={})
      """)
  assert step_deps.config_fields(COMPONENT_B, "comp_b", fields) is None
  _write(project / "components" / "b.py", """
      def run(cfg):
        return cfg.beta
      """)
  assert step_deps.config_fields(
      COMPONENT_B.replace("b_step(config, 1)", "b_step(config=config, n=1)"),
      "comp_b", fields) == {"beta"}  # through the step's named parameter
  _write(project / "components" / "b.py", """
      def run(**kwargs):
        return kwargs["cfg"].beta
      """)
  steps = (project / "pipeline" / "steps.py").read_text()
  _write(project / "pipeline" / "steps.py",
         steps.replace("b.run(config)", "b.run(cfg=config)"))
  assert step_deps.config_fields(COMPONENT_B, "comp_b", fields) is None
  # The raw JSON handed to anything but load_config: all of it.
  assert step_deps.config_fields(
      COMPONENT_A.replace("return steps", "print(config_json)\n  return steps"),
      "comp_a", fields) is None
  # No config parameter at all: none of it.
  assert step_deps.config_fields(
      "def c(n: int) -> int:\n  return n\n", "c", fields) == frozenset()


def _containers(config):
  """(executor name, container) of each compiled step of `config`."""
  spec = kfp_pipeline.pipeline_spec(config)
  for name, executor in spec["deploymentSpec"]["executors"].items():

    class _Container:  # the attribute view task_launcher reads
      command = executor["container"]["command"]
      args = executor["container"]["args"]

    yield name, _Container


def _components():
  for name, container in _containers(small_config()):
    yield name, task_launcher.embedded_source(container)


def test_the_pipeline_steps_depend_on_their_own_code_and_config():
  fields = config_lib.PipelineConfig.model_fields
  deps = {name: (step_deps.config_fields(src, fn, fields),
                 step_deps.code_version(src, fn)[1])
          for name, (src, fn) in _components()}
  example_gen_fields, example_gen_code = deps["exec-example-gen"]
  assert {"data", "example_gen", "beam_args"} <= example_gen_fields
  assert "trainer" not in example_gen_fields
  assert "components.example_gen" in example_gen_code
  assert not any(m.startswith("trainer") for m in example_gen_code)
  assert "components.evaluator" not in example_gen_code
  transform_fields, transform_code = deps["exec-transform"]
  assert "transform" in transform_fields
  assert not {"data", "trainer", "evaluator"} & transform_fields
  assert "components.transform" in transform_code
  trainer_fields, trainer_code = deps["exec-trainer"]
  assert "trainer" in trainer_fields
  assert not {"data", "example_gen", "transform", "beam_args"} & (
      trainer_fields)
  assert "trainer.run" in trainer_code
  assert "components.transform" not in trainer_code
  pusher_fields, _ = deps["exec-pusher"]
  assert "model_name" in pusher_fields and "trainer" not in pusher_fields


def test_source_stamps_see_local_files_change(tmp_path):
  data = tmp_path / "d"
  data.mkdir()
  (data / "r.csv").write_text("a\n")
  options = {"interactions": {"path": str(data / "r.csv")},
             "items": {"path": str(data)}, "remote": {"path": "gs://b/x"}}
  before = cache.source_stamps(options)
  assert [s[0] for s in before] == [str(data / "r.csv"), str(data / "r.csv"),
                                    "gs://b/x"]
  (data / "r.csv").write_text("a\nb\n")
  assert cache.source_stamps(options) != before


def _artifact(path, producer="P", artifact_type="Thing", summary=None):
  with artifacts.write_artifact(str(path), artifact_type, producer,
                                "r1") as w:
    with open(os.path.join(w.uri, "data.txt"), "w") as f:
      f.write("payload")
    w.summary = summary or {}
  return str(path)


def test_a_reuse_needs_an_intact_copy(tmp_path):
  store = cache.StepCache(str(tmp_path / "root"))
  out = _artifact(tmp_path / "root" / "r1" / "P" / "out")
  store.store("P", "k1", "r1", {"out": out}, {"Output": "msg"}, 1.5, {}, {})
  hit = store.lookup("P", "k1")
  assert hit["copy"]["outputs"] == {"out": out}
  assert hit["output_parameters"] == {"Output": "msg"}
  # Linked into a new run: same bytes, no copy.
  new = str(tmp_path / "root" / "r2" / "P" / "out")
  cache.link_copy(out, new)
  assert os.path.samefile(os.path.join(out, "data.txt"),
                          os.path.join(new, "data.txt"))
  store.add_copy(hit, "r2", {"out": new})
  # A copy whose content no longer matches is skipped, the other one used.
  meta = os.path.join(out, artifacts.METADATA_FILE)
  os.unlink(meta)
  assert store.lookup("P", "k1")["copy"]["run_id"] == "r2"
  os.unlink(os.path.join(new, artifacts.METADATA_FILE))
  assert store.lookup("P", "k1") is None
  assert store.lookup("P", "other-key") is None


def test_a_pushed_model_is_reused_only_while_its_version_exists(tmp_path):
  store = cache.StepCache(str(tmp_path / "root"))
  version = tmp_path / "serving" / "m" / "7"
  version.mkdir(parents=True)
  out = _artifact(tmp_path / "root" / "r1" / "Pusher" / "pushed",
                  artifact_type="PushedModel",
                  summary={"pushed": True, "destination": str(version)})
  store.store("Pusher", "k", "r1", {"pushed": out}, {}, 1.0, {}, {})
  assert store.lookup("Pusher", "k") is not None
  version.rmdir()
  assert store.lookup("Pusher", "k") is None


def test_a_warm_started_trainer_is_keyed_by_the_model_now_served(tmp_path):
  """A push since the last run retrains a warm-started trainer, and only it."""
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  serving_root = tmp_path / "serving"

  def keys(warm_start):
    config = small_config(serving_root=str(serving_root),
                          trainer={"epochs": 2, "warm_start": warm_start})
    arguments = {runner.CONFIG_PARAMETER: kfp_pipeline.encode_config(config)}
    return {name: runner._task_key(name, container, arguments)[0]  # pylint: disable=protected-access
            for name, container in _containers(config)}

  before = keys(True), keys(False)
  version = serving_root / "mtrec" / "7"
  version.mkdir(parents=True)
  (version / "saved_model.pb").write_bytes(b"model")
  after = keys(True), keys(False)
  assert before[0]["exec-trainer"] != after[0]["exec-trainer"]
  assert before[1]["exec-trainer"] == after[1]["exec-trainer"]
  for other in ("exec-example-gen", "exec-transform", "exec-pusher"):
    assert before[0][other] == after[0][other]
