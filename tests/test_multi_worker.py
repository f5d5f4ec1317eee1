"""Multi-worker training (pipeline/multi_worker.py): the TFJob a compiled
pipeline's Trainer submits, read from the compiled YAML and a stub
Kubernetes API; and two real workers on localhost (TensorFlow's collective
runtime over gRPC) training the demo model as one worker does."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import yaml

from conftest import small_config
from conftest import small_config_raw
from contracts import artifacts
from pipeline import multi_worker
from pipeline.steps import ArtifactUris
from trainer.config import TFJobConfig
from trainer.config import TrainerConfig

IMAGE = "gcr.io/p/mtrec:7"
VOLUME = {"name": "artifacts", "persistentVolumeClaim": {"claimName": "mtrec"}}


class StubCustomObjects:
  """kubernetes.client.CustomObjectsApi's three calls the launcher makes.

  `create` runs `on_create` (what the workers would do); each `get` returns
  the next of `statuses`, the last one repeating.
  """

  def __init__(self, statuses, on_create=None):
    self.created, self.deleted, self.gets = [], [], 0
    self._statuses = statuses
    self._on_create = on_create

  def create_namespaced_custom_object(self, group, version, namespace,
                                      plural, body):
    assert (group, version, plural) == ("kubeflow.org", "v1", "tfjobs")
    assert namespace == body["metadata"]["namespace"]
    self.created.append(body)
    if self._on_create:
      self._on_create(body)

  def get_namespaced_custom_object(self, group, version, namespace, plural,
                                   name):
    del group, version, namespace, plural, name
    status = self._statuses[min(self.gets, len(self._statuses) - 1)]
    self.gets += 1
    return {"status": status}

  def delete_namespaced_custom_object(self, group, version, namespace,
                                      plural, name):
    del group, version, plural
    self.deleted.append((namespace, name))


def _condition(kind, message=""):
  return {"conditions": [{"type": kind, "status": "True",
                          "message": message}]}


def _compiled(trainer_section):
  from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top
  config = small_config(trainer=trainer_section)
  return config, kfp_pipeline.pipeline_spec(
      config, kfp_pipeline.Settings(image=IMAGE, gpus=1))


def test_the_compiled_trainer_submits_a_tfjob_of_its_workers(
    monkeypatch, tmp_path, capsys):
  """Compiled with trainer.workers 2, the Trainer task holds no GPU (its
  workers do) and knows its image; run as on a cluster, it submits a TFJob
  of 2 workers running this project's worker entry point on the task's own
  artifact paths, waits for Succeeded, and reports the chief's model."""
  config, spec = _compiled({
      "epochs": 1, "workers": 2,
      "tfjob": {"namespace": "team-a", "gpus_per_worker": 1,
                "volume": VOLUME, "mount_path": "/mnt/artifacts"}})
  container = spec["deploymentSpec"]["executors"]["exec-trainer"]["container"]
  assert "accelerator" not in container.get("resources", {})
  env = {e["name"]: e["value"] for e in container["env"]}
  assert env[multi_worker.IMAGE_ENV] == IMAGE
  trainer_config = spec["root"]["inputDefinitions"]["parameters"][
      "trainer_config"]["defaultValue"]
  assert json.loads(trainer_config)["workers"] == 2

  # The task on a cluster: its artifact paths as the KFP launcher gives them.
  uris = ArtifactUris(**{f: str(tmp_path / f) for f in (
      "transform_graph", "transformed_examples", "examples", "catalog",
      "model")})

  def chief_writes_the_model(body):
    with artifacts.write_artifact(uris.model, "Model", "Trainer", "r1",
                                  {}) as w:
      w.summary = {"epochs": 1, "strategy": "MultiWorkerMirroredStrategy "
                   "(2 replicas)", "examples_per_second": 10.0}
    del body

  api = StubCustomObjects([{}, _condition("Running"),
                           _condition("Succeeded")], chief_writes_the_model)
  monkeypatch.setattr(multi_worker, "_custom_objects_api", lambda: api)
  monkeypatch.setattr(multi_worker.time, "sleep", lambda s: None)
  monkeypatch.setenv(multi_worker.LAUNCHER_ENV, "tfjob")
  monkeypatch.setenv(multi_worker.IMAGE_ENV, env[multi_worker.IMAGE_ENV])
  monkeypatch.delenv("TF_CONFIG", raising=False)
  from pipeline.steps import trainer as trainer_step  # pylint: disable=g-import-not-at-top
  message = trainer_step.run_task(
      trainer_config, spec["root"]["inputDefinitions"]["parameters"][
          "serving_config"]["defaultValue"], "mtrec", "/serving",
      "mtrec-test-20261205", uris, 1)
  assert message.startswith("trainer: 2 workers on TFJob team-a/mtrec-"
                            "trainer-mtrec-test-20261205, 1 epochs on "
                            "MultiWorkerMirroredStrategy")

  (job,) = api.created
  assert job["kind"] == "TFJob" and job["apiVersion"] == "kubeflow.org/v1"
  assert job["metadata"]["namespace"] == "team-a"
  workers = job["spec"]["tfReplicaSpecs"]
  assert list(workers) == ["Worker"] and workers["Worker"]["replicas"] == 2
  pod = workers["Worker"]["template"]["spec"]
  (c,) = pod["containers"]
  assert c["name"] == "tensorflow" and c["image"] == IMAGE
  assert c["resources"] == {"limits": {"nvidia.com/gpu": 1}}
  assert c["volumeMounts"] == [{"name": "artifacts",
                                "mountPath": "/mnt/artifacts"}]
  assert pod["volumes"] == [VOLUME]
  assert c["command"][:4] == ["python", "-m", "pipeline.multi_worker",
                              "--spec-json"]
  worker_spec = multi_worker.WorkerSpec.from_json(c["command"][4])
  assert worker_spec.step == "trainer"
  assert worker_spec.uris == dataclasses.asdict(uris)
  assert json.loads(worker_spec.arguments["trainer_config"])["workers"] == 2
  assert "TF_CONFIG" not in {e["name"] for e in c["env"]}  # the operator's

  # `mtrec compile` says where the training goes.
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  raw_config = tmp_path / "config.yaml"
  raw_config.write_text(yaml.safe_dump(small_config_raw(trainer={
      "epochs": 1, "workers": 2, "tfjob": {"gpus_per_worker": 1}})))
  assert cli.main(["compile", "--config", str(raw_config), "--output",
                   str(tmp_path / "p.yaml"), "--image", IMAGE]) == 0
  assert "trainer: a TFJob of 2 workers in namespace kubeflow, 1 GPU(s) " \
      "each" in capsys.readouterr().out

  # One worker: the Trainer task itself trains, on its GPU.
  _, spec = _compiled({"epochs": 1})
  container = spec["deploymentSpec"]["executors"]["exec-trainer"]["container"]
  assert container["resources"]["accelerator"]["count"] == "1"


