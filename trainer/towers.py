"""Query and candidate towers: raw ids and side features to embeddings.

Each tower concatenates the embeddings of its features and projects them to
the shared embedding size. The id embedding has an out-of-vocabulary row
(index == vocabulary size) that unknown ids fall into; a candidate tower with
content features (categories, title tokens, year) still gives an unseen item a
meaningful embedding, which is what lets cold items be scored at all.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from components import features as F


class PooledEmbedding(tf.keras.layers.Layer):
  """Mean of the embeddings of a multi-valued (sparse) feature; 0 when empty."""

  def __init__(self, vocab_size: int, dim: int, **kwargs):
    super().__init__(**kwargs)
    self._vocab_size = vocab_size
    self._dim = dim

  def build(self, input_shape):
    self.embeddings = self.add_weight(
        name="embeddings", shape=(self._vocab_size, self._dim),
        initializer="uniform")
    super().build(input_shape)

  def call(self, ids: tf.SparseTensor) -> tf.Tensor:
    return tf.nn.safe_embedding_lookup_sparse(
        self.embeddings, ids, None, combiner="mean")


class QueryTower(tf.keras.layers.Layer):
  """User id plus categorical user attributes."""

  def __init__(self, user_vocab_size: int,
               attribute_vocab_sizes: Mapping[str, int], dim: int, **kwargs):
    super().__init__(**kwargs)
    self.user_embedding = tf.keras.layers.Embedding(user_vocab_size + 1, dim)
    self.attributes: Sequence[str] = sorted(attribute_vocab_sizes)
    self.attribute_embeddings = [
        tf.keras.layers.Embedding(attribute_vocab_sizes[name] + 1, dim)
        for name in self.attributes
    ]
    self.projection = tf.keras.layers.Dense(dim)

  def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    parts = [self.user_embedding(features[F.USER_ID])]
    for name, emb in zip(self.attributes, self.attribute_embeddings):
      parts.append(emb(features[F.user_attribute(name)]))
    return self.projection(tf.concat(parts, axis=-1))


class CandidateTower(tf.keras.layers.Layer):
  """Item id plus categories, title tokens and release year."""

  def __init__(self, item_vocab_size: int, category_vocab_size: int,
               title_vocab_size: int, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.item_embedding = tf.keras.layers.Embedding(item_vocab_size + 1, dim)
    self.category_embedding = PooledEmbedding(category_vocab_size + 1, dim)
    self.title_embedding = PooledEmbedding(title_vocab_size + 1, dim)
    self.projection = tf.keras.layers.Dense(dim)

  def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    year = tf.stack([features[F.YEAR_Z], features[F.YEAR_KNOWN]], axis=-1)
    return self.projection(tf.concat([
        self.item_embedding(features[F.ITEM_ID]),
        self.category_embedding(features[F.CATEGORIES]),
        self.title_embedding(features[F.TITLE_TOKENS]),
        year,
    ], axis=-1))


class RankingHeads(tf.keras.layers.Layer):
  """Shared-bottom ranking: one MLP over the pair, one output per task.

  Input is the query and candidate embeddings (shared with retrieval), their
  element-wise product, and the time-of-event context. Outputs are the
  predicted rating and the like logit.
  """

  def __init__(self, hidden_units: Sequence[int], dim: int,
               rating_bias: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.hour_embedding = tf.keras.layers.Embedding(F.HOURS_PER_DAY, 4)
    self.weekday_embedding = tf.keras.layers.Embedding(F.DAYS_PER_WEEK, 4)
    self.shared = tf.keras.Sequential(
        [tf.keras.layers.Dense(u, activation="relu") for u in hidden_units])
    self.rating = tf.keras.layers.Dense(
        1, bias_initializer=tf.keras.initializers.Constant(rating_bias))
    self.like = tf.keras.layers.Dense(1)
    del dim

  def call(self, query: tf.Tensor, candidate: tf.Tensor, hour: tf.Tensor,
           weekday: tf.Tensor) -> dict[str, tf.Tensor]:
    x = tf.concat([query, candidate, query * candidate,
                   self.hour_embedding(hour),
                   self.weekday_embedding(weekday)], axis=-1)
    h = self.shared(x)
    return {"rating": tf.squeeze(self.rating(h), -1),
            "like_logit": tf.squeeze(self.like(h), -1)}
