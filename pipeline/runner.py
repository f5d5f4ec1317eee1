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
from components import parsing
from components.readers import build_reader
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


def _validation_rules(config: PipelineConfig,
                      started: datetime.datetime) -> parsing.ValidationRules:
  eg = config.example_gen
  ts_max = eg.timestamp_max or started

  def seconds(dt: datetime.datetime) -> int:
    if dt.tzinfo is None:
      dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp())

  return parsing.ValidationRules(eg.rating_min, eg.rating_max,
                                 seconds(eg.timestamp_min), seconds(ts_max))


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
  from components import evaluator  # pylint: disable=g-import-not-at-top
  from components import example_gen  # pylint: disable=g-import-not-at-top
  from components import pusher  # pylint: disable=g-import-not-at-top
  from components import transform  # pylint: disable=g-import-not-at-top
  from trainer import run as trainer_run  # pylint: disable=g-import-not-at-top

  started = datetime.datetime.now(datetime.timezone.utc)
  run_id = run_id or new_run_id()
  root = os.path.abspath(output_dir or config.pipeline_root)
  run_dir = os.path.join(root, run_id)
  serving_root = os.path.abspath(serving_root or config.serving_root)
  os.makedirs(run_dir, exist_ok=True)

  def uri(component: str, output: str) -> str:
    return os.path.join(run_dir, component, output)

  u = {
      "ExampleGen/examples": uri("ExampleGen", "examples"),
      "ExampleGen/catalog": uri("ExampleGen", "catalog"),
      "ExampleGen/quarantine": uri("ExampleGen", "quarantine"),
      "Transform/transform_graph": uri("Transform", "transform_graph"),
      "Transform/transformed_examples": uri("Transform",
                                            "transformed_examples"),
      "Trainer/model": uri("Trainer", "model"),
      "Evaluator/evaluation": uri("Evaluator", "evaluation"),
      "Evaluator/blessing": uri("Evaluator", "blessing"),
      "Pusher/pushed_model": uri("Pusher", "pushed_model"),
  }
  model_dir = os.path.join(u["Trainer/model"], trainer_run.SERVING_MODEL_DIR)
  eg = config.example_gen

  def example_gen_step():
    c = example_gen.run_example_gen(
        build_reader(config.data.format, **config.data.options),
        _validation_rules(config, started), u["ExampleGen/examples"],
        u["ExampleGen/catalog"], u["ExampleGen/quarantine"], run_id,
        split=eg.split, eval_fraction=eg.eval_fraction, seed=eg.seed,
        max_quarantine_fraction=eg.max_quarantine_fraction,
        beam_args=config.beam_args,
        parameters={"data": config.data.model_dump(mode="json")})
    return (f"{c['interactions_in']:,} rows in: {c['interactions_train']:,} "
            f"train, {c['interactions_eval']:,} eval, "
            f"{c['interactions_quarantined']:,} quarantined, "
            f"{c['duplicates_dropped']:,} duplicates; "
            f"{c['items_written']:,} items, {c['users_written']:,} users")

  def transform_step():
    transform.run_transform(
        u["ExampleGen/examples"], u["Transform/transform_graph"],
        u["Transform/transformed_examples"], run_id,
        like_threshold=config.transform.like_threshold,
        max_title_tokens=config.transform.max_title_tokens_vocab,
        beam_args=config.beam_args)
    sizes = artifacts.read_metadata(
        u["Transform/transform_graph"])["summary"]["vocabulary_sizes"]
    return "vocabularies: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())

  def trainer_step():
    s = trainer_run.run_trainer(
        u["Transform/transform_graph"], u["Transform/transformed_examples"],
        u["ExampleGen/examples"], u["ExampleGen/catalog"],
        u["Trainer/model"], run_id, config.trainer, config.model_name,
        config.serving.top_k, num_cpu_devices=num_cpu_devices,
        log=lambda m: log(f"      {m}"))
    return (f"{s['epochs']} epochs on {s['strategy']}, "
            f"{s['examples_per_second']:,.0f} examples/s")

  def evaluator_step():
    ev = config.evaluator
    b = evaluator.run_evaluator(
        u["Trainer/model"], model_dir, u["ExampleGen/examples"],
        u["ExampleGen/catalog"], u["Transform/transform_graph"],
        u["Evaluator/evaluation"], u["Evaluator/blessing"], run_id,
        ev.ks, ev.thresholds, ev.must_beat_popularity, ev.max_eval_users,
        config.example_gen.seed)
    m = artifacts.read_metadata(u["Evaluator/evaluation"])["summary"]
    lines = [b["verdict"]]
    for c in b["checks"]:
      lines.append(f"{'ok  ' if c['passed'] else 'FAIL'} {c['metric']} "
                   f"{c['value']:.4f} {c['op']} {c['bound']:.4f} "
                   f"({c['check']})")
    cand, pop = m["candidate"], m["baselines"]["popularity"]
    for k in ev.ks:
      key = f"recall_at_{k}"
      if key in cand:
        lines.append(f"     recall@{k} {cand[key]:.4f} (popularity "
                     f"{pop.get(key, float('nan')):.4f}), ndcg@{k} "
                     f"{cand[f'ndcg_at_{k}']:.4f} (popularity "
                     f"{pop.get(f'ndcg_at_{k}', float('nan')):.4f})")
    lines.append(f"     rmse {cand['rmse']:.4f}, auc {cand['auc']:.4f}")
    return "\n      ".join(lines)

  def pusher_step():
    s = pusher.run_pusher(u["Trainer/model"], model_dir,
                          u["Evaluator/blessing"], serving_root,
                          config.model_name, u["Pusher/pushed_model"], run_id)
    return (f"pushed version {s['version']} to {s['destination']}"
            if s["pushed"] else f"not pushed: {s['reason']}")

  steps = [("ExampleGen", example_gen_step), ("Transform", transform_step),
           ("Trainer", trainer_step), ("Evaluator", evaluator_step),
           ("Pusher", pusher_step)]
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
