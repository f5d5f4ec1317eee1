"""`mtrec catalog refresh`: new items in the served model, as a recorded run.

A refresh is a small pipeline of its own, and runs like one:

  1. Resolve the version served now (contracts.serving_layout's one rule:
     the pinned version, else the highest). After `mtrec rollback` that is
     the version rolled back to, never the newer one rolled away from.
  2. Embed the new items' texts with the encoder settings that model was
     trained with (components/text_encoder.py; cache first).
  3. Rebuild the model with the new items (trainer/refresh.py) into a Model
     artifact of this run, with the served version as its input (lineage).
  4. Validate it in a fresh process, as the Evaluator's infra validation
     does (components/infra_validator.py). A model that fails is not
     published.
  5. Publish it as a new version (components/pusher.py's atomic copy) and
     pin it in models.config.

Everything is recorded in `<pipeline_root>/<run_id>/run.json` like a
pipeline run (steps, times, artifacts and their inputs), so `mtrec runs`
lists refreshes beside training runs and a failed refresh says where it
stopped.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from components import infra_validator
from components import parsing
from components import pusher
from components import text_encoder
from contracts import artifacts
from contracts import model_layout
from contracts import records as r
from contracts import run_record
from contracts import serving_layout
from pipeline import runner
from trainer import refresh as refresh_lib
from trainer import refresh_state

PIPELINE_NAME = "catalog-refresh"
STEP = "CatalogRefresh"


class RefreshFailed(RuntimeError):
  """The refresh stopped; run.json of its run says where and why."""


def refresh_catalog(serving_root: str, model_name: str,
                    new_items: Sequence[Mapping[str, Any]],
                    pipeline_root: str, cache_dir: Optional[str] = None,
                    latency_budget_ms: float = 250.0,
                    run_id: Optional[str] = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
  """Publishes the served model with `new_items` added; no training.

  Args:
    serving_root: where `<model_name>/<version>/` and models.config live.
    model_name: the served model.
    new_items: catalog rows (item_id, title, categories, year, tags).
    pipeline_root: where this run's record and artifacts go.
    cache_dir: the TextEmbedder's text-hash cache (None: no cache).
    latency_budget_ms: infra validation's p95 budget per warmup request.
    run_id: defaults to a timestamped id.
    log: progress sink.

  Returns:
    version, destination, from_version, added, updated, embedded, cached,
    catalog_items, run_id, run_dir.

  Raises:
    FileNotFoundError: nothing is served.
    RefreshFailed: the rebuilt model failed validation (nothing published).
  """
  serving_root = os.path.abspath(serving_root)
  from_version = serving_layout.served_version(serving_root, model_name)
  if from_version is None:
    raise FileNotFoundError(
        "no served version under "
        f"{serving_layout.model_root(serving_root, model_name)}")
  source_dir = serving_layout.version_dir(serving_root, model_name,
                                          from_version)
  run_id = run_id or runner.new_run_id()
  run_dir = os.path.join(os.path.abspath(pipeline_root), run_id)
  model_uri = os.path.join(run_dir, STEP, "model")
  started = time.time()
  run = {"run_id": run_id, "pipeline_name": PIPELINE_NAME,
         "status": "running", "pid": os.getpid(),
         "started_at": _now(), "serving_root": serving_root,
         "parameters": {"model_name": model_name,
                        "from_version": from_version,
                        "new_items": len(new_items)},
         "steps": [{"name": STEP, "status": "running"}], "artifacts": {}}
  os.makedirs(run_dir, exist_ok=True)
  run_file = run_record.run_file(run_dir)
  artifacts.write_json_atomic(run_file, run)
  log(f"run {run_id} → {run_dir}: refreshing {model_name} version "
      f"{from_version} with {len(new_items)} items")

  def fail(message: str) -> RefreshFailed:
    run["steps"][0].update(status="failed", error=message)
    run.update(status="failed", failed_step=STEP, error=message,
               seconds=round(time.time() - started, 2), finished_at=_now())
    artifacts.write_json_atomic(run_file, run)
    return RefreshFailed(f"{STEP} failed: {message} (run {run_dir})")

  try:
    items = [refresh_lib.normalize_item(i) for i in new_items]
    for row, item in enumerate(items, 1):
      # ExampleGen's rules for catalog rows (year range, size limits), so a
      # refresh cannot add an item that a pipeline run would quarantine.
      checked = parsing.parse_item(r.RawRow("new items", row, item))
      if isinstance(checked, parsing.Quarantined):
        raise ValueError(checked.describe())
    settings = refresh_state.text_settings(source_dir)
    new_text = None
    embedded = cached = 0
    if settings:
      new_text = text_encoder.embed_items(
          items, model=settings["model"], fields=settings["fields"],
          max_tags=settings["max_tags"], batch_size=settings["batch_size"],
          cache_dir=cache_dir)
      embedded, cached = new_text["embedded"], new_text["cached"]
      log(f"embedded {embedded} new texts ({cached} from the cache)")
    inputs = {"served_model": source_dir}
    with artifacts.write_artifact(
        model_uri, "Model", STEP, run_id,
        {"model_name": model_name, "from_version": from_version,
         "items": [i["item_id"] for i in items]}, inputs) as w:
      counts = refresh_lib.rebuild(
          source_dir, items, new_text, model_layout.saved_model_dir(w.uri),
          model_name, log=log)
      w.summary = dict(counts, from_version=from_version,
                       embedded=embedded, cached=cached)
  except Exception as e:  # recorded in run.json whatever it is
    failure = fail(f"{type(e).__name__}: {e}")
    if isinstance(e, (OSError, ValueError)):
      raise failure from e
    raise
  saved_model = model_layout.saved_model_dir(model_uri)
  infra = infra_validator.validate(saved_model, latency_budget_ms)
  failed = [c for c in infra["checks"] if not c["passed"]]
  if failed:
    raise fail("infra validation: " + "; ".join(
        f"{c['check']}: {c['detail']}" for c in failed))
  log(f"infra validation passed ({len(infra['checks'])} checks)")
  try:
    version, destination, config_path = pusher.push(
        saved_model, serving_root, model_name)
  except OSError as e:  # e.g. a full disk: recorded, then raised
    raise fail(f"publishing: {type(e).__name__}: {e}") from e
  meta = artifacts.read_metadata(model_uri)
  run["artifacts"][f"{STEP}/model"] = {
      "uri": model_uri, "type": meta["artifact_type"],
      "fingerprint": meta["fingerprint"], "inputs": meta["inputs"],
      "summary": meta["summary"], "produced_by_run": run_id}
  result = dict(meta["summary"], version=version, destination=destination,
                model_config=config_path, infra_checks=len(infra["checks"]))
  run["steps"][0].update(status="succeeded",
                         seconds=round(time.time() - started, 2))
  run.update(status="succeeded", pushed=result,
             seconds=round(time.time() - started, 2), finished_at=_now())
  artifacts.write_json_atomic(run_file, run)
  log(f"published version {version} to {destination} and pinned it")
  return dict(result, run_id=run_id, run_dir=run_dir)


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")
