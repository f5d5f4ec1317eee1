"""The local runner: runs the pipeline's steps in order and records the run.

Layout of a run, as in ARCHITECTURE.md:
  <pipeline_root>/<run_id>/run.json
  <pipeline_root>/<run_id>/<Component>/<output>/   (artifacts, metadata.json)
run.json is rewritten after every step, so a run that fails still says which
step failed and why, and lineage can be read back without any orchestrator.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
import traceback
import uuid
from typing import Any, Callable, Optional

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

from components import artifacts
from pipeline import steps as steps_lib
from pipeline.config import PipelineConfig

RUN_FILE = "run.json"


class StepFailed(RuntimeError):
  """A pipeline step raised; the message names the step and the error."""


@dataclasses.dataclass
class RunResult:
  run_id: str
  run_dir: str
  status: str
  uris: dict[str, str]
  steps: list[dict[str, Any]]

  @property
  def pushed(self) -> dict[str, Any]:
    return artifacts.read_metadata(self.uris["Pusher/pushed_model"])["summary"]


def new_run_id() -> str:
  now = datetime.datetime.now(datetime.timezone.utc)
  return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_pipeline(config: PipelineConfig, output_dir: Optional[str] = None,
                 serving_root: Optional[str] = None,
                 run_id: Optional[str] = None,
                 num_cpu_devices: int = 1,
                 log: Callable[[str], None] = print) -> RunResult:
  """Runs ExampleGen → Transform → Trainer → Evaluator → Pusher.

  Args:
    config: the validated pipeline config.
    output_dir: pipeline root for this run (default: config.pipeline_root).
    serving_root: where the Pusher publishes (default: config.serving_root).
    run_id: defaults to a timestamped id.
    num_cpu_devices: >1 mirrors training over that many logical CPUs.
    log: progress sink.

  Raises:
    StepFailed: a step raised; run.json records the failure.
  """
  started = datetime.datetime.now(datetime.timezone.utc)
  run_id = run_id or new_run_id()
  root = os.path.abspath(output_dir or config.pipeline_root)
  run_dir = os.path.join(root, run_id)
  serving_root = os.path.abspath(serving_root or config.serving_root)
  os.makedirs(run_dir, exist_ok=True)
  u = steps_lib.output_uris(run_dir)
  step_log = lambda m: log(f"      {m}")  # pylint: disable=unnecessary-lambda-assignment

  steps = [
      ("ExampleGen", lambda: steps_lib.example_gen_step(config, run_id, u,
                                                        started)),
      ("Transform", lambda: steps_lib.transform_step(config, run_id, u)),
      ("Trainer", lambda: steps_lib.trainer_step(config, run_id, u,
                                                 num_cpu_devices, step_log)),
      ("Evaluator", lambda: steps_lib.evaluator_step(config, run_id, u)),
      ("Pusher", lambda: steps_lib.pusher_step(config, run_id, u,
                                               serving_root)),
  ]
  record = {
      "run_id": run_id,
      "pipeline_name": config.pipeline_name,
      "status": "running",
      "started_at": started.isoformat(timespec="seconds"),
      "config": config.model_dump(mode="json"),
      "serving_root": serving_root,
      "steps": [],
      "artifacts": {},
  }
  run_file = os.path.join(run_dir, RUN_FILE)
  artifacts.write_json_atomic(run_file, record)
  log(f"run {run_id} → {run_dir}")
  total_start = time.time()
  for i, (name, fn) in enumerate(steps, 1):
    log(f"[{i}/{len(steps)}] {name} ...")
    start = time.time()
    step = {"name": name, "status": "running"}
    record["steps"].append(step)
    try:
      message = fn()
    except Exception as e:  # pylint: disable=broad-except
      step.update(status="failed", seconds=round(time.time() - start, 2),
                  error=f"{type(e).__name__}: {e}",
                  traceback=traceback.format_exc())
      record.update(status="failed", failed_step=name)
      artifacts.write_json_atomic(run_file, record)
      raise StepFailed(f"step {name} failed: {type(e).__name__}: {e}") from e
    step.update(status="succeeded", seconds=round(time.time() - start, 2))
    for key, path in u.items():
      if key.startswith(name + "/") and os.path.exists(path):
        meta = artifacts.read_metadata(path)
        record["artifacts"][key] = {
            "uri": path, "type": meta["artifact_type"],
            "fingerprint": meta["fingerprint"], "inputs": meta["inputs"],
            "summary": meta["summary"]}
    artifacts.write_json_atomic(run_file, record)
    log(f"      {message}")
    log(f"      done in {step['seconds']:.1f}s")
  record.update(status="succeeded",
                seconds=round(time.time() - total_start, 2),
                finished_at=datetime.datetime.now(
                    datetime.timezone.utc).isoformat(timespec="seconds"))
  artifacts.write_json_atomic(run_file, record)
  times = ", ".join(f"{s['name']} {s['seconds']:.0f}s" for s in record["steps"])
  log(f"run {run_id} succeeded in {record['seconds']:.1f}s ({times})")
  return RunResult(run_id, run_dir, "succeeded", u, record["steps"])
