"""The KFP definition: compiled, loaded back with kfp, checked piece by piece;
and `mtrec submit` against a stub kfp.Client (never a real endpoint)."""

from __future__ import annotations

import json
import os

from google.protobuf import json_format
import kfp
from kfp import components as kfp_components_lib
import pytest

from conftest import small_config
from pipeline import cli
from pipeline import kfp_pipeline

# consumer task -> input -> (producer task, output)
WIRING = {
    "statistics-gen": {"examples": ("example-gen", "examples")},
    "example-validator": {"statistics": ("statistics-gen", "statistics"),
                          "examples": ("example-gen", "examples")},
    "transform": {"examples": ("example-gen", "examples")},
    "trainer": {"transform_graph": ("transform", "transform_graph"),
                "transformed_examples": ("transform", "transformed_examples"),
                "examples": ("example-gen", "examples"),
                "catalog": ("example-gen", "catalog")},
    "evaluator": {"model": ("trainer", "model"),
                  "examples": ("example-gen", "examples"),
                  "catalog": ("example-gen", "catalog"),
                  "transform_graph": ("transform", "transform_graph"),
                  "anomalies": ("example-validator", "anomalies")},
    "pusher": {"model": ("trainer", "model"),
               "blessing": ("evaluator", "blessing")},
}
OUTPUT_TYPES = {
    "example-gen": {"examples": "system.Dataset", "catalog": "system.Dataset",
                    "quarantine": "system.Dataset"},
    "statistics-gen": {"statistics": "system.Artifact"},
    "example-validator": {"anomalies": "system.Artifact",
                          "report": "system.HTML"},
    "transform": {"transform_graph": "system.Model",
                  "transformed_examples": "system.Dataset"},
    "trainer": {"model": "system.Model"},
    "evaluator": {"evaluation": "system.Metrics",
                  "blessing": "system.Artifact", "report": "system.HTML",
                  "summary": "system.Markdown"},
    "pusher": {"pushed_model": "system.Model"},
}
DISPLAY = {"example-gen": "ExampleGen", "statistics-gen": "StatisticsGen",
           "example-validator": "ExampleValidator", "transform": "Transform",
           "trainer": "Trainer", "evaluator": "Evaluator", "pusher": "Pusher"}
STEP_MODULE = {"example-gen": "example_gen",
               "statistics-gen": "statistics_gen",
               "example-validator": "example_validator",
               "transform": "transform",
               "trainer": "trainer", "evaluator": "evaluator",
               "pusher": "pusher"}
# task -> the config sections it receives, and nothing else.
SECTIONS = {"example-gen": {"data_config", "example_gen_config"},
            "statistics-gen": set(),
            "example-validator": {"data_validation_config"},
            "transform": {"transform_config"},
            "trainer": {"trainer_config", "serving_config"},
            "evaluator": {"evaluator_config"}, "pusher": set()}


def _load(path):
  """The compiled pipeline, read back by kfp itself, as a dict."""
  component = kfp_components_lib.load_component_from_file(path)
  return json_format.MessageToDict(component.pipeline_spec)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("kfp") / "pipeline.yaml")
  config = small_config(beam_args=["--direct_num_workers=2"])
  status = cli.main(["compile", "--config", _config_file(
      tmp_path_factory, config), "--output", path, "--image",
                     "registry.example.com/mtrec:1.2.3"])
  assert status == 0
  return _load(path), config


def _config_file(tmp_path_factory, config) -> str:
  path = tmp_path_factory.mktemp("cfg") / "config.yaml"
  path.write_text(json.dumps(config.model_dump(mode="json")))  # YAML ⊃ JSON
  return str(path)


