"""Tasks: each owns one loss and its metrics, as TFRS tasks do.

A task reads its labels from the transformed features and its prediction from
the model's outputs, and returns its loss summed over the rows of the
replica's batch; the model divides by the global batch, so a task's loss is a
mean per example whatever the number of replicas, and weights compare like
with like. Kinds, as declared in the config (pipeline.config):

- retrieval: in-batch sampled softmax (TFRS Retrieval). Queries and
  candidates are the consumed rows of the batch; the candidates of every
  replica are gathered, so each query sees the negatives a single device
  would see for the same global batch. Logits are divided by a temperature
  and corrected by log Q, the item's share of training positives (Yi et al.,
  2019): in-batch negatives over-sample popular items, which would otherwise
  be pushed down for being popular. A repeat of the positive's id elsewhere
  in the batch is no negative (accidental-hit removal).
- regression: MSE or Huber on a scalar label (e.g. the rating).
- binary: binary cross-entropy on a logit (e.g. like, click).
- multilabel: sigmoid cross-entropy on several labels at once (e.g. the
  categories of the item the user consumes, predicted from the query side).

Rows without the label (weight 0) contribute nothing. `serve` maps a raw
prediction to what a client receives, under `output_name`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping, Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from contracts import features as F
from trainer import distribution

_SUM = tf.keras.losses.Reduction.SUM


@contextlib.contextmanager
def _float32_policy():
  """Losses and metrics in float32 under mixed precision: TFRS tasks (and the
  layers they create while called) take the global policy, which would cast
  their inputs to float16."""
  policy = tf.keras.mixed_precision.global_policy()
  if policy.compute_dtype == "float32":
    yield
    return
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy(policy)


def _float32(make):
  with _float32_policy():
    return make()


class Task(tf.keras.layers.Layer):
  """A named loss with its metrics."""

  kind = ""

  def __init__(self, config: Any, **kwargs):
    super().__init__(name=f"{config.name}_task", dtype="float32", **kwargs)
    self.task_name = config.name
    self.task_config = config  # what the export's model card describes

  @property
  def output_name(self) -> str:
    """The serving output of this task's prediction."""
    return self.task_name

  def serve(self, prediction: tf.Tensor) -> tf.Tensor:
    return prediction

  def call(self, features: Mapping[str, tf.Tensor],
           outputs: Mapping[str, tf.Tensor], training: bool = False
           ) -> tf.Tensor:
    raise NotImplementedError


def _weights(features: Mapping[str, tf.Tensor], key: Optional[str],
             label: tf.Tensor) -> tf.Tensor:
  """The rows' weights for a label: its weight feature, or all ones."""
  if key is None:
    return tf.ones_like(label, tf.float32)
  return tf.cast(features[key], tf.float32)


