"""A validation slice for choices made after training (the fusion weights),
so that the eval split is read only by the Evaluator: ExampleGen's
validation split when the run has one (`from_validation_split`), else one
carved from the train split (`carve`, below).

For a seeded share of the users (at most `max_users`: those whose seeded
hash is lowest), their latest `holdout_fraction` of consumed training events
(in ExampleGen's order: timestamp, then item id) are held out: every row of
those (user, item) pairs leaves the training data, impressions included, so
the model never sees them as labels. Each such user is then ranked as the
served model would rank them at their first held-out event: their history
is the consumed items before it, the items they consumed before it are
excluded, and the held-out items are what a good list holds. A user needs
at least one event on each side.

Each held-out item carries a graded gain: 2 when liked, 1 when only
consumed. "Liked" is the like label as the transform graph defines it (an
explicit like, or rating >= transform.like_threshold), read by running the
TFT graph over the held-out rows, as the Evaluator does for the eval split.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import metrics as M
from components import schema
from contracts import artifacts
from contracts import features as F
from contracts import records as r

# The Evaluator's graded relevance (components/metrics.py).
LIKED_GAIN = M.LIKED_GAIN
CONSUMED_GAIN = M.CONSUMED_GAIN


@dataclasses.dataclass
class ValidationSlice:
  """The held-out users, as of their first held-out event."""

  user_ids: list[str]
  histories: list[list[str]]  # consumed before it, oldest first
  timestamps: list[int]  # of the first held-out event
  seen: list[list[str]]  # kept training items: excluded from the ranking
  gains: list[dict[str, float]]  # held-out item -> LIKED_GAIN or CONSUMED_GAIN
  held_out_pairs: list[tuple[str, str]]  # (user, item) rows left out

  def __len__(self) -> int:
    return len(self.user_ids)

  def summary(self) -> dict[str, Any]:
    items = sum(len(g) for g in self.gains)
    liked = sum(sum(v == LIKED_GAIN for v in g.values()) for g in self.gains)
    return {"users": len(self), "held_out_items": items,
            "liked_held_out_items": int(liked)}


def _user_hash(user: str, seed: int) -> float:
  h = hashlib.sha256(f"validation:{seed}:{user}".encode()).digest()
  return int.from_bytes(h[:8], "big") / 2.0**64


def _consumed_events(examples_uri: str, split: str,
                     chosen: "_Chosen", validation_users: float
                     ) -> dict[str, list[tuple[int, str, bytes]]]:
  """The chosen users' consumed events of one split, with their records
  (the like label of the held-out ones comes from the TFT graph). A user is
  chosen when their seeded hash (memoized in `chosen`) is below
  `validation_users`."""
  events: dict[str, list[tuple[int, str, bytes]]] = collections.defaultdict(
      list)
  key_spec = {r.USER_ID: tf.io.FixedLenFeature([], tf.string),
              r.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
              r.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
              r.CLICK: tf.io.FixedLenFeature([], tf.int64, default_value=1)}
  files = artifacts.split_files(examples_uri, split)
  for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(
      8192):
    parsed = tf.io.parse_example(batch, key_spec)
    records = batch.numpy()
    for n, (u, i, t, c) in enumerate(zip(
        parsed[r.USER_ID].numpy(), parsed[r.ITEM_ID].numpy(),
        parsed[r.TIMESTAMP].numpy(), parsed[r.CLICK].numpy())):
      if c <= 0:
        continue
      user = u.decode()
      if chosen[user] < validation_users:
        events[user].append((int(t), i.decode(), records[n]))
  return events


def carve(examples_uri: str, tft_output: tft.TFTransformOutput,
          validation_users: float, holdout_fraction: float, max_users: int,
          seed: int, history_length: int) -> ValidationSlice:
  """The slice of the train split (see the module docstring)."""
  chosen = _Chosen(seed)
  events = _consumed_events(examples_uri, artifacts.TRAIN, chosen,
                            validation_users)
  users = sorted((u for u, e in events.items() if len(e) >= 2),
                 key=lambda u: (chosen[u], u))[:max_users]
  split = {}
  for user in users:
    ordered = sorted(events[user], key=lambda e: (e[0], e[1]))
    held = int(len(ordered) * holdout_fraction)
    if 1 <= held < len(ordered):
      split[user] = (ordered[:-held], ordered[-held:])
  return _build(split, examples_uri, tft_output, history_length,
                held_out_of_training=True)


def from_validation_split(examples_uri: str,
                          tft_output: tft.TFTransformOutput,
                          validation_users: float, max_users: int, seed: int,
                          history_length: int) -> ValidationSlice:
  """The slice ExampleGen's validation split already holds out.

  For the chosen users with consumed events in both splits: their train
  events are what they had, their validation events what a good list
  holds. Nothing leaves training (the split never entered it), so the
  model the search ranks with is the one served, without a refit.
  """
  chosen = _Chosen(seed)
  train = _consumed_events(examples_uri, artifacts.TRAIN, chosen,
                           validation_users)
  held = _consumed_events(examples_uri, artifacts.VALIDATION, chosen,
                          validation_users)
  users = sorted((u for u in held if train.get(u)),
                 key=lambda u: (chosen[u], u))[:max_users]
  split = {u: (sorted(train[u], key=lambda e: (e[0], e[1])),
               sorted(held[u], key=lambda e: (e[0], e[1]))) for u in users}
  return _build(split, examples_uri, tft_output, history_length,
                held_out_of_training=False)


class _Chosen(dict):
  """user -> seeded hash, computed on first use."""

  def __init__(self, seed: int):
    super().__init__()
    self._seed = seed

  def __missing__(self, user: str) -> float:
    value = self[user] = _user_hash(user, self._seed)
    return value


def _build(split: dict[str, tuple[list, list]], examples_uri: str,
           tft_output: tft.TFTransformOutput, history_length: int,
           held_out_of_training: bool) -> ValidationSlice:
  """The slice of users -> (events before, held-out events), each event
  (timestamp, item, record), time-ordered."""
  raw_spec = schema.read_feature_spec(examples_uri)
  out = ValidationSlice([], [], [], [], [], [])
  held_records: list[bytes] = []
  held_owner: list[int] = []
  for user in sorted(split):
    kept, out_events = split[user]
    kept_items = [i for _, i, _ in kept]
    row = len(out.user_ids)
    out.user_ids.append(user)
    out.histories.append(kept_items[-history_length:] if history_length
                         else [])
    out.timestamps.append(out_events[0][0])
    out.seen.append(sorted(set(kept_items)))
    out.gains.append({})
    for _, item, record in out_events:
      if held_out_of_training:
        out.held_out_pairs.append((user, item))
      held_records.append(record)
      held_owner.append(row)
  _add_gains(out, held_records, held_owner, raw_spec, tft_output)
  # An item consumed before the cut-off and again after it is excluded, so
  # it cannot be found again: it is no held-out item for the ranking.
  for row, seen in enumerate(out.seen):
    for item in set(out.gains[row]) & set(seen):
      del out.gains[row][item]
  keep = [n for n, g in enumerate(out.gains) if g]
  for name in ("user_ids", "histories", "timestamps", "seen", "gains"):
    setattr(out, name, [getattr(out, name)[n] for n in keep])
  return out


def _add_gains(out: ValidationSlice, records: list[bytes], owner: list[int],
               raw_spec: dict[str, Any],
               tft_output: tft.TFTransformOutput) -> None:
  layer = tft_output.transform_features_layer()
  for start in range(0, len(records), 4096):
    raw = tf.io.parse_example(tf.constant(records[start:start + 4096]),
                              raw_spec)
    labels = layer(raw)
    liked = (labels[F.LIKE].numpy() > 0.5) & (
        labels[F.LIKE_WEIGHT].numpy() > 0)
    items = raw[r.ITEM_ID].numpy()
    for n, (item, is_liked) in enumerate(zip(items, liked)):
      gains = out.gains[owner[start + n]]
      gain = LIKED_GAIN if is_liked else CONSUMED_GAIN
      gains[item.decode()] = max(gains.get(item.decode(), 0.0), gain)


def pair_keys(pairs: list[tuple[str, str]],
              tft_output: tft.TFTransformOutput) -> Optional[np.ndarray]:
  """The transformed data's key of each (user, item) pair: user index *
  (item vocabulary size + 1) + item index (data.make_dataset drops rows
  with these keys). None without pairs."""
  if not pairs:
    return None
  users = {u.decode(): n for n, u in enumerate(
      tft_output.vocabulary_by_name(F.USER_ID_VOCAB))}
  item_vocab = tft_output.vocabulary_by_name(F.ITEM_ID_VOCAB)
  items = {i.decode(): n for n, i in enumerate(item_vocab)}
  modulus = len(item_vocab) + 1
  return np.array(sorted({users[u] * modulus + items[i] for u, i in pairs
                          if u in users and i in items}), np.int64)
