"""trainer.tasks: each task's loss and metrics on tiny hand-computed cases.

Every task returns its loss summed over the rows of the batch (the model
divides by the global batch), rows without the label (weight 0) contribute
nothing, and metrics are logged as `<task>_<metric>`.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from contracts import features as F
from trainer import config as config_lib
from trainer import tasks as tasks_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _retrieval_config(**overrides):
  raw = dict(name="retrieval", kind="retrieval", temperature=1.0,
             logq_correction=False, remove_accidental_hits=False)
  raw.update(overrides)
  return config_lib.RetrievalTaskConfig(**raw)


def _retrieval_inputs(q, c, ids, weights=None):
  weights = np.ones(len(ids), np.float32) if weights is None else weights
  features = {F.ITEM_ID: tf.constant(ids, tf.int64),
              F.RETRIEVAL_WEIGHT: tf.constant(weights, tf.float32)}
  outputs = {"query": tf.constant(q, tf.float32),
             "candidate": tf.constant(c, tf.float32)}
  return features, outputs


def _softmax_loss(logits, weights, allowed):
  """Σ_i w_i · (logsumexp over row i's allowed columns − logit_ii)."""
  total = 0.0
  for i, w in enumerate(weights):
    z = logits[i, allowed[i]]
    total += w * (z.max() + np.log(np.exp(z - z.max()).sum()) - logits[i, i])
  return total


# Retrieval.

Q2 = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
C2 = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)  # logits [[2,0],[0,1]]


def test_retrieval_in_batch_softmax_is_summed_over_the_rows():
  task = tasks_lib.RetrievalTask(_retrieval_config(), np.full(2, 0.5))
  loss = task(*_retrieval_inputs(Q2, C2, [0, 1]))
  # Row 0: -log(e^2 / (e^2 + e^0)); row 1: -log(e^1 / (e^0 + e^1)).
  expected = math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert loss.dtype == tf.float32 and loss.shape == ()


def test_retrieval_divides_the_logits_by_the_temperature():
  task = tasks_lib.RetrievalTask(_retrieval_config(temperature=0.5),
                                 np.full(2, 0.5))
  loss = task(*_retrieval_inputs(Q2, C2, [0, 1]))
  expected = math.log1p(math.exp(-4)) + math.log1p(math.exp(-2))
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_retrieval_log_q_correction_subtracts_the_item_log_probability():
  probabilities = np.array([0.5, 0.25, 0.25], np.float32)
  plain = tasks_lib.RetrievalTask(_retrieval_config(), probabilities)
  corrected = tasks_lib.RetrievalTask(
      _retrieval_config(logq_correction=True), probabilities)
  inputs = _retrieval_inputs(Q2, C2, [0, 1])
  # Logits - log q: [[2 + ln 2, ln 4], [ln 2, 1 + ln 4]].
  expected = (math.log1p(2 * math.exp(-2)) +
              math.log1p(0.5 * math.exp(-1)))
  assert float(corrected(*inputs)) == pytest.approx(expected, rel=1e-6)
  assert float(plain(*inputs)) == pytest.approx(
      math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)), rel=1e-6)


def test_retrieval_log_q_looks_up_probabilities_by_item_id():
  # Rows hold items 2 and 0: the probabilities of those ids, not of rows.
  probabilities = np.array([0.25, 0.1, 0.5], np.float32)
  task = tasks_lib.RetrievalTask(_retrieval_config(logq_correction=True),
                                 probabilities)
  loss = task(*_retrieval_inputs(Q2, C2, [2, 0]))
  # Logits - log q: [[2 + ln 2, ln 4], [ln 2, 1 + ln 4]], as above.
  expected = (math.log1p(2 * math.exp(-2)) +
              math.log1p(0.5 * math.exp(-1)))
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_retrieval_corrects_by_log_q_after_the_temperature():
  task = tasks_lib.RetrievalTask(
      _retrieval_config(temperature=0.5, logq_correction=True),
      np.array([0.5, 0.25], np.float32))
  loss = task(*_retrieval_inputs(Q2, C2, [0, 1]))
  # Logits / T - log q: [[4 + ln 2, ln 4], [ln 2, 2 + ln 4]].
  expected = (math.log1p(2 * math.exp(-4)) +
              math.log1p(0.5 * math.exp(-2)))
  assert float(loss) == pytest.approx(expected, rel=1e-6)


