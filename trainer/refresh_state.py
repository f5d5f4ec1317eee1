"""The refresh state an export carries: what rebuilding its model needs.

Every export writes, beside the warm-start weights (trainer/warm_start.py),
the transform graph, the trainer config and training statistics, the item
catalog with its LM vectors, and the user profiles and histories, under
`assets.extra/refresh/` (contracts/model_layout.py). trainer/run.py writes
it; trainer/refresh.py reads it to rebuild the model with new items. A
module of its own so that the trainer's run and its refresh both import it
and neither imports the other.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from contracts import model_layout
from contracts import records as r

STATE_DIR = model_layout.REFRESH_STATE_DIR
_STATE_FILE = "state.json"
_CATALOG_FILE = "catalog.json"
_USERS_FILE = "users.json"
_ARRAYS_FILE = "arrays.npz"
_TRANSFORM_DIR = "transform_graph"
ITEM_COLUMNS = (r.ITEM_ID, r.TITLE, r.CATEGORIES, r.YEAR, r.TAGS)
# When an item became new (trainer/freshness.py, which cannot be imported
# here: it needs TensorFlow); absent in states written before it.
ADDED_AT = "added_at"


def save_state(export_dir: str, transform_graph_uri: str, config: Any,
               user_features: Sequence[str], stats: Mapping[str, Any],
               items: Mapping[str, Sequence[Any]],
               users: Mapping[str, Sequence[Any]],
               histories: Mapping[str, Sequence[str]],
               item_text: Optional[Mapping[str, Any]],
               text_settings: Optional[Mapping[str, Any]], top_k: int,
               max_k: int, fusion: Optional[Any] = None,
               freshness: Optional[Mapping[str, float]] = None,
               new_item_match: Optional[Mapping[str, float]] = None,
               liked: Optional[Mapping[str, Sequence[str]]] = None,
               history_ends: Optional[Mapping[str, int]] = None,
               history_modes: bool = False) -> None:
  """Writes what `refresh` needs next to the SavedModel (see module doc).

  `items` may carry ADDED_AT (trainer/freshness.py), kept with the other
  catalog columns; `freshness` and `new_item_match` are the serving
  policies' settings, `liked` each user's liked items that the second one
  matches new items against (trainer/new_item_match.py); `history_ends`
  when each user's history ends (trainer/export.ServingModule; absent in
  states written before it, whose refresh reads every request as after
  the history); `history_modes` whether the model's query has them
  (towers.QueryTower), which its trainer section alone does not say for a
  model trained before they existed.
  """
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
        # trainer.fusion.FusionSpec: the chosen weights survive a refresh.
        "fusion": fusion.to_json() if fusion is not None else None,
        "text": dict(text_settings) if text_settings else None,
        "freshness": dict(freshness) if freshness else None,
        "new_item_match": dict(new_item_match) if new_item_match else None,
        "history_modes": bool(history_modes),
    }, f, indent=1, sort_keys=True)
  with open(os.path.join(state, _CATALOG_FILE), "w") as f:
    json.dump({k: list(items[k]) for k in ITEM_COLUMNS + (ADDED_AT,)
               if k in items}, f)
  with open(os.path.join(state, _USERS_FILE), "w") as f:
    json.dump({"users": {k: list(v) for k, v in users.items()},
               "histories": {u: list(h) for u, h in histories.items()},
               "history_ends": {u: int(t)
                                for u, t in (history_ends or {}).items()},
               "liked": {u: list(i) for u, i in (liked or {}).items()}}, f)
  arrays = {"item_probabilities": np.asarray(stats["item_probabilities"])}
  if item_text:
    arrays.update(text_item_ids=np.array(item_text["item_ids"], dtype=str),
                  text_vectors=np.asarray(item_text["vectors"], np.float32),
                  text_has=np.asarray(item_text["has_text"], np.int64))
  np.savez(os.path.join(state, _ARRAYS_FILE), **arrays)


def has_state(export_dir: str) -> bool:
  return os.path.exists(os.path.join(export_dir, STATE_DIR, _STATE_FILE))


def load_state(export_dir: str) -> dict[str, Any]:
  """What save_state wrote, with the transform graph's path."""
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


def text_settings(export_dir: str) -> Optional[dict[str, Any]]:
  """The TextEmbedder settings a model was trained with (None: no LM text).

  New items' texts must be embedded with exactly these (model, fields,
  max_tags) to land where the trained adapter expects them.
  """
  return _saved(export_dir, "text")


def history_modes(export_dir: str) -> bool:
  """Whether the model's query has history modes; False for a state written
  before they existed, whose model was built without them."""
  return bool(_saved(export_dir, "history_modes", default=False))


def trainer_section(export_dir: str) -> dict[str, Any]:
  """The trainer config section a model was trained with, as JSON."""
  return _saved(export_dir, "trainer")


_REQUIRED = object()


def _saved(export_dir: str, key: str, default: Any = _REQUIRED) -> Any:
  """One entry of the state file, without loading the rest of the state;
  `default` for an entry older states lack (without one, a KeyError)."""
  with open(os.path.join(export_dir, STATE_DIR, _STATE_FILE)) as f:
    saved = json.load(f)
  return saved[key] if default is _REQUIRED else saved.get(key, default)
