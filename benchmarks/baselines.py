"""Classic reference models and the top-K accuracy of the TFRS tutorial.

A benchmark claim ("the model beats X") only means something against
baselines that are cheap, deterministic and well known, so these are plain
numpy over integer-indexed interactions (users 0..U-1, items 0..I-1), with no
TensorFlow and no randomness beyond an explicit seed:

- Popularity: an item's number of training interactions. On a protocol that
  does not remove a user's training items from the ranking (the TFRS
  tutorial's), it is strong: popular items are what most held-out events hit.
- EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW
  2019): the closed-form item-item model B = I - P / diag(P) with
  P = (XᵀX + λI)⁻¹, scores = X B.
- Item-kNN (Sarwar et al., "Item-based collaborative filtering
  recommendation algorithms", WWW 2001): cosine similarity between items'
  user columns, each item keeping its most similar neighbors, scores =
  X S.
- Biased matrix factorization for ratings, r̂ = μ + b_u + b_i + p_u·q_i,
  fitted by alternating ridge regressions (ALS), so every sweep has a closed
  form that a test can check by hand.

`top_k_categorical_accuracy` is the TFRS tutorial's retrieval metric
(tfrs.metrics.FactorizedTopK over every candidate): the share of held-out
interactions whose item is in the user's top K of the whole catalog,
training items included.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def top_k_categorical_accuracy(scores, users: np.ndarray, items: np.ndarray,
                               k: int, chunk: int = 256) -> float:
  """Share of (user, item) pairs whose item is in the user's top k.

  Ties count as TFRS counts them (tf.math.in_top_k on the positive's score
  against the top-k scores): the item is in the top k when fewer than k
  catalog items score strictly higher than it.

  Args:
    scores: [num_users, num_items] score of every catalog item for every
      user, or a function from an array of user rows to those rows' scores
      (so a large catalog is never held for every user at once).
    users: [n] row of each held-out interaction.
    items: [n] column of each held-out interaction.
    k: list length.
    chunk: users scored at once (memory: chunk × num_items).

  Returns:
    The accuracy in [0, 1]; NaN without interactions.
  """
  users = np.asarray(users, np.int64)
  items = np.asarray(items, np.int64)
  if users.size == 0:
    return float("nan")
  score_rows = scores if callable(scores) else (lambda u: scores[u])
  order = np.argsort(users, kind="stable")
  users, items = users[order], items[order]
  unique = np.unique(users)
  hits = 0
  for start in range(0, unique.size, chunk):
    block = unique[start:start + chunk]
    rows = np.asarray(score_rows(block))
    lo, hi = np.searchsorted(users, [block[0], block[-1] + 1])
    row_of = np.searchsorted(block, users[lo:hi])
    col = items[lo:hi]
    for s in range(0, row_of.size, chunk):  # bounded pairs × items at once
      r, c = row_of[s:s + chunk], col[s:s + chunk]
      positive = rows[r, c][:, None]
      hits += int(((rows[r] > positive).sum(axis=1) < k).sum())
  return hits / users.size


def accuracy_from_lists(top_items: dict, users: Sequence, items: Sequence
                        ) -> float:
  """The same accuracy from each user's already-ranked top-k list."""
  if len(users) == 0:
    return float("nan")
  sets = {u: set(v) for u, v in top_items.items()}
  return sum(i in sets.get(u, ()) for u, i in zip(users, items)) / len(users)


def interaction_matrix(users: np.ndarray, items: np.ndarray, num_users: int,
                       num_items: int) -> np.ndarray:
  """Binary [num_users, num_items] float32 matrix of who consumed what."""
  x = np.zeros((num_users, num_items), np.float32)
  x[np.asarray(users, np.int64), np.asarray(items, np.int64)] = 1.0
  return x


def popularity(items: np.ndarray, num_items: int) -> np.ndarray:
  """[num_items] training interaction counts: the popularity score."""
  return np.bincount(np.asarray(items, np.int64),
                     minlength=num_items).astype(np.float64)


def ease(x: np.ndarray, l2: float) -> np.ndarray:
  """EASE's item-item weights B (zero diagonal) for a binary matrix X.

  Closed form (Steck 2019, eq. 8): P = (XᵀX + λI)⁻¹, B_ij = -P_ij / P_jj for
  i ≠ j and B_jj = 0. Float64 for the inverse: the Gram matrix of a
  long-tailed catalog is badly conditioned in float32.
  """
  g = x.T.astype(np.float64) @ x.astype(np.float64)
  g[np.diag_indices_from(g)] += l2
  p = np.linalg.inv(g)
  b = p / (-np.diag(p))
  b[np.diag_indices_from(b)] = 0.0
  return b