Q3 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
C3 = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]], np.float32)
LOGITS3 = Q3.astype(np.float64) @ C3.T  # [[1, .5, 2], [2, -1, 0], [3, -.5, 2]]


def test_retrieval_removes_accidental_hits_only_when_configured():
  ids = [7, 8, 7]  # rows 0 and 2 hold the same item
  inputs = _retrieval_inputs(Q3, C3, ids)
  removed = tasks_lib.RetrievalTask(
      _retrieval_config(remove_accidental_hits=True), np.full(10, 0.1))
  kept = tasks_lib.RetrievalTask(_retrieval_config(), np.full(10, 0.1))
  every = [[0, 1, 2]] * 3
  np.testing.assert_allclose(float(kept(*inputs)),
                             _softmax_loss(LOGITS3, [1, 1, 1], every),
                             rtol=1e-6)
  # Row 0 does not see row 2's candidate as a negative, nor row 2 row 0's.
  expected = _softmax_loss(LOGITS3, [1, 1, 1], [[0, 1], [0, 1, 2], [1, 2]])
  np.testing.assert_allclose(float(removed(*inputs)), expected, rtol=1e-6)
  # By hand: row 0 log(1 + e^-.5), row 1 log(e^2 + e^-1 + 1) + 1,
  # row 2 log(1 + e^-2.5).
  by_hand = (math.log1p(math.exp(-0.5)) +
             math.log(math.exp(2) + math.exp(-1) + 1) + 1 +
             math.log1p(math.exp(-2.5)))
  assert expected == pytest.approx(by_hand, rel=1e-9)


def test_retrieval_skipped_rows_are_neither_queries_nor_negatives():
  # Row 1 was shown but not consumed (retrieval weight 0).
  task = tasks_lib.RetrievalTask(_retrieval_config(), np.full(10, 0.1))
  loss = task(*_retrieval_inputs(Q3, C3, [0, 1, 2], weights=[1, 0, 1]))
  expected = _softmax_loss(LOGITS3, [1, 0, 1], [[0, 2], [1], [0, 2]])
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  # By hand: row 0 log(1 + e^1), row 2 log(1 + e^1).
  assert expected == pytest.approx(2 * math.log1p(math.e), rel=1e-9)


def test_retrieval_all_options_together():
  probabilities = np.array([0.5, 0.2, 0.3], np.float32)
  task = tasks_lib.RetrievalTask(
      _retrieval_config(temperature=2.0, logq_correction=True,
                        remove_accidental_hits=True), probabilities)
  ids = np.array([0, 2, 0, 1])
  q = np.array([[1, 0], [0, 1], [1, 1], [2, -1]], np.float32)
  c = np.array([[0, 1], [1, 1], [-1, 2], [1, 0]], np.float32)
  weights = np.array([1, 1, 1, 0], np.float32)
  loss = task(*_retrieval_inputs(q, c, ids, weights))
  logits = (q @ c.T) / 2.0 - np.log(probabilities[ids])[None, :]
  # Column 3 is skipped; rows 0 and 2 hold item 0 (accidental hits).
  allowed = [[0, 1], [0, 1, 2], [1, 2], [3]]
  np.testing.assert_allclose(float(loss),
                             _softmax_loss(logits, weights, allowed),
                             rtol=1e-5)


def _top10_inputs(skip_last):
  # One-dimensional embeddings: query i scores candidate j as j, so query
  # i's positive ranks (number of candidates - i)-th.
  n = 12
  q = np.ones((n, 1), np.float32)
  c = np.arange(n, dtype=np.float32)[:, None]
  weights = np.ones(n, np.float32)
  if skip_last:
    weights[-1] = 0.0
  return _retrieval_inputs(q, c, np.arange(n), weights)


