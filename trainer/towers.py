"""Query and candidate towers: transformed features to embeddings.

Each tower concatenates the embeddings of its features and projects them to
the shared embedding size. Which features there are comes from
`trainer.inputs` (the transform's output), never from a dataset's column
names. Every id embedding has an out-of-vocabulary row (index == vocabulary
size) that unknown ids fall into; a candidate tower with content features
(categories, title tokens, tags, year, item vectors) still gives an unseen
item a meaningful embedding, which is what lets cold items be scored at all,
and a query tower with a history gives a user the id table has never seen a
meaningful embedding from what they consumed.

The item id table is one layer shared by the candidate tower and the query
tower's history. The projections are float32 even under mixed precision: the
embeddings are compared across batches, exported as a served index, and fed to
softmaxes, where float16 loses too much.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from components import features as F
from trainer import history as history_lib
from trainer import inputs as inputs_lib


class IdEmbedding(tf.keras.layers.Embedding):
  """Embedding of a vocabulary-indexed feature, the OOV row last.

  Remembers its vocabulary so that a warm start can move rows by token when
  the vocabulary changed between runs (trainer.warm_start).
  """

  def __init__(self, vocab: inputs_lib.Vocabulary, dim: int, **kwargs):
    super().__init__(vocab.rows, dim, **kwargs)
    self.vocab_name = vocab.vocab_name


class PooledEmbedding(tf.keras.layers.Layer):
  """Mean of the embeddings of a multi-valued (sparse) feature; 0 when empty."""

  def __init__(self, vocab: inputs_lib.Vocabulary, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.vocab_name = vocab.vocab_name
    self._rows = vocab.rows
    self._dim = dim

  def build(self, input_shape):
    self.embeddings = self.add_weight(
        name="embeddings", shape=(self._rows, self._dim),
        initializer="uniform")
    super().build(input_shape)

  def call(self, ids: tf.SparseTensor) -> tf.Tensor:
    return tf.nn.safe_embedding_lookup_sparse(
        tf.cast(self.embeddings, self.compute_dtype), ids, None,
        combiner="mean")


class QueryTower(tf.keras.layers.Layer):
  """User id, user attributes, recent history and the time of the event."""

  def __init__(self, inputs: inputs_lib.ModelInputs, dim: int,
               item_embedding: IdEmbedding, history_length: int = 0,
               history_encoder: str = "mean", **kwargs):
    super().__init__(**kwargs)
    self.user_embedding = IdEmbedding(inputs.user_id, dim)
    self.attribute_features = [v.feature for v in inputs.user_attributes]
    self.attribute_embeddings = [
        IdEmbedding(v, dim) for v in inputs.user_attributes]
    self.history = (
        history_lib.HistoryEncoder(item_embedding, history_length,
                                   history_encoder)
        if inputs.has_history and history_length > 0 else None)
    self.hour_embedding = tf.keras.layers.Embedding(F.HOURS_PER_DAY, 4)
    self.weekday_embedding = tf.keras.layers.Embedding(F.DAYS_PER_WEEK, 4)
    self.projection = tf.keras.layers.Dense(dim, dtype="float32")

  def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    parts = [self.user_embedding(features[F.USER_ID])]
    for name, emb in zip(self.attribute_features, self.attribute_embeddings):
      parts.append(emb(features[name]))
    if self.history is not None:
      parts.append(self.history(features[F.HISTORY]))
    parts.append(self.hour_embedding(features[F.HOUR]))
    parts.append(self.weekday_embedding(features[F.WEEKDAY]))
    return self.projection(tf.concat(parts, axis=-1))


class CandidateTower(tf.keras.layers.Layer):
  """Item id plus the item's multi-valued, numeric and vector features."""

  def __init__(self, inputs: inputs_lib.ModelInputs, dim: int,
               item_embedding: IdEmbedding, **kwargs):
    super().__init__(**kwargs)
    self.item_embedding = item_embedding
    self.set_features = [v.feature for v in inputs.item_sets]
    self.set_embeddings = [PooledEmbedding(v, dim) for v in inputs.item_sets]
    self.numeric_features = list(inputs.item_numeric)
    self.vector_features = [name for name, _ in inputs.item_vectors]
    self.projection = tf.keras.layers.Dense(dim, dtype="float32")

  def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    parts = [self.item_embedding(features[F.ITEM_ID])]
    for name, emb in zip(self.set_features, self.set_embeddings):
      parts.append(emb(features[name]))
    dtype = parts[0].dtype
    if self.numeric_features:
      parts.append(tf.cast(tf.stack(
          [features[f] for f in self.numeric_features], axis=-1), dtype))
    for name in self.vector_features:
      parts.append(tf.cast(features[name], dtype))
    return self.projection(tf.concat(parts, axis=-1))
