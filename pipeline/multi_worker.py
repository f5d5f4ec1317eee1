"""Training on several workers: processes on localhost, or a Kubeflow TFJob.

`trainer.workers: N` (N > 1) makes the Trainer (and Teacher) task a
launcher. It starts N copies of the same step (`run_task`), each with a
TF_CONFIG naming the cluster, so `trainer/distribution.py` picks
MultiWorkerMirroredStrategy and TensorFlow's collective runtime (gRPC)
all-reduces the gradients. Every worker runs the whole step, export
included: reading Keras' sync-on-read metric variables for a save is itself
a collective, so all workers must save, as TensorFlow's multi-worker guide
says. Only the chief's export goes to the task's output; the others write
theirs to a temporary directory that is deleted.

Where the workers run:
- `local` (what `mtrec run` uses): N processes on this machine, on free
  localhost ports; the chief's output is the task's log.
- `tfjob` (a KFP task on a cluster): a Kubeflow Training Operator TFJob of N
  worker replicas running this module (`python -m pipeline.multi_worker`);
  the operator writes each pod's TF_CONFIG. The task waits for the TFJob's
  Succeeded (or Failed) condition, the way TFX's cloud trainers wait for
  their training service. The workers must see the task's artifact paths
  (`trainer.tfjob.volume`).

Written by hand: KFP runs one pod per task, and neither KFP nor the Training
Operator's SDK offers a blocking "run this TFJob from inside a task" that
works without the cluster (the local runner) too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Optional

from pipeline import step_deps
from pipeline.steps import ArtifactUris

LAUNCHER_ENV = "MTREC_WORKER_LAUNCHER"  # "local" or "tfjob"
IMAGE_ENV = "MTREC_IMAGE"  # the pipeline's image, set on the task at compile
TFJOB_GROUP, TFJOB_VERSION, TFJOB_PLURAL = "kubeflow.org", "v1", "tfjobs"
# The Training Operator finds the TensorFlow container by this name.
TFJOB_CONTAINER = "tensorflow"
# The step's artifact written by the chief: its output field, by step.
OUTPUT_FIELD = {"trainer": "model", "teacher": "teacher_model"}


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
  """What every worker runs: a step's `run_task` with these arguments."""

  step: str  # "trainer" or "teacher"
  arguments: Mapping[str, Any]  # run_task's, except `uris`
  uris: Mapping[str, Optional[str]]  # ArtifactUris' fields

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "WorkerSpec":
    return cls(**json.loads(text))


def launcher() -> str:
  """`local` or `tfjob`: LAUNCHER_ENV, else tfjob inside a Kubernetes pod."""
  chosen = os.environ.get(LAUNCHER_ENV)
  if chosen:
    if chosen not in ("local", "tfjob"):
      raise ValueError(f"{LAUNCHER_ENV}={chosen!r}: use local or tfjob")
    return chosen
  return "tfjob" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"


def is_worker() -> bool:
  """Is this process one of a cluster's workers (TF_CONFIG set)?"""
  return bool(os.environ.get("TF_CONFIG"))


def launch(spec: WorkerSpec, workers: int, tfjob: Any,
           log: Callable[[str], None] = print) -> str:
  """Runs `spec` on `workers` workers where launcher() says; the summary."""
  if launcher() == "tfjob":
    name = tfjob_name(spec)
    run_tfjob(tfjob_manifest(spec, workers, tfjob, name), tfjob, log)
    where = f"TFJob {tfjob.namespace}/{name}"
  else:
    run_local(spec, workers, log)
    where = "localhost"
  summary = _read_summary(spec.uris[OUTPUT_FIELD[spec.step]])
  return (f"{spec.step}: {workers} workers on {where}, "
          f"{summary.get('epochs')} epochs on {summary.get('strategy')}, "
          f"{summary.get('examples_per_second') or 0:,.0f} examples/s")


def _read_summary(artifact_uri: Optional[str]) -> dict[str, Any]:
  from contracts import artifacts  # pylint: disable=g-import-not-at-top
  return artifacts.read_metadata(artifact_uri or "").get("summary", {})


def tf_config(hosts: list[str], index: int) -> str:
  """TF_CONFIG of worker `index` of a cluster of `hosts` (worker 0: chief)."""
  return json.dumps({"cluster": {"worker": hosts},
                     "task": {"type": "worker", "index": index}})


def free_ports(n: int) -> list[int]:
  """n distinct free ports on localhost (bound together, then released)."""
  with contextlib.ExitStack() as stack:
    socks = [stack.enter_context(socket.socket()) for _ in range(n)]
    for s in socks:
      s.bind(("localhost", 0))
    return [s.getsockname()[1] for s in socks]


