"""New-item matching: a new item reaches the users whose liked items its
text closely matches.

Why a rule beside the model: a new item has no interactions, so the model
scores it through its content alone (the cold path of trainer/towers.py).
That score is calibrated, and therefore low: new items draw far fewer
events than established ones. It is also weakly personal: its content
embedding shares a dominant direction with every other item's, so a sequel
ranks no better for the fans of its predecessors than for anyone else.
What does single them out is a close match between the new item's LM text
embedding and items the user liked: on ml-latest-small the held-out newest
part of a series reaches those fans' top 50 for about half of them this
way, against a few percent on the model's score (benchmarks/cold_start.py;
docs/benchmarks.md, "Cold items").

The rule: an item is new while the model was not trained on it (outside the
item vocabulary at export, or added by `mtrec catalog refresh`). A new item
matches a user when the mean of its `neighbors` highest cosine similarities
to the user's liked items (LM text, before the eval split) is at least
`threshold`. `recommend` adds `bonus` times the standard deviation of the
user's retrieval scores over the catalog to a matched item's retrieval
score, before the candidates are chosen, so the scale follows each user's
own spread, but never above the user's `keep_top` best items (after the
request's exclusions). Matches are computed when the module is built (at
export and at each refresh), so a request only gathers them.

A policy, configured (trainer.config.NewItemMatchConfig,
`serving.new_item_match`) and off by default: it trades some of the warm
ranking for new items that users are likely to want, and
benchmarks/cold_start.py measures both sides. Uncapped, the bonus lifted a
matched item to the top of the list and the cost showed in NDCG far more
than in recall; keeping the user's 5 best items above it halves that cost
and changes neither the cold recall nor the franchise share
(docs/benchmarks.md, "Cold items").
"""

from __future__ import annotations

import collections
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from contracts import artifacts
from contracts import features as F

# At most this many similarities are held at once (128 MiB of float32): the
# users' liked-item lists are matched against the new items a block of users
# at a time, [users, new items, longest list in the block].
_BLOCK_ELEMENTS = 1 << 25


def liked_items(transformed_examples_uri: str,
                tft_output: tft.TFTransformOutput,
                splits: Sequence[str] = (artifacts.TRAIN,
                                         artifacts.VALIDATION)
                ) -> dict[str, list[str]]:
  """Each user's liked items in `splits` (by default all before the eval
  split), sorted: the like label as the transform graph defines it (an
  explicit like, or rating >= transform.like_threshold); for an event
  without a like label (click data), a consumed item counts as liked."""
  spec = {k: v for k, v in tft_output.transformed_feature_spec().items()
          if k in (F.USER_ID, F.ITEM_ID, F.LIKE, F.LIKE_WEIGHT,
                   F.RETRIEVAL_WEIGHT)}
  users = tft_output.vocabulary_by_name(F.USER_ID_VOCAB)
  items = tft_output.vocabulary_by_name(F.ITEM_ID_VOCAB)
  files = [f for split in artifacts.split_names(transformed_examples_uri)
           if split in splits
           for f in artifacts.split_files(transformed_examples_uri, split)]
  liked = collections.defaultdict(set)
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192)
  for b in ds.map(lambda x: tf.io.parse_example(x, spec)):
    b = {k: v.numpy().reshape(len(v), -1)[:, 0] for k, v in b.items()}
    labelled = b.get(F.LIKE_WEIGHT, np.zeros_like(b[F.USER_ID])) > 0
    keep = np.where(labelled, b.get(F.LIKE, 0) > 0.5,
                    b.get(F.RETRIEVAL_WEIGHT, 1) > 0)
    for u, i in zip(b[F.USER_ID][keep], b[F.ITEM_ID][keep]):
      if 0 <= u < len(users) and 0 <= i < len(items):
        liked[users[u].decode()].add(items[i].decode())
  return {u: sorted(v) for u, v in sorted(liked.items())}


