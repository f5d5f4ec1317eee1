"""recommend_at: a ranking as of a given time, what offline evaluation asks.

`recommend` reads the hour and weekday of the request; an evaluation that
ranked its users "now" gave a model different metrics depending on the hour
it ran at (two runs of the same pipeline, an hour apart, disagreed by 3% on
Recall@10). The Evaluator ranks each user as of their first eval event.
"""

import time

import numpy as np
import pytest

import trainer  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from components import retrieval_eval
from contracts import model_layout


@pytest.fixture(scope="module")
def model(small_run):
  return tf.saved_model.load(model_layout.saved_model_dir(
      small_run.artifacts.model))


def _users(model, n=40):
  return tf.constant([f"u{i}" for i in range(n)])


def _at(model, users, timestamps):
  n = int(users.shape[0])
  weights = np.tile(model.fusion_weights.numpy(), (n, 1)).astype(np.float32)
  return model.signatures[retrieval_eval.AT_SIGNATURE](
      user_id=users, exclude_item_ids=tf.fill([n, 1], ""),
      k=tf.constant(10), fusion_weights=tf.constant(weights),
      timestamp=tf.constant(timestamps, tf.int64))


def test_the_ranking_depends_on_the_given_time_not_the_clock(model):
  users = _users(model)
  n = int(users.shape[0])
  morning = 1_700_000_000 - 1_700_000_000 % 86400 + 8 * 3600
  evening = morning + 12 * 3600
  first = _at(model, users, [morning] * n)
  again = _at(model, users, [morning] * n)
  for key in ("item_ids", "scores"):
    np.testing.assert_array_equal(first[key].numpy(), again[key].numpy())
  later = _at(model, users, [evening] * n)
  # The hour reaches the query tower and the heads: the scores move.
  assert not np.array_equal(first["scores"].numpy(), later["scores"].numpy())
  # Per user: each row is ranked as of its own time.
  mixed = _at(model, users, [morning, evening] * (n // 2))
  np.testing.assert_array_equal(mixed["scores"].numpy()[0::2],
                                first["scores"].numpy()[0::2])
  np.testing.assert_array_equal(mixed["scores"].numpy()[1::2],
                                later["scores"].numpy()[1::2])


def test_as_of_now_it_is_what_a_request_gets(model):
  users = _users(model)
  n = int(users.shape[0])
  before = int(time.time())
  served = model.signatures["recommend_excluding"](
      user_id=users, exclude_item_ids=tf.fill([n, 1], ""), k=tf.constant(10))
  after = int(time.time())
  if before // 3600 != after // 3600:
    pytest.skip("the clock crossed an hour between the two calls")
  at = _at(model, users, [before] * n)
  np.testing.assert_array_equal(served["item_ids"].numpy(),
                                at["item_ids"].numpy())
  np.testing.assert_allclose(served["scores"].numpy(), at["scores"].numpy(),
                             rtol=1e-5, atol=1e-6)


def test_embed_user_at_is_the_query_recommend_at_ranks_with(model):
  """embed_user_at: the user embedding as of a time, what the benchmarks
  that rank the catalog themselves read (benchmarks/cold_start.py); its
  dot products with embed_item are recommend_at's retrieval scores."""
  users = _users(model, 6)
  n = int(users.shape[0])
  morning = 1_700_000_000 - 1_700_000_000 % 86400 + 8 * 3600
  evening = morning + 12 * 3600
  at = model.signatures["embed_user_at"]
  first = at(user_id=users, timestamp=tf.constant([morning] * n, tf.int64))
  later = at(user_id=users, timestamp=tf.constant([evening] * n, tf.int64))
  assert not np.array_equal(first["embedding"].numpy(),
                            later["embedding"].numpy())
  ranked = _at(model, users, [morning] * n)
  items = model.signatures["embed_item"](
      item_id=tf.reshape(ranked["item_ids"], [-1]))["embedding"].numpy()
  dots = np.sum(np.repeat(first["embedding"].numpy(), 10, axis=0) * items,
                axis=1).reshape(n, 10)
  np.testing.assert_allclose(dots, ranked["retrieval_scores"].numpy(),
                             rtol=1e-4, atol=1e-4)
  # As of now, it is embed_user.
  before = int(time.time())
  now = model.signatures["embed_user"](user_id=users)["embedding"].numpy()
  if before // 3600 != int(time.time()) // 3600:
    pytest.skip("the clock crossed an hour between the two calls")
  np.testing.assert_allclose(
      at(user_id=users, timestamp=tf.constant([before] * n, tf.int64))[
          "embedding"].numpy(), now, rtol=1e-5, atol=1e-6)
