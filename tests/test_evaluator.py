"""Evaluator: checks, verdicts, reports, and inputs that must not bless."""

import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from contracts import artifacts
from components import blessing
from components import evaluator
from contracts import features as F
from components import infra_validator
from components import metrics as formulas
from components import retrieval_eval
from contracts import model_layout
from contracts import serving_layout
from components.config import EvaluatorConfig
from components.config import Threshold
from trainer.config import TrainerConfig


def test_checks_cover_thresholds_regression_popularity_and_infra():
  checks = blessing.decide(
      candidate={"rmse": 0.9, "recall_at_20": 0.10, "auc": 0.7},
      serving={"rmse": 0.85, "recall_at_20": 0.12, "auc": 0.7},
      popularity={"recall_at_20": 0.08},
      thresholds={"rmse": Threshold(max=1.0),
                  "recall_at_20": Threshold(min=0.05)},
      max_regression={"recall_at_20": 0.01, "rmse": 0.1},
      must_beat_popularity=["recall_at_20"],
      tfma_failures=[],
      infra={"checks": [{"check": "loads", "passed": True, "detail": "ok"}]},
      eval_users=10,
      differences={"popularity": {"recall_at_20": {
          "difference": 0.02, "interval": [0.005, 0.035], "units": 10}}})
  got = [(c["metric"], c["check"], c["op"], c["passed"]) for c in checks]
  assert got == [
      ("recall_at_20", "threshold", ">=", True),
      ("rmse", "threshold (TFMA)", "<=", True),
      ("recall_at_20", "regression vs serving", ">=", False),  # 0.10 < 0.11
      ("rmse", "regression vs serving (TFMA)", "<=", True),
      ("recall_at_20", "beats popularity (paired bootstrap, 95%)", ">", True),
      ("eval_users", "non-empty eval split", ">", True),
      ("loads", "infra validation", "", True),
  ]
  assert checks[2]["bound"] == pytest.approx(0.11)
  assert blessing.verdict(checks) == blessing.NOT_BLESSED
  assert blessing.verdict([c for i, c in enumerate(checks) if i != 2]) == (
      blessing.BLESSED)


def test_beats_popularity_needs_the_whole_paired_interval_past_the_margin():
  """The same point gain (+0.02) blesses or not by its interval; a check
  without a paired interval fails; a margin must be cleared by the whole
  interval."""
  def beats(interval, margin=0.0, metric="recall_at_20", gain=0.02):
    diff = {} if interval is None else {"popularity": {metric: {
        "difference": gain, "interval": interval, "units": 961}}}
    checks = blessing.decide(
        candidate={metric: 0.30}, serving=None,
        popularity={metric: 0.28}, thresholds={}, max_regression={},
        must_beat_popularity=[metric], eval_users=961, differences=diff,
        confidence_level=0.9, beat_margin=margin)
    return checks[0]

  clear = beats([0.004, 0.036])
  assert clear["passed"] and clear["value"] == 0.02
  assert clear["check"] == "beats popularity (paired bootstrap, 90%)"
  assert clear["interval"] == {"of": "candidate − popularity", "low": 0.004,
                               "high": 0.036, "level": 0.9}
  assert (clear["op"], clear["bound"]) == (">", 0.0)
  unclear = beats([-0.002, 0.042])  # ahead on the point estimate only
  assert not unclear["passed"]
  assert blessing.verdict([unclear]) == blessing.NOT_BLESSED
  assert not beats(None)["passed"]
  assert not beats([None, None])["passed"]
  assert not beats([0.004, 0.036], margin=0.005)["passed"]
  assert beats([0.006, 0.036], margin=0.005)["passed"]
  # Lower is better: the whole interval below -margin.
  low = beats([-0.5, -0.1], metric="mean_popularity_at_10", gain=-0.3)
  assert low["passed"] and (low["op"], low["bound"]) == ("<", 0.0)
  assert beats([-0.5, -0.1], 0.05, "mean_popularity_at_10", -0.3)[
      "bound"] == -0.05


