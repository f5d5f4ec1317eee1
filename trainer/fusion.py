"""Fusion: how the task outputs of a candidate add up to the order served.

`recommend` is two stages (trainer/export.py): the retrieval score (the dot
product of the two towers) picks `candidates` items out of the catalog, every
ranking head scores those, and the fused score orders them. The outputs live
on different scales (a dot product, a logit, a rating in stars), so each is
first mapped to a comparable, documented value:

- retrieval: standardized over the request row's candidates,
  (s - mean) / std; only the order among the candidates matters to the
  retrieval stage, and the raw dot product's spread differs from user to
  user and from model to model.
- binary (like, click): the logit of the predicted probability, the head's
  raw output: log-odds add up, and a step of 1 is the same evidence for any
  task.
- regression (rating, watch fraction): centred and scaled by the training
  label's mean and standard deviation: (y - mean) / std, so one unit is one
  standard deviation of the label.

fused = Σ_t w_t · value_t, and contribution_t = w_t · value_t is served next
to it. Weights are non-negative. With every ranking weight at 0 the fused
score is a positive multiple of the standardized retrieval score, so the
order is the retrieval order; with ties (e.g. all weights 0) the candidate
that retrieval ranked first stays first (top_k keeps the lower index).
Multi-label query heads (interest) predict categories for the user, not a
score for an item, and take no part.

Only core TensorFlow ops: TF Serving runs the fused stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

FUSED_KINDS = ("retrieval", "regression", "binary")
RETRIEVAL = "retrieval"  # the term's name when the model has no such task
TRANSFORMS = {
    "retrieval": "(score - mean) / std over the request's candidates",
    "binary": "logit of the predicted probability",
    "regression": "(prediction - training label mean) / label std",
}
_EPSILON = 1e-6


@dataclasses.dataclass(frozen=True)
class FusionSpec:
  """The fused stage of one model: which terms, how scaled, which weights."""

  tasks: tuple[str, ...]  # the retrieval term first
  kinds: tuple[str, ...]
  weights: tuple[float, ...]
  centres: tuple[float, ...]  # regression: the label mean; else 0
  scales: tuple[float, ...]  # regression: the label std; else 1
  candidates: int
  search: Optional[Mapping[str, Any]] = None  # what chose the weights

  def with_weights(self, weights: Sequence[float],
                   search: Optional[Mapping[str, Any]] = None
                   ) -> "FusionSpec":
    return dataclasses.replace(self, weights=tuple(float(w) for w in weights),
                               search=search)

  def weight_of(self) -> dict[str, float]:
    return dict(zip(self.tasks, self.weights))

  def retrieval_only(self) -> tuple[float, ...]:
    """Weights that reproduce the retrieval order."""
    return tuple(1.0 if k == "retrieval" else 0.0 for k in self.kinds)

  def to_json(self) -> dict[str, Any]:
    return {"tasks": list(self.tasks), "kinds": list(self.kinds),
            "weights": list(self.weights), "centres": list(self.centres),
            "scales": list(self.scales), "candidates": self.candidates,
            "search": self.search}

  @classmethod
  def from_json(cls, value: Mapping[str, Any]) -> "FusionSpec":
    return cls(tuple(value["tasks"]), tuple(value["kinds"]),
               tuple(float(w) for w in value["weights"]),
               tuple(float(c) for c in value["centres"]),
               tuple(float(s) for s in value["scales"]),
               int(value["candidates"]), value.get("search"))

  def card(self) -> dict[str, Any]:
    """The model card's `ranking` entry (contracts/model_layout.py)."""
    return {"candidates": self.candidates, "fusion_tasks": list(self.tasks),
            "fusion_weights": list(self.weights),
            "transforms": {t: TRANSFORMS[k]
                           for t, k in zip(self.tasks, self.kinds)},
            "search": self.search}