def test_retrieval_batch_top_10_is_logged_only_outside_training():
  task = tasks_lib.RetrievalTask(
      _retrieval_config(metrics=["batch_top_10"]), np.full(12, 1 / 12))
  [metric] = task.task._batch_metrics  # pylint: disable=protected-access
  assert metric.name == "retrieval_batch_top_10"
  task(*_top10_inputs(skip_last=False), training=True)
  assert float(metric.count) == 0.0  # not computed while training
  task(*_top10_inputs(skip_last=False), training=False)
  # Of 12 candidates, queries 0 and 1 rank their positive 12th and 11th.
  assert float(metric.result()) == pytest.approx(10 / 12)
  metric.reset_state()
  # The skipped row is not a query, and not a candidate that outranks
  # query 1's positive: of queries 0..10 only query 0 misses.
  task(*_top10_inputs(skip_last=True), training=False)
  assert float(metric.result()) == pytest.approx(10 / 11)


def test_retrieval_without_metrics_has_no_batch_metrics():
  task = tasks_lib.RetrievalTask(_retrieval_config(), np.full(2, 0.5))
  assert task.task._batch_metrics == []  # pylint: disable=protected-access
  assert task.output_name == "retrieval" and task.kind == "retrieval"


def test_retrieval_gradient_reaches_query_and_candidate():
  task = tasks_lib.RetrievalTask(_retrieval_config(), np.full(2, 0.5))
  features, outputs = _retrieval_inputs(Q2, C2, [0, 1])
  q = tf.Variable(Q2)
  c = tf.Variable(C2)
  with tf.GradientTape() as tape:
    loss = task(features, {"query": q, "candidate": c})
  dq, dc = tape.gradient(loss, [q, c])
  # d/dq_0 of log(e^{q0·c0} + e^{q0·c1}) - q0·c0 = p01 (c1 - c0), p01 the
  # softmax weight of the negative.
  p01 = 1 / (1 + math.exp(2))
  np.testing.assert_allclose(dq.numpy()[0], p01 * (C2[1] - C2[0]),
                             rtol=1e-5)
  assert np.abs(dc.numpy()).sum() > 0


# gather_replicas.


def test_gather_replicas_is_the_identity_without_a_strategy():
  a, b = tf.constant([[1.0], [2.0]]), tf.constant([3, 4])
  out = tasks_lib.gather_replicas(a, b)
  assert len(out) == 2
  assert out[0] is a and out[1] is b


def _run_python(code: str) -> dict:
  """Runs code in a fresh interpreter (logical devices are process-wide);
  returns its last line of output as JSON."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


_MIRRORED = """
import json
import numpy as np
import trainer
import tensorflow as tf
from contracts import features as F
from trainer import config as config_lib
from trainer import distribution, tasks
strategy = distribution.choose_strategy(2)
split = [slice(0, 2), slice(2, 3)]  # uneven: the last batch of an epoch

def per_replica(array):
  return strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.constant(array[split[ctx.replica_id_in_sync_group]]))

values = np.array([[0.], [1.], [10.]], np.float32)
gathered = strategy.run(tf.function(lambda v: tasks.gather_replicas(v)[0]),
                        (per_replica(values),))
q = np.array(%(q)s, np.float32)
c = np.array(%(c)s, np.float32)
ids = np.array(%(ids)s, np.int64)
probabilities = np.array(%(p)s, np.float32)
with strategy.scope():
  task = tasks.RetrievalTask(config_lib.RetrievalTaskConfig(
      name="retrieval", kind="retrieval", temperature=0.5,
      logq_correction=True, remove_accidental_hits=True), probabilities)
def step(qq, cc, ii, ww):
  return task({F.ITEM_ID: ii, F.RETRIEVAL_WEIGHT: ww},
              {"query": qq, "candidate": cc})
losses = strategy.run(tf.function(step), (
    per_replica(q), per_replica(c), per_replica(ids),
    per_replica(np.ones(3, np.float32))))
local = strategy.experimental_local_results
print(json.dumps({
    "gathered": [t.numpy().ravel().tolist() for t in local(gathered)],
    "losses": [float(t) for t in local(losses)]}))
