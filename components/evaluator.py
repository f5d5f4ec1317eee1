"""Evaluator: measures the candidate as it will be served, then decides.

What is measured follows the candidate's model card (its tasks and fused
ranking stage; a model without a card has the old default tasks).
Stages, each able to fail without crashing the step (a stage that raises
becomes a failed check, so the verdict is NOT_BLESSED with the reason):
  1. the labeled eval examples: labels and weights from the TFT graph, the
     one definition of every label (components.ranking_eval);
  2. retrieval on Beam (components.retrieval_eval): the candidate's served
     (fused) order through `recommend_excluding`, its retrieval order
     through `recommend_weighted` (the `candidate_retrieval_order` row,
     when it has a fused stage), the model now serving, and popularity;
     relevance and graded gains (liked) from the labeled examples;
  3. ranking heads with TFMA through `predict_examples`, candidate against
     the serving model on the tasks both have, thresholds as TFMA
     MetricThresholds, and every task's metrics per slice (vectorized);
  4. infra validation in a fresh process (components.infra_validator);
  5. confidence intervals (components.confidence): a bootstrap over users
     for retrieval (each user's metrics under every model, so differences
     against a baseline are paired), over examples for the heads;
  6. the blessing (components.blessing) and the reports (components.report).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import traceback
from typing import Any, Optional, Sequence

from contracts import artifacts
from components import blessing as blessing_lib
from components import artifact_readers
from components import confidence
from components import example_validator
from components import explanations
from components import infra_validator
from contracts import evaluation_files
from contracts import model_layout
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
# Rows of the evaluation (metrics.json "overall", the report's columns).
CANDIDATE = "candidate"  # the served (fused) order: what is blessed
CANDIDATE_RETRIEVAL_ORDER = "candidate" + retrieval_eval.RETRIEVAL_ORDER_SUFFIX
SERVING = "serving"
TEACHER = report.TEACHER
UNDISTILLED = report.UNDISTILLED


def _signatures(model_dir: str) -> set[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return set(tf.saved_model.load(model_dir).signatures)


def _serving_lacks(tasks: Sequence[Any], serving_tasks: Sequence[Any]
                   ) -> dict[str, str]:
  """Metric -> why the serving model has no value to regress from."""
  names = {t.name: t for t in serving_tasks}
  out = {}
  for t in tasks:
    if t in serving_tasks:
      continue
    why = (f"the serving model has no task {t.name}" if t.name not in names
           else f"the serving model's task {t.name} is not comparable")
    out.update({m: why for m in t.metric_names()})
  return out


def _add_slices(metrics: dict[str, Any],
                sliced: dict[str, dict[str, dict[str, float]]]) -> None:
  """Adds the vectorized slices beside TFMA's overall slice, and to the
  overall slice what TFMA does not compute (multilabel tasks)."""
  for name, by_slice in sliced.items():
    overall_of = by_slice.pop(retrieval_eval.ALL)
    got = metrics.setdefault(name, {})
    got.update(by_slice)
    mine = got.setdefault(retrieval_eval.ALL, {})
    for metric, value in overall_of.items():
      mine.setdefault(metric, value)


def _merge_intervals(into: dict[str, dict[str, Any]],
                     more: dict[str, dict[str, Any]]) -> None:
  """Adds a model's head intervals beside its retrieval ones."""
  for model, by_metric in more.items():
    into.setdefault(model, {}).update(by_metric)


def _fusion(card: dict[str, Any]) -> dict[str, Any]:
  """The fused stage the candidate serves and the search that chose its
  weights ({} without one)."""
  ranking = card.get("ranking") or {}
  return {k: ranking[k] for k in ("fusion_tasks", "fusion_weights", "search")
          if k in ranking}