def build_spec(tasks: Sequence[Any], fusion: Mapping[str, float],
               stats: Mapping[str, Any], candidates: int) -> FusionSpec:
  """The spec a config declares, before any search.

  Args:
    tasks: the trainer's task configs.
    fusion: serving.ranking.fusion (task name -> weight).
    stats: training statistics (label_means, label_stds per task).
    candidates: serving.ranking.candidates.

  Raises:
    ValueError: a fusion weight names no task that takes part, naming it.
  """
  retrieval = [t.name for t in tasks if t.kind == "retrieval"]
  names = [retrieval[0] if retrieval else RETRIEVAL]
  kinds = ["retrieval"]
  centres, scales = [0.0], [1.0]
  for t in tasks:
    if t.kind in ("regression", "binary"):
      names.append(t.name)
      kinds.append(t.kind)
      regression = t.kind == "regression"
      centres.append(float(stats["label_means"].get(t.name, 0.0))
                     if regression else 0.0)
      std = float(stats.get("label_stds", {}).get(t.name, 1.0))
      scales.append(max(std, _EPSILON) if regression else 1.0)
  unknown = sorted(set(fusion) - set(names))
  if unknown:
    raise ValueError(
        f"serving.ranking.fusion.{unknown[0]}: no retrieval or ranking task "
        f"of that name; fused tasks: {names}")
  weights = [float(fusion.get(n, 1.0 if k == "retrieval" else 0.0))
             for n, k in zip(names, kinds)]
  return FusionSpec(tuple(names), tuple(kinds), tuple(weights),
                    tuple(centres), tuple(scales), candidates)


def task_values(spec: FusionSpec, retrieval_scores: tf.Tensor,
                head_outputs: Mapping[str, tf.Tensor],
                reference: Optional[tf.Tensor] = None) -> tf.Tensor:
  """[B, C, T]: each term's comparable value for every candidate.

  Args:
    retrieval_scores: [B, C] dot products, -inf for candidates that may not
      be served (excluded items when the catalog runs short).
    head_outputs: task name -> [B, C] raw head output (logit or value).
    reference: [B, C'] the retrieval scores whose mean and deviation
      standardize retrieval_scores (default: retrieval_scores themselves):
      an item scored beside a user's candidates (trainer/explain.py).
  """
  reference = retrieval_scores if reference is None else reference
  valid = tf.math.is_finite(reference)
  count = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32), axis=1,
                                   keepdims=True), 1.0)
  finite = tf.where(valid, reference, 0.0)
  mean = tf.reduce_sum(finite, axis=1, keepdims=True) / count
  std = tf.sqrt(tf.reduce_sum(
      tf.square(tf.where(valid, reference - mean, 0.0)), axis=1,
      keepdims=True) / count)
  deviation = tf.where(tf.math.is_finite(retrieval_scores),
                       retrieval_scores - mean, 0.0)
  values = []
  for name, kind, centre, scale in zip(spec.tasks, spec.kinds, spec.centres,
                                       spec.scales):
    if kind == "retrieval":
      values.append(deviation / (std + _EPSILON))
    else:
      values.append((tf.cast(head_outputs[name], tf.float32) - centre) /
                    scale)
  return tf.stack(values, axis=-1)


def fuse(values: tf.Tensor, weights: tf.Tensor,
         retrieval_scores: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(fused [B, C], contributions [B, C, T]) for weights [B, T] or [T].

  Candidates with a non-finite retrieval score get -inf: they rank last.
  """
  weights = tf.cast(weights, tf.float32)
  if weights.shape.rank == 1:
    weights = weights[None, :]
  contributions = values * weights[:, None, :]
  fused = tf.reduce_sum(contributions, axis=-1)
  fused = tf.where(tf.math.is_finite(retrieval_scores), fused,
                   tf.constant(-np.inf, tf.float32))
  return fused, contributions


def check_weights(weights: tf.Tensor, batch: tf.Tensor,
                  spec: FusionSpec) -> tf.Tensor:
  """`weights` after the checks a request's fusion_weights must pass.

  Failing checks raise InvalidArgumentError naming the input, which the
  servers answer with INVALID_ARGUMENT, as TF Serving does for a failed
  assertion in the graph.
  """
  names = ", ".join(spec.tasks)
  checks = [
      tf.debugging.assert_equal(
          tf.shape(weights)[1], len(spec.tasks),
          message=f"fusion_weights: each row needs {len(spec.tasks)} "
          f"weights, one per fusion task ({names})"),
      tf.debugging.assert_equal(
          tf.shape(weights)[0], batch,
          message="fusion_weights: one row of weights per user_id"),
      tf.debugging.assert_all_finite(
          weights, "fusion_weights: a weight is NaN or infinite"),
      tf.debugging.assert_non_negative(
          weights, message="fusion_weights: weights must be >= 0"),
  ]
  with tf.control_dependencies(checks):
    return tf.identity(weights)

