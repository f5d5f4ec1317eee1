"""Freshness: a configured serving policy that gives new items exposure.

Why a policy beside the model: a new item has no interactions, so even when
its content places it well (the cold-item path of trainer/towers.py) the
model has no evidence that anyone will want it, and ranks it accordingly.
A product may still want new items seen while they are new. That is a
trade of measured quality for exposure, so it is explicit, configured
(trainer.config.FreshnessConfig, `serving.freshness`), off by default and
measured apart from the model (benchmarks/cold_start.py).

An item is new from the moment it enters a served catalog without
interaction data: a catalog item outside the item vocabulary when the
trainer exports, or an item `mtrec catalog refresh` adds. That moment,
`added_at` (seconds since the epoch; 0 for an item the model was trained
on), travels with the catalog in the refresh state, so a later refresh
does not make an old item new again. `recommend` adds
bonus * 0.5 ** (age_days / half_life_days) to a new item's retrieval score
until max_age_days, before the candidates are chosen.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from trainer import refresh_state

ADDED_AT = refresh_state.ADDED_AT  # the catalog column
_DAY_SECONDS = 86400.0


def added_at(item_ids: Sequence[str], trained_item_ids: Sequence[str],
             known: Optional[Mapping[str, int]], now: int) -> np.ndarray:
  """When each catalog item became new: its recorded time if `known` has
  one, else `now` for an item the model was not trained on, else 0."""
  trained = set(trained_item_ids)
  known = known or {}
  return np.array([
      known[i] if i in known else (0 if i in trained else now)
      for i in item_ids], np.int64)


def bonus(item_added_at: tf.Tensor, now: tf.Tensor,
          settings: Mapping[str, Any]) -> tf.Tensor:
  """[items] float32: what `recommend` adds to each item's retrieval score
  at time `now` (int64 seconds); 0 for items that are not new."""
  age_days = tf.cast(now - item_added_at, tf.float32) / _DAY_SECONDS
  # An item added "in the future" (clock skew between machines) is age 0.
  age_days = tf.maximum(age_days, 0.0)
  new = tf.logical_and(item_added_at > 0,
                       age_days < settings["max_age_days"])
  decayed = settings["bonus"] * tf.pow(
      0.5, age_days / settings["half_life_days"])
  return tf.where(new, decayed, tf.zeros_like(decayed))
