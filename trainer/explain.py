"""Why this item: the `explain` signature's answer for a (user, item) pair.

Why a signature: a multi-task recommender that cannot say why it ranks an
item is hard to trust and hard to debug, and the parts of an answer already
exist in the model: the fused score is a weighted sum of task terms
(trainer/fusion.py), the query reads the user's history, the ranking tasks
mix shared experts through per-task gates (trainer/shared_layers.py), and
the candidate tower gates an item's id embedding against its content
(trainer/towers.py). `explain` reads them out for the request time:

- score, contribution_<task>: the fused score the item gets beside the
  user's candidates (standardized against them, as `recommend` does), and
  its terms, which add up to it; rank: where that score puts it among the
  user's candidates (1: first); retrieval_score and each ranking head's
  prediction.
- history_item_ids, history_similarities [B, 3]: the user's history items
  nearest the item (cosine of the candidate embeddings, as because_item_ids
  in `recommend`), "" and 0 past the history's end.
- interest_categories, interest_shares [B, 3]: the categories most of the
  user's history falls in, with the share of history items in each.
- gate_<task> [B, experts]: which shared experts each ranking task relied on
  for this pair (MMoE, PLE's last level; none for a shared bottom).
- item_content_share: the share of the item's embedding that came from its
  content rather than its id (1 for an item the model was not trained on;
  -1 for a model without LM text, whose tower has no gate); item_known,
  user_known: whether the model was trained on the item and knows the user.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from contracts import features as F
from components import time_features
from trainer import fusion as fusion_lib

TOP = 3  # history items and interest categories per answer


def category_table(categories: Sequence[Sequence[str]]
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
  """(names, values, row_splits): each catalog item's category indices as a
  ragged table, the names sorted."""
  names = sorted({c for cats in categories for c in cats})
  index = {c: i for i, c in enumerate(names)}
  values = [index[c] for cats in categories for c in cats]
  splits = np.cumsum([0] + [len(c) for c in categories])
  return names, np.asarray(values, np.int64), splits.astype(np.int64)


def _top(values: tf.Tensor, usable: tf.Tensor, labels: tf.Tensor,
         empty: Any) -> tuple[tf.Tensor, tf.Tensor]:
  """The TOP largest usable values per row and their labels; `empty` and 0
  where a row has fewer."""
  padded = tf.pad(tf.where(usable, values, -np.inf), [[0, 0], [0, TOP]],
                  constant_values=-np.inf)
  labels = tf.pad(labels, [[0, 0], [0, TOP]], constant_values=empty)
  best = tf.math.top_k(padded, TOP)
  found = tf.math.is_finite(best.values)
  return (tf.where(found, tf.gather(labels, best.indices, batch_dims=1),
                   empty),
          tf.where(found, best.values, 0.0))


def explain(module: Any, user_id: tf.Tensor, item_id: tf.Tensor
            ) -> dict[str, tf.Tensor]:
  """The signature's outputs (module docstring) for [B] users and items.

  Args:
    module: the trainer.export.ServingModule being exported.
    user_id, item_id: [B] strings; either may be unknown to the model.
  """
  n = tf.shape(user_id)[0]
  now = module._now(1)  # pylint: disable=protected-access
  hour, weekday = time_features.hour_and_weekday(now)
  hours, weekdays = tf.fill([n], hour[0]), tf.fill([n], weekday[0])
  query = module._query(user_id, now, hour, weekday)  # pylint: disable=protected-access

  # The item's embedding: its index row (what `recommend` scores) when the
  # catalog has it, else the candidate tower on what the model knows of it.
  row = module.item_rows.lookup(item_id)
  in_catalog = row >= 0
  feats = module.transform(tf.fill([n], ""), item_id, tf.fill([n], now[0]),
                           user_side=False)
  candidate = tf.where(in_catalog[:, None],
                       tf.gather(module.index, tf.maximum(row, 0)),
                       module.candidate_tower(feats))

  # The user's candidates, as `recommend` builds them; the item is scored
  # beside them, standardized against them.
  scores = module.retrieval_scores(query, user_id)
  stage = module.fused_stage(query, scores, hours, weekdays,
                             module.fusion_weights)
  retrieval = tf.where(
      in_catalog, tf.gather(scores, tf.maximum(row, 0), batch_dims=1),
      tf.reduce_sum(query * candidate, axis=-1))
  raw = {}
  if module.ranking_heads is not None:
    raw = module.ranking_heads(query, candidate, hours, weekdays)
  values = fusion_lib.task_values(
      module.fusion_spec, retrieval[:, None],
      {t: v[:, None] for t, v in raw.items()}, reference=stage["retrieval"])
  fused, contributions = fusion_lib.fuse(values, module.fusion_weights,
                                         retrieval[:, None])
  score = fused[:, 0]
  # The item's score is recomputed here on [B] rows, the stage's on [B, C]:
  # other kernels, so a candidate's own copy of it may differ in the last
  # float bits. Only a candidate ahead by more than that is ahead of it.
  ahead = stage["fused"] > (score + 1e-5 * (1.0 + tf.abs(score)))[:, None]
  out = {"score": score, "retrieval_score": retrieval,
         "rank": 1 + tf.reduce_sum(tf.cast(ahead, tf.int32), axis=1)}
  for i, task in enumerate(module.fusion_spec.tasks):
    out[f"contribution_{task}"] = contributions[:, 0, i]
  out.update(module.serve_ranking(raw))
  if module.ranking_heads is not None:
    for task, gate in module.ranking_heads.gate_weights(
        query, candidate, hours, weekdays).items():
      out[f"gate_{task}"] = tf.cast(gate, tf.float32)

  # The history: nearest items, and the categories it falls in.
  user_row = module.user_rows.lookup(user_id)
  history = module._histories(user_row).to_tensor("")  # pylint: disable=protected-access
  history = tf.pad(history, [[0, 0], [0, 1]])  # never empty; "" is no item
  history_rows = module.item_rows.lookup(history)  # -1: padding, unknown
  unit_item = tf.math.l2_normalize(candidate, axis=-1)
  similarity = tf.einsum("nd,nhd->nh", unit_item, tf.gather(
      module.unit_index, tf.maximum(history_rows, 0)))
  usable = tf.logical_and(history_rows >= 0, history != item_id[:, None])
  out["history_item_ids"], out["history_similarities"] = _top(
      similarity, usable, history, "")
  known_history = tf.cast(history_rows >= 0, tf.float32)
  # Each history slot's categories, [n * h, (c)]; a category counts once
  # per history item it labels.
  slots = tf.gather(module.item_categories_ragged(),
                    tf.reshape(tf.maximum(history_rows, 0), [-1]))
  slot = slots.value_rowids()
  user = slot // tf.cast(tf.shape(history)[1], tf.int64)
  counts = tf.math.unsorted_segment_sum(
      tf.gather(tf.reshape(known_history, [-1]), slot),
      user * module.num_categories + slots.values,
      tf.cast(n, tf.int64) * module.num_categories)
  shares = tf.reshape(counts, [n, module.num_categories]) / tf.maximum(
      tf.reduce_sum(known_history, axis=1, keepdims=True), 1.0)
  names = tf.tile(module.category_names[None], [n, 1])
  out["interest_categories"], out["interest_shares"] = _top(
      shares, shares > 0, names, "")

  # What the model knows of each side.
  # The item vocabulary's OOV index is its last embedding row.
  item_known = (feats[F.ITEM_ID] <
                module.candidate_tower.item_embedding.input_dim - 1)
  out["item_known"] = item_known
  out["user_known"] = user_row < module.unknown_user_row
  if getattr(module.candidate_tower, "has_text", False):
    share = 1.0 - tf.reduce_mean(module.candidate_tower.id_gate(feats),
                                 axis=-1)
    out["item_content_share"] = tf.where(item_known, share, 1.0)
  else:
    out["item_content_share"] = tf.fill([n], -1.0)
  return out
