"""The multi-task model: it only composes.

Towers (trainer.towers) embed the query and the candidate; ranking heads
(trainer.heads) score the pair through shared layers (trainer.shared_layers);
query heads predict from the query alone; tasks (trainer.tasks) own the
losses and metrics; a weighting (trainer.loss_weighting) adds the task losses
up. The tasks, the shared layers and the weighting are chosen in the config.

Every task loss is summed over the rows of the replica's batch and divided by
the global batch size, so weights compare per-example means and the sum of
the replicas' gradients under a tf.distribute strategy is the gradient of the
global mean, the number a single device computes. Logged losses are scaled
back the same way, so `loss` and `<task>_loss` read the same on one device
and on many (Keras would otherwise log the first replica's share).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from contracts import features as F
from trainer import heads as heads_lib
from trainer import tasks as tasks_lib
from trainer import towers


def score(ranking_heads: Optional[heads_lib.RankingHeads],
          query_heads: Optional[heads_lib.QueryHeads], query: tf.Tensor,
          candidate: tf.Tensor, features: Mapping[str, tf.Tensor]
          ) -> dict[str, tf.Tensor]:
  """Raw per-task predictions for given embeddings and context.

  Training and every serving signature go through this one function.
  """
  outputs = {}
  if ranking_heads is not None:
    outputs.update(ranking_heads(query, candidate, features[F.HOUR],
                                 features[F.WEEKDAY]))
  if query_heads is not None:
    outputs.update(query_heads(query))
  return outputs


class MultiTaskModel(tfrs.Model):
  """Two towers, ranking and query heads, tasks and their weighting."""

  def __init__(self, query_tower: towers.QueryTower,
               candidate_tower: towers.CandidateTower,
               ranking_heads: Optional[heads_lib.RankingHeads],
               query_heads: Optional[heads_lib.QueryHeads],
               tasks: Sequence[tasks_lib.Task],
               weighting: tf.keras.layers.Layer,
               distillation: Optional[tf.keras.layers.Layer] = None,
               catalog: Optional[Mapping[str, tf.Tensor]] = None):
    """distillation: a trainer.distillation.SoftTargets whose losses add to
    the tasks', weighted by its own weights (None: hard labels only).
    catalog: the candidate features of every trained item
    (trainer/catalog.py), embedded at every training step for a retrieval
    task with catalog negatives or catalog-wide soft targets (None: neither)."""
    super().__init__()
    # Untracked: constants of the training run, not state of the model.
    object.__setattr__(self, "catalog", catalog)
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower
    self.ranking_heads = ranking_heads
    self.query_heads = query_heads
    self.tasks = list(tasks)
    self.weighting = weighting
    self.loss_tracker = tf.keras.metrics.Mean(name="loss")
    self.task_losses = {t.task_name: tf.keras.metrics.Mean(
        name=f"{t.task_name}_loss") for t in self.tasks}
    self.distillation = distillation
    self.distillation_losses = {} if distillation is None else {
        name: tf.keras.metrics.Mean(name=f"{name}_distillation_loss")
        for name in distillation.weights_by_task}

  def call(self, features: Mapping[str, tf.Tensor],
           training: bool = False) -> dict[str, tf.Tensor]:
    query = self.query_tower(features)
    candidate = self.candidate_tower(features)
    outputs = {"query": query, "candidate": candidate}
    outputs.update(self.score(query, candidate, features))
    return outputs

  def score(self, query: tf.Tensor, candidate: tf.Tensor,
            features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return score(self.ranking_heads, self.query_heads, query, candidate,
                 features)

  def compute_loss(self, features, training: bool = False) -> tf.Tensor:
    outputs = self(features, training=training)
    if self.catalog is not None:
      # No id dropout on the negatives: they stand for the catalog served.
      outputs[tasks_lib.CATALOG_CANDIDATES] = self.candidate_tower(
          self.catalog, training=False)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    global_batch = tf.cast(tf.shape(features[F.ITEM_ID])[0] * replicas,
                           tf.float32)
    losses = {t.task_name: t(features, outputs, training=training) /
              global_batch for t in self.tasks}
    total = self.weighting(losses)
    for name, loss in losses.items():
      self.task_losses[name].update_state(loss * replicas)
    if self.distillation is not None:
      soft = self.distillation(features, outputs, self.score)
      for name, loss in soft.items():
        loss /= global_batch
        self.distillation_losses[name].update_state(loss * replicas)
        total += self.distillation.weights_by_task[name] * loss
    self.loss_tracker.update_state(total * replicas)
    return total

  def train_step(self, inputs):
    with tf.GradientTape() as tape:
      loss = self.compute_loss(inputs, training=True)
      if self.losses:
        loss += tf.add_n(self.losses)
    # minimize() scales the loss when the optimizer is a LossScaleOptimizer
    # (mixed precision).
    self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
    return {m.name: m.result() for m in self.metrics}

  def test_step(self, inputs):
    self.compute_loss(inputs, training=False)
    return {m.name: m.result() for m in self.metrics}

  def effective_weights(self) -> dict[str, float]:
    return {t: float(w) for t, w in self.weighting.effective_weights().items()}