def test_checks_carry_the_candidates_interval_or_the_paired_one():
  checks = blessing.decide(
      candidate={"recall_at_20": 0.2, "rating_rmse": 0.9},
      serving={"recall_at_20": 0.19, "rating_rmse": 0.91}, popularity={},
      thresholds={"recall_at_20": Threshold(min=0.1),
                  "rmse": Threshold(max=1.0)},
      max_regression={"recall_at_20": 0.01}, must_beat_popularity=[],
      eval_users=5, tfma_metrics=["rating_rmse"],
      intervals={"recall_at_20": [0.15, 0.25], "rating_rmse": [0.8, 1.0]},
      differences={"serving": {"recall_at_20": {
          "difference": 0.01, "interval": [-0.01, 0.03], "units": 5}}})
  by = {(c["metric"], c["check"]): c.get("interval") for c in checks}
  assert by[("recall_at_20", "threshold")]["of"] == "candidate"
  assert by[("rmse", "threshold (TFMA)")] == {
      "of": "candidate", "low": 0.8, "high": 1.0, "level": 0.95}
  assert by[("recall_at_20", "regression vs serving")] == {
      "of": "candidate − serving", "low": -0.01, "high": 0.03,
      "level": 0.95}
  assert by[("eval_users", "non-empty eval split")] is None


