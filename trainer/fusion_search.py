"""Chooses the fusion weights on the validation slice, never on eval.

After training, every validation user (trainer/validation_slice.py) goes
through the exported module's own second stage once (`fused_stage`: the
same candidates, head outputs and comparable values that `recommend`
computes), which leaves a [users, candidates, terms] table. Any weight
vector's order is then a dot product and a sort, so the search is cheap.

Coordinate ascent: the retrieval weight stays where the config puts it (the
fused order depends only on the ratios), and each ranking task's weight in
turn takes the grid value that maximizes the objective, for `rounds` passes.
A change must strictly improve the objective, so ties keep the config's
weights (all 0 by default: the retrieval order). Every value tried is kept
as the search curve, for the model card and the validation report.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from components import metrics as M
from contracts import features as F
from trainer import validation_slice as vs_lib

_BATCH = 256


def candidate_table(module: Any, vslice: vs_lib.ValidationSlice
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(values [U, C, T], item ids [U, C]) of the validation users' candidates.

  Candidates whose retrieval score is -inf (excluded, when the catalog runs
  short) have every value -inf.
  """
  values, ids = [], []
  for start in range(0, len(vslice), _BATCH):
    end = start + _BATCH
    users = tf.constant(vslice.user_ids[start:end])
    n = int(users.shape[0])
    history = tf.ragged.constant(vslice.histories[start:end], dtype=tf.string,
                                 ragged_rank=1)
    feats = module.transform(
        users, tf.fill([n], ""),
        tf.constant(vslice.timestamps[start:end], tf.int64), history=history)
    query = module.query_tower(feats)
    scores = tf.matmul(query, module.index_by_dim)
    seen = [list(s) or [""] for s in vslice.seen[start:end]]
    scores = module.exclude(scores, tf.ragged.constant(
        seen, dtype=tf.string, ragged_rank=1).to_tensor(""))
    stage = module.fused_stage(query, scores, feats[F.HOUR], feats[F.WEEKDAY],
                               module.fusion_weights)
    finite = np.isfinite(stage["retrieval"].numpy())
    v = stage["values"].numpy()
    v[~finite] = -np.inf
    values.append(v)
    ids.append(tf.gather(module.item_ids, stage["rows"]).numpy())
  return (np.concatenate(values), np.concatenate(ids).astype(str))


def objective_fn(name: str) -> Callable[[Sequence[str], dict], float]:
  """metric(ranked item ids, {item: gain}) for an objective's name."""
  metric, k = name.rsplit("_at_", 1)
  k = int(k)
  if metric == "recall":
    return lambda ranked, gains: M.recall_at_k(ranked, set(gains), k)
  if metric == "ndcg":
    return lambda ranked, gains: M.ndcg_at_k(ranked, set(gains), k)
  if metric == "liked_recall":
    return lambda ranked, gains: M.liked_recall_at_k(ranked, gains, k)
  if metric == "graded_ndcg":
    return lambda ranked, gains: M.graded_ndcg_at_k(ranked, gains, k)
  raise ValueError(f"unknown objective {name!r}")


def evaluate(values: np.ndarray, ids: np.ndarray, gains: Sequence[dict],
             weights: Sequence[float], objective: str) -> float:
  """Mean objective over the users it is defined for, under `weights`."""
  fused = np.einsum("uct,t->uc", np.where(np.isfinite(values), values, 0.0),
                    np.asarray(weights, np.float64))
  fused[~np.isfinite(values[..., 0])] = -np.inf
  k = int(objective.rsplit("_at_", 1)[1])
  # Stable: among equal fused scores the retrieval order, as top_k serves.
  order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
  metric = objective_fn(objective)
  per_user = []
  for row, user_gains in enumerate(gains):
    if objective.startswith("liked_") and not any(
        g >= M.LIKED_GAIN for g in user_gains.values()):
      continue
    ranked = [ids[row, c] for c in order[row]
              if np.isfinite(fused[row, c])]
    per_user.append(metric(ranked, user_gains))
  return float(np.mean(per_user)) if per_user else 0.0


def search(values: np.ndarray, ids: np.ndarray, gains: Sequence[dict],
           tasks: Sequence[str], kinds: Sequence[str],
           start: Sequence[float], objective: str, grid: Sequence[float],
           rounds: int) -> tuple[list[float], dict[str, Any]]:
  """(weights, what the search did) by coordinate ascent (module doc)."""
  weights = [float(w) for w in start]

  def score(w):
    return evaluate(values, ids, gains, w, objective)

  retrieval_only = [1.0 if k == "retrieval" else 0.0 for k in kinds]
  curve = []
  best = declared = score(weights)
  for round_ in range(rounds):
    changed = False
    for t, kind in enumerate(kinds):
      if kind == "retrieval":
        continue
      for value in grid:
        trial = list(weights)
        trial[t] = float(value)
        result = best if trial == weights else score(trial)
        curve.append({"round": round_ + 1, "task": tasks[t],
                      "weight": float(value), "objective": result})
        if result > best + 1e-12:
          best, weights, changed = result, trial, True
    if not changed:
      break
  return weights, {
      "objective": objective, "users": len(gains),
      "declared_weights": dict(zip(tasks, map(float, start))),
      "declared_objective": declared,
      "retrieval_only_objective": score(retrieval_only),
      "chosen_weights": dict(zip(tasks, weights)), "chosen_objective": best,
      "curve": curve}