def unit_rows(vectors: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def match(liked_rows: Sequence[Sequence[int]], unit_vectors: np.ndarray,
          new_rows: Sequence[int], threshold: float, neighbors: int
          ) -> list[list[int]]:
  """For each user (their liked items' catalog rows), the new items' rows
  whose mean of the `neighbors` highest cosines to those items is at least
  `threshold` (a user with fewer liked items: the mean over all of them).

  unit_vectors: [catalog, dim] unit-length text embeddings.
  """
  new_rows = np.asarray(new_rows, np.int64)
  out: list[list[int]] = [[] for _ in liked_rows]
  if not len(new_rows):
    return out
  new = unit_vectors[new_rows]  # [m, dim]
  for start, end in _blocks([len(rows) for rows in liked_rows], len(new_rows)):
    block = [np.asarray(rows, np.int64) for rows in liked_rows[start:end]]
    width = max(len(rows) for rows in block)
    if not width:
      continue
    # [users, width] padded with -inf similarity, so padding is never
    # among a user's highest.
    padded = np.zeros((len(block), width), np.int64)
    valid = np.zeros((len(block), width), bool)
    for n, rows in enumerate(block):
      padded[n, :len(rows)], valid[n, :len(rows)] = rows, True
    sims = np.einsum("md,uwd->umw", new, unit_vectors[padded])
    sims = np.where(valid[:, None, :], sims, -np.inf)
    k = min(neighbors, width)
    top = np.partition(sims, width - k, axis=-1)[..., width - k:]  # [u, m, k]
    counts = np.minimum(valid.sum(axis=1), k)[:, None]  # [users, 1]
    mean = np.where(np.isfinite(top), top, 0.0).sum(-1) / np.maximum(
        counts, 1)
    for n, row in enumerate(mean):
      if counts[n, 0]:
        out[start + n] = new_rows[row >= threshold].tolist()
  return out


def match_catalog(user_ids: Sequence[str],
                  liked: Mapping[str, Sequence[str]],
                  item_ids: Sequence[str], vectors: np.ndarray,
                  has_text: np.ndarray, new: np.ndarray, threshold: float,
                  neighbors: int) -> list[list[int]]:
  """`match` over a catalog: for each of `user_ids`, the catalog rows of the
  new items (`new`: [items] bool) that match the user's liked item ids.
  vectors / has_text: the catalog's LM text, in catalog order (items
  without text are neither matched nor matched against)."""
  row = {i: n for n, i in enumerate(item_ids)}
  liked_rows = [[row[i] for i in liked.get(u, ())
                 if i in row and has_text[row[i]]] for u in user_ids]
  return match(liked_rows, unit_rows(vectors),
               np.flatnonzero(new & (has_text > 0)), threshold, neighbors)


def _blocks(lengths: Sequence[int], new_items: int
            ) -> list[tuple[int, int]]:
  """[start, end) ranges of users whose [users, new_items, longest list]
  block stays within _BLOCK_ELEMENTS (a single user may exceed it)."""
  out, start = [], 0
  while start < len(lengths):
    end, width = start + 1, lengths[start]
    while end < len(lengths) and (end + 1 - start) * new_items * max(
        width, lengths[end]) <= _BLOCK_ELEMENTS:
      width = max(width, lengths[end])
      end += 1
    out.append((start, end))
    start = end
  return out


def add_bonus(scores: tf.Tensor, matched: tf.RaggedTensor, bonus: float,
              spread: tf.Tensor, keep_top: Optional[int] = None
              ) -> tf.Tensor:
  """scores [n, items] (-inf at excluded items) plus bonus * spread [n] at
  each row's matched items (matched: [n, (item rows)]).

  With keep_top, a lifted score stops just below the row's keep_top-th
  best score before any bonus: the user's keep_top best items keep their
  places at the head of the list and matched items come after them, however
  many there are. A score already above that ceiling is left as it is. The
  ceiling is taken after the exclusions, so excluded (seen) items do not
  count among the best.
  """
  scores = tf.convert_to_tensor(scores)
  user = matched.value_rowids()
  indices = tf.stack([user, tf.cast(matched.flat_values, user.dtype)],
                     axis=1)
  current = tf.gather_nd(scores, indices)
  lifted = current + tf.cast(bonus, scores.dtype) * tf.gather(
      tf.cast(spread, scores.dtype), user)
  if keep_top is not None:
    k = tf.minimum(tf.constant(keep_top, tf.int32), tf.shape(scores)[1])
    kth = tf.math.top_k(scores, k).values[:, -1]  # [n]
    ceiling = tf.math.nextafter(kth, tf.constant(-np.inf, scores.dtype))
    lifted = tf.maximum(current, tf.minimum(lifted, tf.gather(ceiling, user)))
  return tf.tensor_scatter_nd_update(scores, indices, lifted)


def spread(scores: tf.Tensor) -> tf.Tensor:
  """[n]: the standard deviation of each row of scores [n, items] over the
  whole catalog (before exclusions): the unit of the bonus."""
  return tf.math.reduce_std(tf.convert_to_tensor(scores), axis=1)


def ragged(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
  """(values, row_splits) of a list of int lists, for tf.Variables."""
  return (np.asarray([v for row in lists for v in row], np.int64),
          np.cumsum([0] + [len(row) for row in lists]).astype(np.int64))


def settings_enabled(settings: Mapping[str, float] | None) -> bool:
  return bool(settings) and settings["bonus"] > 0