def item_knn(x: np.ndarray, neighbors: int, chunk: int = 1024) -> np.ndarray:
  """Item-kNN weights S [items, items] for a binary matrix X.

  S[j, i] is the cosine similarity of items j and i (their columns of X)
  when j is among the `neighbors` items most similar to i, else 0; the
  diagonal is 0, so an item is not recommended because of itself, and an
  item without training users has no neighbors. Ties at the cut-off keep
  the lower index (a stable sort), so the result is deterministic.
  """
  g = x.T.astype(np.float32) @ x.astype(np.float32)
  norms = np.sqrt(np.diag(g).astype(np.float64))
  inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
  s = (g * inv[:, None] * inv[None, :]).astype(np.float32)
  del g
  np.fill_diagonal(s, 0.0)
  n = s.shape[0]
  if neighbors < n:
    for start in range(0, n, chunk):  # bounded memory: chunk columns at once
      cols = s[:, start:start + chunk]
      order = np.argsort(-cols, axis=0, kind="stable")
      np.put_along_axis(cols, order[neighbors:], 0.0, axis=0)
  return s


class BiasedMF:
  """r̂(u, i) = μ + b_u + b_i + p_u·q_i, fitted by ALS with an L2 penalty.

  Each sweep solves, for every user with the items fixed, the ridge problem
  min Σ_i (r_ui - μ - b_i - b_u - p_u·q_i)² + λ(b_u² + |p_u|²) in closed
  form, then the same for every item with the users fixed. Biases start at
  zero and factors at N(0, init_scale²) from `seed`; users or items never
  seen in training predict μ plus whatever side is known.
  """

  def __init__(self, factors: int = 32, l2: float = 10.0, sweeps: int = 15,
               init_scale: float = 0.1, seed: int = 42):
    self.factors = factors
    self.l2 = l2
    self.sweeps = sweeps
    self.init_scale = init_scale
    self.seed = seed

  def fit(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
          num_users: int, num_items: int) -> "BiasedMF":
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    ratings = np.asarray(ratings, np.float64)
    rng = np.random.default_rng(self.seed)
    self.mu = float(ratings.mean())
    self.user_bias = np.zeros(num_users)
    self.item_bias = np.zeros(num_items)
    self.user_factors = rng.normal(0, self.init_scale,
                                   (num_users, self.factors))
    self.item_factors = rng.normal(0, self.init_scale,
                                   (num_items, self.factors))
    by_user = _group(users, num_users)
    by_item = _group(items, num_items)
    for _ in range(self.sweeps):
      self._solve(by_user, items, ratings, self.item_bias, self.item_factors,
                  self.user_bias, self.user_factors)
      self._solve(by_item, users, ratings, self.user_bias, self.user_factors,
                  self.item_bias, self.item_factors)
    return self

  def _solve(self, groups, other, ratings, other_bias, other_factors,
             bias, factors) -> None:
    """Ridge regression of each row on [1, other side's factors]."""
    eye = self.l2 * np.eye(self.factors + 1)
    for row, idx in groups:
      j = other[idx]
      a = np.hstack([np.ones((len(j), 1)), other_factors[j]])
      y = ratings[idx] - self.mu - other_bias[j]
      w = np.linalg.solve(a.T @ a + eye, a.T @ y)
      bias[row], factors[row] = w[0], w[1:]

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    return (self.mu + self.user_bias[users] + self.item_bias[items] +
            np.einsum("nf,nf->n", self.user_factors[users],
                      self.item_factors[items]))


def _group(keys: np.ndarray, size: int) -> list[tuple[int, np.ndarray]]:
  """(key, positions of its rows) for every key that has rows."""
  order = np.argsort(keys, kind="stable")
  bounds = np.searchsorted(keys[order], np.arange(size + 1))
  return [(k, order[bounds[k]:bounds[k + 1]]) for k in range(size)
          if bounds[k + 1] > bounds[k]]


def masked_scores(scores: np.ndarray, known_items: Optional[np.ndarray]
                  ) -> np.ndarray:
  """Scores with items the model never saw pushed below every other item."""
  if known_items is None:
    return scores
  out = np.array(scores, dtype=np.float64, copy=True)
  out[:, ~known_items] = -np.inf
  return out
