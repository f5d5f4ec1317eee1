"""Metric definitions, in one place, as plain functions of numpy arrays.

Retrieval metrics follow the usual full-catalog protocol: every catalog item
is ranked, the items a user interacted with in training are removed from the
ranking (and from the relevant set), and per-user values are averaged over the
users who have at least one relevant item left.

  Recall@K  = |top-K ∩ relevant| / |relevant|
  NDCG@K    = Σ_{hits at rank i} 1/log2(i+1)  /  Σ_{i=1..min(K,|relevant|)} 1/log2(i+1)
  HitRate@K = 1 if top-K ∩ relevant is not empty, else 0
  MRR       = 1 / rank of the first relevant item in the ranked list (0 if none)
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def recall_at_k(ranked: Sequence[int], relevant: set, k: int) -> float:
  if not relevant:
    raise ValueError("recall is undefined without relevant items")
  return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[int], relevant: set, k: int) -> float:
  if not relevant:
    raise ValueError("NDCG is undefined without relevant items")
  dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k])
            if item in relevant)
  ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(relevant))))
  return dcg / ideal


def hit_rate_at_k(ranked: Sequence[int], relevant: set, k: int) -> float:
  return 1.0 if set(ranked[:k]) & relevant else 0.0


def reciprocal_rank(ranked: Sequence[int], relevant: set) -> float:
  for i, item in enumerate(ranked):
    if item in relevant:
      return 1.0 / (i + 1)
  return 0.0


def per_user_retrieval(ranked: Sequence, relevant: set,
                       ks: Sequence[int]) -> dict[str, float]:
  """Every retrieval metric of one user's ranked list."""
  out = {"mrr": reciprocal_rank(ranked, relevant)}
  for k in ks:
    out[f"recall_at_{k}"] = recall_at_k(ranked, relevant, k)
    out[f"ndcg_at_{k}"] = ndcg_at_k(ranked, relevant, k)
    out[f"hit_rate_at_{k}"] = hit_rate_at_k(ranked, relevant, k)
  return out


# Metrics of the ranking heads, judged by TFMA (components.ranking_eval).
RANKING_METRICS = ("rmse", "mae", "auc", "log_loss")

# Direction of every metric the evaluator reports, for regression checks.
LOWER_IS_BETTER = ("rmse", "mae", "log_loss", "mean_popularity_at_10")


def higher_is_better(metric: str) -> bool:
  return metric not in LOWER_IS_BETTER


def top_k_excluding(scores: np.ndarray, exclude: Sequence[Iterable[int]],
                    k: int) -> np.ndarray:
  """Row-wise indices of the k best scores, skipping excluded columns.

  Args:
    scores: [users, items] scores.
    exclude: per user, the item columns that must not be recommended.
    k: how many to return (capped at the number of items).

  Returns:
    [users, k] item indices, best first; ties broken by lower index.
  """
  scores = np.array(scores, dtype=np.float64, copy=True)
  for row, items in enumerate(exclude):
    items = list(items)
    if items:
      scores[row, items] = -np.inf
  k = min(k, scores.shape[1])
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  part_scores = np.take_along_axis(scores, part, axis=1)
  order = np.lexsort((part, -part_scores), axis=1)
  return np.take_along_axis(part, order, axis=1)


def retrieval_metrics(top: np.ndarray, relevant: Sequence[set],
                      ks: Sequence[int]) -> dict[str, float]:
  """Mean Recall@K and NDCG@K over users (rows of `top`)."""
  out = {}
  for k in ks:
    out[f"recall_at_{k}"] = float(np.mean(
        [recall_at_k(list(t), rel, k) for t, rel in zip(top, relevant)]))
    out[f"ndcg_at_{k}"] = float(np.mean(
        [ndcg_at_k(list(t), rel, k) for t, rel in zip(top, relevant)]))
  return out


def mae(predictions: np.ndarray, labels: np.ndarray) -> float:
  predictions = np.asarray(predictions, np.float64)
  labels = np.asarray(labels, np.float64)
  if predictions.size == 0:
    return float("nan")
  return float(np.mean(np.abs(predictions - labels)))


def log_loss(p: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
  p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
  labels = np.asarray(labels, np.float64)
  if p.size == 0:
    return float("nan")
  return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def calibration(p: np.ndarray, labels: np.ndarray,
                bins: int = 10) -> list[dict[str, float]]:
  """Mean predicted vs observed rate in equal-width probability bins."""
  p = np.asarray(p, np.float64)
  labels = np.asarray(labels, np.float64)
  which = np.minimum((p * bins).astype(int), bins - 1)
  out = []
  for b in range(bins):
    mask = which == b
    if mask.any():
      out.append({"lower": b / bins, "upper": (b + 1) / bins,
                  "count": int(mask.sum()),
                  "mean_predicted": float(p[mask].mean()),
                  "observed_rate": float(labels[mask].mean())})
  return out


def rmse(predictions: np.ndarray, labels: np.ndarray) -> float:
  predictions = np.asarray(predictions, np.float64)
  labels = np.asarray(labels, np.float64)
  if predictions.size == 0:
    return float("nan")
  return float(np.sqrt(np.mean((predictions - labels) ** 2)))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """ROC AUC (Mann-Whitney U, ties count half); NaN with a single class."""
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels).astype(bool)
  n_pos, n_neg = int(labels.sum()), int((~labels).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores), np.float64)
  sorted_scores = scores[order]
  # Average ranks over ties (1-based).
  _, first, counts = np.unique(sorted_scores, return_index=True,
                               return_counts=True)
  avg = first + (counts + 1) / 2.0
  ranks[order] = np.repeat(avg, counts)
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) /
               (n_pos * n_neg))
