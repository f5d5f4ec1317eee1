"""Exact top-k over a large catalog, in two passes over blocks.

`recommend` ranks every catalog item for each user; on CPU, TensorFlow's
TopKV2 keeps a heap per row, and at serving's batch sizes over the MovieLens
catalog it was measured to cost more than the matmul that produced the
scores (figures in docs/design_measurements.md). Almost all of that work
is spent on items that cannot be in the top k. So the scores are cut into blocks of
`block` items; a block whose best item is not among the k best block maxima
cannot hold a top-k item (the k blocks that beat it each hold an item that
beats, or ties at a lower index, every item of it). A vectorized max per
block, a top-k over the block maxima and a top-k over the k chosen blocks'
items replace the heap over the whole row, measured several times cheaper
at that size.

The result is exactly `tf.math.top_k`'s, ties included: the chosen blocks
are gathered in catalog order, so top_k's rule (the lower index first among
equal values) picks the same items in the same order. Padding is -inf at
the end of the row, so it ranks after every real item, -inf ones included.
Only core TensorFlow ops, so TF Serving runs it.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import tensorflow as tf

# Measured on the MovieLens catalog: the optimum is flat around this size and
# much larger blocks are clearly slower (docs/design_measurements.md).
DEFAULT_BLOCK = 64


def blocked_top_k(scores: tf.Tensor, k: Union[int, tf.Tensor],
                  block: int = DEFAULT_BLOCK) -> tuple[tf.Tensor, tf.Tensor]:
  """(values, indices) of the k largest scores of each row, as tf.math.top_k.

  Args:
    scores: [batch, items] float scores.
    k: how many per row; at most `items` (top_k's own requirement).
    block: items per block.

  Returns:
    values [batch, k] in descending order and their int32 indices.
  """
  batch = tf.shape(scores)[0]
  items = tf.shape(scores)[1]
  blocks = (items + block - 1) // block
  padded = tf.pad(scores, [[0, 0], [0, blocks * block - items]],
                  constant_values=-np.inf)
  grid = tf.reshape(padded, [batch, blocks, block])
  # With k above the number of blocks every block is a candidate.
  chosen_count = tf.minimum(tf.convert_to_tensor(k, tf.int32), blocks)
  best_blocks = tf.math.top_k(tf.reduce_max(grid, axis=2), chosen_count)
  chosen = tf.sort(best_blocks.indices, axis=1)  # catalog order: stable ties
  candidates = tf.reshape(tf.gather(grid, chosen, batch_dims=1),
                          [batch, chosen_count * block])
  top = tf.math.top_k(candidates, k)
  block_of = tf.gather(chosen, top.indices // block, batch_dims=1)
  return top.values, block_of * block + top.indices % block
