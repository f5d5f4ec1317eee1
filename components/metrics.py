"""Metric definitions, in one place, as plain functions of numpy arrays.

Retrieval metrics follow the usual full-catalog protocol: every catalog item
is ranked, the items a user interacted with in training are removed from the
ranking (and from the relevant set), and per-user values are averaged over the
users who have at least one relevant item left.

  Recall@K  = |top-K ∩ relevant| / |relevant|
  NDCG@K    = Σ_{hits at rank i} 1/log2(i+1)  /  Σ_{i=1..min(K,|relevant|)} 1/log2(i+1)
  HitRate@K = 1 if top-K ∩ relevant is not empty, else 0
  MRR       = 1 / rank of the first relevant item in the ranked list (0 if none)

Value-aware retrieval metrics grade the relevant items: an item the user
liked (the like label of the transform graph, the definition training uses)
has gain LIKED_GAIN = 2, one only consumed CONSUMED_GAIN = 1.

  LikedRecall@K = Recall@K over the liked relevant items only (users with at
                  least one liked relevant item)
  GradedNDCG@K  = Σ_{i=1..K} gain(item_i)/log2(i+1)  /  the same sum over
                  the user's relevant gains in the ideal (descending) order

The fusion search (trainer/fusion_search.py) maximizes these same functions
on its validation slice, so what it tunes is what the Evaluator reports.

Metric names and directions live in components/metric_names.py.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

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


# Graded relevance of an eval item: liked (the transform's like label) or
# only consumed.
LIKED_GAIN = 2.0
CONSUMED_GAIN = 1.0


def liked_recall_at_k(ranked: Sequence, gains: Mapping[Any, float],
                      k: int) -> float:
  """Recall@K over the liked items of `gains` (item -> gain)."""
  liked = {item for item, g in gains.items() if g >= LIKED_GAIN}
  if not liked:
    raise ValueError("liked recall is undefined without liked items")
  return recall_at_k(ranked, liked, k)


def graded_ndcg_at_k(ranked: Sequence, gains: Mapping[Any, float],
                     k: int) -> float:
  """NDCG@K with graded gains (item -> gain; items not in it gain 0)."""
  ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
  if not ideal:
    raise ValueError("NDCG is undefined without relevant items")
  dcg = sum(gains.get(item, 0.0) / np.log2(i + 2)
            for i, item in enumerate(ranked[:k]))
  return float(dcg / sum(g / np.log2(i + 2) for i, g in enumerate(ideal)))


def per_user_graded(ranked: Sequence, gains: Mapping[Any, float],
                    ks: Sequence[int]) -> dict[str, float]:
  """The value-aware metrics of one user's ranked list.

  liked_recall_at_K is left out for a user without a liked item: it is
  averaged over the users who have one, not counted as 0 for the others.
  """
  has_liked = any(g >= LIKED_GAIN for g in gains.values())
  out = {}
  for k in ks:
    out[f"graded_ndcg_at_{k}"] = graded_ndcg_at_k(ranked, gains, k)
    if has_liked:
      out[f"liked_recall_at_{k}"] = liked_recall_at_k(ranked, gains, k)
  return out


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


def merge_sparse_buckets(buckets: Sequence[Mapping[str, float]],
                         min_count: float) -> list[dict[str, float]]:
  """Calibration buckets with at least `min_count` examples each.

  Walking up the probability range, a bucket below the minimum is merged
  with the next ones until the run reaches it; a short run left at the top
  joins the bucket below it. A merged bucket spans its members' range, its
  count is theirs summed and its mean predicted and observed rate are
  count-weighted means, so it equals the bucket those examples would have
  made. A bucket of one example otherwise draws a cliff that says nothing
  about calibration. With fewer than `min_count` examples in all, one
  bucket holds them.
  """
  def merge(group: Sequence[Mapping[str, float]]) -> dict[str, float]:
    n = sum(b["count"] for b in group)
    return {"lower": group[0]["lower"], "upper": group[-1]["upper"],
            "count": n,
            "mean_predicted": sum(b["mean_predicted"] * b["count"]
                                  for b in group) / n,
            "observed_rate": sum(b["observed_rate"] * b["count"]
                                 for b in group) / n}

  ordered = sorted((b for b in buckets if b["count"] > 0),
                   key=lambda b: b["lower"])
  out: list[list[Mapping[str, float]]] = []
  run: list[Mapping[str, float]] = []
  for b in ordered:
    run.append(b)
    if sum(x["count"] for x in run) >= min_count:
      out.append(run)
      run = []
  if run:
    if out:
      out[-1].extend(run)
    else:
      out.append(run)
  return [merge(group) for group in out]


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


def calibration_ratio(p: np.ndarray, labels: np.ndarray) -> float:
  """Σ predicted / Σ observed (TFMA's `calibration`): 1 is calibrated.

  NaN without positives (or rows): the ratio is undefined, not infinite.
  """
  p = np.asarray(p, np.float64)
  labels = np.asarray(labels, np.float64)
  total = labels.sum()
  if p.size == 0 or total == 0:
    return float("nan")
  return float(p.sum() / total)


def multi_hot(indices: Sequence[Sequence[int]], width: int) -> np.ndarray:
  """[rows, width] bool: row n is True at indices[n] (a label's classes)."""
  out = np.zeros((len(indices), width), bool)
  for row, cols in enumerate(indices):
    cols = np.asarray(cols, np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= width):
      raise ValueError(f"label index outside [0, {width}) in row {row}")
    out[row, cols] = True
  return out


def multilabel_auc(p: np.ndarray, labels: np.ndarray) -> float:
  """ROC AUC over every (example, label) pair: the micro average.

  Args:
    p: [examples, labels] predicted probabilities.
    labels: [examples, labels] multi-hot truth.
  """
  return auc(np.reshape(p, [-1]), np.reshape(labels, [-1]))


def multilabel_recall_at_k(p: np.ndarray, labels: np.ndarray,
                           k: int) -> float:
  """Mean share of an example's labels among its k most probable ones.

  Over the examples with at least one label (NaN without any); among equal
  probabilities the lower label index ranks first, as in top_k_excluding.
  """
  p = np.asarray(p, np.float64)
  labels = np.asarray(labels, bool)
  has = labels.any(axis=1)
  if not has.any():
    return float("nan")
  p, labels = p[has], labels[has]
  top = np.argsort(-p, axis=1, kind="stable")[:, :k]
  hits = np.take_along_axis(labels, top, axis=1).sum(axis=1)
  return float(np.mean(hits / labels.sum(axis=1)))
