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
