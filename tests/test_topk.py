"""The blocked top-k gives tf.math.top_k's answer, ties and -inf included."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import topk


def _assert_same_as_top_k(scores, k, block):
  expected = tf.math.top_k(scores, k)
  values, indices = topk.blocked_top_k(tf.constant(scores), k, block)
  np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())
  np.testing.assert_array_equal(values.numpy(), expected.values.numpy())


def test_hand_computed_case_with_a_tie_across_blocks():
  # Blocks of 2: [3, 1] [5, 3] [0, 3] [1]. The two 3s outside block 1 tie:
  # the lower index (0) comes first, as in top_k; the padded last block
  # never wins.
  scores = np.array([[3, 1, 5, 3, 0, 3, 1]], np.float32)
  values, indices = topk.blocked_top_k(tf.constant(scores), 3, block=2)
  np.testing.assert_array_equal(indices.numpy(), [[2, 0, 3]])
  np.testing.assert_array_equal(values.numpy(), [[5, 3, 3]])


@pytest.mark.parametrize("items,k,block", [
    (9742, 10, 64),   # the MovieLens catalog, recommend's top 10
    (9742, 100, 64),  # recommend_excluding's largest k
    (1000, 100, 64),  # k above the number of blocks (16)
    (130, 130, 64),   # k = every item
    (64, 3, 64),      # one block
])
def test_matches_top_k_with_many_ties(items, k, block):
  rng = np.random.default_rng(items + k)
  # Few distinct values: ties everywhere, across and within blocks.
  scores = rng.integers(0, 7, size=(5, items)).astype(np.float32)
  _assert_same_as_top_k(scores, k, block)
  _assert_same_as_top_k(rng.normal(size=(5, items)).astype(np.float32), k,
                        block)


def test_excluded_items_rank_after_every_other_and_before_padding():
  # recommend_excluding sets excluded items to -inf; with k above the
  # number of finite scores they come back (as from top_k), never padding.
  scores = np.full((2, 70), -np.inf, np.float32)
  scores[0, [3, 66]] = [1.0, 2.0]
  scores[1, 5] = 0.5
  _assert_same_as_top_k(scores, 5, 64)
  values, indices = topk.blocked_top_k(tf.constant(scores), 5, 64)
  assert indices.numpy().max() < 70


def test_k_as_a_tensor_and_an_empty_batch():
  scores = np.random.default_rng(0).normal(size=(3, 500)).astype(np.float32)
  _assert_same_as_top_k(scores, tf.constant(20), 64)
  values, indices = topk.blocked_top_k(tf.zeros([0, 500]), 10)
  assert values.shape == (0, 10) and indices.shape == (0, 10)
