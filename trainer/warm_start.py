"""Warm start: begin training from the variables of the model now served.

Every export writes, inside the SavedModel directory (so the Pusher's copy
carries it), what a later run needs to start from it: each learned variable
of the Keras model under its stable Keras path (`Model.get_weight_paths`),
and the vocabularies its id tables are indexed by. A new run copies a
variable whose path and shape match, and moves the rows of an id table by
token when the vocabulary changed between the runs (a new id keeps its fresh
initialization, an id that is gone is dropped, the OOV row is copied).
Anything else (a layer that changed shape, another kind of shared layers)
starts fresh and is reported; the optimizer always starts fresh.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Mapping, Optional

import numpy as np
import tensorflow as tf

from contracts import model_layout

STATE_DIR = model_layout.WARM_START_STATE_DIR
WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"
VOCAB_DIR = "vocabularies"


def model_weights(model: tf.keras.Model) -> dict[str, tf.Variable]:
  """Path -> variable of what training learns (metric states left out)."""
  learned = {id(v) for v in model.trainable_variables}
  return {p: v for p, v in model.get_weight_paths().items()
          if id(v) in learned}


def id_tables(model: tf.keras.Model) -> dict[str, str]:
  """Weight path -> vocabulary name of every vocabulary-indexed table."""
  path_of = {id(v): p for p, v in model_weights(model).items()}
  out = {}
  for layer in model.submodules:
    vocab = getattr(layer, "vocab_name", None)
    table = getattr(layer, "embeddings", None)
    if vocab and table is not None and id(table) in path_of:
      out[path_of[id(table)]] = vocab
  return out


def _read_vocabulary(path: str) -> list[bytes]:
  with open(path, "rb") as f:
    return [line.rstrip(b"\r\n") for line in f]


def save_state(model: tf.keras.Model, vocabulary_files: Mapping[str, str],
               export_dir: str) -> None:
  """Writes the model's warm-start state under `export_dir`."""
  state = os.path.join(export_dir, STATE_DIR)
  os.makedirs(os.path.join(state, VOCAB_DIR), exist_ok=True)
  weights = {p: v.numpy() for p, v in model_weights(model).items()}
  np.savez(os.path.join(state, WEIGHTS_FILE), **weights)
  tables = id_tables(model)
  for name in sorted(set(tables.values())):
    shutil.copyfile(vocabulary_files[name],
                    os.path.join(state, VOCAB_DIR, name))
  with open(os.path.join(state, MANIFEST_FILE), "w") as f:
    json.dump({"format": 1, "id_tables": tables}, f, indent=2, sort_keys=True)


def has_state(export_dir: Optional[str]) -> bool:
  return bool(export_dir) and os.path.exists(
      os.path.join(export_dir, STATE_DIR, MANIFEST_FILE))


def restore(model: tf.keras.Model, export_dir: str,
            vocabulary_files: Mapping[str, str]) -> dict[str, Any]:
  """Loads what matches from a previous export into the (built) model.

  Args:
    model: the new model, its variables created.
    export_dir: a SavedModel directory written by trainer.export.
    vocabulary_files: vocabulary name -> file of the new run.

  Returns:
    copied (variables copied whole), remapped ({vocabulary: rows carried
    over, of the new size}), fresh (paths left as initialized).
  """
  state = os.path.join(export_dir, STATE_DIR)
  with open(os.path.join(state, MANIFEST_FILE)) as f:
    manifest = json.load(f)
  old_tables = manifest["id_tables"]
  new_tables = id_tables(model)
  copied, remapped, fresh = 0, {}, []
  with np.load(os.path.join(state, WEIGHTS_FILE)) as old:
    for path, var in model_weights(model).items():
      if path not in old.files:
        fresh.append(path)
        continue
      value = old[path]
      vocab = new_tables.get(path)
      if vocab is not None and old_tables.get(path) == vocab and (
          value.shape[1:] == tuple(var.shape[1:])):
        old_index = {tok: i for i, tok in enumerate(_read_vocabulary(
            os.path.join(state, VOCAB_DIR, vocab)))}
        new_tokens = _read_vocabulary(vocabulary_files[vocab])
        pairs = [(j, old_index[tok]) for j, tok in enumerate(new_tokens)
                 if tok in old_index]
        table = var.numpy()
        if pairs:
          new_rows, old_rows = map(list, zip(*pairs))
          table[new_rows] = value[old_rows]
        table[-1] = value[-1]  # the OOV row
        var.assign(table)
        remapped[vocab] = [len(pairs), len(new_tokens)]
      elif value.shape == tuple(var.shape):
        var.assign(value)
        copied += 1
      else:
        fresh.append(path)
  return {"from": export_dir, "copied": copied, "remapped": remapped,
          "fresh": fresh}