def test_a_failed_or_overdue_tfjob_fails_the_task():
  spec = multi_worker.WorkerSpec("trainer", {"run_id": "r"}, {})
  tfjob = TFJobConfig(image=IMAGE, poll_seconds=60, timeout_minutes=2)
  manifest = multi_worker.tfjob_manifest(spec, 2, tfjob, "mtrec-trainer-r")

  api = StubCustomObjects([_condition("Failed", "worker-1 OOMKilled")])
  with pytest.raises(RuntimeError, match="failed: worker-1 OOMKilled"):
    multi_worker.run_tfjob(manifest, tfjob, log=lambda m: None, api=api,
                           sleep=lambda s: None)
  assert not api.deleted

  now = [0.0]

  def sleep(seconds):
    now[0] += seconds

  api = StubCustomObjects([_condition("Running")])
  with pytest.raises(RuntimeError, match="timeout_minutes=2; deleted"):
    multi_worker.run_tfjob(manifest, tfjob, log=lambda m: None, api=api,
                           clock=lambda: now[0], sleep=sleep)
  assert api.deleted == [("kubeflow", "mtrec-trainer-r")]
  assert api.gets == 4  # at 0, 60, 120 and 180 s


def test_tfjob_settings_are_checked_at_load():
  with pytest.raises(ValueError, match="mount_path"):
    TFJobConfig(volume=VOLUME)
  with pytest.raises(ValueError, match="volume.name"):
    TFJobConfig(volume={"persistentVolumeClaim": {}}, mount_path="/m")
  with pytest.raises(ValueError, match="workers"):
    TrainerConfig(workers=0)
  assert multi_worker.is_chief({"task": {"type": "worker", "index": 0}})
  assert not multi_worker.is_chief({"task": {"type": "worker", "index": 1}})
  assert not multi_worker.is_chief({"cluster": {"chief": ["h:1"]},
                                    "task": {"type": "worker", "index": 0}})


