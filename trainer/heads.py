"""Task heads: what turns shared representations into one output per task.

- RankingHeads score a (user, item) pair for the ranking tasks (rating, like,
  click, ...). Their input is the query and candidate embeddings (shared with
  retrieval: the ranking heads refine what retrieval learned rather than
  learning a second representation), their element-wise product and the time
  of the event; the shared layers (trainer.shared_layers) map it to one
  representation per task, and each task has its own small tower and output.
- QueryHeads predict from the query embedding alone: a multi-label task such
  as the categories of what the user consumes next (their interest). Reading
  only the query side keeps the item's own features out of its input, and
  its gradient shapes the query tower that retrieval uses.

Outputs are raw (a rating, a logit); tasks (trainer.tasks) decide what a
served value is. Output layers are float32 under mixed precision.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from contracts import features as F
from trainer import shared_layers as shared_lib


class RankingHeads(tf.keras.layers.Layer):
  """Pair features -> shared layers -> per-task tower and output."""

  def __init__(self, shared: tf.keras.layers.Layer,
               output_biases: Mapping[str, float],
               tower_units: Sequence[int] = (), **kwargs):
    super().__init__(**kwargs)
    self.task_names = list(output_biases)
    self.hour_embedding = tf.keras.layers.Embedding(F.HOURS_PER_DAY, 4)
    self.weekday_embedding = tf.keras.layers.Embedding(F.DAYS_PER_WEEK, 4)
    self.shared = shared
    self.towers = {t: shared_lib.mlp(tower_units) for t in self.task_names}
    # Started where the answer is on average (mean rating, base rate's log
    # odds), so early steps learn structure instead of the label's mean.
    self.output_layers = {
        t: tf.keras.layers.Dense(
            1, dtype="float32",
            bias_initializer=tf.keras.initializers.Constant(b))
        for t, b in output_biases.items()}

  def pair_inputs(self, query: tf.Tensor, candidate: tf.Tensor,
                  hour: tf.Tensor, weekday: tf.Tensor) -> tf.Tensor:
    """What the shared layers read for a (query, candidate, time) row."""
    dtype = self.hour_embedding.compute_dtype
    query = tf.cast(query, dtype)
    candidate = tf.cast(candidate, dtype)
    return tf.concat([query, candidate, query * candidate,
                      self.hour_embedding(hour),
                      self.weekday_embedding(weekday)], axis=-1)

  def gate_weights(self, query: tf.Tensor, candidate: tf.Tensor,
                   hour: tf.Tensor, weekday: tf.Tensor
                   ) -> dict[str, tf.Tensor]:
    """Each task's [B, experts] mixture weights (MMoE, PLE's last level);
    {} for a shared bottom, which has no gates."""
    if not hasattr(self.shared, "gate_weights"):
      return {}
    return self.shared.gate_weights(
        self.pair_inputs(query, candidate, hour, weekday))

  def call(self, query: tf.Tensor, candidate: tf.Tensor, hour: tf.Tensor,
           weekday: tf.Tensor) -> dict[str, tf.Tensor]:
    shared = self.shared(self.pair_inputs(query, candidate, hour, weekday))
    return {t: tf.squeeze(self.output_layers[t](self.towers[t](shared[t])), -1)
            for t in self.task_names}


class QueryHeads(tf.keras.layers.Layer):
  """One linear multi-label output per task, on the query embedding."""

  def __init__(self, num_labels: Mapping[str, int], **kwargs):
    super().__init__(**kwargs)
    self.output_layers = {t: tf.keras.layers.Dense(n, dtype="float32")
                    for t, n in num_labels.items()}

  def call(self, query: tf.Tensor) -> dict[str, tf.Tensor]:
    return {t: layer(query) for t, layer in self.output_layers.items()}