"""


def test_mirrored_replicas_gather_every_candidate_their_own_first():
  ids = [7, 8, 7]  # the accidental hit crosses the replicas
  p = [0.0] * 7 + [0.25, 0.5]
  out = _run_python(_MIRRORED % dict(q=Q3.tolist(), c=C3.tolist(), ids=ids,
                                     p=p))
  assert out["gathered"] == [[0.0, 1.0, 10.0], [10.0, 0.0, 1.0]]
  # Each replica's queries see all three candidates: the replicas' losses
  # add up to the loss one device computes on the whole batch.
  logits = LOGITS3 / 0.5 - np.log(np.array(p)[ids])[None, :]
  allowed = [[0, 1], [0, 1, 2], [1, 2]]
  replica0 = _softmax_loss(logits[:2], [1, 1], allowed[:2])
  # Replica 1 orders its candidates [2, 0, 1]: its row is row 0 there.
  rolled = logits[2:][:, [2, 0, 1]]
  replica1 = _softmax_loss(rolled, [1], [[0, 2]])
  np.testing.assert_allclose(out["losses"], [replica0, replica1], rtol=1e-5)
  assert sum(out["losses"]) == pytest.approx(
      _softmax_loss(logits, [1, 1, 1], allowed), rel=1e-5)


# Regression.


def _ranking_metrics(task):
  """The TFRS Ranking task's metrics, by name."""
  metrics = task.task._ranking_metrics  # pylint: disable=protected-access
  return {m.name: m for m in metrics}


def _regression(**overrides):
  raw = dict(name="rating", kind="regression", label="rating")
  raw.update(overrides)
  return tasks_lib.RegressionTask(config_lib.RegressionTaskConfig(**raw))


def _rating_inputs(labels, predictions, weights, name="rating"):
  features = {F.RATING: tf.constant(labels, tf.float32),
              F.RATING_WEIGHT: tf.constant(weights, tf.float32)}
  return features, {name: tf.constant(predictions, tf.float32)}


# Row 2 has no rating: weight 0, and a label and prediction far apart.
RATING_CASE = ([4.0, 1.0, 0.0], [3.5, 3.0, 10.0], [1.0, 1.0, 0.0])


def test_regression_mse_is_the_weighted_sum_of_squared_errors():
  loss = _regression()(*_rating_inputs(*RATING_CASE))
  assert float(loss) == pytest.approx(0.5 ** 2 + 2.0 ** 2, rel=1e-6)


@pytest.mark.parametrize("delta, expected", [
    # |e| = 0.5 is quadratic (e^2 / 2); |e| = 2 > 1 is linear,
    # delta (|e| - delta / 2).
    (1.0, 0.125 + 1.5),
    # With delta 2 both errors are in the quadratic zone.
    (2.0, 0.125 + 2.0),
    # With delta 0.25 both are linear: .25 (.5 - .125) + .25 (2 - .125).
    (0.25, 0.25 * 0.375 + 0.25 * 1.875),
])
def test_regression_huber_uses_the_configured_delta(delta, expected):
  task = _regression(loss="huber", huber_delta=delta)
  loss = task(*_rating_inputs(*RATING_CASE))
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_regression_fractional_weights_scale_the_rows():
  loss = _regression()(*_rating_inputs([4.0, 1.0], [3.0, 3.0], [0.5, 2.0]))
  assert float(loss) == pytest.approx(0.5 * 1 + 2.0 * 4, rel=1e-6)


def test_regression_watch_fraction_reads_its_own_label_and_weight():
  task = _regression(name="watch", label="watch_fraction")
  features = {F.WATCH_FRACTION: tf.constant([0.5, 1.0]),
              F.WATCH_FRACTION_WEIGHT: tf.constant([1.0, 0.0]),
              F.RATING: tf.constant([100.0, 100.0]),
              F.RATING_WEIGHT: tf.constant([1.0, 1.0])}
  loss = task(features, {"watch": tf.constant([0.25, 0.0])})
  assert float(loss) == pytest.approx(0.0625, rel=1e-6)