def run_local(spec: WorkerSpec, workers: int,
              log: Callable[[str], None] = print,
              poll_seconds: float = 0.5) -> None:
  """Runs the workers as processes on localhost; raises if one fails.

  The chief's output is forwarded to `log`; the others' goes to files,
  whose tail the error quotes. One failed worker leaves the others waiting
  in a collective forever, so they are killed.
  """
  hosts = [f"localhost:{p}" for p in free_ports(workers)]
  log(f"{workers} workers on {', '.join(hosts)} "
      "(MultiWorkerMirroredStrategy)")
  with tempfile.TemporaryDirectory(prefix="mtrec-workers-") as tmp:
    spec_path = os.path.join(tmp, "spec.json")
    with open(spec_path, "w") as f:
      f.write(spec.to_json())
    procs, logs = [], []
    try:
      for index in range(workers):
        env = dict(os.environ, TF_CONFIG=tf_config(hosts, index),
                   PYTHONUNBUFFERED="1")
        # The worker imports this checkout, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (step_deps.PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("TF_USE_LEGACY_KERAS", "1")
        path = os.path.join(tmp, f"worker-{index}.log")
        logs.append(path)
        out = open(path, "w")  # pylint: disable=consider-using-with
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pipeline.multi_worker", "--spec",
             spec_path], stdout=out, stderr=subprocess.STDOUT, env=env))
        out.close()
      _follow(procs, logs, log, poll_seconds)
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()


def _follow(procs: list[subprocess.Popen], logs: list[str],
            log: Callable[[str], None], poll_seconds: float) -> None:
  """Forwards the chief's output, line by line as it completes, until
  every worker exits; raises naming the first worker that failed."""
  pending = ""
  with open(logs[0]) as chief:
    while True:
      done = [p.poll() for p in procs]
      # Read after polling: once the chief has exited, this is all of it.
      *lines, pending = (pending + chief.read()).split("\n")
      for line in lines:
        log(line)
      failed = [i for i, rc in enumerate(done) if rc not in (None, 0)]
      if failed:
        i = failed[0]
        with open(logs[i]) as f:
          tail = "".join(f.readlines()[-30:])
        raise RuntimeError(
            f"worker {i} of {len(procs)} exited with status {done[i]}; the "
            f"others were stopped. Its last lines:\n{tail}")
      if all(rc == 0 for rc in done):
        if pending:
          log(pending)
        return
      time.sleep(poll_seconds)


def tfjob_name(spec: WorkerSpec) -> str:
  """A DNS-1123 name for the step's TFJob, unique per run."""
  run_id = str(spec.arguments.get("run_id", ""))
  safe = "".join(c if c.isalnum() else "-" for c in run_id.lower())
  return f"mtrec-{spec.step}-{safe}".strip("-")[:63].rstrip("-")


def tfjob_manifest(spec: WorkerSpec, workers: int, tfjob: Any,
                   name: str) -> dict[str, Any]:
  """The TFJob (kubeflow.org/v1) that runs `spec` on `workers` pods.

  Args:
    tfjob: trainer.tfjob (TFJobConfig): namespace, image (None: this task's
      image, IMAGE_ENV), GPUs per worker, service account, the volume
      holding the artifacts.
  """
  image = tfjob.image or os.environ.get(IMAGE_ENV)
  if not image:
    raise ValueError(f"trainer.tfjob.image: not set, and {IMAGE_ENV} (the "
                     "pipeline's image, set at compile) is not either")
  container: dict[str, Any] = {
      "name": TFJOB_CONTAINER, "image": image,
      "command": ["python", "-m", "pipeline.multi_worker", "--spec-json",
                  spec.to_json()],
      "env": [{"name": "TF_USE_LEGACY_KERAS", "value": "1"},
              {"name": "PYTHONUNBUFFERED", "value": "1"}],
  }
  if tfjob.gpus_per_worker:
    container["resources"] = {"limits": {
        "nvidia.com/gpu": tfjob.gpus_per_worker}}
  pod: dict[str, Any] = {"containers": [container]}
  if tfjob.volume is not None:
    container["volumeMounts"] = [{"name": tfjob.volume["name"],
                                  "mountPath": tfjob.mount_path}]
    pod["volumes"] = [tfjob.volume]
  if tfjob.service_account:
    pod["serviceAccountName"] = tfjob.service_account
  return {
      "apiVersion": f"{TFJOB_GROUP}/{TFJOB_VERSION}", "kind": "TFJob",
      "metadata": {"name": name, "namespace": tfjob.namespace,
                   "labels": {"app.kubernetes.io/part-of": "mtrec",
                              "mtrec/step": spec.step}},
      "spec": {
          # All workers or none: a lost pod fails the job, and the task
          # with it, rather than leaving the others in a collective.
          "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0},
          "tfReplicaSpecs": {"Worker": {
              "replicas": workers, "restartPolicy": "Never",
              "template": {"spec": pod}}},
      },
  }