class RetrievalTask(Task):
  """In-batch softmax over gathered candidates, logQ-corrected."""

  kind = "retrieval"

  def __init__(self, config: Any, item_probabilities: np.ndarray,
               catalog_rows: Optional[np.ndarray] = None, **kwargs):
    """catalog_rows: with `negatives: catalog`, each item index's row in
    the model's catalog table (trainer/catalog.py), -1 if it has none; a
    model rebuilt only to load weights (no loss computed) may go without."""
    super().__init__(config, **kwargs)
    self._negatives = config.negatives
    self._catalog_rows = (None if catalog_rows is None else
                          tf.constant(catalog_rows, tf.int64))
    self._temperature = config.temperature
    self._log_q = config.logq_correction
    # Sampling probability of each item index as an in-batch candidate.
    self._item_probabilities = tf.constant(item_probabilities, tf.float32)
    batch_metrics = []
    if "batch_top_10" in config.metrics:
      batch_metrics.append(tf.keras.metrics.TopKCategoricalAccuracy(
          10, name=f"{config.name}_batch_top_10"))
    self.task = _float32(lambda: tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True,
                                                     reduction=_SUM),
        batch_metrics=batch_metrics, temperature=config.temperature,
        remove_accidental_hits=config.remove_accidental_hits))

  def log_sampling_probability(self, ids: tf.Tensor) -> Optional[tf.Tensor]:
    """log Q of candidate ids, what the logits lose (None: no correction)."""
    if not self._log_q:
      return None
    return tf.math.log(tf.gather(self._item_probabilities, ids))

  def call(self, features, outputs, training=False):
    query = tf.cast(outputs["query"], tf.float32)
    candidate = tf.cast(outputs["candidate"], tf.float32)
    ids = features[F.ITEM_ID]
    positive = features[F.RETRIEVAL_WEIGHT] > 0
    if self._negatives == "catalog":
      if self._catalog_rows is None:
        raise ValueError(f"{self.task_name}: catalog negatives need the "
                         "catalog table (trainer/catalog.py)")
      return self._catalog_softmax(
          query, candidate, tf.cast(outputs[CATALOG_CANDIDATES], tf.float32),
          tf.gather(self._catalog_rows, ids), tf.cast(positive, tf.float32))
    # Every replica's candidates, this replica's first: TFRS labels query i
    # with candidate i.
    candidate, ids, candidate_positive = gather_replicas(
        candidate, ids, tf.cast(positive, tf.float32))
    # A shown-but-skipped item is neither a query nor a negative: negatives
    # would otherwise come far more often from impressions than the logQ
    # correction (positive frequencies) assumes.
    mask = tf.broadcast_to(candidate_positive[None, :] > 0,
                           [tf.shape(query)[0], tf.shape(candidate)[0]])
    with _float32_policy():
      loss = self.task(
          query, candidate, sample_weight=tf.cast(positive, tf.float32),
          candidate_sampling_probability=(
              tf.gather(self._item_probabilities, ids) if self._log_q
              else None),
          candidate_ids=ids, compute_metrics=False,
          compute_batch_metrics=not training, score_mask=mask)
    return loss  # (a return inside `with` defeats AutoGraph)

  def _catalog_softmax(self, query: tf.Tensor, candidate: tf.Tensor,
                       catalog: tf.Tensor, rows: tf.Tensor,
                       weight: tf.Tensor) -> tf.Tensor:
    """Softmax over the whole catalog, summed over the rows' weights.

    The positive's logit is the row's own candidate embedding (it went
    through the tower with this row's id dropout); the rest of the
    catalog's embeddings are the negatives. A row whose item has no
    catalog row (-1) only competes with the catalog.
    """
    logits = tf.matmul(query, catalog, transpose_b=True)
    own = tf.reduce_sum(query * candidate, axis=-1)
    is_positive = tf.one_hot(rows, tf.shape(catalog)[0], on_value=True,
                             off_value=False)
    logits = tf.where(is_positive, own[:, None], logits)
    # The row's own logit joins as an extra column when it has no row.
    logits = tf.concat([logits, tf.where(rows < 0, own, -1e9)[:, None]],
                       axis=-1) / self._temperature
    labels = tf.where(rows < 0, tf.cast(tf.shape(catalog)[0], tf.int64),
                      rows)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    return tf.reduce_sum(weight * loss)


# The model's output under which a catalog-negatives retrieval task finds
# the candidate tower's embeddings of the whole catalog table.
CATALOG_CANDIDATES = "catalog_candidates"


