"""Metric functions against values computed by hand."""

import math

import numpy as np
import pytest

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
