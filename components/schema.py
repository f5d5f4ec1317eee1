"""The raw tf.Example schema that ExampleGen writes and Transform reads.

One function defines the feature spec of raw examples and catalog rows; it is
stored with the examples as a TensorFlow Metadata Schema (schema.pbtxt, as in
TFX) so later steps read the contract from the artifact instead of re-deriving
it, and a user feature set that differs between datasets travels with the data.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import pyarrow as pa
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils

from contracts import features as F
from contracts import records as r

SCHEMA_FILE = "schema.pbtxt"
USER_FEATURE_PREFIX = "user_"

# Derived by ExampleGen, not read from a source: the ids of the items the user
# consumed (click > 0) before this event, oldest first, at most
# MAX_HISTORY_LENGTH of them. The trainer's query tower reads the last
# `trainer.history_length` of them; the SavedModel keeps each user's latest
# history so that serving needs only the user id.
HISTORY = "history_item_ids"
MAX_HISTORY_LENGTH = F.MAX_HISTORY_LENGTH


def user_feature_key(name: str) -> str:
  """Example key of a user attribute (prefixed so it cannot clash)."""
  return USER_FEATURE_PREFIX + name


def item_feature_spec() -> dict[str, Any]:
  return {
      r.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
      r.TITLE: tf.io.FixedLenFeature([], tf.string),
      r.YEAR: tf.io.FixedLenFeature([], tf.int64),
      r.CATEGORIES: tf.io.VarLenFeature(tf.string),
      r.TAGS: tf.io.VarLenFeature(tf.string),
  }


def user_feature_spec(user_features: Sequence[str]) -> dict[str, Any]:
  spec = {r.USER_ID: tf.io.FixedLenFeature([], tf.string)}
  for name in user_features:
    spec[user_feature_key(name)] = tf.io.FixedLenFeature([], tf.string)
  return spec


def raw_feature_spec(user_features: Sequence[str]) -> dict[str, Any]:
  """Interaction examples: event fields, labels, item and user features."""
  spec = {
      r.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
      r.RATING: tf.io.FixedLenFeature([], tf.float32),
      r.CLICK: tf.io.FixedLenFeature([], tf.int64),
      r.LIKE: tf.io.FixedLenFeature([], tf.int64),
      r.WATCH_FRACTION: tf.io.FixedLenFeature([], tf.float32),
  }
  spec[HISTORY] = tf.io.VarLenFeature(tf.string)
  spec.update(item_feature_spec())
  spec.update(user_feature_spec(user_features))
  return spec


def user_features_of(spec: Mapping[str, Any]) -> list[str]:
  """Recovers the user attribute names from a raw feature spec."""
  return sorted(k[len(USER_FEATURE_PREFIX):] for k in spec
                if k.startswith(USER_FEATURE_PREFIX) and k != r.USER_ID)


def schema_of(spec: Mapping[str, Any]) -> schema_pb2.Schema:
  return schema_utils.schema_from_feature_spec(dict(spec))


def write_schema(directory: str, spec: Mapping[str, Any]) -> None:
  schema = schema_of(spec)
  with open(os.path.join(directory, SCHEMA_FILE), "w") as f:
    f.write(text_format.MessageToString(schema))


def read_schema(directory: str) -> schema_pb2.Schema:
  with open(os.path.join(directory, SCHEMA_FILE)) as f:
    return text_format.Parse(f.read(), schema_pb2.Schema())


def read_feature_spec(directory: str) -> dict[str, Any]:
  return schema_utils.schema_as_feature_spec(read_schema(directory)).feature_spec


def _feature(value: Any) -> tf.train.Feature:
  if isinstance(value, (list, tuple)):
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode("utf-8") for v in value]))
  if isinstance(value, str):
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[value.encode("utf-8")]))
  if isinstance(value, float):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


_ARROW_VALUE_TYPES = {tf.int64: pa.int64(), tf.float32: pa.float32(),
                      tf.string: pa.large_binary()}


def to_record_batch(rows: Sequence[Mapping[str, Any]],
                    spec: Mapping[str, Any]) -> pa.RecordBatch:
  """Rows as an Arrow RecordBatch typed by a feature spec, one list per cell.

  The layout tfx_bsl's RecordBatchToExamplesEncoder takes: a scalar
  (FixedLenFeature) is a one-value list, a VarLenFeature its list; strings
  are UTF-8 bytes, numbers the spec's dtype (an int rating becomes a float).
  """
  fields, columns = [], []
  for name, feature in spec.items():
    value_type = _ARROW_VALUE_TYPES[feature.dtype]
    if isinstance(feature, tf.io.FixedLenFeature):
      cells = [[row[name]] for row in rows]
    else:
      cells = [row[name] for row in rows]
    fields.append(pa.field(name, pa.large_list(value_type)))
    columns.append(pa.array(cells, type=fields[-1].type))
  return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def to_example(values: Mapping[str, Any]) -> bytes:
  """Serializes a flat mapping (str, int, float, list of str) as tf.Example."""
  return tf.train.Example(features=tf.train.Features(
      feature={k: _feature(v) for k, v in values.items()})).SerializeToString()
