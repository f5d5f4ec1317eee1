"""The validation split (example_gen.validation_fraction): where its events
come from under each split kind, that counts still reconcile, and that
nothing before the Evaluator reads the eval split: poisoning the eval
split's labels leaves the transform, training, early stopping and the
fusion search exactly as they were."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil

import pytest
import tensorflow as tf

from components import example_gen
from components.config import ExampleGenConfig
from conftest import small_config
from conftest import small_config_raw
from contracts import artifacts
from contracts import records as r
from pipeline import config as config_lib

T, V, E = artifacts.TRAIN, artifacts.VALIDATION, artifacts.EVAL


def _events(n):
  return [{r.USER_ID: "u", r.ITEM_ID: f"i{k}", r.TIMESTAMP: 100 + k}
          for k in range(n)]


def test_temporal_user_puts_validation_just_before_eval():
  split = example_gen._DedupeAndSplit("temporal_user", 0.2, 1, 0.1)  # pylint: disable=protected-access
  assert split._assign(_events(10), None) == [T] * 7 + [V, E, E]  # pylint: disable=protected-access
  # n=3: one eval, one validation, one train; n=2 keeps its train event.
  assert split._assign(_events(3), None) == [T, V, E]  # pylint: disable=protected-access
  assert split._assign(_events(2), None) == [T, E]  # pylint: disable=protected-access
  no_validation = example_gen._DedupeAndSplit("temporal_user", 0.2, 1)  # pylint: disable=protected-access
  assert no_validation._assign(_events(10), None) == [T] * 8 + [E, E]  # pylint: disable=protected-access


def test_temporal_global_and_random_splits_have_a_validation_band():
  split = example_gen._DedupeAndSplit("temporal_global", 0.2, 1, 0.1)  # pylint: disable=protected-access
  assert split._assign(_events(6), (102, 104)) == [T, T, T, V, V, E]  # pylint: disable=protected-access
  events = [dict.fromkeys(r.INTERACTION_FIELDS, None) | {
      r.USER_ID: f"u{k}", r.ITEM_ID: "i", r.TIMESTAMP: k}
            for k in range(2000)]
  banded = example_gen._DedupeAndSplit("random", 0.2, 5, 0.1)._assign(  # pylint: disable=protected-access
      events, None)
  plain = example_gen._DedupeAndSplit("random", 0.2, 5)._assign(events, None)  # pylint: disable=protected-access
  # The eval events are the same with or without a validation band.
  assert [s == E for s in banded] == [s == E for s in plain]
  assert banded.count(V) == pytest.approx(200, abs=45)
  assert banded.count(E) == pytest.approx(400, abs=60)


def test_early_stopping_needs_a_validation_split():
  stopping = {"epochs": 2, "early_stopping": {"monitor": "val_loss"}}
  with pytest.raises(ValueError, match=r"trainer\.early_stopping.*"
                     r"example_gen\.validation_fraction"):
    small_config(trainer=stopping)
  small_config(trainer=stopping, example_gen=dict(
      small_config_raw()["example_gen"], validation_fraction=0.1))
  with pytest.raises(ValueError, match="leaves no training data"):
    ExampleGenConfig(eval_fraction=0.5, validation_fraction=0.5)


def _poison_eval_labels(examples_uri):
  """Flips every eval event's click and like and mirrors its rating."""
  for path in artifacts.split_files(examples_uri, E):
    records = []
    for raw in tf.data.TFRecordDataset(path, compression_type="GZIP"):
      ex = tf.train.Example.FromString(raw.numpy())
      f = ex.features.feature
      for name in (r.CLICK, r.LIKE):
        if name in f and f[name].int64_list.value:
          f[name].int64_list.value[0] = 1 - f[name].int64_list.value[0]
      if r.RATING in f and f[r.RATING].float_list.value:
        f[r.RATING].float_list.value[0] = 6.0 - f[r.RATING].float_list.value[0]
      records.append(ex.SerializeToString())
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
      for rec in records:
        w.write(rec)