def test_regression_metrics_are_weighted_and_named_after_the_task():
  task = _regression(metrics=["rmse", "mae"])
  task(*_rating_inputs(*RATING_CASE))
  metrics = _ranking_metrics(task)
  assert sorted(metrics) == ["rating_mae", "rating_rmse"]
  # Errors 0.5 and 2 count, the unlabelled row's 10 does not.
  assert float(metrics["rating_rmse"].result()) == pytest.approx(
      math.sqrt((0.25 + 4.0) / 2), rel=1e-6)
  assert float(metrics["rating_mae"].result()) == pytest.approx(1.25,
                                                                rel=1e-6)


def test_regression_serves_the_raw_prediction_under_its_name():
  task = _regression()
  assert task.output_name == "rating" and task.kind == "regression"
  assert task.name == "rating_task"
  x = tf.constant([3.7, -1.0])
  np.testing.assert_array_equal(task.serve(x).numpy(), x.numpy())


# Binary.


def _binary(**overrides):
  raw = dict(name="like", kind="binary", label="like")
  raw.update(overrides)
  return tasks_lib.BinaryTask(config_lib.BinaryTaskConfig(**raw))


# Row 2 is unlabelled (weight 0) and confidently wrong.
LIKE_CASE = ([1.0, 0.0, 1.0], [2.0, 1.0, -3.0], [1.0, 1.0, 0.0])


def _like_inputs(labels, logits, weights):
  features = {F.LIKE: tf.constant(labels, tf.float32),
              F.LIKE_WEIGHT: tf.constant(weights, tf.float32)}
  return features, {"like": tf.constant(logits, tf.float32)}


def test_binary_cross_entropy_on_logits():
  loss = _binary()(*_like_inputs(*LIKE_CASE))
  # -log σ(2) - log(1 - σ(1)) = log(1 + e^-2) + log(1 + e^1).
  expected = math.log1p(math.exp(-2)) + math.log1p(math.exp(1))
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_binary_cross_entropy_is_exact_for_large_logits():
  # A probability clipped to [eps, 1 - eps] would cap this at ~16.1.
  loss = _binary()(*_like_inputs([0.0], [30.0], [1.0]))
  assert float(loss) == pytest.approx(30.0, rel=1e-5)


def test_binary_metrics_threshold_the_logit_at_zero():
  task = _binary(metrics=["auc", "accuracy"])
  task(*_like_inputs(*LIKE_CASE))
  metrics = _ranking_metrics(task)
  assert sorted(metrics) == ["like_accuracy", "like_auc"]
  # Logit 2 (liked) is right, logit 1 (not liked) is wrong; the
  # unlabelled row would add a wrong one and a mis-ordered pair.
  assert float(metrics["like_accuracy"].result()) == pytest.approx(0.5)
  assert float(metrics["like_auc"].result()) == pytest.approx(1.0, abs=1e-6)


def test_binary_click_counts_every_row_with_the_retrieval_weight_as_label():
  task = _binary(name="click", label="click")
  features = {F.RETRIEVAL_WEIGHT: tf.constant([1.0, 0.0])}
  loss = task(features, {"click": tf.constant([0.0, 0.0])})
  # No weight feature: both rows count, each log 2.
  assert float(loss) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_binary_serves_a_probability_named_p_task():
  task = _binary()
  assert task.output_name == "p_like" and task.kind == "binary"
  np.testing.assert_allclose(
      task.serve(tf.constant([0.0, math.log(3.0)])).numpy(), [0.5, 0.75],
      rtol=1e-6)


# Multi-label.


def _multilabel(num_labels=3, **overrides):
  raw = dict(name="interest", kind="multilabel", label="categories")
  raw.update(overrides)
  return tasks_lib.MultiLabelTask(config_lib.MultiLabelTaskConfig(**raw),
                                  num_labels)


def _categories(rows):
  return tf.ragged.constant(rows, dtype=tf.int64).to_sparse()


