"""Numeric item features are bounded by what training saw (issue: cold items).

The transform clips the release year to the train split's range before it is
z-scored, so an item from beyond that range is read as the range's edge: by
serving and by `mtrec catalog refresh`, which also says which items it
clipped. These tests check the recorded range against the data, and that a
refreshed item's embedding does not depend on how far outside it lies.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from contracts import model_layout
from contracts import records as r


def _train_years(examples_uri):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components import artifact_readers  # pylint: disable=g-import-not-at-top
  years = set()
  for rec in artifact_readers.read_examples(examples_uri, "train"):
    ex = tf.train.Example.FromString(rec)
    years.update(ex.features.feature[r.YEAR].int64_list.value)
  return {y for y in years if y > 0}


def test_the_graph_records_the_train_splits_year_range(small_run):
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from trainer import inputs  # pylint: disable=g-import-not-at-top
  years = _train_years(small_run.artifacts.examples)
  tft_output = tft.TFTransformOutput(small_run.artifacts.transform_graph)
  assert inputs.trained_range(tft_output.transformed_metadata.schema) == (
      min(years), max(years))
  # The model does not read the clipped year itself, only its z-score.
  assert "year_clipped" not in {
      f for f in inputs.discover(
          tft_output.transformed_feature_spec(),
          tft_output.vocabulary_size_by_name, []).item_numeric}


def test_a_graph_without_a_range_reports_none():
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  from trainer import inputs  # pylint: disable=g-import-not-at-top
  schema = schema_pb2.Schema()
  schema.feature.add(name="year_clipped", type=schema_pb2.INT)
  assert inputs.trained_range(schema) is None
  schema.feature[0].int_domain.min, schema.feature[0].int_domain.max = 3, 9
  assert inputs.trained_range(schema) == (3, 9)


@pytest.mark.slow
def test_a_refreshed_items_score_stops_at_the_trained_range(small_run,
                                                             tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import refresh  # pylint: disable=g-import-not-at-top
  years = _train_years(small_run.artifacts.examples)
  low, high = min(years), max(years)
  item = {"title": "A new item", "categories": "", "tags": ""}
  new_items = [dict(item, item_id="at-edge", year=high),
               dict(item, item_id="just-past", year=high + 1),
               dict(item, item_id="far-past", year=high + 500),
               dict(item, item_id="far-before", year=max(1, low - 500)),
               dict(item, item_id="at-start", year=low)]
  logs = []
  export_dir = str(tmp_path / "refreshed")
  result = refresh.rebuild(
      model_layout.saved_model_dir(small_run.artifacts.model), new_items,
      None, export_dir, "mtrec", log=logs.append)
  assert result["added"] == 5
  assert result["years_outside_trained_range"] == {
      "just-past": high + 1, "far-past": high + 500,
      "far-before": max(1, low - 500)}
  assert any(f"item far-past: year {high + 500} is outside the trained "
             f"range {low}-{high}; the model reads it as {high}" in line
             for line in logs), logs

  model = tf.saved_model.load(export_dir)
  ids = [i["item_id"] for i in new_items]
  embedding = dict(zip(ids, model.signatures["embed_item"](
      item_id=tf.constant(ids))["embedding"].numpy()))
  users = tf.constant(["u1", "u2", "__nobody__"])
  scores = {}
  for i in ids:
    scores[i] = model.signatures["serving_default"](
        user_id=users, item_id=tf.constant([i] * 3))["affinity"].numpy()
  # Past the edge, one step or five hundred: what the model sees is the edge.
  np.testing.assert_array_equal(embedding["just-past"], embedding["at-edge"])
  np.testing.assert_array_equal(embedding["far-past"], embedding["at-edge"])
  np.testing.assert_array_equal(embedding["far-before"],
                                embedding["at-start"])
  np.testing.assert_array_equal(scores["far-past"], scores["at-edge"])
  # ...while the year inside the range still matters.
  assert not np.allclose(embedding["at-edge"], embedding["at-start"])
  assert os.path.isdir(export_dir)
