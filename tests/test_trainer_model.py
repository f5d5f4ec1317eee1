"""trainer.model: losses per global batch, logged losses, score().

The towers and heads are stubs that read embeddings straight from the
features, so every loss is known by hand.
"""

import math

import numpy as np
import pytest

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from contracts import features as F
from trainer import config as config_lib
from trainer import loss_weighting
from trainer import model as model_lib
from trainer import tasks as tasks_lib


class _Read(tf.keras.layers.Layer):
  """A tower: features[key] times a trainable scalar (1 at the start)."""

  def __init__(self, key, **kwargs):
    super().__init__(**kwargs)
    self.key = key
    self.scale = self.add_weight(name="scale", shape=(),
                                 initializer="ones")

  def call(self, features):
    return features[self.key] * self.scale


class _SumHead(tf.keras.layers.Layer):
  """Query heads: the rating is the sum of the query embedding."""

  def call(self, query):
    return {"rating": tf.reduce_sum(query, axis=-1)}


class _PairHead(tf.keras.layers.Layer):
  """Ranking heads: records what it was called with."""

  def call(self, query, candidate, hour, weekday):
    self.seen = (hour, weekday)
    return {"like": tf.reduce_sum(query * candidate, axis=-1)}


def _model(weighting=None):
  retrieval = tasks_lib.RetrievalTask(config_lib.RetrievalTaskConfig(
      name="retrieval", kind="retrieval", logq_correction=False,
      remove_accidental_hits=False), np.full(2, 0.5))
  rating = tasks_lib.RegressionTask(config_lib.RegressionTaskConfig(
      name="rating", kind="regression", label="rating", metrics=["rmse"]))
  weighting = weighting or loss_weighting.StaticWeighting(
      {"retrieval": 1.0, "rating": 0.5})
  return model_lib.MultiTaskModel(_Read("q"), _Read("c"), None, _SumHead(),
                                  [retrieval, rating], weighting)


def _features():
  return {
      "q": tf.constant([[1.0, 0.0], [0.0, 1.0]]),
      "c": tf.constant([[2.0, 0.0], [0.0, 1.0]]),  # logits [[2, 0], [0, 1]]
      F.ITEM_ID: tf.constant([0, 1], tf.int64),
      F.RETRIEVAL_WEIGHT: tf.constant([1.0, 1.0]),
      # Predicted ratings are [1, 1]; row 1 is unrated.
      F.RATING: tf.constant([3.0, 0.0]),
      F.RATING_WEIGHT: tf.constant([1.0, 0.0]),
  }


# Retrieval sum over the batch of two, and the rating's: (3 - 1)^2 = 4.
RETRIEVAL_SUM = math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))
RATING_SUM = 4.0


def test_compute_loss_divides_every_task_by_the_global_batch():
  model = _model()
  total = model.compute_loss(_features())
  assert float(total) == pytest.approx(
      1.0 * RETRIEVAL_SUM / 2 + 0.5 * RATING_SUM / 2, rel=1e-6)
  assert float(model.task_losses["retrieval"].result()) == pytest.approx(
      RETRIEVAL_SUM / 2, rel=1e-6)
  assert float(model.task_losses["rating"].result()) == pytest.approx(
      RATING_SUM / 2, rel=1e-6)
  assert float(model.loss_tracker.result()) == pytest.approx(float(total),
                                                             rel=1e-6)


def test_test_step_logs_the_total_each_task_loss_and_task_metrics():
  model = _model()
  logs = model.test_step(_features())
  assert set(logs) == {"loss", "retrieval_loss", "rating_loss",
                       "rating_rmse"}
  assert float(logs["loss"]) == pytest.approx(
      RETRIEVAL_SUM / 2 + 0.5 * RATING_SUM / 2, rel=1e-6)
  assert float(logs["retrieval_loss"]) == pytest.approx(RETRIEVAL_SUM / 2,
                                                        rel=1e-6)
  assert float(logs["rating_rmse"]) == pytest.approx(2.0, rel=1e-6)
  # Logged values are means over the batches seen.
  logs = model.test_step(_features())
  assert float(logs["rating_loss"]) == pytest.approx(RATING_SUM / 2,
                                                     rel=1e-6)


class _Replicas:
  num_replicas_in_sync = 2


