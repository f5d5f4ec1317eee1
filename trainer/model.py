"""The multi-task model: retrieval plus rating and like ranking heads.

As in TFRS, the model only composes: towers produce embeddings, tasks own
their losses and metrics, and `compute_loss` returns the weighted sum. The
retrieval task scores in-batch candidates with a logQ correction (Yi et al.,
2019) from item frequencies, because in-batch negatives over-sample popular
items and would otherwise teach the model to push them down. Ranking losses
are masked by per-row weights, so an impression without a rating contributes
to retrieval and like but not to rating.

Every task loss is summed over the rows of the replica's batch and divided by
the global batch size, so the task weights compare like with like (a mean per
example) and the sum of replica gradients under a tf.distribute strategy is
the gradient of the global mean, the same number a single device computes.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from components import features as F
from trainer import towers

TASKS = ("retrieval", "rating", "like")


class MultiTaskModel(tfrs.Model):
  """Two towers shared by a retrieval task and shared-bottom ranking heads."""

  def __init__(self, query_tower: towers.QueryTower,
               candidate_tower: towers.CandidateTower,
               ranking_heads: towers.RankingHeads,
               item_probabilities: np.ndarray,
               task_weights: Mapping[str, float]):
    super().__init__()
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower
    self.ranking_heads = ranking_heads
    # Sampling probability of each item index as an in-batch candidate.
    self._item_probabilities = tf.constant(item_probabilities, tf.float32)
    self.task_weights = {t: float(task_weights[t]) for t in TASKS}
    summed = tf.keras.losses.Reduction.SUM
    self.retrieval_task = tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=summed),
        remove_accidental_hits=True)
    self.rating_task = tfrs.tasks.Ranking(
        loss=tf.keras.losses.MeanSquaredError(reduction=summed),
        metrics=[tf.keras.metrics.RootMeanSquaredError("rmse")])
    self.like_task = tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(
            from_logits=True, reduction=summed),
        metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")])
    self.task_losses = {
        t: tf.keras.metrics.Mean(name=f"{t}_loss") for t in TASKS}

  def call(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    query = self.query_tower(features)
    candidate = self.candidate_tower(features)
    outputs = self.ranking_heads(query, candidate, features[F.HOUR],
                                 features[F.WEEKDAY])
    outputs.update(query=query, candidate=candidate)
    return outputs

  def compute_loss(self, features, training: bool = False) -> tf.Tensor:
    out = self(features)
    item_ids = features[F.ITEM_ID]
    # Retrieval sees only consumed rows, as queries and as in-batch
    # candidates: shown-but-skipped items would otherwise be negatives far
    # more often than the logQ correction (positive frequencies) assumes.
    positive = features[F.RETRIEVAL_WEIGHT] > 0
    positive_ids = tf.boolean_mask(item_ids, positive)
    losses = {
        "retrieval": self.retrieval_task(
            tf.boolean_mask(out["query"], positive),
            tf.boolean_mask(out["candidate"], positive),
            candidate_sampling_probability=tf.gather(
                self._item_probabilities, positive_ids),
            candidate_ids=positive_ids,
            compute_metrics=False, compute_batch_metrics=False),
        "rating": self.rating_task(
            labels=features[F.RATING][:, None],
            predictions=out["rating"][:, None],
            sample_weight=features[F.RATING_WEIGHT]),
        "like": self.like_task(
            labels=features[F.LIKE][:, None],
            predictions=out["like_logit"][:, None],
            sample_weight=features[F.LIKE_WEIGHT]),
    }
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    global_batch = tf.cast(tf.shape(item_ids)[0] * replicas, tf.float32)
    total = 0.0
    for task, loss in losses.items():
      loss = loss / global_batch
      self.task_losses[task].update_state(loss)
      total += self.task_weights[task] * loss
    return total