@pytest.mark.slow
def test_poisoned_eval_labels_change_nothing_before_the_evaluator(tmp_path):
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import example_gen as example_gen_step  # pylint: disable=g-import-not-at-top
  from pipeline.steps import trainer as trainer_step  # pylint: disable=g-import-not-at-top
  from pipeline.steps import transform as transform_step  # pylint: disable=g-import-not-at-top
  raw = small_config_raw()
  config = config_lib.parse_config(dict(
      raw, example_gen=dict(raw["example_gen"], validation_fraction=0.1),
      trainer=dict(raw["trainer"], epochs=3, early_stopping={
          "monitor": "val_loss", "patience": 0})))
  clean = ArtifactUris(**{f: str(tmp_path / "clean" / f) for f in (
      "examples", "catalog", "quarantine", "transform_graph",
      "transformed_examples", "model")})
  example_gen_step.run(config.data, config.example_gen, [], "r", clean,
                       datetime.datetime.now(datetime.timezone.utc))
  counts = artifacts.read_metadata(clean.examples)["summary"]
  assert counts["splits"] == [T, V, E]
  assert counts["interactions_validation"] > 0
  assert counts["interactions_in"] == sum(counts[k] for k in (
      "interactions_train", "interactions_validation", "interactions_eval",
      "interactions_quarantined", "duplicates_dropped"))

  poisoned = dataclasses.replace(clean, **{
      f: str(tmp_path / "poisoned" / f) for f in (
          "examples", "transform_graph", "transformed_examples", "model")})
  shutil.copytree(clean.examples, poisoned.examples)
  _poison_eval_labels(poisoned.examples)

  summaries = {}
  for name, uris in (("clean", clean), ("poisoned", poisoned)):
    transform_step.run(config.transform, [], "r", uris)
    trainer_step.run(config.trainer, config.serving, "mtrec", "r", uris,
                     with_item_text=False)
    summaries[name] = artifacts.read_metadata(uris.model)["summary"]

  def transformed(uris, split):
    """The split's examples, each as its sorted (feature, value) pairs,
    sorted: neither Beam's row order nor a feature map's wire order is
    fixed."""
    def canonical(raw):
      f = tf.train.Example.FromString(raw).features.feature
      return tuple(sorted((k, str(v)) for k, v in f.items()))
    return sorted(canonical(raw.numpy()) for path in artifacts.split_files(
        uris.transformed_examples, split)
                  for raw in tf.data.TFRecordDataset(
                      path, compression_type="GZIP"))

  # The poison reached the eval split...
  assert transformed(clean, E) != transformed(poisoned, E)
  # ...and nothing before the Evaluator saw it: the analyzers' results
  # (vocabularies, means, ranges: the transformed train and validation
  # records are byte for byte the same),
  for split in (T, V):
    assert transformed(clean, split) == transformed(poisoned, split)
  # training, early stopping (the epochs run and every val_ figure),
  histories = {}
  for name, uris in (("clean", clean), ("poisoned", poisoned)):
    with open(os.path.join(uris.model, "training_history.json")) as f:
      histories[name] = json.load(f)
  assert any(k.startswith("val_") for k in histories["clean"])
  assert histories["poisoned"].keys() == histories["clean"].keys()
  for key, values in histories["clean"].items():
    assert histories["poisoned"][key] == pytest.approx(values, rel=1e-6), key
  assert summaries["clean"]["epochs"] == summaries["poisoned"]["epochs"]
  # and the fusion search.
  def search(name):  # without its timing
    return {k: v for k, v in summaries[name]["fusion_search"].items()
            if k != "validation_model_seconds"}
  assert search("clean") == search("poisoned")
  assert search("clean")["source"] == "validation split"
  assert search("clean")["refit"] is False  # the served model was searched

  # The search's users: histories from train, gains from validation.
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from trainer import validation_slice  # pylint: disable=g-import-not-at-top
  vslice = validation_slice.from_validation_split(
      clean.examples, tft.TFTransformOutput(clean.transform_graph), 1.0,
      10_000, 42, 20)

  def consumed(split):
    out = {}
    for path in artifacts.split_files(clean.examples, split):
      for raw in tf.data.TFRecordDataset(path, compression_type="GZIP"):
        f = tf.train.Example.FromString(raw.numpy()).features.feature
        if f[r.CLICK].int64_list.value[0] > 0:
          out.setdefault(f[r.USER_ID].bytes_list.value[0].decode(), set()).add(
              f[r.ITEM_ID].bytes_list.value[0].decode())
    return out

  train, held = consumed(T), consumed(V)
  assert len(vslice) > 0 and not vslice.held_out_pairs
  for user, history, seen, gains in zip(vslice.user_ids, vslice.histories,
                                        vslice.seen, vslice.gains):
    assert set(history) <= train[user] and set(seen) == train[user]
    assert gains and set(gains) <= held[user] - train[user]
  assert summaries["clean"]["fusion_weights"] == summaries["poisoned"][
      "fusion_weights"]
