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

from contracts import features as F
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


class LowRankAdapter(tf.keras.layers.Layer):
  """Frozen LM vector -> embedding space through a rank-r bottleneck.

  Parameter-efficient: (lm_dim + dim) * rank weights instead of lm_dim * dim,
  and the language model itself is never updated (its vectors are inputs).
  The nonlinearity lets the adapter pick out the directions of the LM space
  that predict consumption rather than only rotate it.
  """

  def __init__(self, rank: int, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.down = tf.keras.layers.Dense(rank, use_bias=False, dtype="float32")
    self.up = tf.keras.layers.Dense(dim, dtype="float32")

  def call(self, vectors: tf.Tensor) -> tf.Tensor:
    return self.up(tf.nn.gelu(self.down(tf.cast(vectors, tf.float32))))


class TextTable(tf.keras.layers.Layer):
  """LM vectors by item vocabulary index (OOV row zero), frozen.

  The query tower reads the text of the items in a user's history through
  it; a constant of the model, so serving needs no look-up service.
  """

  def __init__(self, vectors, **kwargs):
    super().__init__(**kwargs)
    self._initial = vectors

  def build(self, input_shape):
    self.vectors = self.add_weight(
        name="vectors", shape=self._initial.shape, trainable=False,
        initializer=tf.keras.initializers.Constant(self._initial),
        dtype="float32")
    super().build(input_shape)

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    return tf.gather(self.vectors, ids)


class QueryTower(tf.keras.layers.Layer):
  """User id, user attributes, recent history and the time of the event.

  With `history_modes`, the history's parts (its items and their text) are
  projected twice: once for a history of what came before the event, once
  for one that runs past it (F.HISTORY_AHEAD, absent: before). The first
  predicts what comes next from what came last; the second, what else the
  user likes from items that may postdate the question, which wants other
  weights (trainer/served_history.py gives the figures). Each part enters
  as h * (1 - ahead) and h * ahead, so the query stays linear in the user's
  inputs and the export can still precompute a user term per mode.
  """

  def __init__(self, inputs: inputs_lib.ModelInputs, dim: int,
               item_embedding: IdEmbedding, history_length: int = 0,
               history_encoder: str = "mean", text_table=None,
               text_rank: int = 32, history_modes: bool = False, **kwargs):
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
    # The text of the history's items: what a user likes, in words, which
    # carries over to items the id tables have never seen.
    self.history_length = history_length
    self.text_table = (TextTable(text_table, name="history_text_table")
                       if text_table is not None and inputs.has_history and
                       history_length > 0 else None)
    self.history_text_adapter = (LowRankAdapter(text_rank, dim)
                                 if self.text_table is not None else None)
    self.history_modes = history_modes and self.history is not None

  def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    return self.projection(tf.concat(
        [self.user_inputs(features),
         self.context_inputs(features[F.HOUR], features[F.WEEKDAY])],
        axis=-1))

  # The projection is linear, so the query is a user term plus a context
  # term: kernel rows [:user width] see user_inputs, the rest
  # context_inputs. The export computes the user term once per known user
  # (trainer/export.py), leaving only the time of the request per call.

  def user_inputs(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Everything the query knows of the user, before the projection."""
    parts = [self.user_embedding(features[F.USER_ID])]
    for name, emb in zip(self.attribute_features, self.attribute_embeddings):
      parts.append(emb(features[name]))
    history = []
    if self.history is not None:
      history.append(self.history(features[F.HISTORY]))
    if self.text_table is not None:
      ids, mask, _ = history_lib.last_items(features[F.HISTORY],
                                            self.history_length)
      vectors = self.text_table(ids)  # [B, L, lm]
      weights = tf.cast(mask, tf.float32)[..., None]
      mean = tf.reduce_sum(vectors * weights, axis=1) / tf.maximum(
          tf.reduce_sum(weights, axis=1), 1.0)
      history.append(tf.cast(self.history_text_adapter(mean),
                             parts[0].dtype))
    if self.history_modes:
      ahead = features.get(F.HISTORY_AHEAD)
      if ahead is None:
        ahead = tf.zeros([tf.shape(history[0])[0]])
      ahead = tf.reshape(tf.cast(ahead, history[0].dtype), [-1, 1])
      history = ([h * (1.0 - ahead) for h in history] +
                 [h * ahead for h in history])
    return tf.cast(tf.concat(parts + history, axis=-1), tf.float32)

  def context_inputs(self, hour: tf.Tensor, weekday: tf.Tensor) -> tf.Tensor:
    """The time of the event, before the projection."""
    return tf.cast(tf.concat([self.hour_embedding(hour),
                              self.weekday_embedding(weekday)], axis=-1),
                   tf.float32)

  def split_projection(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(user kernel, context kernel, bias): call() is
    user_inputs @ user kernel + context_inputs @ context kernel + bias."""
    context_width = (self.hour_embedding.output_dim +
                     self.weekday_embedding.output_dim)
    kernel = self.projection.kernel
    user_width = kernel.shape[0] - context_width
    return kernel[:user_width], kernel[user_width:], self.projection.bias


class CandidateTower(tf.keras.layers.Layer):
  """Item id plus the item's multi-valued, numeric and vector features.

  Without LM text: one projection of [id, content features]. With it
  (`inputs.item_text_dim`): the content features and the adapted LM vector
  make a content embedding, and a learned per-dimension gate, which sees
  both embeddings and whether the id and the text are known, mixes it with
  the id embedding: gate * id + (1 - gate) * content. In training, each
  row's id is replaced by the OOV id with probability `id_dropout`, so the
  gate and the content path learn the case of an item without an id, which
  is what every cold item is at serving time.
  """

  def __init__(self, inputs: inputs_lib.ModelInputs, dim: int,
               item_embedding: IdEmbedding, content_features: bool = True,
               text_rank: int = 32, id_dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.item_embedding = item_embedding
    item_sets = inputs.item_sets if content_features else ()
    self.set_features = [v.feature for v in item_sets]
    self.set_embeddings = [PooledEmbedding(v, dim) for v in item_sets]
    self.numeric_features = (list(inputs.item_numeric) if content_features
                             else [])
    self.vector_features = ([name for name, _ in inputs.item_vectors]
                            if content_features else [])
    self.has_text = bool(inputs.item_text_dim)
    self._oov = inputs.item_id.size
    self.id_dropout = id_dropout if self.has_text else 0.0
    if self.has_text:
      self.text_adapter = LowRankAdapter(text_rank, dim)
      self.content_projection = tf.keras.layers.Dense(dim, dtype="float32")
      self.gate = tf.keras.layers.Dense(dim, activation="sigmoid",
                                        dtype="float32")
    else:
      self.projection = tf.keras.layers.Dense(dim, dtype="float32")

  def _content(self, features: Mapping[str, tf.Tensor], dtype) -> list:
    parts = []
    for name, emb in zip(self.set_features, self.set_embeddings):
      parts.append(emb(features[name]))
    if self.numeric_features:
      parts.append(tf.cast(tf.stack(
          [features[f] for f in self.numeric_features], axis=-1), dtype))
    for name in self.vector_features:
      parts.append(tf.cast(features[name], dtype))
    return parts

  def call(self, features: Mapping[str, tf.Tensor],
           training: bool = False) -> tf.Tensor:
    ids = features[F.ITEM_ID]
    if not self.has_text:
      parts = [self.item_embedding(ids)]
      parts += self._content(features, parts[0].dtype)
      return self.projection(tf.concat(parts, axis=-1))
    if training and self.id_dropout > 0:
      drop = tf.random.uniform(tf.shape(ids)) < self.id_dropout
      ids = tf.where(drop, tf.cast(self._oov, ids.dtype), ids)
    id_vec, content, gate = self._gated(ids, features)
    return gate * id_vec + (1.0 - gate) * content

  def id_gate(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """[B, dim]: how much of each dimension of the item's embedding is its
    id's (the rest is its content's). Only with LM text (has_text)."""
    return self._gated(features[F.ITEM_ID], features)[2]

  def _gated(self, ids: tf.Tensor, features: Mapping[str, tf.Tensor]
             ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(id embedding, content embedding, gate) of rows with LM text."""
    id_vec = tf.cast(self.item_embedding(ids), tf.float32)
    has_text = tf.cast(features[F.ITEM_HAS_TEXT], tf.float32)[:, None]
    text = self.text_adapter(features[F.ITEM_TEXT_EMBEDDING]) * has_text
    parts = [tf.cast(p, tf.float32) for p in self._content(features,
                                                           tf.float32)]
    content = self.content_projection(tf.concat(parts + [text], axis=-1))
    known = tf.cast(ids < self._oov, tf.float32)[:, None]
    gate = self.gate(tf.concat([id_vec, content, known, has_text], axis=-1))
    return id_vec, content, gate