def test_head_intervals_by_hand():
  """Constant errors: RMSE and MAE have zero-width intervals at their
  value; AUC of a perfect ranking stays 1 in every resample that has
  both classes."""
  from components import confidence  # pylint: disable=g-import-not-at-top
  from components import ranking_eval  # pylint: disable=g-import-not-at-top
  n = 40
  pred = {"rating": np.full(n, 4.0), "p_like": np.linspace(0.05, 0.95, n)}
  cols = {F.RATING: np.full(n, 3.5), F.RATING_WEIGHT: np.ones(n),
          F.LIKE: (np.arange(n) >= n // 2).astype(np.float64),
          F.LIKE_WEIGHT: np.ones(n)}
  got = ranking_eval._head_intervals(  # pylint: disable=protected-access
      pred, cols, ranking_eval.LEGACY_TASKS,
      confidence.Bootstrap(resamples=200, seed=1))
  assert got["rating_rmse"] == [pytest.approx(0.5), pytest.approx(0.5)]
  assert got["rating_mae"] == [pytest.approx(0.5), pytest.approx(0.5)]
  assert got["rmse"] == got["rating_rmse"]  # the legacy alias too
  assert got["like_auc"] == [1.0, 1.0]
  low, high = got["like_log_loss"]
  assert low < formulas.log_loss(pred["p_like"], cols[F.LIKE]) < high
  # Rows without a rating weigh nothing: only the first half's errors.
  cols[F.RATING_WEIGHT] = (np.arange(n) < n // 2).astype(np.float64)
  pred["rating"] = np.where(np.arange(n) < n // 2, 4.0, 100.0)
  got = ranking_eval._head_intervals(  # pylint: disable=protected-access
      pred, cols, ranking_eval.LEGACY_TASKS[:1],
      confidence.Bootstrap(resamples=200, seed=1))
  assert got["rating_rmse"] == [pytest.approx(0.5), pytest.approx(0.5)]


def test_tfma_failure_nan_and_missing_values_never_pass():
  checks = blessing.decide(
      candidate={"rmse": 0.5, "auc": float("nan")}, serving=None,
      popularity={}, thresholds={"rmse": Threshold(max=1.0),
                                 "auc": Threshold(min=0.5)},
      max_regression={}, must_beat_popularity=["recall_at_20"],
      tfma_failures=[{"metric": "rmse", "is_diff": False}], eval_users=0)
  assert [c["passed"] for c in checks] == [False, False, False, False]
  assert math.isnan(checks[0]["value"])
  assert blessing.verdict([]) == blessing.NOT_BLESSED


def test_checks_of_task_metrics_aliases_and_tasks_the_baseline_lacks():
  checks = blessing.decide(
      candidate={"click_auc": 0.7, "rating_rmse": 0.9, "rmse": 0.9,
                 "interest_auc": 0.6},
      serving={"rating_rmse": 0.85, "rmse": 0.85},
      popularity={},
      thresholds={"click_auc": Threshold(min=0.75),
                  "interest_auc": Threshold(min=0.5),
                  "rmse": Threshold(max=1.0)},
      max_regression={"click_auc": 0.01, "rmse": 0.1, "interest_auc": 0.01},
      must_beat_popularity=[],
      # TFMA names failures by the canonical name: rmse is rating_rmse.
      tfma_failures=[{"metric": "click_auc", "is_diff": False},
                     {"metric": "rating_rmse", "is_diff": True}],
      eval_users=1, tfma_metrics=["click_auc", "rating_rmse"],
      serving_lacks={"click_auc": "the serving model has no task click",
                     "interest_auc": "the serving model has no task "
                                     "interest"})
  got = [(c["metric"], c["check"], c["passed"]) for c in checks]
  assert got == [
      ("click_auc", "threshold (TFMA)", False),
      ("interest_auc", "threshold", True),  # multilabel: not TFMA's
      ("rmse", "threshold (TFMA)", True),
      ("click_auc",
       "regression vs serving: the serving model has no task click", True),
      ("interest_auc", "regression vs serving: the serving model has no "
       "task interest", True),
      # 0.9 <= 0.85 + 0.1, but TFMA's change threshold failed.
      ("rmse", "regression vs serving (TFMA)", False),
      ("eval_users", "non-empty eval split", True),
  ]
  # A new task passes its regression check only when it was measured.
  nan = blessing.decide(
      candidate={}, serving={}, popularity={}, thresholds={},
      max_regression={"click_auc": 0.01}, must_beat_popularity=[],
      eval_users=1, serving_lacks={"click_auc": "no task click"})
  assert not nan[0]["passed"]


def test_serving_lacks_names_the_tasks_only_the_candidate_has():
  from components import ranking_eval  # pylint: disable=g-import-not-at-top
  e = ranking_eval.EvalTask
  like = e("like", "binary", "like", "p_like")
  click = e("click", "binary", "click", "p_click")
  interest = e("interest", "multilabel", "categories", "p_interest")
  lacks = evaluator._serving_lacks(  # pylint: disable=protected-access
      [like, click, interest], [like, e("interest", "multilabel", "tags",
                                        "p_interest")])
  assert lacks == {
      "click_auc": "the serving model has no task click",
      "click_log_loss": "the serving model has no task click",
      "click_calibration": "the serving model has no task click",
      "interest_auc": "the serving model's task interest is not comparable",
      "interest_recall_at_5":
          "the serving model's task interest is not comparable"}


def test_activity_buckets():
  b = [5, 20]
  assert [retrieval_eval.activity_bucket(n, b) for n in (0, 1, 4, 5, 19, 20,
                                                          500)] == [
      "0", "1-4", "1-4", "5-19", "5-19", "20+", "20+"]


def test_infra_validation_fails_a_model_without_the_api(tmp_path):
  module = tf.Module()
  module.f = tf.function(lambda user_id: {"rating": tf.zeros_like(
      tf.strings.length(user_id), tf.float32)}, input_signature=[
          tf.TensorSpec([None], tf.string, name="user_id")])
  tf.saved_model.save(module, str(tmp_path / "m"),
                      signatures={"serving_default": module.f})
  result = infra_validator.validate(str(tmp_path / "m"), repeats=2)
  assert not result["passed"]
  by_name = {c["check"]: c for c in result["checks"]}
  assert by_name["loads"]["passed"]
  assert not by_name["signatures"]["passed"]
  assert "recommend" in by_name["signatures"]["detail"]
  assert not by_name["warmup_requests"]["passed"]
  missing = infra_validator.validate(str(tmp_path / "nothing-here"))
  assert not missing["passed"] and "exit" in missing["checks"][0]["detail"]


def test_head_metrics_by_hand():
  from components import ranking_eval  # pylint: disable=g-import-not-at-top
  pred = {"rating": np.array([4.0, 3.0, 5.0]),
          "p_like": np.array([0.9, 0.2, 0.6])}
  cols = {F.RATING: np.array([5.0, 3.0, 0.0]),
          F.RATING_WEIGHT: np.array([1.0, 1.0, 0.0]),
          F.LIKE: np.array([1.0, 0.0, 1.0]),
          F.LIKE_WEIGHT: np.array([1.0, 1.0, 1.0])}
  m = ranking_eval._head_metrics(pred, cols, np.array([0, 1, 2]))
  # The third row has no rating: its weight keeps it out of the rating head.
  assert m["rmse"] == pytest.approx(math.sqrt(0.5))
  assert m["mae"] == pytest.approx(0.5)
  assert m["auc"] == pytest.approx(1.0)
  assert m["log_loss"] == pytest.approx(
      -(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3)
  assert m["rating_example_count"] == 3.0
  only_second = ranking_eval._head_metrics(pred, cols, np.array([1]))
  assert only_second["rmse"] == 0.0 and math.isnan(only_second["auc"])


@pytest.mark.slow
def test_ranking_slices_agree_with_tfma_overall(small_run, tmp_path):
  """The vectorized slices use the formulas TFMA's overall slice uses."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from components import ranking_eval  # pylint: disable=g-import-not-at-top
  u = small_run.artifacts
  users, items = ranking_eval.train_counts(u.examples)
  labeled = str(tmp_path / "labeled.tfrecord")
  n = ranking_eval.write_labeled_eval_examples(
      u.examples, tft.TFTransformOutput(u.transform_graph), labeled, users,
      items, EvaluatorConfig().activity_boundaries)
  model_dir = os.path.join(u.model, model_layout.SERVING_MODEL_DIR)
  ours = ranking_eval.slice_metrics({"candidate": model_dir}, labeled)[
      "candidate"]
  metrics = json.loads(open(os.path.join(
      u.evaluation, evaluator.METRICS_FILE)).read())
  tfma_overall = metrics["ranking"]["candidate"][retrieval_eval.ALL]
  for name in ("rmse", "mae", "log_loss"):
    assert ours["all"][name] == pytest.approx(tfma_overall[name], rel=1e-4)
  assert ours["all"]["auc"] == pytest.approx(tfma_overall["auc"], abs=2e-3)
  # Every example is in exactly one activity bucket and one new_user slice.
  for feature in ("user_activity", "new_user"):
    assert sum(v["rating_example_count"] for k, v in ours.items()
               if k.startswith(feature + ":")) == n
  assert any(k.startswith("category:") for k in ours)
  # The evaluator put the same slices beside TFMA's overall.
  assert set(metrics["ranking"]["candidate"]) == set(ours)


def _evaluate(small_run, tmp_path, model_uri, config, examples_uri=None,
              serving_root=None):
  u = small_run.artifacts
  return evaluator.run_evaluator(
      model_uri, os.path.join(model_uri, model_layout.SERVING_MODEL_DIR),
      examples_uri or u.examples, u.catalog, u.transform_graph,
      str(tmp_path / "evaluation"), str(tmp_path / "blessing"), "test",
      config, serving_layout.served_model_dir(serving_root, "mtrec")
      if serving_root else None, os.path.dirname(small_run.run_dir))


@pytest.mark.slow
def test_broken_candidate_is_not_blessed_and_the_report_says_why(
    small_run, tmp_path):
  """A candidate trained for a single step against the model now serving."""
  from trainer import run as trainer_run  # pylint: disable=g-import-not-at-top
  u = small_run.artifacts
  broken = str(tmp_path / "broken_model")
  trainer_run.run_trainer(
      u.transform_graph, u.transformed_examples, u.examples, u.catalog,
      broken, "broken",
      TrainerConfig(epochs=1, steps_per_epoch=1, batch_size=32,
                    learning_rate=1e-6, embedding_dim=16),
      "mtrec", 5, max_k=20, log=lambda m: None)
  config = EvaluatorConfig(
      ks=[10, 20], must_beat_popularity=["recall_at_20"],
      thresholds={"rmse": Threshold(max=1.2)},
      max_regression={"recall_at_20": 0.01, "rmse": 0.01})
  serving_root = os.path.dirname(os.path.dirname(
      small_run.pushed["destination"]))
  result = _evaluate(small_run, tmp_path, broken, config,
                     serving_root=serving_root)
  assert result["verdict"] == blessing.NOT_BLESSED
  failed = {(c["metric"], c["check"]) for c in result["checks"]
            if not c["passed"]}
  assert ("recall_at_20", "regression vs serving") in failed
  assert ("recall_at_20", "beats popularity (paired bootstrap, 95%)") in (
      failed)
  beats = next(c for c in result["checks"]
               if c["check"].startswith("beats popularity"))
  # A broken candidate is behind popularity beyond doubt: its whole
  # paired interval is below zero.
  assert beats["interval"]["of"] == "candidate − popularity"
  assert beats["interval"]["high"] < 0
  assert ("rmse", "regression vs serving (TFMA)") in failed
  assert os.path.exists(tmp_path / "blessing" / blessing.NOT_BLESSED)
  html = (tmp_path / "evaluation" / "report.html").read_text()
  assert "NOT_BLESSED" in html
  assert "recall_at_20 (regression vs serving)" in html
  assert "rmse (regression vs serving (TFMA))" in html
  md = (tmp_path / "evaluation" / "summary.md").read_text()
  assert md.startswith("# Model validation: NOT_BLESSED")
  metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
  # The candidate as served (fused) and its own retrieval order, on the
  # same users, beside the baselines.
  assert set(metrics["overall"]) == {"candidate", "candidate_retrieval_order",
                                     "serving", "popularity"}
  assert metrics["overall"]["candidate_retrieval_order"]["users"] == (
      metrics["overall"]["candidate"]["users"])
  assert metrics["overall"]["candidate"]["rmse"] == (
      metrics["overall"]["candidate"]["rating_rmse"])
  assert metrics["retrieval"]["candidate"]["all"]["users"] > 0
  assert any(s.startswith("category:") for s in metrics["retrieval"][
      "candidate"])
  assert any(s.startswith("user_activity:") for s in metrics["ranking"][
      "candidate"])
  kfp = json.loads((tmp_path / "evaluation" /
                    evaluator.KFP_METRICS_FILE).read_text())
  assert kfp["recall_at_20"] == metrics["overall"]["candidate"]["recall_at_20"]


@pytest.mark.slow
def test_empty_eval_split_is_not_blessed_and_does_not_crash(small_run,
                                                           tmp_path):
  examples = tmp_path / "examples"
  shutil.copytree(small_run.artifacts.examples, examples)
  eval_dir = examples / "Split-eval"
  shutil.rmtree(eval_dir)
  eval_dir.mkdir()
  with tf.io.TFRecordWriter(str(eval_dir / "data_tfrecord-00000.gz"),
                            options="GZIP"):
    pass
  result = _evaluate(small_run, tmp_path, small_run.artifacts.model,
                     EvaluatorConfig(ks=[10, 20]), examples_uri=str(examples))
  assert result["verdict"] == blessing.NOT_BLESSED
  failed = [c["metric"] for c in result["checks"] if not c["passed"]]
  assert "eval_users" in failed
  assert "ranking evaluation (TFMA)" in failed
  assert (tmp_path / "evaluation" / "report.html").exists()


@pytest.mark.slow
def test_report_renders_with_charts_in_headless_chromium(small_run, tmp_path):
  chromium = shutil.which("chromium") or shutil.which("chromium-browser")
  assert chromium, "chromium is required (scripts/install_test_tools.sh)"
  report = os.path.join(small_run.artifacts.evaluation, "report.html")
  html = open(report).read()
  assert html.count("<svg") >= 4  # comparison x2, calibration, losses
  shot = tmp_path / "report.png"
  subprocess.run(
      [chromium, "--headless", "--no-sandbox", "--disable-gpu",
       "--disable-quic", "--no-first-run", "--disable-background-networking",
       "--disable-component-update", "--disable-sync",
       f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2600",
       f"--screenshot={shot}", f"file://{report}"],
      check=True, capture_output=True, timeout=120)
  import matplotlib.image  # pylint: disable=g-import-not-at-top
  pixels = matplotlib.image.imread(str(shot))[..., :3]
  assert pixels.shape[:2] == (2600, 1200)
  # Chart bars are drawn in the candidate's colour (#1f77b4) and the
  # verdict banner in green or red: both must be visible on the page.
  blue = np.all(np.abs(pixels - np.array([0x1f, 0x77, 0xb4]) / 255) < 0.02,
                axis=-1)
  assert blue.sum() > 2000
  banner = np.all(np.abs(pixels - np.array([0x2e, 0x7d, 0x32]) / 255) < 0.02,
                  axis=-1) | np.all(np.abs(
                      pixels - np.array([0xc6, 0x28, 0x28]) / 255) < 0.02,
                                          axis=-1)
  assert banner[:300].sum() > 500
  meta = artifacts.read_metadata(small_run.artifacts.evaluation)
  assert meta["summary"]["verdict"] == blessing.BLESSED
  # The page as Chromium built it: intervals beside the values, the paired
  # differences, and calibration buckets with their counts (table and
  # chart labels), none below the configured minimum.
  dom = subprocess.run(
      [chromium, "--headless", "--no-sandbox", "--disable-gpu",
       "--no-first-run", "--disable-background-networking",
       f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
       f"file://{report}"],
      check=True, capture_output=True, timeout=120, text=True).stdout
  metrics = json.loads(open(os.path.join(
      small_run.artifacts.evaluation, evaluator.METRICS_FILE)).read())
  candidate = metrics["overall"]["candidate"]
  for metric in ("recall_at_20", "ndcg_at_10", "rating_rmse", "like_auc"):
    low, high = metrics["intervals"]["candidate"][metric]
    assert low <= candidate[metric] <= high, metric
    assert f"[{low:.4f}, {high:.4f}]" in dom, metric
  diff = metrics["differences"]["popularity"]["recall_at_20"]
  assert diff["units"] == candidate["users"]
  assert diff["difference"] == pytest.approx(
      candidate["recall_at_20"] -
      metrics["overall"]["popularity"]["recall_at_20"])
  assert "Paired differences: candidate − baseline" in dom
  # The ExampleValidator's data section: no anomaly on this data, a row
  # per feature and split, value-share and histogram charts.
  data = dom.split("id=\"data\"")[1]
  assert "No anomalies." in data
  assert data.count("<tr>") > 2 * 10 and data.count("<svg") >= 5
  assert "95% percentile bootstrap, 1,000 resamples" in dom
  min_count = EvaluatorConfig().calibration_min_count
  calibration = dom.split("<h2>Calibration</h2>")[1].split("<h2>")[0]
  counts = [int(n) for n in re.findall(
      r"<tr><td>[0-9.]+–[0-9.]+</td><td>(\d+)</td>", calibration)]
  assert counts and min(counts) >= min_count
  for n in counts:
    assert f"n={n:,}" in calibration
