"""trainer.heads: what the ranking and query heads read and output."""

import numpy as np

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from trainer import heads as heads_lib
from trainer import shared_layers

BIASES = {"rating": 3.5, "like": -1.25}


class _Spy(tf.keras.layers.Layer):
  """Shared layers that pass their input to every task and keep it."""

  def __init__(self, tasks, **kwargs):
    super().__init__(**kwargs)
    self.tasks = list(tasks)

  def call(self, x):
    self.seen = x
    return {t: x for t in self.tasks}


def _pair(rows=3, dim=2, seed=0):
  rng = np.random.default_rng(seed)
  q = tf.constant(rng.normal(size=(rows, dim)), tf.float32)
  c = tf.constant(rng.normal(size=(rows, dim)), tf.float32)
  return q, c


def test_ranking_heads_read_both_embeddings_their_product_and_the_time():
  spy = _Spy(BIASES)
  heads = heads_lib.RankingHeads(spy, BIASES)
  q, c = _pair()
  hour = tf.constant([0, 13, 23])
  weekday = tf.constant([0, 3, 6])
  out = heads(q, c, hour, weekday)
  x = spy.seen.numpy()
  assert x.shape == (3, 2 + 2 + 2 + 4 + 4)
  np.testing.assert_allclose(x[:, 0:2], q.numpy())
  np.testing.assert_allclose(x[:, 2:4], c.numpy())
  np.testing.assert_allclose(x[:, 4:6], (q * c).numpy(), rtol=1e-6)
  hours = heads.hour_embedding.embeddings.numpy()
  weekdays = heads.weekday_embedding.embeddings.numpy()
  assert hours.shape == (24, 4) and weekdays.shape == (7, 4)
  np.testing.assert_allclose(x[:, 6:10], hours[[0, 13, 23]])
  np.testing.assert_allclose(x[:, 10:14], weekdays[[0, 3, 6]])
  assert sorted(out) == ["like", "rating"]
  # No tower units: each output is one dense unit on the shared input.
  for task, value in out.items():
    layer = heads.output_layers[task]
    expected = x @ layer.kernel.numpy()[:, 0] + layer.bias.numpy()[0]
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5,
                               atol=1e-6)


def test_ranking_heads_start_at_the_given_biases():
  shared = shared_layers.SharedBottom(list(BIASES), [8])
  heads = heads_lib.RankingHeads(shared, BIASES, tower_units=[4])
  q, c = _pair(rows=5)
  hour, weekday = tf.zeros([5], tf.int32), tf.zeros([5], tf.int32)
  out = heads(q, c, hour, weekday)
  assert {t: v.shape for t, v in out.items()} == {"rating": (5,),
                                                  "like": (5,)}
  for task, bias in BIASES.items():
    assert float(heads.output_layers[task].bias[0]) == bias
    layer = heads.output_layers[task]
    layer.kernel.assign(tf.zeros_like(layer.kernel))
  out = heads(q, c, hour, weekday)
  np.testing.assert_array_equal(out["rating"].numpy(), 3.5)
  np.testing.assert_array_equal(out["like"].numpy(), -1.25)
  # Each task has its own tower, of the configured width.
  assert heads.towers["rating"] is not heads.towers["like"]
  assert heads.towers["rating"].layers[0].units == 4


def test_ranking_heads_output_float32_under_mixed_precision():
  policy = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    shared = shared_layers.SharedBottom(list(BIASES), [8])
    heads = heads_lib.RankingHeads(shared, BIASES)
    q, c = _pair()
    out = heads(q, c, tf.constant([1, 2, 3]), tf.constant([1, 2, 3]))
    assert heads.hour_embedding.compute_dtype == "float16"
    assert all(v.dtype == tf.float32 for v in out.values())
    queries = heads_lib.QueryHeads({"interest": 4})(tf.cast(q, tf.float16))
    assert queries["interest"].dtype == tf.float32
  finally:
    tf.keras.mixed_precision.set_global_policy(policy)


def test_query_heads_are_one_linear_layer_per_task():
  heads = heads_lib.QueryHeads({"interest": 4, "tags": 2})
  q, _ = _pair(rows=3, dim=5)
  out = heads(q)
  assert {t: tuple(v.shape) for t, v in out.items()} == {
      "interest": (3, 4), "tags": (3, 2)}
  for task, value in out.items():
    layer = heads.output_layers[task]
    np.testing.assert_allclose(
        value.numpy(), q.numpy() @ layer.kernel.numpy() + layer.bias.numpy(),
        rtol=1e-5, atol=1e-6)
  assert not np.allclose(out["interest"].numpy()[:, :2], out["tags"].numpy())

