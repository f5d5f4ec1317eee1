"""tf.data input from Transform's output, and what one pass over it tells.

Input: files read in parallel, shuffled records, batched and then parsed in
parallel (parse_example on a batch is far cheaper than per record), the
next batches prefetched while the model trains on this one.

Statistics (one pass over the train split): item frequencies for the
retrieval task's logQ correction, and each scalar label's weighted mean to
start the output biases where the answer is. The users' latest histories
(what serving puts in the query tower) come from ExampleGen's train split.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from contracts import artifacts
from contracts import features as F
from contracts import records as r


def make_dataset(examples_uri: str, split: str,
                 feature_spec: Mapping[str, Any], batch_size: int,
                 shuffle: bool, seed: int = 0, repeat: bool = False,
                 drop_remainder: bool = False,
                 drop_pairs: Optional[tuple[np.ndarray, int]] = None
                 ) -> tf.data.Dataset:
  """Batches of parsed transformed examples from one split.

  Args:
    drop_pairs: (keys, modulus): rows whose user index * modulus + item
      index is one of the keys are left out (a validation slice,
      trainer/validation_slice.py).
  """
  files = tf.data.Dataset.list_files(
      artifacts.split_pattern(examples_uri, split), shuffle=False)
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP",
                               num_parallel_reads=tf.data.AUTOTUNE)
  if drop_pairs is not None and len(drop_pairs[0]):
    ds = ds.filter(_keep_row(*drop_pairs))
  if shuffle:
    ds = ds.shuffle(50_000, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(lambda x: tf.io.parse_example(x, dict(feature_spec)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  # Several workers: split batches, not files (a split may be one file).
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _keep_row(keys: np.ndarray, modulus: int):
  """A record predicate: False for the rows of the given (user, item) keys."""
  dropped = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          tf.constant(keys, tf.int64), tf.ones([len(keys)], tf.int64)), 0)
  spec = {F.USER_ID: tf.io.FixedLenFeature([], tf.int64),
          F.ITEM_ID: tf.io.FixedLenFeature([], tf.int64)}

  def keep(record):
    ids = tf.io.parse_single_example(record, spec)
    return dropped.lookup(ids[F.USER_ID] * modulus + ids[F.ITEM_ID]) == 0

  return keep


def training_statistics(dataset: tf.data.Dataset, item_vocab_size: int,
                        labels: Mapping[str, tuple[str, Any]] = (
                            )) -> dict[str, Any]:
  """One pass over the train split.

  Args:
    dataset: batches of the transformed train split.
    item_vocab_size: size of the item vocabulary (without OOV).
    labels: name -> (label feature, weight feature or None) of the scalar
      labels whose mean is wanted.

  Returns:
    rows, item_probabilities [vocab + 1] (smoothed share of training
    positives), label_means {name: weighted mean}, label_stds {name:
    weighted standard deviation}, label_counts.
  """
  counts = np.zeros(item_vocab_size + 1, np.float64)
  sums = collections.defaultdict(float)
  squares = collections.defaultdict(float)
  weights = collections.defaultdict(float)
  rows = 0
  for batch in dataset:
    ids = batch[F.ITEM_ID].numpy()
    counts += np.bincount(ids, weights=batch[F.RETRIEVAL_WEIGHT].numpy(),
                          minlength=len(counts))
    for name, (label, weight) in dict(labels).items():
      y = batch[label].numpy().astype(np.float64)
      w = (batch[weight].numpy() if weight else np.ones_like(y))
      sums[name] += float((y * w).sum())
      squares[name] += float((y * y * w).sum())
      weights[name] += float(w.sum())
    rows += len(ids)
  probabilities = (counts + 1.0) / (counts.sum() + len(counts))
  return {
      "rows": rows,
      "item_probabilities": probabilities.astype(np.float32),
      "label_means": {n: sums[n] / weights[n] if weights[n] else 0.0
                      for n in dict(labels)},
      "label_stds": {n: math.sqrt(max(
          squares[n] / weights[n] - (sums[n] / weights[n]) ** 2, 0.0))
                     if weights[n] else 1.0 for n in dict(labels)},
      "label_counts": {n: int(weights[n]) for n in dict(labels)},
  }


def latest_histories(examples_uri: str, length: int,
                     splits: Sequence[str] = (artifacts.TRAIN,
                                              artifacts.VALIDATION)
                     ) -> dict[str, list[str]]:
  """Each user's last `length` consumed items of `splits` (by default all
  before the eval split: train, and validation when there is one), oldest
  first.

  Ordered as ExampleGen orders a user's events (timestamp, then item id), so
  a user's served history is the history their next event would have had.
  """
  return latest_histories_with_ends(examples_uri, length, splits)[0]


def latest_histories_with_ends(
    examples_uri: str, length: int,
    splits: Sequence[str] = (artifacts.TRAIN, artifacts.VALIDATION)
) -> tuple[dict[str, list[str]], dict[str, int]]:
  """(latest_histories, each of those users' last history event's
  timestamp): the export tells a request that comes before that time from
  one after it (F.HISTORY_AHEAD)."""
  spec = {r.USER_ID: tf.io.FixedLenFeature([], tf.string),
          r.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
          r.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
          r.CLICK: tf.io.FixedLenFeature([], tf.int64, default_value=1)}
  files = [f for split in artifacts.split_names(examples_uri)
           if split in splits
           for f in artifacts.split_files(examples_uri, split)]
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192)
  events = collections.defaultdict(list)
  for b in ds.map(lambda x: tf.io.parse_example(x, spec)):
    keep = b[r.CLICK].numpy() > 0
    for u, i, t in zip(b[r.USER_ID].numpy()[keep], b[r.ITEM_ID].numpy()[keep],
                       b[r.TIMESTAMP].numpy()[keep]):
      events[u.decode()].append((int(t), i.decode()))
  if length <= 0:
    return {}, {}
  # By user, so the export does not depend on the order Beam wrote rows in.
  latest = {u: sorted(e)[-length:] for u, e in sorted(events.items())}
  return ({u: [i for _, i in e] for u, e in latest.items()},
          {u: e[-1][0] for u, e in latest.items()})


def scalar_labels(task_configs: Sequence[Any]) -> dict[str, tuple[str, Any]]:
  """The (label, weight) features of the config's regression/binary tasks."""
  out = {}
  for t in task_configs:
    if t.kind == "regression":
      out[t.name] = F.REGRESSION_LABELS[t.label]
    elif t.kind == "binary":
      out[t.name] = F.BINARY_LABELS[t.label]
  return out
