"""StatisticsGen, drift distances and the ExampleValidator on tiny data.

Statistics are checked against values computed by hand; drift against a
dataset where one category's share doubled, which must be flagged and,
when drift is configured as blocking, fail the blessing (so the Pusher
publishes nothing).
"""

import json
import math
import os

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import blessing
from components import data_drift
from components import example_validator
from components import schema as schema_lib
from components import statistics_gen
from components.config import DataValidationConfig
from contracts import artifacts
from contracts import run_record


def _examples(root, splits, spec=None):
  """An Examples artifact: {split: [row dict]} as gzipped tf.Examples."""
  spec = spec or {"rating": tf.io.FixedLenFeature([], tf.float32),
                  "click": tf.io.FixedLenFeature([], tf.int64),
                  "categories": tf.io.VarLenFeature(tf.string)}
  os.makedirs(root)
  schema_lib.write_schema(str(root), spec)
  for split, rows in splits.items():
    d = artifacts.split_dir(str(root), split)
    os.makedirs(d)
    with tf.io.TFRecordWriter(os.path.join(d, "data-00000.gz"),
                              options="GZIP") as w:
      for row in rows:
        w.write(schema_lib.to_example(row))
  return str(root)


def _rows(categories):
  return [{"rating": 3.0, "click": 1, "categories": c} for c in categories]


@pytest.fixture(scope="module")
def hand_stats(tmp_path_factory):
  root = tmp_path_factory.mktemp("stats")
  examples = _examples(root / "examples", {
      "train": [
          {"rating": 1.0, "click": 0, "categories": ["a", "b"]},
          {"rating": 2.0, "click": 1, "categories": ["a"]},
          {"rating": 3.0, "click": 0, "categories": ["c"]},
          {"rating": 4.0, "click": 1},  # no categories at all
      ],
      "eval": [{"rating": 5.0, "click": 1, "categories": ["b"]}]})
  summary = statistics_gen.run_statistics_gen(
      examples, str(root / "statistics"), "r1")
  return examples, str(root / "statistics"), summary