def gather_replicas(*values: tf.Tensor) -> list[tf.Tensor]:
  """Concatenates each value over the replicas, this replica's rows first.

  Gradients flow back to the replica that computed each row. Replicas may
  hold different numbers of rows (the last batch of an epoch).
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return list(values)
  with distribution.replica_device():
    # A step's inputs carry no device under MultiWorkerMirroredStrategy,
    # which all_gather needs (distribution.replica_device).
    values = tuple(v if v.device else tf.identity(v) for v in values)
  sizes = ctx.all_gather(tf.shape(values[0])[:1], axis=0)
  start = tf.reduce_sum(sizes[:ctx.replica_id_in_sync_group])
  out = []
  for value in values:
    gathered = ctx.all_gather(value, axis=0)
    out.append(tf.concat([gathered[start:], gathered[:start]], axis=0))
  return out


class _ScalarLabelTask(Task):
  """A TFRS Ranking task (`self.task`) on one scalar label per row.

  Subclasses set `self._label` and `self._weight` (features.py names).
  """

  def call(self, features, outputs, training=False):
    label = tf.cast(features[self._label], tf.float32)
    return self.task(
        labels=label[:, None],
        predictions=tf.cast(outputs[self.task_name], tf.float32)[:, None],
        sample_weight=_weights(features, self._weight, label))


class RegressionTask(_ScalarLabelTask):
  """MSE or Huber on a scalar label; RMSE / MAE metrics."""

  kind = "regression"

  def __init__(self, config: Any, **kwargs):
    super().__init__(config, **kwargs)
    self._label, self._weight = F.REGRESSION_LABELS[config.label]
    loss = (tf.keras.losses.MeanSquaredError(reduction=_SUM)
            if config.loss == "mse" else
            tf.keras.losses.Huber(config.huber_delta, reduction=_SUM))
    metrics = {
        "rmse": lambda: tf.keras.metrics.RootMeanSquaredError(
            f"{config.name}_rmse"),
        "mae": lambda: tf.keras.metrics.MeanAbsoluteError(
            f"{config.name}_mae"),
    }
    self.task = _float32(lambda: tfrs.tasks.Ranking(
        loss=loss, metrics=[metrics[m]() for m in config.metrics]))


class BinaryTask(_ScalarLabelTask):
  """Binary cross-entropy on a logit; AUC / accuracy metrics."""

  kind = "binary"

  def __init__(self, config: Any, **kwargs):
    super().__init__(config, **kwargs)
    self._label, self._weight = F.BINARY_LABELS[config.label]
    metrics = {
        "auc": lambda: tf.keras.metrics.AUC(from_logits=True,
                                            name=f"{config.name}_auc"),
        "accuracy": lambda: tf.keras.metrics.BinaryAccuracy(
            f"{config.name}_accuracy", threshold=0.0),
    }
    self.task = _float32(lambda: tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True,
                                                reduction=_SUM),
        metrics=[metrics[m]() for m in config.metrics]))

  @property
  def output_name(self) -> str:
    return f"p_{self.task_name}"

  def serve(self, prediction):
    return tf.sigmoid(prediction)


class MultiLabelTask(Task):
  """Sigmoid cross-entropy over the labels of the event's item."""

  kind = "multilabel"

  def __init__(self, config: Any, num_labels: int, **kwargs):
    super().__init__(config, **kwargs)
    self._label, _ = F.MULTILABEL_LABELS[config.label]
    self.num_labels = num_labels
    self.task = _float32(lambda: tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True,
                                                reduction=_SUM),
        metrics=[tf.keras.metrics.AUC(from_logits=True,
                                      name=f"{config.name}_auc")
                 for m in config.metrics if m == "auc"]))

  @property
  def output_name(self) -> str:
    return f"p_{self.task_name}"

  def serve(self, prediction):
    return tf.sigmoid(prediction)

  def call(self, features, outputs, training=False):
    labels = tf.sparse.to_indicator(features[self._label], self.num_labels)
    labels = tf.cast(labels, tf.float32)
    # Consumed items with at least one label: interest, not impressions.
    weight = tf.cast(features[F.RETRIEVAL_WEIGHT] > 0, tf.float32) * tf.cast(
        tf.reduce_any(labels > 0, axis=-1), tf.float32)
    return self.task(
        labels=labels,
        predictions=tf.cast(outputs[self.task_name], tf.float32),
        sample_weight=weight)


def build(config: Any, item_probabilities: np.ndarray,
          num_labels: Mapping[str, int],
          catalog_rows: Optional[np.ndarray] = None) -> Task:
  """The task a config entry declares (pipeline.config task classes)."""
  if config.kind == "retrieval":
    return RetrievalTask(
        config, item_probabilities,
        catalog_rows if config.negatives == "catalog" else None)
  if config.kind == "regression":
    return RegressionTask(config)
  if config.kind == "binary":
    return BinaryTask(config)
  if config.kind == "multilabel":
    return MultiLabelTask(config, num_labels[config.name])
  raise ValueError(f"unknown task kind {config.kind!r}")
