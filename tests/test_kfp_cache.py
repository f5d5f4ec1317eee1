"""What the cache key covers: per-step code versions read from the source,
each step's own config sections, data source stamps, and when a recorded
copy is reusable."""

from __future__ import annotations

import ast
import os
import textwrap

import pytest

from contracts import artifacts
from pipeline import cache
from pipeline import kfp_pipeline
from pipeline import step_deps
from pipeline import task_launcher
from conftest import small_config

COMPONENT_A = textwrap.dedent("""
    def comp_a(a_config: str) -> str:
      from pipeline.steps import a as step
      return step.run(a_config, 1)
    """)
COMPONENT_B = COMPONENT_A.replace("comp_a", "comp_b").replace(
    "import a as step", "import b as step").replace("a_config", "b_config")


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  existed = path.exists()
  path.write_text(textwrap.dedent(text))
  if existed:  # a new mtime even on coarse clocks
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.fixture
def project(tmp_path, monkeypatch):
  """A miniature project: two steps, each its own module, sharing a helper."""
  monkeypatch.setattr(step_deps, "PROJECT_ROOT", str(tmp_path))
  for package in ("pipeline", "pipeline/steps", "components"):
    _write(tmp_path / package / "__init__.py", "")
  _write(tmp_path / "pipeline" / "steps" / "a.py", """
      from components import a
      from components import shared

      def run(config, n):
        return a.run(config) + shared.X
      """)
  _write(tmp_path / "pipeline" / "steps" / "b.py", """
      from components import b

      def run(config, n):
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
  assert "pipeline.steps.a" in covered
  assert "components.b" not in covered and "pipeline.steps.b" not in covered
  # Editing step b (its component or its step module) keeps a's version.
  _write(project / "components" / "b.py", "def run(cfg):\n  return 2\n")
  step_b = (project / "pipeline" / "steps" / "b.py").read_text()
  _write(project / "pipeline" / "steps" / "b.py",
         step_b.replace("return b.run(config)", "return b.run(config) + 1"))
  assert step_deps.code_version(COMPONENT_A, "comp_a")[0] == a0
  assert step_deps.code_version(COMPONENT_B, "comp_b")[0] != b0
  # Editing what a runs (its module, a shared one, its step) changes it.
  for path, old, new in (("components/a.py", "return x", "return -x"),
                         ("components/shared.py", "X = 1", "X = 2"),
                         ("pipeline/steps/a.py", "shared.X",
                          "shared.X * 2")):
    before = step_deps.code_version(COMPONENT_A, "comp_a")[0]
    _write(project / path, (project / path).read_text().replace(old, new))
    assert step_deps.code_version(COMPONENT_A, "comp_a")[0] != before, path
  # Comments and formatting do not count; the component's own source does.
  before = step_deps.code_version(COMPONENT_A, "comp_a")[0]
  _write(project / "components" / "a.py",
         "# a comment\ndef run(x):\n\n  return -x\n")
  assert step_deps.code_version(COMPONENT_A, "comp_a")[0] == before
  assert step_deps.code_version(
      COMPONENT_A.replace("step.run(a_config, 1)", "step.run(a_config, 2)"),
      "comp_a")[0] != before


def _containers(config):
  """(executor name, container) of each compiled step of `config`."""
  spec = kfp_pipeline.pipeline_spec(config)
  for name, executor in spec["deploymentSpec"]["executors"].items():

    class _Container:  # the attribute view task_launcher reads
      command = executor["container"]["command"]
      args = executor["container"]["args"]

    yield name, _Container


def _components(config=None):
  for name, container in _containers(config or small_config()):
    yield name, task_launcher.embedded_source(container)


def test_the_pipeline_steps_depend_on_their_own_code():
  code = {name: step_deps.code_version(src, fn)[1]
          for name, (src, fn) in _components()}
  example_gen = code["exec-example-gen"]
  assert {"components.example_gen", "pipeline.steps.example_gen",
          "components.readers.movielens"} <= set(example_gen)
  assert not any(m.startswith("trainer") for m in example_gen)
  assert "components.evaluator" not in example_gen
  assert "components.transform" in code["exec-transform"]
  assert not any(m.startswith(("trainer", "components.readers"))
                 for m in code["exec-transform"])
  trainer = code["exec-trainer"]
  assert "trainer.run" in trainer and "pipeline.steps.trainer" in trainer
  # What the trainer does not run: readers, ExampleGen, Transform's Beam
  # code, the evaluator's rules, the other steps, the pipeline config.
  for module in trainer:
    assert not module.startswith((
        "components.readers", "components.example_gen",
        "components.parsing", "components.transform", "components.blessing",
        "components.evaluator", "pipeline.config", "pipeline.steps.e",
        "pipeline.steps.transform")), module
  assert not any(m.startswith("trainer") for m in code["exec-pusher"])


def test_editing_a_reader_keeps_the_trainers_cache_key(monkeypatch):
  """A changed source reader reruns ExampleGen, never the trained model."""
  components = dict(_components())
  versions = {name: step_deps.code_version(src, fn)[0]
              for name, (src, fn) in components.items()}
  original = step_deps._module_source  # pylint: disable=protected-access

  def edited(module):
    source, tree = original(module)
    if module == "components.readers.movielens":
      tree = ast.parse(source + "\nEDITED = True\n")
    return source, tree

  monkeypatch.setattr(step_deps, "_module_source", edited)
  after = {name: step_deps.code_version(src, fn)[0]
           for name, (src, fn) in components.items()}
  assert after["exec-example-gen"] != versions["exec-example-gen"]
  for name in ("exec-trainer", "exec-transform", "exec-evaluator",
               "exec-pusher"):
    assert after[name] == versions[name], name


def test_the_compiled_code_version_is_the_components(monkeypatch):
  spec = kfp_pipeline.pipeline_spec(small_config())
  sources = dict(_components())
  for task in spec["root"]["dag"]["tasks"].values():
    executor = spec["components"][task["componentRef"]["name"]][
        "executorLabel"]
    compiled = task["inputs"]["parameters"]["code_version"][
        "runtimeValue"]["constant"]
    assert compiled == step_deps.code_version(*sources[executor])[0]


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
    arguments = kfp_pipeline.section_arguments(config)
    containers = dict(_containers(config))
    out = {}
    for task in kfp_pipeline.pipeline_spec(config)["root"]["dag"][
        "tasks"].values():
      # What the runner hands the task: its own parameters only.
      task_args = {}
      for name, value in task["inputs"]["parameters"].items():
        if "componentInputParameter" in value:
          task_args[name] = arguments.get(value["componentInputParameter"],
                                          1)
        else:
          task_args[name] = value["runtimeValue"]["constant"]
      executor = f"exec-{task['componentRef']['name'][len('comp-'):]}"
      out[executor] = runner._task_key(  # pylint: disable=protected-access
          executor, containers[executor], task_args)[0]
    return out

  before = keys(True), keys(False)
  version = serving_root / "mtrec" / "7"
  version.mkdir(parents=True)
  (version / "saved_model.pb").write_bytes(b"model")
  after = keys(True), keys(False)
  assert before[0]["exec-trainer"] != after[0]["exec-trainer"]
  assert before[1]["exec-trainer"] == after[1]["exec-trainer"]
  for other in ("exec-example-gen", "exec-transform", "exec-pusher"):
    assert before[0][other] == after[0][other]


def test_a_metric_formula_is_not_part_of_the_data_steps_code_version():
  # The config validates metric names at load, so every step imports the
  # names; the formulas (components/metrics.py) stay out of ExampleGen's,
  # Transform's and the TextEmbedder's cache keys.
  import inspect  # pylint: disable=g-import-not-at-top
  from pipeline import kfp_components  # pylint: disable=g-import-not-at-top
  for step in ("example_gen", "transform", "text_embedder"):
    fn = getattr(kfp_components, step)
    fn = getattr(fn, "python_func", fn)
    _, covered = step_deps.code_version(inspect.getsource(fn), fn.__name__)
    assert "components.metric_names" in covered, step
    assert "components.metrics" not in covered, step
  fn = getattr(kfp_components.evaluator, "python_func",
               kfp_components.evaluator)
  _, covered = step_deps.code_version(inspect.getsource(fn), fn.__name__)
  assert "components.metrics" in covered