def test_statistics_match_hand_computed_values(hand_stats):
  _, uri, summary = hand_stats
  assert summary == {"eval": {"examples": 1, "features": 3},
                     "train": {"examples": 4, "features": 3}}
  # The file TFDV and Facets read: a DatasetFeatureStatisticsList.
  with open(os.path.join(uri, "Split-train", "FeatureStats.pb"), "rb") as f:
    listed = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
  assert [d.name for d in listed.datasets] == ["train"]
  train = statistics_gen.feature_stats(listed.datasets[0])
  rating = train["rating"]
  assert rating.type == statistics_pb2.FeatureNameStatistics.FLOAT
  assert rating.num_stats.mean == pytest.approx(2.5)
  assert rating.num_stats.std_dev == pytest.approx(math.sqrt(1.25))
  assert (rating.num_stats.min, rating.num_stats.max) == (1.0, 4.0)
  standard = rating.num_stats.histograms[0]
  assert standard.type == statistics_pb2.Histogram.STANDARD
  # Width 0.3 over [1, 4]: 1 -> 0, 2 -> 3, 3 -> 6, 4 -> the last (closed).
  assert [b.sample_count for b in standard.buckets] == [
      1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
  click = train["click"]
  assert click.type == statistics_pb2.FeatureNameStatistics.INT
  assert click.num_stats.num_zeros == 2
  cats = train["categories"].string_stats
  assert train["categories"].type == statistics_pb2.FeatureNameStatistics.STRING
  common = cats.common_stats
  assert (common.num_non_missing, common.num_missing, common.tot_num_values,
          common.min_num_values, common.max_num_values) == (3, 1, 4, 1, 2)
  assert common.avg_num_values == pytest.approx(4 / 3)
  assert cats.unique == 3
  # Most frequent first; equal counts in byte order.
  assert [(v.value, v.frequency) for v in cats.top_values] == [
      ("a", 2), ("b", 1), ("c", 1)]
  assert cats.avg_length == pytest.approx(1.0)


def _string_stats(counts):
  s = statistics_pb2.FeatureNameStatistics(
      type=statistics_pb2.FeatureNameStatistics.STRING)
  s.string_stats.common_stats.tot_num_values = sum(counts.values())
  for rank, (value, n) in enumerate(counts.items()):
    s.string_stats.rank_histogram.buckets.add(
        low_rank=rank, high_rank=rank, label=value, sample_count=n)
  return s


def _numeric_stats(buckets):
  s = statistics_pb2.FeatureNameStatistics(
      type=statistics_pb2.FeatureNameStatistics.FLOAT)
  h = s.num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
  for low, high, n in buckets:
    h.buckets.add(low_value=low, high_value=high, sample_count=n)
  return s


def test_l_infinity_is_the_largest_share_difference():
  a = _string_stats({"x": 5, "y": 5})
  b = _string_stats({"x": 8, "y": 2})
  assert data_drift.l_infinity(a, b) == pytest.approx(0.3)
  assert data_drift.l_infinity(a, a) == 0.0
  # A value only one side has counts as 0 on the other.
  assert data_drift.l_infinity(_string_stats({"x": 1}),
                               _string_stats({"z": 1})) == 1.0


def test_jensen_shannon_on_hand_computed_histograms():
  p = _numeric_stats([(0, 1, 10), (1, 2, 0)])
  q = _numeric_stats([(0, 1, 5), (1, 2, 5)])
  # M = (0.75, 0.25): KL(p||M) = log2(4/3); KL(q||M) = 0.5 log2(2/3) + 0.5.
  expected = 0.5 * (math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5)
  assert data_drift.jensen_shannon(p, q) == pytest.approx(expected)
  assert data_drift.jensen_shannon(p, p) == pytest.approx(0.0)
  disjoint = _numeric_stats([(5, 6, 3)])
  assert data_drift.jensen_shannon(p, disjoint) == pytest.approx(1.0)
  # Different bucketings are spread over the union of their edges.
  assert list(data_drift.rebucket([(0, 2, 10), (2, 2, 4)], [0, 1, 2, 3])) == [
      5, 5, 4]


def _dataset(root, categories_train, categories_eval):
  examples = _examples(root / "examples", {
      "train": _rows(categories_train), "eval": _rows(categories_eval)})
  statistics_gen.run_statistics_gen(examples, str(root / "statistics"), "r")
  return examples, str(root / "statistics")


def test_a_doubled_category_share_is_drift_and_blocks_when_configured(
    tmp_path):
  # Before: comedy is 20% of the category values; after, twice that.
  before = [["comedy"]] * 20 + [["drama"]] * 40 + [["action"]] * 40
  after = [["comedy"]] * 40 + [["drama"]] * 30 + [["action"]] * 30
  _, baseline = _dataset(tmp_path / "a", before, before[::2])
  examples, stats = _dataset(tmp_path / "b", after, after[::2])

  config = DataValidationConfig(baseline_statistics=baseline,
                                blocking=["schema", "drift"])
  result = example_validator.run_example_validator(
      stats, examples, str(tmp_path / "anomalies"), "r2", config)
  drift = [a for a in result["anomalies"] if a["kind"] == "drift"]
  assert [(a["feature"], a["blocking"]) for a in drift] == [
      ("categories", True)]
  assert drift[0]["value"] == pytest.approx(0.2)  # 0.4 - 0.2
  assert result["distances"]["drift"]["rating"]["value"] == 0.0
  assert result["blocking"] == 1
  # The proto TFX tools read, ERROR for a blocking anomaly.
  with open(tmp_path / "anomalies" / "Split-train" / "SchemaDiff.pb",
            "rb") as f:
    proto = anomalies_pb2.Anomalies.FromString(f.read())
  info = proto.anomaly_info["categories"]
  assert info.severity == anomalies_pb2.AnomalyInfo.ERROR
  assert info.reason[0].type == anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH
  # The report's data section names it.
  section = example_validator.read_data_section(str(tmp_path / "anomalies"))
  assert "categories: the L-infinity distance" in section
  assert "<svg" in section
  # A blocking anomaly fails the blessing: nothing is pushed.
  checks = blessing.data_checks(example_validator.read_anomalies(
      str(tmp_path / "anomalies")))
  assert blessing.verdict(checks) == blessing.NOT_BLESSED
  assert [c["passed"] for c in checks] == [False, False]

  # Not blocking: reported, the blessing unaffected.
  warn = example_validator.run_example_validator(
      stats, examples, str(tmp_path / "warn"), "r3",
      DataValidationConfig(baseline_statistics=baseline))
  assert [a["blocking"] for a in warn["anomalies"]] == [False]
  assert blessing.verdict(blessing.data_checks(warn)) == blessing.BLESSED
  # A per-feature threshold above the distance: no anomaly.
  loose = example_validator.run_example_validator(
      stats, examples, str(tmp_path / "loose"), "r4",
      DataValidationConfig(baseline_statistics=baseline,
                           drift={"features": {"categories": 0.3}}))
  assert loose["anomalies"] == []


def test_schema_anomalies_name_the_feature(tmp_path):
  spec = {"rating": tf.io.FixedLenFeature([], tf.float32),
          "click": tf.io.FixedLenFeature([], tf.int64)}
  examples = _examples(tmp_path / "examples", {
      "train": [{"rating": 1.0, "click": 1}, {"rating": 2.0, "extra": "x"}],
      "eval": []}, spec)
  stats = str(tmp_path / "statistics")
  statistics_gen.run_statistics_gen(examples, stats, "r")
  result = example_validator.run_example_validator(
      stats, examples, str(tmp_path / "anomalies"), "r",
      DataValidationConfig())
  found = {(a["split"], a["feature"], a["reason"], a["blocking"])
           for a in result["anomalies"]}
  assert found == {
      ("eval", "", "DATASET_LOW_NUM_EXAMPLES", True),
      ("train", "click", "FEATURE_TYPE_LOW_FRACTION_PRESENT", True),
      ("train", "extra", "SCHEMA_NEW_COLUMN", True)}


def _record(root, run_id, started, fingerprint, pushed, uri):
  os.makedirs(uri, exist_ok=True)
  with open(os.path.join(uri, "metadata.json"), "w") as f:
    json.dump({"fingerprint": fingerprint}, f)
  d = os.path.join(root, run_id)
  os.makedirs(d, exist_ok=True)
  with open(os.path.join(d, "run.json"), "w") as f:
    json.dump({"run_id": run_id, "started_at": started, "artifacts": {
        run_record.STATISTICS_ARTIFACT: {"uri": uri,
                                         "fingerprint": fingerprint},
        "Pusher/pushed_model": {"summary": {"pushed": pushed}}}}, f)


def test_drift_baseline_is_the_last_pushed_run_with_other_data(tmp_path):
  root = str(tmp_path)
  _record(root, "r1", "2026-01-01", "A", True, str(tmp_path / "s1"))
  _record(root, "r2", "2026-01-02", "B", False, str(tmp_path / "s2"))
  _record(root, "r3", "2026-01-03", "C", True, str(tmp_path / "s3"))
  key = run_record.STATISTICS_ARTIFACT
  # The latest pushed run wins over a later unpushed one...
  assert run_record.previous_artifact(root, key, "new")[0] == "r3"
  # ...unless its data is this run's own: then the one before it.
  assert run_record.previous_artifact(root, key, "new",
                                      differs_from="C")[0] == "r1"
  assert run_record.previous_artifact(root, key, "r3")[0] == "r1"
  # No pushed run: the latest one.
  only = str(tmp_path / "only")
  _record(only, "x1", "2026-01-01", "A", False, str(tmp_path / "x1"))
  _record(only, "x2", "2026-01-02", "B", False, str(tmp_path / "x2"))
  assert run_record.previous_artifact(only, key, "new")[0] == "x2"
  assert run_record.previous_artifact(only, key, "new",
                                      differs_from="B")[0] == "x1"