@pytest.mark.slow
def test_two_workers_on_localhost_train_the_demo_model_as_one_does(
    small_run, tmp_path, monkeypatch):
  """The demo config's model (its six tasks) on the small run's data,
  trained by one process and by two workers with the same global batch and
  seed: MultiWorkerMirroredStrategy over TensorFlow's collective runtime,
  in-batch candidates gathered across the workers. The eval metrics agree
  within 2% (in practice to float rounding); only the chief's export is
  kept."""
  from components import artifact_readers  # pylint: disable=g-import-not-at-top
  from components import retrieval_eval  # pylint: disable=g-import-not-at-top
  from contracts import evaluation_files  # pylint: disable=g-import-not-at-top
  from contracts import model_layout  # pylint: disable=g-import-not-at-top
  from contracts import records as r  # pylint: disable=g-import-not-at-top
  from pipeline.steps import trainer as trainer_step  # pylint: disable=g-import-not-at-top
  with open(os.path.join(os.path.dirname(__file__), "..", "configs",
                         "demo.yaml")) as f:
    demo = yaml.safe_load(f)["trainer"]
  section = dict(demo, epochs=2, batch_size=512)
  # The fusion search would train each model twice (slice, then refit).
  serving = json.dumps({"top_k": 5, "ranking": {"search": {"enabled": False}}})
  monkeypatch.setenv(multi_worker.LAUNCHER_ENV, "local")
  models = {}
  for workers in (1, 2):
    uris = dataclasses.replace(small_run.artifacts,
                               model=str(tmp_path / f"model{workers}"))
    message = trainer_step.run_task(
        json.dumps(dict(section, workers=workers)), serving, "mtrec",
        str(tmp_path / "serving"), f"w{workers}", uris, 1)
    models[workers] = uris.model
    summary = artifacts.read_metadata(uris.model)["summary"]
    assert summary["strategy"].endswith(f"({workers} replicas)"), message
  assert message.startswith("trainer: 2 workers on localhost")

  def history(workers):
    with open(os.path.join(models[workers],
                           evaluation_files.TRAINING_HISTORY_FILE)) as f:
      return json.load(f)

  for key, values in history(1).items():
    assert history(2)[key] == pytest.approx(values, rel=1e-3), key

  u = small_run.artifacts
  items, _ = artifact_readers.read_catalog(u.catalog, [])
  results = retrieval_eval.evaluate_retrieval(
      {f"{w} workers": model_layout.saved_model_dir(models[w])
       for w in (1, 2)},
      u.examples, items[r.ITEM_ID], items[r.CATEGORIES], [10, 20], [5],
      str(tmp_path / "eval"))
  one = results["1 workers"][retrieval_eval.ALL]
  two = results["2 workers"][retrieval_eval.ALL]
  for metric in ("recall_at_10", "recall_at_20", "ndcg_at_20"):
    assert two[metric] == pytest.approx(one[metric], rel=0.02), metric


def test_the_chiefs_lines_are_forwarded_and_a_failed_worker_named(
    tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  def start(code, name):
    path = str(tmp_path / name)
    with open(path, "w") as out:
      return subprocess.Popen([sys.executable, "-c", code], stdout=out,
                              stderr=subprocess.STDOUT), path

  chief = start("import time\nprint('one', flush=True)\ntime.sleep(0.3)\n"
                "print('two')\nprint('last', end='')", "chief.log")
  other = start("print('quiet')", "other.log")
  shown = []
  multi_worker._follow([chief[0], other[0]], [chief[1], other[1]],  # pylint: disable=protected-access
                       shown.append, 0.05)
  assert shown == ["one", "two", "last"]

  chief = start("import time\ntime.sleep(30)", "chief2.log")
  broken = start("import sys\nprint('out of memory')\nsys.exit(3)",
                 "broken.log")
  try:
    with pytest.raises(RuntimeError, match=r"worker 1 of 2 exited with "
                       r"status 3(.|\n)*out of memory"):
      multi_worker._follow([chief[0], broken[0]], [chief[1], broken[1]],  # pylint: disable=protected-access
                           shown.append, 0.05)
  finally:
    chief[0].kill()
    chief[0].wait()
