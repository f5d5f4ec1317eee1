"""TextEmbedder: the Beam step that gives every catalog item a text vector.

Why: cold items are scored through their content (components/item_text.py
builds an item's text, components/text_encoder.py embeds it and caches the
vector by text hash); this step does that for a whole catalog, in parallel,
and publishes the result as an artifact the Trainer reads.

On Beam: the catalog's items are parsed into (item id, text hash, text); each
distinct text is looked up in the cache once, the misses are embedded in
batches (new vectors go to the cache), and every item is joined back with
its text's vector. Equal texts share a hash, so they cost one encoder call.

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

import os
import time
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
import numpy as np

from components import artifact_readers
from components import beam_runtime
from components import item_text
from components import text_encoder
from contracts import artifacts
from contracts import records as r


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
    self._cached = text_encoder.EmbeddingCache(self._cache_dir).load()

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
    self._encoder = text_encoder.load_encoder(self._path)

  def process(self, batch):
    hashes = [h for h, _ in batch]
    start = time.perf_counter()
    vectors = np.asarray(self._encoder.encode(
        [t for _, t in batch], batch_size=self._batch_size,
        normalize_embeddings=True, show_progress_bar=False), np.float32)
    self._micros.inc(int((time.perf_counter() - start) * 1e6))
    self._embedded.inc(len(batch))
    text_encoder.EmbeddingCache(self._cache_dir).add(hashes, vectors)
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
  text = item_text.item_text(item, fields, max_tags)
  return str(item[r.ITEM_ID]), text_encoder.text_hash(key, text), text


def _example(item_id: str, h: str, vector: np.ndarray, has_text: bool
             ) -> bytes:
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow.core.example import feature_pb2  # pylint: disable=g-import-not-at-top
  # Raw catalog-side names: the trainer maps them.
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


def run_text_embedder(
    catalog_uri: str,
    item_features_uri: str,
    run_id: str,
    model: str = text_encoder.DEFAULT_MODEL,
    fields: Sequence[str] = item_text.DEFAULT_FIELDS,
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
    model: text_encoder.DEFAULT_MODEL or a local sentence-transformers
      directory.
    fields: catalog fields that make up the text, in order.
    max_tags: tags kept per item (most frequent first).
    batch_size: texts per encoder call.
    cache_dir: the text-hash cache (None: no cache).
    beam_args: Beam pipeline options (the runner is the pipeline's choice).

  Returns:
    the artifact's summary.
  """
  path = text_encoder.model_path(model)
  key = text_encoder.model_key(path)
  dim = text_encoder.encoder_dim(path)
  empty_hash = text_encoder.text_hash(key, "")
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
