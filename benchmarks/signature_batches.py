"""Benchmarks asking an export's signatures: embeddings of many users or
items (`embed_user_at` / `embed_item`), a chunk of ids per call, and
rankings as of each user's time (`recommend_at`).

The benchmarks that rank the whole catalog themselves (cold start, the
distillation teacher's ensemble) need every item's embedding; one call with
every id would make the signature run one batch the size of the catalog.
Rankings and user embeddings are asked as of a time the data gives, never
the machine's clock (`recommend_at`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np


def embed_all(signature: Callable[..., Any], input_name: str,
              ids: Sequence[str], chunk: int = 2048,
              **columns: Sequence[Any]) -> np.ndarray:
  """[len(ids), dim]: signature(input_name=ids, **columns)["embedding"], in
  order, at most `chunk` ids per call; columns: other inputs, one value per
  id (e.g. embed_user_at's timestamp)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not ids:
    raise ValueError(f"embed_all: no {input_name} to embed")
  for name, values in columns.items():
    if len(values) != len(ids):
      raise ValueError(f"embed_all: {len(values)} {name} for {len(ids)} "
                       f"{input_name}")

  def call(i: int) -> np.ndarray:
    inputs = {name: tf.constant(np.asarray(values[i:i + chunk]))
              for name, values in columns.items()}
    inputs[input_name] = tf.constant(list(ids[i:i + chunk]))
    return signature(**inputs)["embedding"].numpy()

  return np.concatenate([call(i) for i in range(0, len(ids), chunk)])


# What the benchmarks' rankings record in their results: mtrec ranked each
# user as of this (the report says so; older results, without it, ranked at
# the machine's clock).
RANKED_AS_OF = "first_eval_event"


def first_times(users: Sequence[str], event_users: Sequence[str],
                event_times: Sequence[int], default: int) -> np.ndarray:
  """[len(users)] int64: each user's earliest time among the events
  (event_users[n] at event_times[n]); `default` for a user without one.
  The time a benchmark ranks a user at: their first eval event, as the
  Evaluator's recommend_at asks (components/retrieval_eval.py)."""
  first: dict[str, int] = {}
  for user, t in zip(event_users, event_times):
    first[user] = min(int(t), first.get(user, int(t)))
  return np.array([first.get(u, default) for u in users], np.int64)


def recommend_at(model: Any, weights: Optional[Sequence[float]] = None
                 ) -> Callable[..., Any]:
  """recommend_excluding as of a time: a callable(user_id,
  exclude_item_ids, k, timestamp) over an export's `recommend_at`, fused
  with the model's own weights (or `weights`, one row for every user).

  `recommend` and `recommend_excluding` read the hour and weekday of the
  machine's clock, which reach the query tower and the heads: a benchmark
  ranking through them gets figures that depend on the hour it runs.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  signature = model.signatures["recommend_at"]
  row = ([float(w) for w in weights] if weights is not None
         else [float(w) for w in model.fusion_weights.numpy()])

  def call(user_id, exclude_item_ids, k, timestamp):
    n = int(user_id.shape[0])
    return signature(user_id=user_id, exclude_item_ids=exclude_item_ids,
                     k=k, fusion_weights=tf.constant([row] * n, tf.float32),
                     timestamp=timestamp)
  return call
