"""tf.data input from Transform's output: parallel reads, parse, prefetch."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from components import artifacts
from components import features as F


def make_dataset(examples_uri: str, split: str,
                 feature_spec: Mapping[str, Any], batch_size: int,
                 shuffle: bool, seed: int = 0) -> tf.data.Dataset:
  """Batches of parsed transformed examples from one split."""
  files = tf.data.Dataset.list_files(
      artifacts.split_pattern(examples_uri, split), shuffle=False)
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP",
                               num_parallel_reads=tf.data.AUTOTUNE)
  if shuffle:
    ds = ds.shuffle(50_000, seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size)
  ds = ds.map(lambda x: tf.io.parse_example(x, dict(feature_spec)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def training_statistics(dataset: tf.data.Dataset,
                        item_vocab_size: int) -> dict[str, Any]:
  """One pass over the train split: item frequencies and the mean rating.

  The frequencies give the retrieval task's logQ correction; the mean rating
  starts the rating head's bias where the answer is, instead of at zero.
  """
  counts = np.zeros(item_vocab_size + 1, np.float64)
  rating_sum = 0.0
  rating_n = 0.0
  rows = 0
  for batch in dataset:
    ids = batch[F.ITEM_ID].numpy()
    counts += np.bincount(ids, weights=batch[F.RETRIEVAL_WEIGHT].numpy(),
                          minlength=len(counts))
    w = batch[F.RATING_WEIGHT].numpy()
    rating_sum += float((batch[F.RATING].numpy() * w).sum())
    rating_n += float(w.sum())
    rows += len(ids)
  probabilities = (counts + 1.0) / (counts.sum() + len(counts))
  return {
      "rows": rows,
      "item_probabilities": probabilities.astype(np.float32),
      "mean_rating": rating_sum / rating_n if rating_n else 0.0,
      "rated_rows": int(rating_n),
  }