def test_losses_are_per_global_batch_and_logged_scaled_back(monkeypatch):
  """Under two replicas each holds half the global batch: the loss a
  replica minimizes is its sum over twice its rows, and what is logged is
  scaled back so that it reads as one device's number would."""
  model = _model()
  model.compute_loss(_features())  # builds the layers first
  for m in model.metrics:
    m.reset_state()
  monkeypatch.setattr(tf.distribute, "get_strategy", lambda: _Replicas())
  total = model.compute_loss(_features())
  assert float(total) == pytest.approx(
      RETRIEVAL_SUM / 4 + 0.5 * RATING_SUM / 4, rel=1e-6)
  assert float(model.task_losses["retrieval"].result()) == pytest.approx(
      RETRIEVAL_SUM / 2, rel=1e-6)
  assert float(model.loss_tracker.result()) == pytest.approx(
      RETRIEVAL_SUM / 2 + 0.5 * RATING_SUM / 2, rel=1e-6)


def test_train_step_takes_a_gradient_step_on_the_total_loss():
  model = _model()
  model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
  features = _features()
  with tf.GradientTape() as tape:
    expected_loss = model.compute_loss(features, training=True)
  variables = model.trainable_variables
  assert len(variables) == 2  # the two towers' scales
  grads = tape.gradient(expected_loss, variables)
  before = [v.numpy() for v in variables]
  for m in model.metrics:
    m.reset_state()
  logs = model.train_step(features)
  assert float(logs["loss"]) == pytest.approx(float(expected_loss),
                                              rel=1e-6)
  for v, b, g in zip(variables, before, grads):
    assert v.numpy() == pytest.approx(b - 0.1 * g.numpy(), rel=1e-5)
  assert any(abs(float(g)) > 1e-3 for g in grads)


def test_layer_losses_are_added_to_the_training_loss():
  model = _model()
  model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
  features = _features()
  model.compute_loss(features)  # builds the towers
  scale = model.query_tower.scale
  model.add_loss(lambda: 3.0 * scale ** 2)  # a regularizer
  with tf.GradientTape() as tape:
    task_loss = model.compute_loss(features, training=True)
  task_grad = tape.gradient(task_loss, scale)
  before = float(scale)
  model.train_step(features)
  # d/ds of 3 s^2 at s = 1 is 6, on top of the tasks' gradient.
  assert float(scale) == pytest.approx(
      before - 0.1 * (float(task_grad) + 6.0), rel=1e-5)


def test_effective_weights_are_floats():
  model = _model()
  assert model.effective_weights() == {"retrieval": 1.0, "rating": 0.5}
  for w in model.effective_weights().values():
    assert isinstance(w, float)


def test_call_returns_embeddings_and_every_head_output():
  ranking = _PairHead()
  model = model_lib.MultiTaskModel(_Read("q"), _Read("c"), ranking,
                                   _SumHead(), [], loss_weighting.
                                   StaticWeighting({}))
  features = dict(_features(), **{F.HOUR: tf.constant([3, 4]),
                                  F.WEEKDAY: tf.constant([0, 6])})
  out = model(features)
  assert set(out) == {"query", "candidate", "rating", "like"}
  np.testing.assert_allclose(out["rating"].numpy(), [1.0, 1.0])
  np.testing.assert_allclose(out["like"].numpy(), [2.0, 1.0])
  assert ranking.seen[0].numpy().tolist() == [3, 4]
  assert ranking.seen[1].numpy().tolist() == [0, 6]


def test_score_without_heads_is_empty_and_with_one_kind_only_its_outputs():
  query = tf.constant([[1.0, 2.0]])
  features = {F.HOUR: tf.constant([0]), F.WEEKDAY: tf.constant([0])}
  assert model_lib.score(None, None, query, query, features) == {}
  out = model_lib.score(None, _SumHead(), query, query, features)
  assert list(out) == ["rating"] and float(out["rating"][0]) == 3.0
  out = model_lib.score(_PairHead(), None, query, query, features)
  assert list(out) == ["like"] and float(out["like"][0]) == 5.0


def test_uncertainty_weighting_composes_with_the_model():
  weighting = loss_weighting.UncertaintyWeighting(
      {"retrieval": 1.0, "rating": 0.5},
      {"retrieval": "retrieval", "rating": "regression"})
  model = _model(weighting)
  total = model.compute_loss(_features())
  # At the start s_i = log(c_i / w_i): the effective weights are w_i, plus
  # Σ s_i / 2 = (log 1 + log 1) / 2 = 0.
  assert float(total) == pytest.approx(
      RETRIEVAL_SUM / 2 + 0.5 * RATING_SUM / 2, rel=1e-5)
  assert model.effective_weights() == pytest.approx(
      {"retrieval": 1.0, "rating": 0.5})