def test_every_step_is_a_component_in_the_image(compiled):
  spec, _ = compiled
  tasks = spec["root"]["dag"]["tasks"]
  assert set(tasks) == set(DISPLAY)
  for name, task in tasks.items():
    assert task["taskInfo"]["name"] == DISPLAY[name]
    component = spec["components"][task["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][
        component["executorLabel"]]["container"]
    assert container["image"] == "registry.example.com/mtrec:1.2.3"
    command = " ".join(container["command"])
    assert "pip install" not in command  # kfp ships in the image
    # The body calls the step module the local path calls.
    assert f"from pipeline.steps import {STEP_MODULE[name]} as step" in command
    assert "step.run(" in command or "step.run_task(" in command
    assert f"def {name.replace('-', '_')}(" in command
    outputs = {n: a["artifactType"]["schemaTitle"] for n, a in component.get(
        "outputDefinitions", {}).get("artifacts", {}).items()}
    assert outputs == OUTPUT_TYPES[name]


def test_artifacts_flow_along_the_dag(compiled):
  spec, _ = compiled
  tasks = spec["root"]["dag"]["tasks"]
  assert "artifacts" not in tasks["example-gen"].get("inputs", {})
  for consumer, inputs in WIRING.items():
    got = {n: (a["taskOutputArtifact"]["producerTask"],
               a["taskOutputArtifact"]["outputArtifactKey"])
           for n, a in tasks[consumer]["inputs"]["artifacts"].items()}
    assert got == inputs, consumer
    assert set(tasks[consumer]["dependentTasks"]) == {
        p for p, _ in inputs.values()}
    # Each input's declared type is the producer's output type.
    component = spec["components"][tasks[consumer]["componentRef"]["name"]]
    for name, (producer, key) in inputs.items():
      assert component["inputDefinitions"]["artifacts"][name]["artifactType"][
          "schemaTitle"] == OUTPUT_TYPES[producer][key]


def test_trainer_requests_a_gpu_and_takes_distribution_settings(compiled):
  spec, _ = compiled
  trainer = spec["root"]["dag"]["tasks"]["trainer"]
  executor = spec["deploymentSpec"]["executors"][spec["components"][
      trainer["componentRef"]["name"]]["executorLabel"]]
  accelerator = executor["container"]["resources"]["accelerator"]
  assert accelerator["resourceType"] == "NVIDIA_TESLA_T4"
  assert accelerator["resourceCount"] == "1"
  assert trainer["inputs"]["parameters"]["num_cpu_devices"] == {
      "componentInputParameter": "num_cpu_devices"}
  for name in ("example-gen", "transform", "pusher"):
    other = spec["deploymentSpec"]["executors"][spec["components"][
        spec["root"]["dag"]["tasks"][name]["componentRef"]["name"]][
            "executorLabel"]]
    assert "resources" not in other["container"]


def test_each_task_receives_only_its_own_config_sections(compiled):
  spec, config = compiled
  params = spec["root"]["inputDefinitions"]["parameters"]
  sections = {"data", "example_gen", "transform", "text_embedder", "trainer",
              "serving", "evaluator", "data_validation"}
  assert set(params) == {f"{s}_config" for s in sections} | {
      "model_name", "serving_root", "text_cache_dir", "history_root",
      "beam_args", "num_cpu_devices", "teacher_config"}
  # The Teacher's own section: none without trainer.distillation
  # (tests/test_distillation.py compiles one with it).
  assert params["teacher_config"]["defaultValue"] == ""
  dumped = config.model_dump(mode="json")
  for section in sections:  # every default spelled out: values key caches
    assert json.loads(params[f"{section}_config"]["defaultValue"]) == dumped[
        section], section
  assert params["beam_args"]["defaultValue"] == ["--direct_num_workers=2"]
  tasks = spec["root"]["dag"]["tasks"]
  for name, task in tasks.items():
    received = {p for p in task["inputs"]["parameters"]
                if p.endswith("_config")}
    assert received == SECTIONS[name], name
    for section in received:
      assert task["inputs"]["parameters"][section] == {
          "componentInputParameter": section}
    # Each task's code version is a constant of the compiled spec.
    assert len(task["inputs"]["parameters"]["code_version"]["runtimeValue"][
        "constant"]) == 64
    # The run id is KFP's job id on a cluster, the run's own id locally.
    assert task["inputs"]["parameters"]["run_id"]["runtimeValue"][
        "constant"] == kfp.dsl.PIPELINE_JOB_ID_PLACEHOLDER
  # Where served models live reaches the steps that read or write them.
  for name in ("trainer", "evaluator", "pusher"):
    assert tasks[name]["inputs"]["parameters"]["serving_root"] == {
        "componentInputParameter": "serving_root"}
  # Beam options reach every Beam step.
  for name in ("example-gen", "transform", "evaluator"):
    assert tasks[name]["inputs"]["parameters"]["beam_args"] == {
        "componentInputParameter": "beam_args"}


def test_image_and_gpu_settings(tmp_path, monkeypatch):
  monkeypatch.setenv(kfp_pipeline.IMAGE_ENV, "gcr.io/p/mtrec:env")
  path = str(tmp_path / "p.yaml")
  assert cli.main(["compile", "--output", path, "--gpus", "2",
                   "--accelerator", "NVIDIA_L4"]) == 0
  spec = _load(path)
  executors = spec["deploymentSpec"]["executors"]
  assert {e["container"]["image"] for e in executors.values()} == {
      "gcr.io/p/mtrec:env"}
  assert executors["exec-trainer"]["container"]["resources"]["accelerator"][
      "resourceType"] == "NVIDIA_L4"
  assert executors["exec-trainer"]["container"]["resources"]["accelerator"][
      "resourceCount"] == "2"
  assert cli.main(["compile", "--output", path, "--gpus", "0"]) == 0
  assert "resources" not in _load(path)["deploymentSpec"]["executors"][
      "exec-trainer"]["container"]


class _StubClient:
  """Records what kfp.Client would have sent."""
  calls: list[dict] = []

  def __init__(self, host=None, **kwargs):
    self.host = host
    self.kwargs = kwargs

  def create_run_from_pipeline_package(self, pipeline_file, arguments=None,
                                       **kwargs):
    spec = _load(pipeline_file)  # a valid pipeline at the time of the call
    _StubClient.calls.append({"host": self.host, "client": self.kwargs,
                              "spec": spec, "arguments": arguments, **kwargs})

    class _Result:
      run_id = "run-123"
    return _Result()


def test_submit_sends_the_compiled_pipeline(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(kfp, "Client", _StubClient)
  _StubClient.calls.clear()
  config = tmp_path / "c.yaml"
  config.write_text("pipeline_name: sub\ndata: {format: synthetic, options: "
                    "{num_interactions: 100}}\n"
                    "trainer: {epochs: 3}\n")
  status = cli.main([
      "submit", "--host", "https://kfp.example.com/pipeline", "--config",
      str(config), "--image", "reg/mtrec:9", "--experiment", "recs",
      "--run-name", "nightly", "--beam-arg=--runner=DataflowRunner",
      "--num-cpu-devices", "2", "--pipeline-root", "gs://bucket/root",
      "--serving-root", "/mnt/models", "--no-cache"])
  assert status == 0
  (call,) = _StubClient.calls
  assert call["host"] == "https://kfp.example.com/pipeline"
  assert call["experiment_name"] == "recs"
  assert call["run_name"] == "nightly"
  assert call["pipeline_root"] == "gs://bucket/root"
  assert call["enable_caching"] is False
  assert call["arguments"]["beam_args"] == ["--runner=DataflowRunner"]
  assert call["arguments"]["num_cpu_devices"] == 2
  assert json.loads(call["arguments"]["trainer_config"])["epochs"] == 3
  assert call["arguments"]["serving_root"] == "/mnt/models"
  assert call["spec"]["pipelineInfo"]["name"] == "sub"
  assert {e["container"]["image"] for e in call["spec"]["deploymentSpec"][
      "executors"].values()} == {"reg/mtrec:9"}
  out = capsys.readouterr().out
  assert "run-123" in out and "https://kfp.example.com/pipeline/#/runs/" in out

  # A precompiled package is sent as it is; caching stays as compiled.
  package = str(tmp_path / "p.yaml")
  assert cli.main(["compile", "--output", package, "--image", "x/y:1"]) == 0
  assert cli.main(["submit", "--host", "http://localhost:8080", "--package",
                   package]) == 0
  assert _StubClient.calls[-1]["enable_caching"] is None
  assert {e["container"]["image"] for e in _StubClient.calls[-1]["spec"][
      "deploymentSpec"]["executors"].values()} == {"x/y:1"}


def test_cli_dispatch_lists_every_command(capsys):
  assert cli.main([]) == 2
  usage = capsys.readouterr().err
  for command in cli.COMMANDS:
    assert f"\n  {command} " in usage
  assert cli.main(["no-such-command"]) == 2
  assert os.path.exists(cli.DEMO_CONFIG)
