"""Training rows that see their user's served history (trainer/served_history).

Hand-made batches: which rows take the served history, that the row's own
item is taken out of it (it is the row's label), and that the draw depends
on the seed and the batch's position only.
"""

import tensorflow as tf

from contracts import features as F
from trainer import served_history

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
  assert _histories(served_history.mix(_batch(), _served(), 0.0, seed)) == [
      [2], [], [0, 1], [1]]
  # a's served [x, y, z] without the row's item: y (row 0), z (row 2);
  # b's [y] keeps y (the row's item is x); the OOV user has none.
  assert _histories(served_history.mix(_batch(), _served(), 0.999, seed)) == [
      [0, 2], [1], [0, 1], []]


def test_the_draw_depends_on_the_seed_and_the_batch_position_only():
  batch = {F.USER_ID: tf.zeros([200], tf.int64),
           F.ITEM_ID: tf.fill([200], tf.constant(1, tf.int64)),
           F.HISTORY: tf.ragged.constant([[2]] * 200, tf.int64).to_sparse()}

  def chosen(seed, position):
    rows = _histories(served_history.mix(
        batch, _served(), 0.3, tf.constant([seed, position], tf.int64)))
    return [row == [0, 2] for row in rows]

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
