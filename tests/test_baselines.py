"""The benchmark's reference models and metric, on cases solved by hand.

A baseline that is subtly wrong makes every comparison against it wrong, so
each is checked against values worked out on paper (the derivations are in
the comments), not against another implementation.
"""

import numpy as np
import pytest

from benchmarks import baselines


# Scores of 2 users over 3 items; user 1 has a tie at the top.
SCORES = np.array([[3.0, 1.0, 2.0],
                   [0.0, 5.0, 5.0]])
USERS = np.array([0, 0, 1, 1])
ITEMS = np.array([0, 1, 2, 0])


@pytest.mark.parametrize("k, expected", [
    # (0,0): nothing above 3 -> hit. (0,1): 3 and 2 above 1 -> miss at k<3.
    # (1,2): 5 is not above 5, so nothing above -> hit (ties count in, as
    # tf.math.in_top_k). (1,0): two items above 0 -> miss at k<3.
    (1, 0.5), (2, 0.5), (3, 1.0)])
def test_top_k_categorical_accuracy(k, expected):
  assert baselines.top_k_categorical_accuracy(SCORES, USERS, ITEMS, k) == (
      expected)
  # The callable form (rows computed on demand) and tiny chunks agree.
  assert baselines.top_k_categorical_accuracy(
      lambda u: SCORES[u], USERS, ITEMS, k, chunk=1) == expected


def test_top_k_categorical_accuracy_unordered_users_and_empty():
  order = np.array([3, 1, 2, 0])
  assert baselines.top_k_categorical_accuracy(
      SCORES, USERS[order], ITEMS[order], 1) == 0.5
  assert np.isnan(baselines.top_k_categorical_accuracy(
      SCORES, np.array([], int), np.array([], int), 1))


def test_accuracy_from_lists():
  top = {"a": ["x", "y"], "b": ["z"]}
  # a-x hit, a-z miss, b-z hit, c-x miss (a user without a list).
  assert baselines.accuracy_from_lists(
      top, ["a", "a", "b", "c"], ["x", "z", "z", "x"]) == 0.5


def test_popularity_counts():
  np.testing.assert_array_equal(
      baselines.popularity(np.array([2, 0, 2, 1, 2]), 4), [1, 1, 3, 0])


def test_ease_closed_form():
  # X = [[1,1,0],[0,1,1]], λ = 1: XᵀX + I = [[2,1,0],[1,3,1],[0,1,2]],
  # determinant 8, P = (1/8)[[5,-2,1],[-2,4,-2],[1,-2,5]];
  # B_ij = -P_ij / P_jj off the diagonal, 0 on it.
  x = baselines.interaction_matrix(np.array([0, 0, 1, 1]),
                                   np.array([0, 1, 1, 2]), 2, 3)
  b = baselines.ease(x, 1.0)
  np.testing.assert_allclose(b, [[0.0, 0.5, -0.2],
                                 [0.4, 0.0, 0.4],
                                 [-0.2, 0.5, 0.0]], atol=1e-12)
  # Scores X B: user 0 = rows 0 + 1 of B, user 1 = rows 1 + 2.
  np.testing.assert_allclose(x @ b, [[0.4, 0.5, 0.2], [0.2, 0.5, 0.4]],
                             atol=1e-6)


def test_biased_mf_one_sweep_of_biases():
  # Ratings (u0,i0,5), (u0,i1,4), (u1,i0,3): μ = 4. No factors, λ = 1, one
  # sweep. Users first, item biases 0: b_u = Σ(r - μ) / (n_u + λ):
  # b_u0 = (1 + 0) / 3 = 1/3, b_u1 = -1 / 2. Then items:
  # b_i0 = ((5-4-1/3) + (3-4+1/2)) / 3 = (2/3 - 1/2) / 3 = 1/18,
  # b_i1 = (4-4-1/3) / 2 = -1/6.
  mf = baselines.BiasedMF(factors=0, l2=1.0, sweeps=1).fit(
      np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([5.0, 4.0, 3.0]),
      2, 2)
  assert mf.mu == 4.0
  np.testing.assert_allclose(mf.user_bias, [1 / 3, -1 / 2])
  np.testing.assert_allclose(mf.item_bias, [1 / 18, -1 / 6])
  np.testing.assert_allclose(mf.predict(np.array([1, 0]), np.array([1, 0])),
                             [4 - 1 / 2 - 1 / 6, 4 + 1 / 3 + 1 / 18])


def test_biased_mf_recovers_an_exact_rank_one_matrix():
  # r = 3 + b_u + b_i + p_u q_i observed everywhere, almost no penalty: ALS
  # must reproduce it.
  rng = np.random.default_rng(0)
  bu, bi = rng.normal(size=6) * 0.3, rng.normal(size=5) * 0.3
  p, q = rng.normal(size=6), rng.normal(size=5)
  u, i = np.meshgrid(np.arange(6), np.arange(5), indexing="ij")
  u, i = u.ravel(), i.ravel()
  r = 3 + bu[u] + bi[i] + p[u] * q[i]
  mf = baselines.BiasedMF(factors=1, l2=1e-6, sweeps=200, seed=1).fit(
      u, i, r, 6, 5)
  np.testing.assert_allclose(mf.predict(u, i), r, atol=1e-3)


def test_masked_scores_push_unknown_items_last():
  out = baselines.masked_scores(SCORES, np.array([True, False, True]))
  assert np.isneginf(out[:, 1]).all()
  np.testing.assert_array_equal(out[:, [0, 2]], SCORES[:, [0, 2]])


def test_item_knn_keeps_each_items_nearest_neighbors():
  # Users 0 and 1 consumed items 0 and 1; user 2 items 0 and 2. Columns:
  # item 0 has 3 users, item 1 2, item 2 1; shared users: (0, 1) 2,
  # (0, 2) 1, (1, 2) 0. Cosines: (0, 1) 2/sqrt(6), (0, 2) 1/sqrt(3),
  # (1, 2) 0. Item 3 has no user: no neighbors, nobody's neighbor.
  x = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0]], np.float32)
  c01, c02 = 2 / np.sqrt(6), 1 / np.sqrt(3)
  full = np.array([[0, c01, c02, 0], [c01, 0, 0, 0], [c02, 0, 0, 0],
                   [0, 0, 0, 0]])
  np.testing.assert_allclose(baselines.item_knn(x, 4), full, rtol=1e-6)
  # One neighbor per item (column): item 0 keeps item 1 (c01 > c02); item 1
  # and item 2 keep item 0. Item 3's column is all zeros: the tie keeps
  # the lowest index, at similarity 0.
  one = np.array([[0, c01, c02, 0], [c01, 0, 0, 0], [0, 0, 0, 0],
                  [0, 0, 0, 0]])
  np.testing.assert_allclose(baselines.item_knn(x, 1, chunk=3), one,
                             rtol=1e-6)
  # A user who consumed only item 2 is recommended item 0 with 2
  # neighbors, nothing with one.
  np.testing.assert_allclose(np.array([0, 0, 1, 0]) @ baselines.item_knn(
      x, 2), [c02, 0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(np.array([0, 0, 1, 0]) @ baselines.item_knn(
      x, 1), [0, 0, 0, 0])