def distillation_models(model_uri: str) -> dict[str, str]:
  """{TEACHER, UNDISTILLED: SavedModel dir} of a distilled candidate, as
  its Model artifact records them (empty for a model without a teacher)."""
  out = {}
  metadata_file = os.path.join(model_uri, artifacts.METADATA_FILE)
  inputs = (artifacts.read_metadata(model_uri).get("inputs", {})
            if os.path.exists(metadata_file) else {})
  if "teacher_model" in inputs:
    out[TEACHER] = inputs["teacher_model"]["uri"]
  undistilled = model_layout.undistilled_model_dir(model_uri)
  if model_layout.is_saved_model(undistilled):
    out[UNDISTILLED] = undistilled
  return out


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
    anomalies_uri: Optional[str] = None,
) -> dict[str, Any]:
  """Evaluates, publishes evaluation and blessing; returns the blessing.

  Args:
    config: components.config.EvaluatorConfig.
    serving_model_dir: the SavedModel now serving, the regression baseline;
      None when nothing is served yet.
    pipeline_root: where earlier runs live, for the history page.
    anomalies_uri: the ExampleValidator's artifact: a blocking anomaly
      fails the blessing, and the report includes its data section. None
      (a caller with no data validation): no data checks.
  """
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from components import ranking_eval  # pylint: disable=g-import-not-at-top
  inputs = {"model": model_uri, "examples": examples_uri,
            "catalog": catalog_uri, "transform_graph": transform_graph_uri}
  anomalies, data_section = None, ""
  if anomalies_uri:
    inputs["anomalies"] = anomalies_uri
    anomalies = example_validator.read_anomalies(anomalies_uri)
    data_section = example_validator.read_data_section(anomalies_uri)
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

  # What each model is: the candidate's card decides what is measured.
  card: dict[str, Any] = {}
  tasks: list[Any] = []
  serving_tasks: list[Any] = []
  try:
    card = ranking_eval.read_model_card(model_dir)
    tasks = ranking_eval.eval_tasks(card)
    if serving_model_dir:
      serving_tasks = ranking_eval.eval_tasks(
          ranking_eval.read_model_card(serving_model_dir))
  except Exception as e:  # pylint: disable=broad-except
    stage_errors.append(_stage_error("model card", e))
  # A multilabel output's columns are its own transform's vocabulary: the
  # serving model is measured on such a task only when it is the same.
  for t in [t for t in serving_tasks if t.kind == "multilabel"]:
    if not ranking_eval.same_label_vocabulary(model_dir, serving_model_dir,
                                              t):
      serving_tasks.remove(t)
      notes.append(f"task {t.name}: the serving model's {t.label} "
                   "vocabulary differs; not compared")
  retrieval_only = retrieval_eval.retrieval_order_weights(card)
  # Informative rows (not checks): a distilled candidate beside its teacher
  # and beside itself trained without one.
  compared: dict[str, tuple[str, list[Any]]] = {}
  try:
    for name, directory in distillation_models(model_uri).items():
      compared[name] = (directory, ranking_eval.eval_tasks(
          ranking_eval.read_model_card(directory)))
      members = len(model_layout.member_dirs(directory))
      if name == TEACHER and members > 1:
        notes.append(f"teacher: the mean of {members} models taught the "
                     "candidate; the teacher row measures the first alone "
                     "(benchmarks/distillation.py measures their mean)")
  except Exception as e:  # pylint: disable=broad-except
    notes.append(f"distillation comparison not measured: "
                 f"{type(e).__name__}: {str(e)[:300]}")

  # Infra validation runs in its own process: start it first, collect last.
  pending_infra = infra_validator.start(model_dir, config.latency_budget_ms)
  try:
    with artifacts.scratch_dir(evaluation_uri) as scratch:
      items, _ = artifact_readers.read_catalog(catalog_uri)

      labeled: Optional[str] = None
      n_labeled = 0
      try:
        tft_output = tft.TFTransformOutput(transform_graph_uri)
        users, item_counts = ranking_eval.train_counts(examples_uri)
        path = os.path.join(scratch, "eval_labeled.tfrecord")
        n_labeled = ranking_eval.write_labeled_eval_examples(
            examples_uri, tft_output, path, users, item_counts,
            config.activity_boundaries,
            ranking_eval.union_tasks([tasks, serving_tasks]))
        labeled = path
      except Exception as e:  # pylint: disable=broad-except
        stage_errors.append(_stage_error("labeled eval examples", e))

      retrieval: dict[str, Any] = {}
      models: dict[str, Any] = {CANDIDATE: model_dir}
      if retrieval_only is not None:
        models[CANDIDATE_RETRIEVAL_ORDER] = retrieval_eval.Ranker(
            model_dir, retrieval_only)
      if serving_model_dir:
        models[SERVING] = serving_model_dir
      models.update({name: d for name, (d, _) in compared.items()})
      try:
        retrieval = retrieval_eval.evaluate_retrieval(
            models, examples_uri, items[r.ITEM_ID], items[r.CATEGORIES], ks,
            config.activity_boundaries, scratch, config.max_eval_users, seed,
            beam_args, labeled_path=labeled)
      except Exception as e:  # pylint: disable=broad-except
        stage_errors.append(_stage_error("retrieval evaluation", e))
      bootstrap = confidence.Bootstrap(config.bootstrap.resamples,
                                       config.bootstrap.confidence, seed)
      intervals: dict[str, dict[str, Any]] = {}
      differences: dict[str, dict[str, Any]] = {}
      if retrieval:
        try:
          per_user = retrieval_eval.read_per_user(scratch)
          intervals = {m: confidence.mean_intervals(t, bootstrap)
                       for m, t in per_user.items()}
          differences = {
              b: confidence.paired_differences(per_user[CANDIDATE],
                                               per_user[b], bootstrap)
              for b in (retrieval_eval.POPULARITY, SERVING,
                        CANDIDATE_RETRIEVAL_ORDER)
              if b in per_user and CANDIDATE in per_user}
        except Exception as e:  # pylint: disable=broad-except
          stage_errors.append(_stage_error("retrieval intervals", e))

      ranking: dict[str, Any] = {"metrics": {}, "calibration": {},
                                 "failures": [], "judged": []}
      candidate_ranked = False
      if labeled is not None:
        try:
          if n_labeled == 0:
            raise ValueError("the eval split has no rows")
          ranking = ranking_eval.run_tfma(
              model_dir, serving_model_dir, labeled,
              os.path.join(scratch, "tfma"), config.thresholds,
              config.max_regression, beam_args, tasks, serving_tasks)
          sliced, head_intervals = ranking_eval.slice_metrics_and_intervals(
              {CANDIDATE: model_dir}, labeled, {CANDIDATE: tasks}, bootstrap)
          _add_slices(ranking["metrics"], sliced)
          _merge_intervals(intervals, head_intervals)
          candidate_ranked = True
        except Exception as e:  # pylint: disable=broad-except
          stage_errors.append(_stage_error("ranking evaluation (TFMA)", e))
        if serving_model_dir and candidate_ranked:
          # The baseline's own pass: its failure leaves its values missing
          # (a regression check on them then fails), not the candidate's.
          try:
            sliced, head_intervals = ranking_eval.slice_metrics_and_intervals(
                {SERVING: serving_model_dir}, labeled,
                {SERVING: serving_tasks}, bootstrap)
            _add_slices(ranking["metrics"], sliced)
            _merge_intervals(intervals, head_intervals)
          except Exception as e:  # pylint: disable=broad-except
            notes.append(f"serving model's ranking slices not computed: "
                         f"{type(e).__name__}: {str(e)[:300]}")

      for name, (directory, model_tasks) in compared.items():
        if not candidate_ranked:
          break
        try:
          sliced, head_intervals = ranking_eval.slice_metrics_and_intervals(
              {name: directory}, labeled, {name: model_tasks}, bootstrap)
          _add_slices(ranking["metrics"], sliced)
          _merge_intervals(intervals, head_intervals)
        except Exception as e:  # pylint: disable=broad-except
          notes.append(f"{name}'s ranking metrics not computed: "
                       f"{type(e).__name__}: {str(e)[:300]}")

      # What the report shows of the candidate's reasons; informative
      # only, so a failure is a note, not a failed check.
      explained: list[dict[str, Any]] = []
      if config.explained_users:
        try:
          explained = explanations.explain_examples(
              model_dir, explanations.sample_users(
                  examples_uri, config.explained_users, seed))
        except Exception as e:  # pylint: disable=broad-except
          notes.append(f"example explanations not computed: "
                       f"{type(e).__name__}: {str(e)[:300]}")

      infra = pending_infra.result()

      overall = {}
      for name in (CANDIDATE, CANDIDATE_RETRIEVAL_ORDER, SERVING,
                   *compared, retrieval_eval.POPULARITY):
        m = dict(retrieval.get(name, {}).get(retrieval_eval.ALL, {}))
        m.update(ranking["metrics"].get(name, {}).get(retrieval_eval.ALL, {}))
        if m:
          overall[name] = m
      eval_users = int(overall.get(CANDIDATE, {}).get("users", 0))
      checks = blessing_lib.decide(
          overall.get(CANDIDATE, {}), overall.get(SERVING),
          overall.get(retrieval_eval.POPULARITY, {}), config.thresholds,
          config.max_regression, config.must_beat_popularity,
          ranking["failures"], infra, eval_users,
          tfma_metrics=[m for t in tasks if t.scalar
                        for m in t.metric_names()],
          serving_lacks=_serving_lacks(tasks, serving_tasks),
          intervals=intervals.get(CANDIDATE, {}), differences=differences,
          confidence_level=config.bootstrap.confidence,
          beat_margin=config.bootstrap.beat_margin)
      if anomalies is not None:
        checks += blessing_lib.data_checks(anomalies)
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
          "tasks": [dataclasses.asdict(t) for t in tasks],
          "fusion": _fusion(card),
          "retrieval_order_weights": retrieval_only,
          "infra": infra, "serving_baseline": serving_model_dir, "notes": notes,
          "explanations": explained,
          "distillation": {name: d for name, (d, _) in compared.items()},
          "stage_errors": stage_errors,
          # Overall only: {model: {metric: [low, high]}} and {baseline:
          # {metric: {difference, interval, units}}} of candidate − baseline.
          "intervals": intervals, "differences": differences,
          "bootstrap": {"resamples": bootstrap.resamples,
                        "confidence": bootstrap.confidence,
                        "seed": bootstrap.seed,
                        "beat_margin": config.bootstrap.beat_margin,
                        "retrieval_unit": "user",
                        "ranking_unit": "example"},
      }
      with artifacts.write_artifact(
          evaluation_uri, "ModelEvaluation", "Evaluator", run_id,
          {"config": config.model_dump(mode="json"),
           "serving_baseline": serving_model_dir}, inputs) as w:
        artifacts.write_json_atomic(os.path.join(w.uri, METRICS_FILE), result)
        artifacts.write_json_atomic(
            os.path.join(w.uri, KFP_METRICS_FILE),
            {k: v for k, v in overall.get(CANDIDATE, {}).items()
             if isinstance(v, (int, float))})
        report.write_reports(
            w.uri, run_id=run_id, model_uri=os.path.abspath(model_uri),
            verdict=verdict, checks=checks, overall=overall,
            retrieval=retrieval, ranking=ranking["metrics"],
            calibration=ranking["calibration"], history=history, infra=infra,
            ks=ks, serving_desc=serving_desc,
            tasks=[dataclasses.asdict(t) for t in tasks],
            fusion=result["fusion"], intervals=intervals,
            differences=differences, bootstrap=result["bootstrap"],
            calibration_min_count=config.calibration_min_count,
            data_section=data_section,
            explanation_section=explanations.html_section(explained))
        if pipeline_root:
          report.write_history(os.path.join(w.uri, HISTORY_FILE), pipeline_root,
                               result)
        if os.path.isdir(os.path.join(scratch, "tfma")):
          shutil.copytree(os.path.join(scratch, "tfma"),
                          os.path.join(w.uri, "tfma"))
        w.summary = {
            "candidate": overall.get(CANDIDATE, {}),
            "baselines": {k: v for k, v in overall.items() if k != CANDIDATE},
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
