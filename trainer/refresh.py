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
catalog (embedding only texts the cache has not seen), exports a new
SavedModel through the same code path as the trainer (so `recommend` indexes
every item, the new ones through their content) and publishes it as a new
version pinned in models.config.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from contracts import model_layout
from contracts import records as r

STATE_DIR = model_layout.REFRESH_STATE_DIR
_STATE_FILE = "state.json"
_CATALOG_FILE = "catalog.json"
_USERS_FILE = "users.json"
_ARRAYS_FILE = "arrays.npz"
_TRANSFORM_DIR = "transform_graph"
_ITEM_COLUMNS = (r.ITEM_ID, r.TITLE, r.CATEGORIES, r.YEAR, r.TAGS)


def save_state(export_dir: str, transform_graph_uri: str, config: Any,
               user_features: Sequence[str], stats: Mapping[str, Any],
               items: Mapping[str, Sequence[Any]],
               users: Mapping[str, Sequence[Any]],
               histories: Mapping[str, Sequence[str]],
               item_text: Optional[Mapping[str, Any]],
               text_settings: Optional[Mapping[str, Any]], top_k: int,
               max_k: int) -> None:
  """Writes what `refresh` needs next to the SavedModel (see module doc)."""
  state = os.path.join(export_dir, STATE_DIR)
  os.makedirs(state, exist_ok=True)
  shutil.copytree(transform_graph_uri, os.path.join(state, _TRANSFORM_DIR),
                  ignore=shutil.ignore_patterns("metadata.json"))
  with open(os.path.join(state, _STATE_FILE), "w") as f:
    json.dump({
        "format": 1,
        "trainer": config.model_dump(mode="json"),
        "user_features": list(user_features),
        "label_means": dict(stats["label_means"]),
        "top_k": top_k, "max_k": max_k,
        "text": dict(text_settings) if text_settings else None,
    }, f, indent=1, sort_keys=True)
  with open(os.path.join(state, _CATALOG_FILE), "w") as f:
    json.dump({k: list(items[k]) for k in _ITEM_COLUMNS}, f)
  with open(os.path.join(state, _USERS_FILE), "w") as f:
    json.dump({"users": {k: list(v) for k, v in users.items()},
               "histories": {u: list(h) for u, h in histories.items()}}, f)
  arrays = {"item_probabilities": np.asarray(stats["item_probabilities"])}
  if item_text:
    arrays.update(text_item_ids=np.array(item_text["item_ids"], dtype=str),
                  text_vectors=np.asarray(item_text["vectors"], np.float32),
                  text_has=np.asarray(item_text["has_text"], np.int64))
  np.savez(os.path.join(state, _ARRAYS_FILE), **arrays)


def has_state(export_dir: str) -> bool:
  return os.path.exists(os.path.join(export_dir, STATE_DIR, _STATE_FILE))


def _load_state(export_dir: str) -> dict[str, Any]:
  state = os.path.join(export_dir, STATE_DIR)
  with open(os.path.join(state, _STATE_FILE)) as f:
    out = json.load(f)
  with open(os.path.join(state, _CATALOG_FILE)) as f:
    out["items"] = json.load(f)
  with open(os.path.join(state, _USERS_FILE)) as f:
    out.update(json.load(f))
  with np.load(os.path.join(state, _ARRAYS_FILE)) as a:
    out["arrays"] = {k: a[k] for k in a.files}
  out["transform_graph"] = os.path.join(state, _TRANSFORM_DIR)
  return out


def normalize_item(raw: Mapping[str, Any]) -> dict[str, Any]:
  """A new item as catalog columns: lists for categories and tags."""

  def as_list(value):
    if value is None:
      return []
    if isinstance(value, str):
      return [v.strip() for v in value.split(r.CATEGORY_SEPARATOR)
              if v.strip()]
    return [str(v) for v in value]

  if not str(raw.get(r.ITEM_ID, "")).strip():
    raise ValueError(f"an item needs an {r.ITEM_ID}: {dict(raw)}")
  return {r.ITEM_ID: str(raw[r.ITEM_ID]).strip(),
          r.TITLE: str(raw.get(r.TITLE) or ""),
          r.CATEGORIES: as_list(raw.get(r.CATEGORIES)),
          r.YEAR: int(raw.get(r.YEAR) or 0),
          r.TAGS: as_list(raw.get(r.TAGS))}


def read_items_file(path: str) -> list[dict[str, Any]]:
  """Items from JSON Lines or CSV (item_id, title, categories 'a|b', year,
  tags 'x|y')."""
  import csv  # pylint: disable=g-import-not-at-top
  with open(path, newline="", encoding="utf-8") as f:
    if path.endswith((".jsonl", ".json")):
      rows = [json.loads(line) for line in f if line.strip()]
    else:
      rows = list(csv.DictReader(f))
  return [normalize_item(row) for row in rows]


