"""Evaluator: measures the candidate as it will be served, then decides.

Stages, each able to fail without crashing the step (a stage that raises
becomes a failed check, so the verdict is NOT_BLESSED with the reason):
  1. retrieval on Beam through `recommend_excluding` (components.retrieval_eval)
     for the candidate, the model now serving, and popularity;
  2. ranking heads with TFMA through `predict_examples`, candidate against
     the serving model, thresholds as TFMA MetricThresholds, and the same
     metrics per slice (components.ranking_eval);
  3. infra validation in a fresh process (components.infra_validator);
  4. the blessing (components.blessing) and the reports (components.report).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import traceback
from typing import Any, Optional, Sequence

from contracts import artifacts
from components import blessing as blessing_lib
from components import artifact_readers
from components import infra_validator
from contracts import evaluation_files
from contracts import records as r
from components import report
from components import retrieval_eval

BLESSED = blessing_lib.BLESSED
NOT_BLESSED = blessing_lib.NOT_BLESSED
METRICS_FILE = evaluation_files.METRICS_FILE
BLESSING_FILE = evaluation_files.BLESSING_FILE
KFP_METRICS_FILE = evaluation_files.KFP_METRICS_FILE
HISTORY_FILE = evaluation_files.HISTORY_HTML
TRAINING_HISTORY_FILE = evaluation_files.TRAINING_HISTORY_FILE


def _signatures(model_dir: str) -> set[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return set(tf.saved_model.load(model_dir).signatures)


def _stage_error(stage: str, e: BaseException) -> dict[str, Any]:
  return {"metric": stage, "check": "evaluation ran", "value":
          f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
          "op": "", "bound": "", "passed": False,
          "traceback": traceback.format_exc()[-2000:]}


def run_evaluator(
    model_uri: str,
    model_dir: str,
    examples_uri: str,
    catalog_uri: str,
    transform_graph_uri: str,
    evaluation_uri: str,
    blessing_uri: str,
    run_id: str,
    config: Any,
    serving_model_dir: Optional[str] = None,
    pipeline_root: Optional[str] = None,
    seed: int = 42,
    beam_args: Sequence[str] = (),
) -> dict[str, Any]:
  """Evaluates, publishes evaluation and blessing; returns the blessing.

  Args:
    config: components.config.EvaluatorConfig.
    serving_model_dir: the SavedModel now serving, the regression baseline;
      None when nothing is served yet.
    pipeline_root: where earlier runs live, for the history page.
  """
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from components import ranking_eval  # pylint: disable=g-import-not-at-top
  inputs = {"model": model_uri, "examples": examples_uri,
            "catalog": catalog_uri, "transform_graph": transform_graph_uri}
  stage_errors = []
  notes = []
  ks = list(config.ks)

  if serving_model_dir:
    try:
      missing = set(infra_validator.REQUIRED_SIGNATURES) - _signatures(
          serving_model_dir)
    except Exception as e:  # pylint: disable=broad-except
      missing = {f"(cannot load: {e})"}
    if missing:
      notes.append(f"serving model {serving_model_dir} not used as a "
                   f"baseline: missing {sorted(missing)}")
      serving_model_dir = None
  serving_desc = serving_model_dir or "none (nothing served yet)"

  # Infra validation runs in its own process: start it first, collect last.
  pending_infra = infra_validator.start(model_dir, config.latency_budget_ms)
  try:
    with artifacts.scratch_dir(evaluation_uri) as scratch:
      items, _ = artifact_readers.read_catalog(catalog_uri)
      retrieval: dict[str, Any] = {}
      models = {"candidate": model_dir}
      if serving_model_dir:
        models["serving"] = serving_model_dir
      try:
        retrieval = retrieval_eval.evaluate_retrieval(
            models, examples_uri, items[r.ITEM_ID], items[r.CATEGORIES], ks,
            config.activity_boundaries, scratch, config.max_eval_users, seed,
            beam_args)
      except Exception as e:  # pylint: disable=broad-except
        stage_errors.append(_stage_error("retrieval evaluation", e))

      ranking: dict[str, Any] = {"metrics": {}, "calibration": [],
                                 "failures": []}
      try:
        tft_output = tft.TFTransformOutput(transform_graph_uri)
        users, item_counts = ranking_eval.train_counts(examples_uri)
        labeled = os.path.join(scratch, "eval_labeled.tfrecord")
        n = ranking_eval.write_labeled_eval_examples(
            examples_uri, tft_output, labeled, users, item_counts,
            config.activity_boundaries)
        if n == 0:
          raise ValueError("the eval split has no rows")
        ranking = ranking_eval.run_tfma(
            model_dir, serving_model_dir, labeled, os.path.join(scratch, "tfma"),
            config.thresholds, config.max_regression, beam_args)
        # The overall slice stays TFMA's; the slices are added beside it.
        for name, by_slice in ranking_eval.slice_metrics(
            models, labeled).items():
          by_slice.pop(retrieval_eval.ALL)
          ranking["metrics"].setdefault(name, {}).update(by_slice)
      except Exception as e:  # pylint: disable=broad-except
        stage_errors.append(_stage_error("ranking evaluation (TFMA)", e))

      infra = pending_infra.result()

      overall = {}
      for name in ("candidate", "serving", "popularity"):
        m = dict(retrieval.get(name, {}).get(retrieval_eval.ALL, {}))
        m.update(ranking["metrics"].get(name, {}).get(retrieval_eval.ALL, {}))
        if m:
          overall[name] = m
      eval_users = int(overall.get("candidate", {}).get("users", 0))
      checks = blessing_lib.decide(
          overall.get("candidate", {}), overall.get("serving"),
          overall.get("popularity", {}), config.thresholds,
          config.max_regression, config.must_beat_popularity,
          ranking["failures"], infra, eval_users)
      checks = [{k: v for k, v in c.items() if k != "traceback"}
                for c in stage_errors] + checks
      verdict = blessing_lib.verdict(checks)

      history = {}
      history_path = os.path.join(model_uri, TRAINING_HISTORY_FILE)
      if os.path.exists(history_path):
        with open(history_path) as f:
          history = json.load(f)

      created = datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds")
      result = {
          "run_id": run_id, "created_at": created, "verdict": verdict,
          "overall": overall, "retrieval": retrieval,
          "ranking": ranking["metrics"], "calibration": ranking["calibration"],
          "infra": infra, "serving_baseline": serving_model_dir, "notes": notes,
          "stage_errors": stage_errors,
      }
      with artifacts.write_artifact(
          evaluation_uri, "ModelEvaluation", "Evaluator", run_id,
          {"config": config.model_dump(mode="json"),
           "serving_baseline": serving_model_dir}, inputs) as w:
        artifacts.write_json_atomic(os.path.join(w.uri, METRICS_FILE), result)
        artifacts.write_json_atomic(
            os.path.join(w.uri, KFP_METRICS_FILE),
            {k: v for k, v in overall.get("candidate", {}).items()
             if isinstance(v, (int, float))})
        report.write_reports(
            w.uri, run_id=run_id, model_uri=os.path.abspath(model_uri),
            verdict=verdict, checks=checks, overall=overall,
            retrieval=retrieval, ranking=ranking["metrics"],
            calibration=ranking["calibration"], history=history, infra=infra,
            ks=ks, serving_desc=serving_desc)
        if pipeline_root:
          report.write_history(os.path.join(w.uri, HISTORY_FILE), pipeline_root,
                               result)
        if os.path.isdir(os.path.join(scratch, "tfma")):
          shutil.copytree(os.path.join(scratch, "tfma"),
                          os.path.join(w.uri, "tfma"))
        w.summary = {
            "candidate": overall.get("candidate", {}),
            "baselines": {k: v for k, v in overall.items() if k != "candidate"},
            "verdict": verdict,
        }

      blessing = {"verdict": verdict, "model": os.path.abspath(model_uri),
                  "checks": checks, "notes": notes}
      with artifacts.write_artifact(blessing_uri, "ModelBlessing", "Evaluator",
                                    run_id, {}, inputs) as w:
        artifacts.write_json_atomic(os.path.join(w.uri, BLESSING_FILE), blessing)
        open(os.path.join(w.uri, verdict), "w").close()  # TFX's marker file
        w.summary = {"verdict": verdict,
                     "failed": [c["metric"] for c in checks if not c["passed"]]}
      return blessing
  finally:
    pending_infra.kill()
