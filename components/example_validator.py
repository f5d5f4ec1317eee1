"""ExampleValidator: the run's statistics against the schema, the previous
run and each other.

Three kinds of anomaly, each named by split and feature:
  - schema: a schema feature missing from examples it must be in, of
    another type, or holding a number of values its shape forbids; a
    feature the schema lacks; a split with no examples;
  - drift: the train split against the train split of the last pushed run
    whose data differs from this run's (contracts.run_record.
    previous_artifact), or of the statistics
    `data_validation.baseline_statistics` names;
  - skew: the train split against the eval split.
Drift and skew are measured as TFDV does (components/data_drift.py) and
every distance is kept, over its threshold or not, for the report.

The artifact holds `anomalies.json` (what the Evaluator and the report
read), TFX's `Split-<name>/SchemaDiff.pb` (a tensorflow_metadata Anomalies
proto per split, for TFX tooling elsewhere) and `report.html` (the data
section on its own page). Anomalies of a kind listed in
`data_validation.blocking` are marked blocking: the Evaluator then blesses
nothing, so the Pusher publishes nothing, and the report says why.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import data_drift
from components import data_report
from components import schema as schema_lib
from components import statistics_gen
from contracts import artifacts
from contracts import run_record

ANOMALIES_FILE = "anomalies.json"
ANOMALIES_PROTO = "SchemaDiff.pb"  # TFX's name, one per split directory
REPORT_HTML = "report.html"

_Type = anomalies_pb2.AnomalyInfo.Type
# The statistics type each schema type may have.
_SCHEMA_TYPES = {
    schema_pb2.INT: statistics_pb2.FeatureNameStatistics.INT,
    schema_pb2.FLOAT: statistics_pb2.FeatureNameStatistics.FLOAT,
    schema_pb2.BYTES: statistics_pb2.FeatureNameStatistics.STRING,
}


def _anomaly(split: str, feature: str, kind: str, reason: str, short: str,
             description: str, **measured: Any) -> dict[str, Any]:
  return {"split": split, "feature": feature, "kind": kind,
          "reason": reason, "short": short, "description": description,
          **measured}


def schema_anomalies(schema: schema_pb2.Schema, split: str,
                     dataset: statistics_pb2.DatasetFeatureStatistics
                     ) -> list[dict[str, Any]]:
  """The split's departures from the schema."""
  out = []
  if dataset.num_examples == 0:
    return [_anomaly(split, "", "schema", "DATASET_LOW_NUM_EXAMPLES",
                     "No examples",
                     f"the {split} split has no examples")]
  stats = statistics_gen.feature_stats(dataset)
  for feature in schema.feature:
    name = feature.name
    s = stats.get(name)
    required = feature.presence.min_fraction >= 1.0
    if s is None:
      if required:
        out.append(_anomaly(
            split, name, "schema", "SCHEMA_MISSING_COLUMN", "Column dropped",
            f"{name} is in the schema (required in every example) but in "
            f"none of the {dataset.num_examples:,} {split} examples"))
      continue
    common = (s.string_stats.common_stats if data_drift.is_categorical(s)
              else s.num_stats.common_stats)
    if required and common.num_missing:
      out.append(_anomaly(
          split, name, "schema", "FEATURE_TYPE_LOW_FRACTION_PRESENT",
          "Missing values",
          f"{name} is missing from {common.num_missing:,} of "
          f"{dataset.num_examples:,} {split} examples; the schema requires "
          f"it in every one", value=common.num_missing))
    expected = _SCHEMA_TYPES.get(feature.type)
    if expected is not None and s.type != expected:
      out.append(_anomaly(
          split, name, "schema", "UNEXPECTED_DATA_TYPE", "Unexpected type",
          f"{name} holds "
          f"{statistics_pb2.FeatureNameStatistics.Type.Name(s.type)} values; "
          f"the schema says {schema_pb2.FeatureType.Name(feature.type)}"))
    if feature.HasField("shape") and not feature.shape.dim and (
        common.num_non_missing and
        (common.min_num_values != 1 or common.max_num_values != 1)):
      out.append(_anomaly(
          split, name, "schema", "FEATURE_TYPE_HIGH_NUMBER_VALUES"
          if common.max_num_values > 1 else "FEATURE_TYPE_LOW_NUMBER_VALUES",
          "Wrong number of values",
          f"{name} is a single value in the schema but holds "
          f"{common.min_num_values} to {common.max_num_values} values per "
          f"{split} example"))
  known = {f.name for f in schema.feature}
  for name in sorted(set(stats) - known):
    out.append(_anomaly(split, name, "schema", "SCHEMA_NEW_COLUMN",
                        "New column",
                        f"{name} is in the {split} examples but not in the "
                        f"schema"))
  return out


