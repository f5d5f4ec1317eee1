"""Training rows that see their user's served history (trainer/served_history).

Hand-made batches: which rows take the served history, that the row's own
item is taken out of it (it is the row's label), that the rows say which
they are (F.HISTORY_AHEAD) and that the query tower trains separate history
weights for each, and that the draw depends on the seed and the batch's
position only.
"""

import numpy as np

import trainer  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from contracts import features as F
from trainer import inputs as inputs_lib
from trainer import served_history
from trainer import towers

# Users a, b (indices 0, 1; 2 is the OOV index), items x, y, z (0, 1, 2).
SERVED = {"a": ["x", "y", "z"], "b": ["q", "y"]}  # q: not in the vocabulary


def _served():
  return served_history.by_vocabulary(SERVED, ["a", "b"], ["x", "y", "z"])


def _batch():
  return {F.USER_ID: tf.constant([0, 1, 0, 2], tf.int64),
          F.ITEM_ID: tf.constant([1, 0, 2, 0], tf.int64),
          F.HISTORY: tf.ragged.constant([[2], [], [0, 1], [1]],
                                        tf.int64).to_sparse()}


def _histories(batch):
  return tf.RaggedTensor.from_sparse(batch[F.HISTORY]).to_list()


def test_served_histories_by_vocabulary_index_with_an_empty_oov_row():
  assert _served().to_list() == [[0, 1, 2], [1], []]


def test_no_row_or_every_row_takes_the_served_history_without_its_own_item():
  seed = tf.constant([7, 0], tf.int64)
  none = served_history.mix(_batch(), _served(), 0.0, seed)
  assert _histories(none) == [[2], [], [0, 1], [1]]
  assert none[F.HISTORY_AHEAD].numpy().tolist() == [0.0] * 4
  # a's served [x, y, z] without the row's item: y (row 0), z (row 2);
  # b's [y] keeps y (the row's item is x); the OOV user has none.
  every = served_history.mix(_batch(), _served(), 0.999, seed)
  assert _histories(every) == [[0, 2], [1], [0, 1], []]
  assert every[F.HISTORY_AHEAD].numpy().tolist() == [1.0] * 4


def test_the_draw_depends_on_the_seed_and_the_batch_position_only():
  batch = {F.USER_ID: tf.zeros([200], tf.int64),
           F.ITEM_ID: tf.fill([200], tf.constant(1, tf.int64)),
           F.HISTORY: tf.ragged.constant([[2]] * 200, tf.int64).to_sparse()}

  def chosen(seed, position):
    mixed = served_history.mix(
        batch, _served(), 0.3, tf.constant([seed, position], tf.int64))
    rows = [row == [0, 2] for row in _histories(mixed)]
    assert rows == [a == 1.0 for a in mixed[F.HISTORY_AHEAD].numpy()]
    return rows

  first = chosen(42, 0)
  assert first == chosen(42, 0)
  assert 30 <= sum(first) <= 90  # about 60 of 200
  assert chosen(42, 1) != first and chosen(43, 0) != first

  ds = tf.data.Dataset.from_tensors(batch).repeat(2)
  mixed = served_history.with_served_histories(ds, _served(), 0.3, 42)
  runs = [[[row == [0, 2] for row in _histories(b)] for b in mixed]
          for _ in range(2)]
  assert runs[0] == runs[1]  # every pass over the data draws alike
  assert runs[0][0] == first and runs[0][1] == chosen(42, 1)


def _query_tower(history_modes):
  item = inputs_lib.Vocabulary(F.ITEM_ID, F.ITEM_ID_VOCAB, 3)
  inputs = inputs_lib.ModelInputs(
      user_id=inputs_lib.Vocabulary(F.USER_ID, F.USER_ID_VOCAB, 2),
      user_attributes=(), item_id=item, item_sets=(), item_numeric=(),
      item_vectors=(), has_history=True)
  return towers.QueryTower(inputs, 4, towers.IdEmbedding(item, 4),
                           history_length=5, history_modes=history_modes)


def _kernel_rows_moved(tower, features):
  """Which rows of the projection kernel a step on `features` changes."""
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tower(features))
  grad = tape.gradient(loss, tower.projection.kernel)
  return np.abs(grad.numpy()).sum(axis=1) > 0


def test_rows_given_served_histories_train_their_own_history_weights():
  tower = _query_tower(history_modes=True)
  batch = dict(_batch(), **{F.HOUR: tf.zeros([4], tf.int64),
                            F.WEEKDAY: tf.zeros([4], tf.int64)})
  tower(batch)
  # Kernel rows: user id (4), history before the event (4), history past
  # it (4), then the hour and weekday (8).
  assert tower.projection.kernel.shape == (20, 4)
  own = _kernel_rows_moved(tower, batch)  # no F.HISTORY_AHEAD: before
  served = _kernel_rows_moved(tower, dict(
      batch, **{F.HISTORY_AHEAD: tf.ones([4])}))
  np.testing.assert_array_equal(own[4:12], [True] * 4 + [False] * 4)
  np.testing.assert_array_equal(served[4:12], [False] * 4 + [True] * 4)
  assert own[:4].all() and served[:4].all() and own[12:].all()
  # Mixed rows: each feeds its own part, and the query is the same
  # function of the user's inputs either way (linear in them).
  mixed = dict(batch, **{F.HISTORY_AHEAD: tf.constant([0., 1., 1., 0.])})
  both = tower(mixed).numpy()
  np.testing.assert_allclose(both[[0, 3]], tower(batch).numpy()[[0, 3]],
                             rtol=1e-6)
  ahead = tower(dict(batch, **{F.HISTORY_AHEAD: tf.ones([4])})).numpy()
  np.testing.assert_allclose(both[[1, 2]], ahead[[1, 2]], rtol=1e-6)
  assert not np.allclose(ahead, both)


def test_without_history_modes_the_flag_is_ignored():
  tower = _query_tower(history_modes=False)
  batch = dict(_batch(), **{F.HOUR: tf.zeros([4], tf.int64),
                            F.WEEKDAY: tf.zeros([4], tf.int64)})
  out = tower(batch).numpy()
  assert tower.projection.kernel.shape == (16, 4)
  np.testing.assert_array_equal(
      tower(dict(batch, **{F.HISTORY_AHEAD: tf.ones([4])})).numpy(), out)