def refresh(serving_root: str, model_name: str,
            new_items: Sequence[Mapping[str, Any]],
            cache_dir: Optional[str] = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
  """Publishes a new version with `new_items` added or updated; no training.

  Args:
    serving_root: where `<model_name>/<version>/` and models.config live.
    model_name: the served model.
    new_items: catalog rows (item_id, title, categories, year, tags).
    cache_dir: the TextEmbedder's text-hash cache (None: no cache).
    log: progress sink.

  Returns:
    version, destination, added, updated, embedded, cached, catalog_items.
  """
  # pylint: disable=g-import-not-at-top
  import trainer  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
  import tensorflow as tf
  import tensorflow_transform as tft
  from contracts import features as F
  from components import pusher
  from components import text_embedder
  from pipeline.config import TrainerConfig
  from trainer import export
  from trainer import inputs as inputs_lib
  from trainer import run as run_lib
  from trainer import warm_start as warm_start_lib
  # pylint: enable=g-import-not-at-top
  model_root = os.path.join(os.path.abspath(serving_root), model_name)
  versions = pusher.complete_versions(model_root)
  if not versions:
    raise FileNotFoundError(f"no served version under {model_root}")
  current = os.path.join(model_root, str(versions[-1]))
  if not has_state(current):
    raise ValueError(f"{current} was exported without refresh state; "
                     "retrain it with this version of mtrec")
  state = _load_state(current)
  config = TrainerConfig.model_validate(state["trainer"])
  items = {k: list(v) for k, v in state["items"].items()}
  row = {i: n for n, i in enumerate(items[r.ITEM_ID])}
  new_items = [normalize_item(i) for i in new_items]
  added = updated = 0
  for item in new_items:
    n = row.get(item[r.ITEM_ID])
    if n is None:
      row[item[r.ITEM_ID]] = len(items[r.ITEM_ID])
      for k in _ITEM_COLUMNS:
        items[k].append(item[k])
      added += 1
    else:
      for k in _ITEM_COLUMNS:
        items[k][n] = item[k]
      updated += 1

  arrays = state["arrays"]
  item_text = None
  embedded = cached = 0
  if state["text"]:
    settings = state["text"]
    old = {i: (v, h) for i, v, h in zip(arrays["text_item_ids"].tolist(),
                                        arrays["text_vectors"],
                                        arrays["text_has"])}
    fresh = text_embedder.embed_items(
        new_items, model=settings["model"], fields=settings["fields"],
        max_tags=settings["max_tags"], batch_size=settings["batch_size"],
        cache_dir=cache_dir)
    embedded, cached = fresh["embedded"], fresh["cached"]
    for i, v, h in zip(fresh["item_ids"], fresh["vectors"],
                       fresh["has_text"]):
      old[i] = (v, h)
    ids = sorted(old)
    item_text = {"item_ids": ids,
                 "vectors": np.stack([old[i][0] for i in ids]),
                 "has_text": np.array([old[i][1] for i in ids], np.int64)}
    log(f"embedded {embedded} new texts ({cached} from the cache)")

  tft_output = tft.TFTransformOutput(state["transform_graph"])
  feature_spec = tft_output.transformed_feature_spec()
  inputs = inputs_lib.discover(feature_spec,
                               tft_output.vocabulary_size_by_name,
                               state["user_features"])
  text_table = None
  if item_text is not None:
    text_table, _ = run_lib.text_by_vocabulary(tft_output, item_text)
    import dataclasses  # pylint: disable=g-import-not-at-top
    inputs = dataclasses.replace(inputs, item_text_dim=text_table.shape[1])
  stats = {"item_probabilities": arrays["item_probabilities"],
           "label_means": state["label_means"]}
  model = run_lib.build_model(inputs, config, stats, text_table)
  users = state["users"]
  histories = state["histories"]
  # Create every variable (one eager call on two catalog items), then load
  # the trained ones: same vocabularies, so each table is copied whole.
  probe_items = {k: v[:2] for k, v in items.items()}
  probe = export.ServingModule(model, tft_output, probe_items, users,
                               state["user_features"], 1, 1, histories,
                               item_text)
  user_ids = tf.constant(["", ""][:len(probe_items[r.ITEM_ID])])
  model(probe.transform(user_ids, tf.constant(probe_items[r.ITEM_ID]),
                        tf.zeros_like(user_ids, tf.int64) + 0))
  vocab_files = {v.vocab_name: tft_output.vocabulary_file_by_name(v.vocab_name)
                 for v in inputs.vocabularies()}
  restored = warm_start_lib.restore(model, current, vocab_files)
  if restored["fresh"]:
    raise ValueError("the served model's weights do not fit the rebuilt "
                     f"model: {restored['fresh']}")
  module = export.ServingModule(model, tft_output, items, users,
                                state["user_features"], state["top_k"],
                                state["max_k"], histories, item_text)
  with tempfile.TemporaryDirectory(dir=os.path.dirname(model_root) or ".",
                                   prefix=".refresh-") as tmp:
    export_dir = os.path.join(tmp, "model")
    export.save(module, export_dir)
    warm_start_lib.save_state(model, vocab_files, export_dir)
    save_state(export_dir, state["transform_graph"], config,
               state["user_features"], stats, items, users, histories,
               item_text, state["text"], state["top_k"], state["max_k"])
    top_user = tft_output.vocabulary_by_name(F.USER_ID_VOCAB)[0].decode()
    export.write_warmup_requests(
        export_dir, model_name, user_ids=[top_user, "__unknown_user__"],
        item_ids=[items[r.ITEM_ID][0], "__unknown_item__"])
    version, target = pusher.publish_version(export_dir, model_root)
  pusher.pin_version(serving_root, model_name, version)
  log(f"published version {version} ({len(items[r.ITEM_ID])} items: "
      f"{added} added, {updated} updated) to {target}")
  return {"version": version, "destination": target, "from_version":
          versions[-1], "added": added, "updated": updated,
          "embedded": embedded, "cached": cached,
          "catalog_items": len(items[r.ITEM_ID])}
