"""The model's parts on their own: shared layers, history, tasks, weighting."""

import math
import types

import numpy as np
import pytest

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from contracts import features as F
from trainer import history as history_lib
from trainer import loss_weighting
from trainer import shared_layers
from trainer import tasks as tasks_lib

TASKS = ("rating", "like")


def _x(rows=16, width=12, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(size=(rows, width)),
                     tf.float32)


def test_mmoe_gates_are_distributions_and_mix_the_experts():
  layer = shared_layers.MMoE(TASKS, [8], num_experts=3)
  x = _x()
  out = layer(x)
  gates = layer.gate_weights(x)
  for t in TASKS:
    g = gates[t].numpy()
    assert g.shape == (16, 3)
    np.testing.assert_allclose(g.sum(axis=1), 1.0, rtol=1e-6)
    assert (g > 0).all()
    experts = np.stack([e(x).numpy() for e in layer.experts], axis=1)
    np.testing.assert_allclose(out[t].numpy(),
                               np.einsum("be,beh->bh", g, experts),
                               rtol=1e-5, atol=1e-6)
  # Each task has its own gate: different mixtures of the same experts.
  assert not np.allclose(gates["rating"].numpy(), gates["like"].numpy())


def test_shared_bottom_gives_every_task_the_same_representation():
  out = shared_layers.SharedBottom(TASKS, [8, 4])(_x())
  assert out["rating"].shape == (16, 4)
  np.testing.assert_array_equal(out["rating"].numpy(), out["like"].numpy())


@pytest.mark.parametrize("levels", [1, 2])
def test_ple_task_experts_learn_only_from_their_own_task(levels):
  layer = shared_layers.PLE(TASKS, [8], shared_experts=2, task_experts=1,
                            levels=levels)
  x = _x()
  with tf.GradientTape(persistent=True) as tape:
    out = layer(x)
    like = tf.reduce_sum(out["like"])
    rating = tf.reduce_sum(out["rating"])
  last = layer.levels[-1]
  rating_experts = [v for e in last.task_experts["rating"]
                    for v in e.trainable_variables]
  shared = [v for e in last.shared_experts for v in e.trainable_variables]
  # The last level's rating experts: no path to the like output...
  assert all(g is None for g in tape.gradient(like, rating_experts))
  # ...but one to rating's, and the shared experts serve both.
  assert all(g is not None for g in tape.gradient(rating, rating_experts))
  assert all(g is not None for g in tape.gradient(like, shared))
  gates = layer.gate_weights(x)
  assert gates["like"].shape == (16, 1 + 2)  # own + shared experts
  np.testing.assert_allclose(gates["like"].numpy().sum(axis=1), 1.0,
                             rtol=1e-6)
  if levels == 2:
    # Below the last level the shared gate mixes every expert, so task
    # experts of the first level do reach the other task.
    first = [v for e in layer.levels[0].task_experts["rating"]
             for v in e.trainable_variables]
    assert all(g is not None for g in tape.gradient(like, first))


def _history(rows):
  return tf.ragged.constant(rows, dtype=tf.int64).to_sparse()


def test_history_keeps_the_last_items_with_their_recency():
  ids, mask, recency = history_lib.last_items(
      _history([[1, 2, 3, 4, 5], [7], []]), 3)
  assert ids.numpy().tolist() == [[3, 4, 5], [7, 0, 0], [0, 0, 0]]
  assert mask.numpy().tolist() == [[True] * 3, [True, False, False],
                                   [False] * 3]
  assert recency.numpy()[0].tolist() == [2, 1, 0]
  assert recency.numpy()[1][0] == 0  # a single item is the latest


@pytest.mark.parametrize("kind", ["mean", "attention"])
def test_history_encoder_reads_only_the_last_items(kind):
  emb = tf.keras.layers.Embedding(10, 4)
  encoder = history_lib.HistoryEncoder(emb, length=2, kind=kind)
  out = encoder(_history([[1, 2, 3], [9, 2, 3], [4], []])).numpy()
  # Items before the last two do not matter; an empty history is zero.
  np.testing.assert_allclose(out[0], out[1], rtol=1e-6)
  np.testing.assert_array_equal(out[3], 0.0)
  assert not np.allclose(out[0], out[2])
  if kind == "mean":
    table = emb.embeddings.numpy()
    np.testing.assert_allclose(out[0], (table[2] + table[3]) / 2, rtol=1e-5)
    np.testing.assert_allclose(out[2], table[4], rtol=1e-5)


