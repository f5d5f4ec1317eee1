"""The user's recent history: the last N consumed items as one vector.

What a user watched last says more about what they watch next than their
long-run average taste, and it is known for users the id embedding has barely
seen. The history's items are embedded with the candidate tower's item id
table (one table, so an item's meaning is learned from both sides), then
pooled:

- mean: the masked mean of the item embeddings; cheap and robust.
- attention: a learned query attends over the items, each with an embedding
  of its recency (0 = the latest), so the model can weigh the last few items
  more than a mean can. (The query side of a two-tower model cannot see the
  candidate, so this is self-attention pooling, not DIN's target attention.)

An empty history (a new user, a first event) gives the zero vector.
"""

from __future__ import annotations

import tensorflow as tf


def last_items(history: tf.SparseTensor, length: int
               ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The last `length` ids of each row, oldest first, right-padded.

  Returns:
    ids [B, length] (0 where padded), mask [B, length] (True where an id is),
    recency [B, length] (0 for the latest item of the row).
  """
  rows = tf.RaggedTensor.from_sparse(history)[:, -length:]
  ids = rows.to_tensor(default_value=0, shape=[None, length])
  counts = tf.cast(rows.row_lengths(), tf.int32)
  mask = tf.sequence_mask(counts, length)
  recency = tf.maximum(counts[:, None] - 1 - tf.range(length)[None, :], 0)
  return ids, mask, recency


class HistoryEncoder(tf.keras.layers.Layer):
  """Pools the item embeddings of the last `length` history items."""

  def __init__(self, item_embedding: tf.keras.layers.Layer, length: int,
               kind: str = "mean", **kwargs):
    super().__init__(**kwargs)
    if kind not in ("mean", "attention"):
      raise ValueError(f"unknown history encoder {kind!r}")
    self.item_embedding = item_embedding  # shared with the candidate tower
    self.length = length
    self.kind = kind

  def build(self, input_shape):
    dim = self.item_embedding.output_dim
    if self.kind == "attention":
      self.recency_embedding = tf.keras.layers.Embedding(self.length, dim)
      self.keys = tf.keras.layers.Dense(dim, use_bias=False)
      self.query = self.add_weight(
          name="query", shape=(dim,),
          initializer=tf.keras.initializers.RandomNormal(stddev=0.1))
    super().build(input_shape)

  def call(self, history: tf.SparseTensor) -> tf.Tensor:
    ids, mask, recency = last_items(history, self.length)
    items = self.item_embedding(ids)  # [B, L, d]
    weights = tf.cast(mask, items.dtype)
    if self.kind == "mean":
      total = tf.reduce_sum(items * weights[..., None], axis=1)
      count = tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)
      return total / count
    x = items + self.recency_embedding(recency)
    scores = tf.einsum("bld,d->bl", self.keys(x), tf.cast(self.query, x.dtype))
    scores = scores / tf.sqrt(tf.cast(tf.shape(x)[-1], scores.dtype))
    # Softmax in float32 (mixed precision) over the real items only.
    scores = tf.where(mask, tf.cast(scores, tf.float32), -1e9)
    attention = tf.nn.softmax(scores, axis=-1) * tf.cast(mask, tf.float32)
    pooled = tf.einsum("bl,bld->bd", tf.cast(attention, x.dtype), x)
    return pooled