def test_multilabel_averages_over_labels_and_sums_over_consumed_rows():
  task = _multilabel()
  features = {
      # Row 0: labels {0, 2}; row 1: {1} but only shown; row 2: no label.
      F.CATEGORIES: _categories([[0, 2], [1], []]),
      F.RETRIEVAL_WEIGHT: tf.constant([1.0, 0.0, 1.0])}
  logits = tf.constant([[0.0, math.log(3.0), 0.0], [5.0, 5.0, 5.0],
                        [9.0, 9.0, 9.0]])
  loss = task(features, {"interest": logits})
  # Row 0: mean of -log σ(0), -log(1 - σ(ln 3)) = log 4, -log σ(0).
  expected = (math.log(2) + math.log(4) + math.log(2)) / 3
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  [auc] = task.task._ranking_metrics  # pylint: disable=protected-access
  assert auc.name == "interest_auc"


def test_multilabel_serves_probabilities_per_label():
  task = _multilabel()
  assert task.output_name == "p_interest" and task.kind == "multilabel"
  assert task.num_labels == 3
  np.testing.assert_allclose(
      task.serve(tf.constant([[0.0, math.log(3.0)]])).numpy(), [[0.5, 0.75]],
      rtol=1e-6)


def test_multilabel_without_metrics_has_none():
  task = _multilabel(metrics=[])
  assert task.task._ranking_metrics == []  # pylint: disable=protected-access


# Mixed precision.


def test_tasks_compute_in_float32_under_mixed_precision():
  policy = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    task = tasks_lib.RetrievalTask(
        _retrieval_config(metrics=["batch_top_10"]), np.full(2, 0.5))
    rating = _regression()
    # Building the tasks left the global policy as it was.
    assert tf.keras.mixed_precision.global_policy().name == "mixed_float16"
    features, outputs = _retrieval_inputs(Q2, C2, [0, 1])
    outputs = {k: tf.cast(v, tf.float16) for k, v in outputs.items()}
    loss = task(features, outputs)
    assert tf.keras.mixed_precision.global_policy().name == "mixed_float16"
    assert loss.dtype == tf.float32
    assert float(loss) == pytest.approx(
        math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)), rel=1e-6)
    features, outputs = _rating_inputs(*RATING_CASE)
    loss = rating(features, {"rating": tf.cast(outputs["rating"],
                                               tf.float16)})
    assert loss.dtype == tf.float32
    assert float(loss) == pytest.approx(4.25, rel=1e-6)
  finally:
    tf.keras.mixed_precision.set_global_policy(policy)


# build.


@pytest.mark.parametrize("raw, cls, name", [
    (dict(name="retrieval", kind="retrieval"), tasks_lib.RetrievalTask,
     "retrieval"),
    (dict(name="rating", kind="regression", label="rating"),
     tasks_lib.RegressionTask, "rating"),
    (dict(name="like", kind="binary", label="like"), tasks_lib.BinaryTask,
     "p_like"),
    (dict(name="interest", kind="multilabel", label="tags"),
     tasks_lib.MultiLabelTask, "p_interest"),
])
def test_build_makes_the_task_the_config_declares(raw, cls, name):
  config = config_lib.TrainerConfig(tasks=[raw]).tasks[0]
  task = tasks_lib.build(config, np.full(4, 0.25), {"interest": 5})
  assert type(task) is cls  # pylint: disable=unidiomatic-typecheck
  assert task.output_name == name
  assert task.task_name == raw["name"]
  if cls is tasks_lib.MultiLabelTask:
    assert task.num_labels == 5


def test_build_rejects_an_unknown_kind():
  config = config_lib.BinaryTaskConfig(name="x", kind="binary", label="like")
  object.__setattr__(config, "kind", "ordinal")
  with pytest.raises(ValueError, match="unknown task kind 'ordinal'"):
    tasks_lib.build(config, np.ones(1), {})


def test_the_base_task_has_no_loss():
  task = tasks_lib.Task(config_lib.BinaryTaskConfig(name="x", kind="binary",
                                                    label="like"))
  with pytest.raises(NotImplementedError):
    task({}, {})