def _retrieval(**overrides):
  config = types.SimpleNamespace(
      name="retrieval", temperature=1.0, logq_correction=False,
      remove_accidental_hits=False, negatives="in_batch", metrics=[])
  config.__dict__.update(overrides)
  return config


def _softmax_loss(q, c, rows, cols, log_q=None):
  """Σ over query rows of -log softmax(q·c over the given columns)."""
  logits = q @ c.T
  if log_q is not None:
    logits = logits - log_q[None, :]
  total = 0.0
  for i in rows:
    z = logits[i, cols]
    total += -(logits[i, i] - np.log(np.exp(z - z.max()).sum()) - z.max())
  return total


def test_retrieval_uses_consumed_rows_only_and_corrects_by_log_q():
  rng = np.random.default_rng(1)
  q = rng.normal(size=(6, 4)).astype(np.float32)
  c = rng.normal(size=(6, 4)).astype(np.float32)
  ids = np.array([0, 1, 2, 3, 4, 5])
  consumed = np.array([1, 1, 0, 1, 0, 1], np.float32)
  probabilities = np.array([0.4, 0.1, 0.1, 0.2, 0.1, 0.1], np.float32)
  features = {F.ITEM_ID: tf.constant(ids),
              F.RETRIEVAL_WEIGHT: tf.constant(consumed)}
  outputs = {"query": tf.constant(q), "candidate": tf.constant(c)}
  positive = [0, 1, 3, 5]
  plain = tasks_lib.RetrievalTask(_retrieval(), probabilities)
  np.testing.assert_allclose(
      plain(features, outputs).numpy(), _softmax_loss(q, c, positive,
                                                      positive), rtol=1e-5)
  corrected = tasks_lib.RetrievalTask(_retrieval(logq_correction=True),
                                      probabilities)
  np.testing.assert_allclose(
      corrected(features, outputs).numpy(),
      _softmax_loss(q, c, positive, positive, np.log(probabilities[ids])),
      rtol=1e-5)


def test_retrieval_removes_accidental_hits():
  rng = np.random.default_rng(2)
  q = rng.normal(size=(3, 4)).astype(np.float32)
  c = rng.normal(size=(3, 4)).astype(np.float32)
  features = {F.ITEM_ID: tf.constant([7, 8, 7]),  # rows 0 and 2: same item
              F.RETRIEVAL_WEIGHT: tf.ones([3])}
  outputs = {"query": tf.constant(q), "candidate": tf.constant(c)}
  task = tasks_lib.RetrievalTask(_retrieval(remove_accidental_hits=True),
                                 np.ones(10, np.float32) / 10)
  expected = (_softmax_loss(q, c, [0], [0, 1]) +
              _softmax_loss(q, c, [1], [0, 1, 2]) +
              _softmax_loss(q, c, [2], [1, 2]))
  np.testing.assert_allclose(task(features, outputs).numpy(), expected,
                             rtol=1e-5)


def test_uncertainty_weights_start_static_and_learn_from_the_losses():
  weights = {"retrieval": 1.0, "rating": 0.5, "like": 0.0}
  kinds = {"retrieval": "retrieval", "rating": "regression", "like": "binary"}
  layer = loss_weighting.UncertaintyWeighting(weights, kinds)
  start = {t: float(w) for t, w in layer.effective_weights().items()}
  assert start == pytest.approx(weights)
  losses = {"retrieval": tf.constant(4.0), "rating": tf.constant(0.25),
            "like": tf.constant(1.0)}
  opt = tf.keras.optimizers.SGD(0.1)
  for _ in range(300):
    with tf.GradientTape() as tape:
      total = layer(losses)
    opt.apply_gradients(zip(tape.gradient(total, layer.trainable_variables),
                            layer.trainable_variables))
  learned = {t: float(w) for t, w in layer.effective_weights().items()}
  # The optimum of c·exp(-s)·L + s/2 is an effective weight of 1 / (2 L).
  assert learned["retrieval"] == pytest.approx(1 / 8, rel=0.05)
  assert learned["rating"] == pytest.approx(1 / 0.5, rel=0.05)
  assert learned["like"] == 0.0  # weight 0 stays off
  assert len(layer.trainable_variables) == 2


def test_static_weighting_is_the_weighted_sum():
  layer = loss_weighting.StaticWeighting({"a": 2.0, "b": 0.5})
  total = layer({"a": tf.constant(3.0), "b": tf.constant(4.0)})
  assert float(total) == pytest.approx(2 * 3 + 0.5 * 4)
  assert math.isclose(float(layer.effective_weights()["a"]), 2.0)
