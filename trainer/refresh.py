"""Catalog refresh: new or changed items served without retraining.

Why: an item added to the catalog after training has no interactions and no
id embedding, but with LM text features its content alone places it in the
embedding space (the candidate tower learned that path through id dropout).
So adding it needs only (1) its text embedded by the same frozen encoder and
(2) the candidate index recomputed through the trained tower, not a new
training run.

Every export therefore writes, beside the warm-start weights (the trained
variables, trainer/warm_start.py), what rebuilding the serving module needs:
the transform graph, the trainer config and training statistics, the item
catalog with its LM vectors, the user profiles and histories
(`assets.extra/refresh/`). `refresh()` rebuilds the same Keras model from
those, loads the trained weights into it, merges the new items into the
catalog with their text vectors, and exports a new SavedModel through the
same code path as the trainer (so `recommend` indexes every item, the new
ones through their content).

This module only rebuilds a model. Which version to rebuild from (the
served one), embedding the new texts, validating the result and publishing
it are the workflow's (pipeline/catalog_refresh.py), so the trainer depends
on neither the encoder nor the serving root.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import trainer  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from contracts import features as F
from contracts import records as r
from trainer import export
from trainer import freshness as freshness_lib
from trainer import fusion as fusion_lib
from trainer import inputs as inputs_lib
from trainer import refresh_state
from trainer import run as run_lib
from trainer import warm_start as warm_start_lib
from trainer.config import TrainerConfig




def normalize_item(raw: Mapping[str, Any]) -> dict[str, Any]:
  """A new item as catalog columns: lists for categories and tags."""

  def as_list(value):
    if value is None:
      return []
    if isinstance(value, str):
      return [v.strip() for v in value.split(r.CATEGORY_SEPARATOR)
              if v.strip()]
    return [str(v) for v in value]

  item_id = raw.get(r.ITEM_ID)
  if item_id is None or not str(item_id).strip():
    raise ValueError(f"an item needs an {r.ITEM_ID}: {dict(raw)}")
  return {r.ITEM_ID: str(raw[r.ITEM_ID]).strip(),
          r.TITLE: str(raw.get(r.TITLE) or ""),
          r.CATEGORIES: as_list(raw.get(r.CATEGORIES)),
          r.YEAR: int(raw.get(r.YEAR) or 0),
          r.TAGS: as_list(raw.get(r.TAGS))}


def read_items_file(path: str) -> list[dict[str, Any]]:
  """Items from JSON Lines or CSV (item_id, title, categories 'a|b', year,
  tags 'x|y')."""
  # utf-8-sig: a spreadsheet's byte-order mark is not part of the first key.
  with open(path, newline="", encoding="utf-8-sig") as f:
    if path.endswith((".jsonl", ".json")):
      rows = [json.loads(line) for line in f if line.strip()]
    else:
      rows = list(csv.DictReader(f))
  return [normalize_item(row) for row in rows]


def rebuild(source_dir: str, new_items: Sequence[Mapping[str, Any]],
            new_item_text: Optional[Mapping[str, Any]], export_dir: str,
            model_name: str,
            log: Callable[[str], None] = print) -> dict[str, Any]:
  """Exports `source_dir`'s model with `new_items` added or updated.

  Args:
    source_dir: a SavedModel exported by the trainer (with refresh state).
    new_items: catalog rows (item_id, title, categories, year, tags).
    new_item_text: the new items' LM vectors, {"item_ids", "vectors",
      "has_text"}, embedded with `text_settings(source_dir)`; None when the
      model has no LM text.
    export_dir: where the new SavedModel is written (must not exist).
    model_name: the served model's name (its warmup requests name it).
    log: progress sink.

  Returns:
    added, updated, catalog_items.
  """
  if not refresh_state.has_state(source_dir):
    raise ValueError(f"{source_dir} was exported without refresh state; "
                     "retrain it with this version of mtrec")
  state = refresh_state.load_state(source_dir)
  config = TrainerConfig.model_validate(state["trainer"])
  items = {k: list(v) for k, v in state["items"].items()}
  row = {i: n for n, i in enumerate(items[r.ITEM_ID])}
  new_items = [normalize_item(i) for i in new_items]
  added = updated = 0
  for item in new_items:
    n = row.get(item[r.ITEM_ID])
    if n is None:
      row[item[r.ITEM_ID]] = len(items[r.ITEM_ID])
      for k in refresh_state.ITEM_COLUMNS:
        items[k].append(item[k])
      if freshness_lib.ADDED_AT in items:  # new from now on
        items[freshness_lib.ADDED_AT].append(int(time.time()))
      added += 1
    else:
      for k in refresh_state.ITEM_COLUMNS:
        items[k][n] = item[k]
      updated += 1

  arrays = state["arrays"]
  item_text = None
  if state["text"]:
    if new_item_text is None:
      raise ValueError(f"{source_dir} reads LM item text: the new items' "
                       "vectors are needed")
    old = {i: (v, h) for i, v, h in zip(arrays["text_item_ids"].tolist(),
                                        arrays["text_vectors"],
                                        arrays["text_has"])}
    for i, v, h in zip(new_item_text["item_ids"], new_item_text["vectors"],
                       new_item_text["has_text"]):
      old[i] = (v, h)
    ids = sorted(old)
    item_text = {"item_ids": ids,
                 "vectors": np.stack([old[i][0] for i in ids]),
                 "has_text": np.array([old[i][1] for i in ids], np.int64)}

  tft_output = tft.TFTransformOutput(state["transform_graph"])
  outside = years_outside_trained_range(
      new_items, inputs_lib.trained_range(
          tft_output.transformed_metadata.schema))
  for item_id, year, (low, high) in outside:
    log(f"item {item_id}: year {year} is outside the trained range "
        f"{low}-{high}; the model reads it as {min(max(year, low), high)}")
  feature_spec = tft_output.transformed_feature_spec()
  inputs = inputs_lib.discover(feature_spec,
                               tft_output.vocabulary_size_by_name,
                               state["user_features"])
  text_table = None
  if item_text is not None:
    text_table, _ = run_lib.text_by_vocabulary(tft_output, item_text)
    inputs = dataclasses.replace(inputs, item_text_dim=text_table.shape[1])
  stats = {"item_probabilities": arrays["item_probabilities"],
           "label_means": state["label_means"]}
  # As it was trained: a model exported before history modes has none,
  # whatever its served_history_fraction.
  model = run_lib.build_model(
      inputs, config, stats, text_table,
      history_modes=refresh_state.history_modes(source_dir))
  users = state["users"]
  histories = state["histories"]
  history_ends = state.get("history_ends", {})
  # Create every variable (one eager call on two catalog items), then load
  # the trained ones: same vocabularies, so each table is copied whole.
  probe_items = {k: v[:2] for k, v in items.items()}
  probe = export.ServingModule(model, tft_output, probe_items, users,
                               state["user_features"], 1, 1, histories,
                               item_text, history_ends=history_ends)
  user_ids = tf.constant(["", ""][:len(probe_items[r.ITEM_ID])])
  model(probe.transform(user_ids, tf.constant(probe_items[r.ITEM_ID]),
                        tf.zeros_like(user_ids, tf.int64) + 0))
  vocab_files = {v.vocab_name: tft_output.vocabulary_file_by_name(v.vocab_name)
                 for v in inputs.vocabularies()}
  restored = warm_start_lib.restore(model, source_dir, vocab_files)
  if restored["fresh"]:
    raise ValueError("the served model's weights do not fit the rebuilt "
                     f"model: {restored['fresh']}")
  fusion = (fusion_lib.FusionSpec.from_json(state["fusion"])
            if state.get("fusion") else None)
  liked = state.get("liked", {})
  module = export.ServingModule(model, tft_output, items, users,
                                state["user_features"], state["top_k"],
                                state["max_k"], histories, item_text, fusion,
                                state.get("freshness"),
                                state.get("new_item_match"), liked,
                                history_ends)
  export.save(module, export_dir)
  warm_start_lib.save_state(model, vocab_files, export_dir)
  refresh_state.save_state(
      export_dir, state["transform_graph"], config, state["user_features"],
      stats, dict(items, **{
          freshness_lib.ADDED_AT: module.items_added_at.tolist()}),
      users, histories, item_text, state["text"], state["top_k"],
      state["max_k"], module.fusion_spec, module.freshness,
      module.new_item_match, liked, history_ends, module.history_modes)
  top_user = tft_output.vocabulary_by_name(F.USER_ID_VOCAB)[0].decode()
  export.write_warmup_requests(
      export_dir, model_name, user_ids=[top_user, "__unknown_user__"],
      item_ids=[items[r.ITEM_ID][0], "__unknown_item__"])
  log(f"rebuilt with {len(items[r.ITEM_ID])} items: {added} added, "
      f"{updated} updated")
  if module.new_item_match:
    log("new-item match: {matched_pairs} (user, new item) pairs for "
        "{users_matched} users".format(**module.new_item_match_summary()))
  return {"added": added, "updated": updated,
          "catalog_items": len(items[r.ITEM_ID]),
          "years_outside_trained_range": {i: y for i, y, _ in outside}}


def years_outside_trained_range(
    items: Sequence[Mapping[str, Any]], trained: Optional[tuple[int, int]]
) -> list[tuple[str, int, tuple[int, int]]]:
  """(item id, year, trained range) of each item whose known year the
  transform will clip; nothing when the graph records no range."""
  if trained is None:
    return []
  low, high = trained
  return [(i[r.ITEM_ID], i[r.YEAR], trained) for i in items
          if i[r.YEAR] > 0 and not low <= i[r.YEAR] <= high]
