"""Readers of the pipeline's TFRecord artifacts, for the steps downstream.

The Trainer, the Evaluator, catalog refresh and the tests read what
ExampleGen and the TextEmbedder wrote through these functions. They need
TensorFlow (tf.Example over gzip TFRecords) but never Beam, the source
readers or an encoder, so a module that reads an artifact does not depend
on how it was made: editing a source reader leaves the Trainer's code
version, and so its cache entry, unchanged.
"""

from __future__ import annotations

import glob
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from components import schema
from contracts import artifacts
from contracts import records as r


def read_examples(artifact_uri: str, split: str) -> Iterable[bytes]:
  """Yields serialized records of one split (for tests and small tables)."""
  files = artifacts.split_files(artifact_uri, split)
  for rec in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    yield rec.numpy()


def read_catalog(catalog_uri: str,
                 user_features: Sequence[str] = ()) -> tuple[dict, dict]:
  """Loads the item catalog and user profiles as column lists (small
  tables), sorted by id.

  Sorted because Beam writes rows in whatever order its bundles finished:
  two runs on the same data (one on a busier machine) wrote the catalog in
  different orders, and the row order decides which of two equally scored
  items top-k returns first (cold items share the out-of-vocabulary id
  embedding, and popularity ties are common), so the same model recommended
  differently. Sorted, equal artifacts read back equal.
  """

  def columns(split: str, spec: Mapping[str, Any]) -> dict[str, list]:
    out = {k: [] for k in spec}
    files = artifacts.split_files(catalog_uri, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
    for batch in ds.map(lambda x: tf.io.parse_example(x, spec)):
      for key, value in batch.items():
        if isinstance(value, tf.SparseTensor):
          rows = tf.RaggedTensor.from_sparse(value).to_list()
          out[key].extend([[v.decode() for v in row] for row in rows])
        elif value.dtype == tf.string:
          out[key].extend(v.decode() for v in value.numpy())
        else:
          out[key].extend(int(v) for v in value.numpy())
    return out

  items = columns(artifacts.ITEMS, schema.item_feature_spec())
  users = columns(artifacts.USERS, schema.user_feature_spec(user_features))
  for name in user_features:
    users[name] = users.pop(schema.user_feature_key(name))
  return _sorted_by(items, r.ITEM_ID), _sorted_by(users, r.USER_ID)


def _sorted_by(table: Mapping[str, list], key: str) -> dict[str, list]:
  order = sorted(range(len(table[key])), key=table[key].__getitem__)
  return {k: [column[i] for i in order] for k, column in table.items()}


def read_item_features(uri: str) -> tuple[list[str], np.ndarray, np.ndarray]:
  """(item ids, vectors [n, dim] float32, has_text [n]) of an ItemFeatures
  artifact, sorted by item id so equal artifacts read back equal."""
  files = sorted(glob.glob(artifacts.split_pattern(uri, artifacts.ITEMS)))
  rows = []
  for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    ex = tf.train.Example.FromString(record.numpy())
    f = ex.features.feature
    rows.append((f[r.ITEM_ID].bytes_list.value[0].decode(),
                 np.asarray(f[r.EMBEDDING].float_list.value, np.float32),
                 int(f[r.HAS_TEXT].int64_list.value[0])))
  rows.sort(key=lambda row: row[0])
  if not rows:
    return [], np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
  return ([row[0] for row in rows], np.stack([row[1] for row in rows]),
          np.array([row[2] for row in rows], np.int64))
