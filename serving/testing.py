"""Small SavedModels and helpers for testing servers, this one or TF Serving.

The serving tests (and the benchmark's floors) need models whose answers
reveal what ran: every toy version adds `100 * version` to its scores, so a
response shows which version computed it and not only which it claims; a
`batch` output reports how many rows the model saw in one call, so batching
is observable; a counter counts calls, so warmup is. A TF1-style model with
classify and regress SignatureDefs covers the Classify, Regress and
MultiInference APIs, which TF2 exports cannot produce.

Only TensorFlow is needed; nothing here touches the network.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from typing import Callable, Iterable

import tensorflow as tf

from serving import apis
from serving import client
from serving import warmup


class ToyModel(tf.Module):
  """Scores (user, item) pairs, recommends three items, counts its calls."""

  def __init__(self, version: int):
    super().__init__()
    self.offset = tf.Variable(100.0 * version)
    self.calls = tf.Variable(0, dtype=tf.int64)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string),
      tf.TensorSpec([None], tf.string)
  ])
  def score(self, user_id, item_id):
    self.calls.assign_add(1)
    length = tf.strings.length(user_id) + tf.strings.length(item_id)
    rows = tf.shape(user_id)[0]
    return {
        "score": tf.cast(length, tf.float32) + self.offset,
        # How many rows this call saw: more than a request's under batching.
        "batch": tf.fill([rows], rows),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def recommend(self, user_id):
    self.calls.assign_add(1)
    batch = tf.shape(user_id)[0]

    def per_user(row):
      return tf.tile(tf.constant([row]), [batch, 1])

    return {
        "item_ids": tf.strings.join(
            [tf.tile(user_id[:, None], [1, 3]), per_user(["a", "b", "c"])],
            separator=":"),
        "titles": per_user(["Alpha", "Beta", "Gamma"]),
        "scores": per_user([0.9, 0.5, 0.1]) + self.offset,
        "rating": per_user([4.5, 3.0, 1.5]),
        "p_like": per_user([0.8, 0.4, 0.2]),
        # Not per item: client.recommend() must leave it out.
        "user_length": tf.strings.length(user_id),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
  def strict(self, x):
    tf.debugging.assert_non_negative(x, message="x must be >= 0")
    return {"y": 2.0 * x}

  @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
  def scalar(self, x):
    return {"y": x + self.offset}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
  def call_count(self, rows):
    return {"calls": tf.fill(tf.shape(rows), self.calls.read_value())}


TOY_SIGNATURES = ("serving_default", "recommend", "strict", "scalar",
                  "call_count")


# One home for building requests: the client's.
predict_request = client.predict_request


def write_warmup(export_dir: str,
                 requests: Iterable[apis.PredictRequest]) -> int:
  """Writes assets.extra/tf_serving_warmup_requests (PredictLog records)."""
  path = warmup.warmup_path(export_dir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  count = 0
  with tf.io.TFRecordWriter(path) as writer:
    for request in requests:
      log = apis.PredictionLog(predict_log=apis.PredictLog(request=request))
      writer.write(log.SerializeToString())
      count += 1
  return count


def export_toy(path: str, version: int, warmup_requests: int = 0) -> str:
  """Saves ToyModel(version) at `path`, with that many warmup records."""
  module = ToyModel(version)
  tf.saved_model.save(module, path, signatures={
      "serving_default": module.score,
      "recommend": module.recommend,
      "strict": module.strict,
      "scalar": module.scalar,
      "call_count": module.call_count,
  })
  if warmup_requests:
    write_warmup(path, [
        predict_request("toy", {"user_id": [b"warm"], "item_id": [b"up"]})
        for _ in range(warmup_requests)
    ])
  return path


def export_tf1_classifier(path: str, version: int) -> str:
  """A TF1 SavedModel with classify, regress and predict signatures.

  On tf.Examples with a float feature "x": `classify_x` gives classes
  ["neg", "pos"] with scores [1 - sigmoid(x), sigmoid(x)]; `regress_x` gives
  2x + version as [N, 1]; `regress_flat` the same as [N]. Both read the same
  input tensor, as MultiInference requires. `serving_default` is a predict
  signature: y = 3x.
  """
  v1 = tf.compat.v1
  with tf.Graph().as_default() as graph:
    serialized = v1.placeholder(tf.string, [None], name="tf_example")
    x = tf.io.parse_example(
        serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]
    p = tf.sigmoid(x)
    scores = tf.stack([1.0 - p, p], axis=1)
    classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
    prediction = 2.0 * x + float(version)
    x_input = v1.placeholder(tf.float32, [None], name="x")
    signatures = {
        "classify_x": v1.saved_model.classification_signature_def(
            serialized, classes, scores),
        "regress_x": v1.saved_model.regression_signature_def(
            serialized, tf.reshape(prediction, [-1, 1])),
        "regress_flat": v1.saved_model.regression_signature_def(
            serialized, prediction),
        "serving_default": v1.saved_model.predict_signature_def(
            {"x": x_input}, {"y": 3.0 * x_input}),
    }
    with v1.Session(graph=graph) as session:
      builder = v1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(
          session, [tf.saved_model.SERVING], signature_def_map=signatures)
      builder.save()
  return path


def example(**features: float) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      name: tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
      for name, value in features.items()
  }))


def publish(export_dir: str, base_path: str, version: int) -> str:
  """Publishes like a pusher: copy under a hidden name, rename into place."""
  os.makedirs(base_path, exist_ok=True)
  staging = os.path.join(base_path, f".tmp-{version}")
  shutil.copytree(export_dir, staging)
  target = os.path.join(base_path, str(version))
  os.rename(staging, target)
  return target


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0,
             interval: float = 0.05) -> bool:
  """Polls `condition` until true or `timeout` seconds pass."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(interval)
  return condition()


def publish_toy_versions(root: str, model_name: str,
                         versions: tuple[int, ...] = (1, 2)) -> str:
  """Exports and publishes toy versions under `<root>/<model_name>/`.

  Returns the model's base path.
  """
  for version in versions:
    publish(export_toy(os.path.join(root, f"v{version}"), version),
            os.path.join(root, model_name), version)
  return os.path.join(root, model_name)
