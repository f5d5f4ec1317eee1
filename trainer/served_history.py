"""Training rows that see the history serving will give their user.

Why: a training event's history is the items consumed just before it, so
the query tower learns "what came last predicts what comes next". Serving
has one history per user, their latest items, and asks about their next
events (a temporal protocol: the same situation) or about any of their
interests (a random split, where the held-out events are spread over years
of the user's timeline: a different one). A model that has only seen the
first situation leans on the latest items and forgets the rest; on a random
split the shipped model lost a quarter of its top-100 accuracy to that.

So a share `fraction` of each training batch's rows get the user's served
history in place of their own, without the row's own item (it would be
its label). The lists are built as the export builds the ones it serves
(trainer/data.latest_histories), from the train split only: the export also
reads a validation split when there is one, whose items must stay out of
training features.
Those rows teach the query to answer for any point of the user's timeline
from the history it will actually have; the others keep teaching recency.

The two situations want different uses of the same items, so each mixed
row says which one it is: F.HISTORY_AHEAD is 1 where the row got the served
history (one that runs past the row's own event) and 0 where it kept its
own. The query tower projects the history separately for each
(towers.QueryTower, `history_modes`), and the export sets the feature from
the request: 1 when the request's timestamp comes before the last event of
the history it serves (trainer/export.py). Without that input one
projection serves both situations and `fraction` only trades one for the
other. On ml-latest-small's random split (protocol 1, 3 seeds), top-100
accuracy was 0.173 without it (fraction 0.1) and is 0.197 with it (0.15),
while the temporal protocol's Recall@20 stays within its seeds' spread
(docs/benchmarks.md).
The choice is per row, from a stateless generator keyed by the run's seed
and the batch's position; validation, evaluation and the export are
unchanged. (With several workers each draws for its own share of the
global batch: the same share of rows, not the same rows as one worker.)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from contracts import features as F


def by_vocabulary(histories: Mapping[str, Sequence[str]],
                  user_vocabulary: Sequence[str],
                  item_vocabulary: Sequence[str]) -> tf.RaggedTensor:
  """The served histories as item indices, one row per user index.

  Rows follow the user vocabulary, with an empty last row for its OOV
  index; items outside the item vocabulary are left out.
  """
  item_index = {item: n for n, item in enumerate(item_vocabulary)}
  rows = [[item_index[i] for i in histories.get(user, ()) if i in item_index]
          for user in user_vocabulary] + [[]]
  return tf.ragged.constant(rows, dtype=tf.int64, ragged_rank=1)


def mix(batch: Mapping[str, tf.Tensor], served: tf.RaggedTensor,
        fraction: float, seed: tf.Tensor) -> dict[str, tf.Tensor]:
  """`batch` with a `fraction` of its rows' histories served ones, and
  F.HISTORY_AHEAD saying which (1.0) and which not (0.0).

  Args:
    seed: a stateless seed, shape [2] (the run's seed and the batch's
      position), so the rows chosen do not depend on thread timing.
  """
  batch = dict(batch)
  own = tf.RaggedTensor.from_sparse(batch[F.HISTORY])
  users = tf.reshape(batch[F.USER_ID], [-1])
  items = tf.reshape(batch[F.ITEM_ID], [-1])
  theirs = tf.gather(served, users)
  theirs = tf.ragged.boolean_mask(theirs, tf.not_equal(
      theirs, tf.expand_dims(items, 1)))
  rows = tf.shape(users, out_type=tf.int64)[0]
  chosen = tf.random.stateless_uniform([rows], seed=seed) < fraction
  index = tf.where(chosen, rows + tf.range(rows), tf.range(rows))
  mixed = tf.gather(tf.concat([own, theirs], axis=0), index)
  batch[F.HISTORY] = mixed.to_sparse()
  batch[F.HISTORY_AHEAD] = tf.cast(chosen, tf.float32)
  return batch


def with_served_histories(ds: tf.data.Dataset, served: tf.RaggedTensor,
                          fraction: float, seed: int) -> tf.data.Dataset:
  """`mix` over a batched dataset, each batch with its own draw."""
  return ds.enumerate().map(
      lambda n, batch: mix(batch, served, fraction,
                           tf.stack([tf.constant(seed, tf.int64), n])),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