def _threshold(config: Any, feature: str, metric: str) -> Optional[float]:
  if feature in config.ignore:
    return None
  if feature in config.features:
    return float(config.features[feature])
  return (config.categorical_linf if metric == data_drift.L_INFINITY
          else config.numeric_js)


def compare(current: statistics_pb2.DatasetFeatureStatistics,
            baseline: statistics_pb2.DatasetFeatureStatistics,
            thresholds: Any, kind: str, split: str, against: str
            ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
  """Distances of the features both have; the anomalies among them.

  Returns ({feature: {metric, value, threshold}}, anomalies). A feature
  in `thresholds.ignore` is measured but never an anomaly.
  """
  a, b = (statistics_gen.feature_stats(d) for d in (current, baseline))
  distances, anomalies = {}, []
  for name in sorted(set(a) & set(b)):
    metric, value = data_drift.feature_distance(a[name], b[name])
    limit = _threshold(thresholds, name, metric)
    distances[name] = {"metric": metric, "value": value, "threshold": limit}
    if limit is not None and value > limit:
      label = ("L-infinity distance" if metric == data_drift.L_INFINITY
               else "Jensen–Shannon divergence")
      anomalies.append(_anomaly(
          split, name, kind, "COMPARATOR_L_INFTY_HIGH"
          if metric == data_drift.L_INFINITY else
          "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
          f"High {label}",
          f"{name}: the {label} between {split} and {against} is "
          f"{value:.4f}, above the threshold {limit:g} "
          f"(data_validation.{kind})", metric=metric, value=value,
          threshold=limit))
  return distances, anomalies


def anomalies_proto(split: str, found: list[Mapping[str, Any]],
                    schema: schema_pb2.Schema) -> anomalies_pb2.Anomalies:
  """TFX's per-split Anomalies proto of the anomalies found in `split`."""
  out = anomalies_pb2.Anomalies()
  out.baseline.CopyFrom(schema)
  out.anomaly_name_format = anomalies_pb2.Anomalies.SERIALIZED_PATH
  for a in found:
    if a["split"] != split:
      continue
    info = (out.anomaly_info[a["feature"]] if a["feature"]
            else out.dataset_anomaly_info)
    if a["feature"]:
      info.path.step[:] = [a["feature"]]
    # A feature with several anomalies is an ERROR if any of them blocks.
    info.severity = max(info.severity, anomalies_pb2.AnomalyInfo.ERROR
                        if a["blocking"] else anomalies_pb2.AnomalyInfo.WARNING)
    info.short_description = a["short"]
    info.description = "; ".join(filter(None, [info.description,
                                               a["description"]]))
    info.reason.add(type=_Type.Value(a["reason"]),
                    short_description=a["short"],
                    description=a["description"])
  return out


def find_baseline(statistics_uri: str, run_id: str, config: Any,
                  pipeline_root: Optional[str]) -> Optional[dict[str, str]]:
  """The statistics this run's drift is measured against, or None.

  config.baseline_statistics when set; else, from the run records under
  `pipeline_root`, the latest run that pushed a model and whose
  statistics differ from this run's (contracts.run_record.
  previous_artifact). The local runner keys the step's cache on the same
  choice (pipeline/runner.py), so what the cache reuses is what this
  would compute.
  """
  if config.baseline_statistics:
    return {"run_id": "", "uri": config.baseline_statistics,
            "why": "data_validation.baseline_statistics"}
  if not pipeline_root:
    return None
  previous = run_record.previous_artifact(
      pipeline_root, run_record.STATISTICS_ARTIFACT, run_id,
      differs_from=artifacts.read_metadata(statistics_uri).get("fingerprint"))
  if previous is None:
    return None
  return {"run_id": previous[0], "uri": previous[1],
          "why": "the last pushed run with other data"}


def run_example_validator(statistics_uri: str, examples_uri: str,
                          anomalies_uri: str, run_id: str, config: Any,
                          pipeline_root: Optional[str] = None
                          ) -> dict[str, Any]:
  """Validates; publishes the anomalies artifact; returns its summary.

  Args:
    statistics_uri: this run's StatisticsGen artifact.
    examples_uri: this run's Examples (for the schema stored with them).
    anomalies_uri: where the anomalies artifact goes.
    config: components.config.DataValidationConfig.
    pipeline_root: where run records live, to find the previous run's
      statistics; None (e.g. on Kubeflow without a shared root) measures
      no drift unless config.baseline_statistics names the statistics.
  """
  schema = schema_lib.read_schema(examples_uri)
  splits = artifacts.split_names(statistics_uri)
  datasets = {s: statistics_gen.read_statistics(statistics_uri, s)
              for s in splits}
  found: list[dict[str, Any]] = []
  for split in splits:
    found += schema_anomalies(schema, split, datasets[split])

  baseline = find_baseline(statistics_uri, run_id, config, pipeline_root)
  distances: dict[str, dict[str, Any]] = {}
  train, evaluation = artifacts.TRAIN, artifacts.EVAL
  baseline_train = None
  if baseline and train in datasets:
    baseline_train = statistics_gen.read_statistics(baseline["uri"], train)
    distances["drift"], drift = compare(
        datasets[train], baseline_train, config.drift, "drift", train,
        f"the {train} split of {baseline['why']} "
        f"{baseline['run_id'] or baseline['uri']}".strip())
    found += drift
  if train in datasets and evaluation in datasets and all(
      datasets[s].num_examples for s in (train, evaluation)):
    distances["skew"], skew = compare(
        datasets[train], datasets[evaluation], config.skew, "skew", train,
        f"the {evaluation} split")
    found += skew
  for a in found:
    a["blocking"] = a["kind"] in config.blocking
  result = {
      "anomalies": found,
      "blocking": sum(a["blocking"] for a in found),
      "distances": distances,
      "baseline": baseline,
      "blocking_kinds": list(config.blocking),
  }
  with artifacts.write_artifact(
      anomalies_uri, "ExampleAnomalies", "ExampleValidator", run_id,
      {"config": config.model_dump(mode="json"),
       "baseline_statistics": baseline["uri"] if baseline else None},
      {"statistics": statistics_uri, "examples": examples_uri}) as w:
    artifacts.write_json_atomic(os.path.join(w.uri, ANOMALIES_FILE), result)
    for split in splits:
      os.makedirs(artifacts.split_dir(w.uri, split))
      with open(os.path.join(artifacts.split_dir(w.uri, split),
                             ANOMALIES_PROTO), "wb") as f:
        f.write(anomalies_proto(split, found, schema).SerializeToString())
    data_report.write_page(os.path.join(w.uri, REPORT_HTML), run_id,
                           data_report.section(datasets, result,
                                               baseline_train))
    w.summary = {"anomalies": len(found), "blocking": result["blocking"],
                 "baseline_run": baseline["run_id"] if baseline else None,
                 "kinds": sorted({a["kind"] for a in found})}
  return result


def read_anomalies(anomalies_uri: str) -> dict[str, Any]:
  with open(os.path.join(anomalies_uri, ANOMALIES_FILE)) as f:
    loaded: dict[str, Any] = json.load(f)
  return loaded


def read_data_section(anomalies_uri: str) -> str:
  """The data section's HTML fragment, for the Evaluator's report."""
  with open(os.path.join(anomalies_uri, data_report.FRAGMENT_FILE),
            encoding="utf-8") as f:
    return f.read()
