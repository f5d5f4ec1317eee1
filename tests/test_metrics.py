"""Metric functions against values computed by hand."""

import math

import numpy as np
import pytest

from components import metric_names
from components import metrics as M


def test_recall_and_ndcg_hand_computed():
  ranked = [5, 3, 9, 1]
  relevant = {3, 1, 7}
  # Hits at ranks 2 and 4 of 3 relevant items.
  assert M.recall_at_k(ranked, relevant, 2) == pytest.approx(1 / 3)
  assert M.recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
  dcg = 1 / math.log2(3) + 1 / math.log2(5)
  idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
  assert M.ndcg_at_k(ranked, relevant, 4) == pytest.approx(dcg / idcg)
  # K smaller than |relevant|: the ideal DCG only counts K positions.
  assert M.ndcg_at_k(ranked, relevant, 2) == pytest.approx(
      (1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_top_k_excluding_skips_seen_items_and_breaks_ties_by_index():
  scores = np.array([[0.9, 0.1, 0.5, 0.5, 0.8],
                     [0.0, 0.0, 0.0, 1.0, 0.0]])
  top = M.top_k_excluding(scores, [{0}, set()], 3)
  np.testing.assert_array_equal(top, [[4, 2, 3], [3, 0, 1]])


def test_retrieval_metrics_averages_users():
  top = np.array([[1, 2], [3, 4]])
  out = M.retrieval_metrics(top, [{1}, {9}], ks=[2])
  assert out["recall_at_2"] == pytest.approx(0.5)
  assert out["ndcg_at_2"] == pytest.approx(0.5)


def test_auc_with_ties_and_rmse():
  # Positive scores 0.8 and 0.4; negatives 0.4 and 0.1. Pairs: (0.8>0.4),
  # (0.8>0.1), (0.4=0.4 counts half), (0.4>0.1) -> 3.5 / 4.
  assert M.auc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
  assert math.isnan(M.auc([0.3, 0.2], [1, 1]))
  assert M.rmse([1.0, 3.0], [2.0, 5.0]) == pytest.approx(math.sqrt(2.5))
  assert math.isnan(M.rmse([], []))


def test_graded_ndcg_hand_computed():
  ranked = ["a", "b", "c", "d"]
  # b and e liked (gain 2), d only consumed (gain 1); a and c irrelevant.
  gains = {"b": 2.0, "d": 1.0, "e": 2.0}
  # DCG@3 = 2/log2(3); the ideal order of the gains is 2, 2, 1.
  idcg = 2 + 2 / math.log2(3) + 1 / math.log2(4)
  assert M.graded_ndcg_at_k(ranked, gains, 3) == pytest.approx(
      (2 / math.log2(3)) / idcg)
  assert M.graded_ndcg_at_k(ranked, gains, 4) == pytest.approx(
      (2 / math.log2(3) + 1 / math.log2(5)) / idcg)
  # K=1: the ideal list holds one liked item.
  assert M.graded_ndcg_at_k(["e", "b"], gains, 1) == pytest.approx(1.0)
  assert M.graded_ndcg_at_k(["d", "b"], gains, 1) == pytest.approx(0.5)
  # All gains 1: plain NDCG.
  flat = {"b": 1.0, "d": 1.0, "e": 1.0}
  assert M.graded_ndcg_at_k(ranked, flat, 4) == pytest.approx(
      M.ndcg_at_k(ranked, set(flat), 4))
  with pytest.raises(ValueError):
    M.graded_ndcg_at_k(ranked, {}, 3)


def test_liked_recall_counts_liked_items_only():
  gains = {"b": 2.0, "d": 1.0, "e": 2.0}
  assert M.liked_recall_at_k(["a", "b", "d"], gains, 2) == pytest.approx(0.5)
  assert M.liked_recall_at_k(["d", "a", "b"], gains, 2) == 0.0
  assert M.liked_recall_at_k(["e", "b"], gains, 2) == 1.0
  with pytest.raises(ValueError):
    M.liked_recall_at_k(["a"], {"d": 1.0}, 1)
  # A user without a liked item has no liked recall (not a 0).
  assert M.per_user_graded(["a", "d"], {"d": 1.0}, [1, 2]) == {
      "graded_ndcg_at_1": 0.0, "graded_ndcg_at_2": pytest.approx(
          1 / math.log2(3))}
  assert set(M.per_user_graded(["b"], gains, [1])) == {
      "graded_ndcg_at_1", "liked_recall_at_1"}


def test_multilabel_recall_at_k_and_auc_hand_computed():
  p = np.array([[0.9, 0.1, 0.5, 0.5],
                [0.2, 0.2, 0.2, 0.2],
                [0.3, 0.3, 0.3, 0.3]])
  labels = M.multi_hot([[1, 2], [3], []], 4)
  assert labels.tolist() == [[False, True, True, False],
                             [False, False, False, True],
                             [False, False, False, False]]
  # Row 0: top 2 = class 0, then class 2 (ties: lower index): 1 of 2
  # labels. Row 1: all tie, top 2 = classes 0, 1: 0 of 1. Row 2 has no
  # label and does not count.
  assert M.multilabel_recall_at_k(p, labels, 2) == pytest.approx(0.25)
  assert M.multilabel_recall_at_k(p, labels, 4) == pytest.approx(1.0)
  assert math.isnan(M.multilabel_recall_at_k(p[2:], labels[2:], 2))
  # AUC over the 8 (example, class) pairs of rows 0-1. Positives 0.1, 0.5,
  # 0.2; negatives 0.9, 0.5, 0.2, 0.2, 0.2. Pairs won: 0 (0.1) + 3.5 (0.5:
  # three 0.2s and a tie) + 1.5 (0.2: three ties) = 5 of 15.
  assert M.multilabel_auc(p[:2], labels[:2]) == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match="outside"):
    M.multi_hot([[4]], 4)


def test_calibration_ratio():
  assert M.calibration_ratio([0.2, 0.4, 0.6], [0, 1, 1]) == pytest.approx(0.6)
  assert math.isnan(M.calibration_ratio([0.2], [0]))
  assert math.isnan(M.calibration_ratio([], []))


def test_metric_names_directions_and_aliases():
  assert metric_names.task_metric_names("click", "binary") == [
      "click_auc", "click_log_loss", "click_calibration"]
  assert metric_names.task_metric_names("interest", "multilabel") == [
      "interest_auc", "interest_recall_at_5"]
  assert metric_names.task_metric_names("retrieval", "retrieval") == []
  for lower in ("rmse", "rating_rmse", "watch_fraction_mae", "log_loss",
                "click_log_loss", "mean_popularity_at_10"):
    assert not metric_names.higher_is_better(lower), lower
  for higher in ("auc", "click_auc", "interest_recall_at_5", "recall_at_20",
                 "liked_recall_at_10", "graded_ndcg_at_20", "mrr"):
    assert metric_names.higher_is_better(higher), higher
  assert not metric_names.has_direction("click_calibration")
  assert metric_names.has_direction("click_auc")
  assert metric_names.with_aliases({"rating_rmse": 0.9, "like_auc": 0.7,
                         "click_auc": 0.6}) == {
      "rating_rmse": 0.9, "like_auc": 0.7, "click_auc": 0.6, "rmse": 0.9,
      "auc": 0.7}
  assert metric_names.canonical("log_loss") == "like_log_loss"


@pytest.mark.parametrize("name, tasks, problem", [
    ("recall_at_20", None, None),
    ("graded_ndcg_at_10", None, None),
    ("liked_recall_at_30", None, "K=30 is not one of evaluator.ks [10, 20]"),
    ("catalog_coverage_at_10", None, None),
    ("click_auc", None, None),  # the shape is right; the task is unknown
    ("click_auc", {"like": "binary"}, "no task named click"),
    ("click_rmse", {"click": "binary"},
     "task click is binary: its metrics are click_auc, click_log_loss, "
     "click_calibration"),
    ("interest_recall_at_5", {"interest": "multilabel"}, None),
    ("watch_fraction_mae", {"watch_fraction": "regression"}, None),
    ("rmse", {"rating": "regression"}, None),
    ("rmse", {"click": "binary"},
     "rmse is rating_rmse: no task named rating"),
    ("retrieval_auc", {"retrieval": "retrieval"},
     "task retrieval is a retrieval task"),
    ("recal_at_20", None, "unknown metric"),
])
def test_metric_name_problems(name, tasks, problem):
  got = metric_names.metric_name_problem(name, [10, 20], tasks)
  if problem is None:
    assert got is None
  else:
    assert got is not None and got.startswith(problem), got


# Bootstrap intervals (components.confidence) and calibration buckets.


def test_merge_sparse_buckets_by_hand():
  def bucket(lower, count, predicted, observed):
    return {"lower": lower, "upper": lower + 0.1, "count": count,
            "mean_predicted": predicted, "observed_rate": observed}
  buckets = [bucket(0.0, 1, 0.05, 1.0), bucket(0.1, 4, 0.15, 0.0),
             bucket(0.3, 10, 0.35, 0.5), bucket(0.5, 0, 0.0, 0.0),
             bucket(0.8, 2, 0.85, 1.0)]
  merged = M.merge_sparse_buckets(buckets, 5)
  # 1 + 4 reach 5 together; 10 alone; the 2 left at the top join the 10;
  # the empty bucket is dropped.
  assert merged == [
      {"lower": 0.0, "upper": 0.2, "count": 5,
       "mean_predicted": pytest.approx((0.05 + 4 * 0.15) / 5),
       "observed_rate": pytest.approx(1 / 5)},
      {"lower": 0.3, "upper": 0.9, "count": 12,
       "mean_predicted": pytest.approx((10 * 0.35 + 2 * 0.85) / 12),
       "observed_rate": pytest.approx((5 + 2) / 12)}]
  # Every bucket big enough: unchanged. Too few rows overall: one bucket.
  assert M.merge_sparse_buckets(buckets[2:3], 5) == buckets[2:3]
  assert [b["count"] for b in M.merge_sparse_buckets(buckets, 100)] == [17]
  assert M.merge_sparse_buckets([], 5) == []


def test_bootstrap_of_identical_users_has_zero_width():
  from components import confidence  # pylint: disable=g-import-not-at-top
  b = confidence.Bootstrap(resamples=200, confidence=0.95, seed=3)
  assert b.interval(confidence.mean_of([0.25] * 50), 50) == (0.25, 0.25)
  assert all(math.isnan(v) for v in b.interval(
      confidence.mean_of([0.5]), 1))


def test_bootstrap_bounds_of_a_case_known_by_hand():
  """Four users with recall 0, 0, 0, 1: a resample's mean is k/4, k the
  draws of the fourth user, Binomial(4, 1/4). P(k = 0) = 0.32, so the 2.5%
  point is 0; P(k >= 3) = 0.051 but P(k = 4) = 0.004, so the 97.5% point is
  0.75. With 1,000 resamples the counts are ~320, ~51 and ~4 against the
  25 at each tail: the interval is [0, 0.75] whatever the seed."""
  from components import confidence  # pylint: disable=g-import-not-at-top
  for seed in (0, 1, 2):
    b = confidence.Bootstrap(resamples=1000, confidence=0.95, seed=seed)
    assert b.interval(confidence.mean_of([0, 0, 0, 1.0]), 4) == (0.0, 0.75)
  # Two users 0 and 1: means 0, 0.5, 1 with P 1/4, 1/2, 1/4: [0, 1].
  b = confidence.Bootstrap(resamples=1000, confidence=0.95, seed=0)
  assert b.interval(confidence.mean_of([0.0, 1.0]), 2) == (0.0, 1.0)
  # The same seed and users: the same interval (reproducible reports).
  values = np.random.default_rng(5).random(200)
  assert b.interval(confidence.mean_of(values), 200) == b.interval(
      confidence.mean_of(values), 200)


def test_paired_difference_decides_beats_not_the_point_estimate():
  """Two candidates, both 0.05 ahead of the baseline on average: one gains
  0.05 on every user (beats), the other +1 on half the users and -0.9 on
  the rest (its interval spans zero: does not beat)."""
  from components import confidence  # pylint: disable=g-import-not-at-top
  b = confidence.Bootstrap(resamples=1000, confidence=0.95, seed=0)
  baseline = {"recall_at_20": np.full(20, 0.1),
              "liked_recall_at_20": np.r_[np.full(10, 0.5),
                                          np.full(10, np.nan)]}
  steady = {k: v + 0.05 for k, v in baseline.items()}
  noisy = {k: v + np.tile([1.0, -0.9], 10) for k, v in baseline.items()}
  d = confidence.paired_differences(steady, baseline, b)
  assert d["recall_at_20"]["difference"] == pytest.approx(0.05)
  assert d["recall_at_20"]["interval"] == [pytest.approx(0.05),
                                           pytest.approx(0.05)]
  assert d["recall_at_20"]["units"] == 20
  # Liked recall: only the 10 users who have it on both sides.
  assert d["liked_recall_at_20"]["units"] == 10
  n = confidence.paired_differences(noisy, baseline, b)
  assert n["recall_at_20"]["difference"] == pytest.approx(0.05)
  low, high = n["recall_at_20"]["interval"]
  assert low < 0 < high
  assert confidence.beats(tuple(d["recall_at_20"]["interval"]), True)
  assert not confidence.beats((low, high), True)
  # A margin the whole interval must clear; lower-is-better flips sides.
  assert not confidence.beats((0.05, 0.05), True, margin=0.05)
  assert confidence.beats((-0.3, -0.2), False, margin=0.1)
  assert not confidence.beats(confidence.NO_INTERVAL, True)
  per_model = confidence.mean_intervals(steady, b)
  assert per_model["recall_at_20"] == [pytest.approx(0.15),
                                       pytest.approx(0.15)]


def test_resampled_auc_equals_the_formula_on_the_resampled_rows():
  from components import confidence  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  scores = np.round(rng.random(40), 1)  # ties
  labels = rng.random(40) < 0.4
  idx = rng.integers(0, 40, (3, 40))
  got = confidence.auc_of(scores, labels)(idx)
  assert got == pytest.approx([M.auc(scores[i], labels[i]) for i in idx])
  # Multilabel: a resampled example brings its whole row of labels.
  p = np.round(rng.random((12, 3)), 1)
  y = rng.random((12, 3)) < 0.4
  idx = rng.integers(0, 12, (2, 12))
  got = confidence.auc_of(p, y, np.repeat(np.arange(12), 3))(idx)
  assert got == pytest.approx([M.multilabel_auc(p[i], y[i]) for i in idx])
  # One class only in the resample: undefined, not 0 or 1.
  assert math.isnan(confidence.auc_of([0.1, 0.2], [True, True])(
      np.array([[0, 1]]))[0])


def test_resamples_that_leave_a_statistic_undefined_are_left_out():
  """AUC of two positives and two negatives ranked perfectly: a resample
  without both classes (2 * (1/2)^4 = 1/8 of them) has no AUC; the others
  all have 1. Undefined in half the resamples or more: no interval."""
  from components import confidence  # pylint: disable=g-import-not-at-top
  b = confidence.Bootstrap(resamples=400, seed=0)
  auc = confidence.auc_of([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
  assert b.interval(auc, 4) == (1.0, 1.0)
  rare = confidence.auc_of([0.1, 0.2, 0.3, 0.9], [False] * 3 + [True])
  assert b.interval(rare, 4) == (1.0, 1.0)  # 1 - (3/4)^4 = 68% defined
  # Undefined whenever unit 0 is drawn: defined in 0.9^10 = 35%.
  def without_unit_0(idx):
    return np.where((idx == 0).any(axis=-1), np.nan, 1.0)
  assert all(math.isnan(v) for v in b.interval(without_unit_0, 10))