def _custom_objects_api() -> Any:
  from kubernetes import client  # pylint: disable=g-import-not-at-top
  from kubernetes import config  # pylint: disable=g-import-not-at-top
  config.load_incluster_config()
  return client.CustomObjectsApi()


def run_tfjob(manifest: Mapping[str, Any], tfjob: Any,
              log: Callable[[str], None] = print, api: Any = None,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> None:
  """Creates the TFJob and waits for its Succeeded condition.

  Raises:
    RuntimeError: it Failed (with the operator's message), or it ran past
      tfjob.timeout_minutes (it is then deleted).
  """
  api = api or _custom_objects_api()
  name = manifest["metadata"]["name"]
  namespace = manifest["metadata"]["namespace"]
  where = dict(group=TFJOB_GROUP, version=TFJOB_VERSION,
               namespace=namespace, plural=TFJOB_PLURAL)
  api.create_namespaced_custom_object(body=manifest, **where)
  replicas = manifest["spec"]["tfReplicaSpecs"]["Worker"]["replicas"]
  log(f"TFJob {namespace}/{name}: {replicas} workers submitted")
  deadline = clock() + tfjob.timeout_minutes * 60
  last = None
  while True:
    status = api.get_namespaced_custom_object(name=name, **where).get(
        "status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []
                  if c.get("status") == "True"}
    for kind in ("Succeeded", "Failed"):
      if kind in conditions:
        message = conditions[kind].get("message", "")
        if kind == "Failed":
          raise RuntimeError(f"TFJob {namespace}/{name} failed: {message}")
        log(f"TFJob {namespace}/{name} succeeded")
        return
    current = sorted(conditions)
    if current != last:
      log(f"TFJob {namespace}/{name}: {', '.join(current) or 'pending'}")
      last = current
    if clock() > deadline:
      api.delete_namespaced_custom_object(name=name, **where)
      raise RuntimeError(
          f"TFJob {namespace}/{name} did not finish within "
          f"trainer.tfjob.timeout_minutes={tfjob.timeout_minutes:g}; deleted")
    sleep(tfjob.poll_seconds)


def is_chief(config: Mapping[str, Any]) -> bool:
  """TensorFlow's rule: the `chief` task, else worker 0 of a chiefless
  cluster."""
  task = config.get("task", {})
  if task.get("type") == "chief":
    return True
  return (task.get("type") == "worker" and int(task.get("index", 0)) == 0
          and not config.get("cluster", {}).get("chief"))


def run_worker(spec: WorkerSpec) -> str:
  """This worker's share: the step's `run_task`, with the chief's output
  where the task expects it and a temporary one elsewhere."""
  chief = is_chief(json.loads(os.environ.get("TF_CONFIG", "{}")))
  uris = dict(spec.uris)
  scratch = None
  if not chief:
    scratch = tempfile.mkdtemp(prefix="mtrec-worker-")
    uris[OUTPUT_FIELD[spec.step]] = os.path.join(scratch, "output")
  if spec.step not in OUTPUT_FIELD:
    raise ValueError(f"step {spec.step!r}: one of {sorted(OUTPUT_FIELD)}")
  # By name: the steps import this module to launch their workers.
  step = importlib.import_module(f"pipeline.steps.{spec.step}")
  try:
    return step.run_task(**spec.arguments, uris=ArtifactUris(**uris))
  finally:
    if scratch:
      shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog="python -m pipeline.multi_worker",
      description="One worker of a multi-worker Trainer (TF_CONFIG set).")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--spec", help="A WorkerSpec JSON file.")
  source.add_argument("--spec-json", help="A WorkerSpec as JSON text.")
  args = parser.parse_args(argv)
  if not is_worker():
    parser.error("TF_CONFIG is not set: this runs inside a launched worker")
  if args.spec:
    with open(args.spec) as f:
      text = f.read()
  else:
    text = args.spec_json
  print(run_worker(WorkerSpec.from_json(text)), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
