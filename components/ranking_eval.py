"""Ranking-head metrics with TensorFlow Model Analysis.

TFMA evaluates the SavedModel's `predict_examples` signature (the candidate,
and the serving model as TFMA's baseline when there is one) on the eval split,
sliced, with the config's bounds expressed as TFMA MetricThresholds: absolute
bounds (value_threshold) and the largest regression allowed against the
serving model (change_threshold). TFMA's validation result is the verdict for
these metrics; the evaluator folds it into the blessing.

The eval examples are first rewritten with what TFMA needs and raw examples
lack: labels and weights as the transform derives them (one definition of
"like", in the TFT graph), and slice features (user activity bucket, new
user, cold item, category).

TFMA judges the overall slice only. Its combiners run per example and per
slice in Python: on ml-latest-small each slicing spec costs seconds, the
category spec alone fans every example out to ~2.5 slices, and slicing made
the ranking stage several times slower than the whole trainer step (figures
in docs/design_measurements.md). The slices are
for reading, not for the verdict, so `slice_metrics` computes them vectorized
from one `predict_examples` pass per model, with the same formulas
(components.metrics) on the same labeled examples. Where both exist, the
overall values agree to TFMA's AUC bucketing (1e-3; tested).
"""

from __future__ import annotations

import collections
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
from tensorflow_model_analysis.proto import config_pb2

from contracts import artifacts
from contracts import features as F
from components import metrics as M
from contracts import records as r
from components import retrieval_eval
from components import schema

CANDIDATE = "candidate"
SERVING = "serving"
SIGNATURE = "predict_examples"

# Our metric name -> (model output, TFMA metric class, TFMA result name).
METRICS = {
    "rmse": ("rating", "RootMeanSquaredError", "root_mean_squared_error"),
    "mae": ("rating", "MeanAbsoluteError", "mean_absolute_error"),
    "auc": ("p_like", "AUC", "auc"),
    "log_loss": ("p_like", "BinaryCrossentropy", "binary_crossentropy"),
}
assert tuple(METRICS) == M.RANKING_METRICS
LABELS = {"rating": (F.RATING, F.RATING_WEIGHT), "p_like": (F.LIKE,
                                                            F.LIKE_WEIGHT)}
SLICE_FEATURES = ("user_activity", "new_user", "cold_item", "category")
CALIBRATION_BUCKETS = 10


def train_counts(examples_uri: str) -> tuple[collections.Counter,
                                             collections.Counter]:
  """Training positives per user and per item."""
  users, items = collections.Counter(), collections.Counter()
  spec = {k: schema.raw_feature_spec([])[k]
          for k in (r.USER_ID, r.ITEM_ID, r.CLICK)}
  files = artifacts.split_files(examples_uri, "train")
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192)
  for b in ds.map(lambda x: tf.io.parse_example(x, spec)):
    keep = b[r.CLICK].numpy() > 0
    users.update(b[r.USER_ID].numpy()[keep].tolist())
    items.update(b[r.ITEM_ID].numpy()[keep].tolist())
  return users, items


def write_labeled_eval_examples(
    examples_uri: str, tft_output: tft.TFTransformOutput, path: str,
    user_counts: Mapping[bytes, int], item_counts: Mapping[bytes, int],
    activity_boundaries: Sequence[int]) -> int:
  """Eval split + labels/weights from the TFT graph + slice features."""
  raw_spec = schema.read_feature_spec(examples_uri)
  layer = tft_output.transform_features_layer()
  files = artifacts.split_files(examples_uri, "eval")
  n = 0
  with tf.io.TFRecordWriter(path) as writer:
    for batch in tf.data.TFRecordDataset(files,
                                         compression_type="GZIP").batch(4096):
      raw = tf.io.parse_example(batch, raw_spec)
      labels = layer(raw)
      cats = tf.RaggedTensor.from_sparse(raw[r.CATEGORIES]).to_list()
      cols = {k: raw[k].numpy() for k in (r.USER_ID, r.ITEM_ID, r.TIMESTAMP)}
      cols.update({k: labels[k].numpy() for pair in LABELS.values()
                   for k in pair})
      for i in range(len(cols[r.USER_ID])):
        user, item = cols[r.USER_ID][i], cols[r.ITEM_ID][i]
        seen = user_counts.get(user, 0)
        ex = tf.train.Example()
        f = ex.features.feature
        f[r.USER_ID].bytes_list.value.append(user)
        f[r.ITEM_ID].bytes_list.value.append(item)
        f[r.TIMESTAMP].int64_list.value.append(int(cols[r.TIMESTAMP][i]))
        for key in (k for pair in LABELS.values() for k in pair):
          f[key].float_list.value.append(float(cols[key][i]))
        f["user_activity"].bytes_list.value.append(
            retrieval_eval.activity_bucket(seen, activity_boundaries).encode())
        f["new_user"].bytes_list.value.append(b"true" if not seen else b"false")
        f["cold_item"].bytes_list.value.append(
            b"true" if not item_counts.get(item, 0) else b"false")
        f["category"].bytes_list.value.extend(cats[i] or [b"(none)"])
        writer.write(ex.SerializeToString())
        n += 1
  return n


def eval_config(thresholds: Mapping[str, Any],
                max_regression: Mapping[str, float],
                has_baseline: bool) -> config_pb2.EvalConfig:
  """The TFMA EvalConfig: models, labels, weights, slices, thresholds."""
  cfg = config_pb2.EvalConfig()
  for name, is_baseline in ((CANDIDATE, False), (SERVING, True)):
    if is_baseline and not has_baseline:
      continue
    spec = cfg.model_specs.add(name=name, signature_name=SIGNATURE,
                               is_baseline=is_baseline)
    for output, (label, weight) in LABELS.items():
      spec.label_keys[output] = label
      spec.example_weight_keys[output] = weight
      spec.prediction_keys[output] = output
  cfg.slicing_specs.add()  # Overall; the slices come from slice_metrics.
  for output in LABELS:
    ms = cfg.metrics_specs.add(output_names=[output])
    ms.metrics.add(class_name="ExampleCount")
    if output == "p_like":
      ms.metrics.add(class_name="CalibrationPlot",
                     config=f'"num_buckets": {CALIBRATION_BUCKETS}')
    for ours, (out, class_name, _) in METRICS.items():
      if out != output:
        continue
      metric = ms.metrics.add(class_name=class_name)
      if class_name == "AUC":
        # TFMA's default of 10,000 thresholds makes every slice cost seconds;
        # 1,000 keep AUC within ~1e-3 (Keras' own default is 200).
        metric.config = '"num_thresholds": 1000'

      bounds = thresholds.get(ours)
      regression = max_regression.get(ours)
      if bounds is None and (regression is None or not has_baseline):
        continue
      # Thresholds judge the overall slice; slices are for reading.
      pst = metric.per_slice_thresholds.add()
      pst.slicing_specs.add()
      if bounds is not None and bounds.min is not None:
        pst.threshold.value_threshold.lower_bound.value = bounds.min
      if bounds is not None and bounds.max is not None:
        pst.threshold.value_threshold.upper_bound.value = bounds.max
      if regression is not None and has_baseline:
        ct = pst.threshold.change_threshold
        higher = M.higher_is_better(ours)
        ct.direction = (config_pb2.MetricDirection.HIGHER_IS_BETTER if higher
                        else config_pb2.MetricDirection.LOWER_IS_BETTER)
        ct.absolute.value = -regression if higher else regression
  return cfg


def _slice_name(slice_key) -> str:
  if not slice_key:
    return retrieval_eval.ALL
  return ",".join(f"{k}:{v.decode() if isinstance(v, bytes) else v}"
                  for k, v in slice_key)


def run_tfma(candidate_dir: str, serving_dir: Optional[str],
             eval_examples: str, output_path: str,
             thresholds: Mapping[str, Any], max_regression: Mapping[str, float],
             beam_args: Sequence[str] = ()) -> dict[str, Any]:
  """Runs TFMA; returns metrics per model and slice, calibration, failures."""
  from components import beam_runtime  # pylint: disable=g-import-not-at-top
  cfg = eval_config(thresholds, max_regression, serving_dir is not None)
  models = [tfma.default_eval_shared_model(candidate_dir, eval_config=cfg,
                                           model_name=CANDIDATE)]
  if serving_dir:
    models.append(tfma.default_eval_shared_model(
        serving_dir, eval_config=cfg, model_name=SERVING))
  tfma.run_model_analysis(
      eval_shared_model=models, eval_config=cfg, data_location=eval_examples,
      output_path=output_path,
      pipeline_options=beam_runtime.pipeline_options(beam_args))

  by_result_name = {v[2]: k for k, v in METRICS.items()}
  results: dict[str, dict[str, dict[str, float]]] = collections.defaultdict(
      lambda: collections.defaultdict(dict))
  for m in tfma.load_metrics(output_path):
    slice_name = _slice_name(
        tfma.slicer.slicer_lib.deserialize_slice_key(m.slice_key))
    for kv in m.metric_keys_and_values:
      key = kv.key
      if key.is_diff:
        continue
      name = by_result_name.get(key.name)
      if key.name == "example_count":
        name = f"{key.output_name}_example_count"
      if name is None:
        continue
      results[key.model_name or CANDIDATE][slice_name][name] = (
          kv.value.double_value.value)

  calibration = []
  for plots in tfma.load_plots(output_path):
    if plots.slice_key.single_slice_keys:
      continue
    for kv in plots.plot_keys_and_values:
      if (kv.key.model_name or CANDIDATE) != CANDIDATE:
        continue
      for b in kv.value.calibration_histogram_buckets.buckets:
        w = b.num_weighted_examples.value
        if w > 0:
          calibration.append({
              "lower": max(0.0, b.lower_threshold_inclusive),
              "upper": min(1.0, b.upper_threshold_exclusive),
              "count": w,
              "mean_predicted": b.total_weighted_refined_prediction.value / w,
              "observed_rate": b.total_weighted_label.value / w})

  validation = tfma.load_validation_result(output_path)
  failures = []
  for per_slice in validation.metric_validations_per_slice:
    for f in per_slice.failures:
      failures.append({
          "metric": by_result_name.get(f.metric_key.name, f.metric_key.name),
          "is_diff": f.metric_key.is_diff,
          "value": f.metric_value.double_value.value,
          "threshold": str(f.metric_threshold).replace("\n", " ").strip(),
      })
  return {"metrics": {k: dict(v) for k, v in results.items()},
          "calibration": calibration, "validation_ok": validation.validation_ok,
          "failures": failures}


def _read_labeled(path: str) -> tuple[list[bytes], dict[str, np.ndarray],
                                       list[list[str]]]:
  """Serialized examples, their labels/weights, and each one's slice names."""
  spec = {k: tf.io.FixedLenFeature([], tf.float32)
          for pair in LABELS.values() for k in pair}
  spec.update({k: tf.io.FixedLenFeature([], tf.string)
               for k in SLICE_FEATURES if k != "category"})
  spec["category"] = tf.io.VarLenFeature(tf.string)
  serialized, columns, slices = [], collections.defaultdict(list), []
  for batch in tf.data.TFRecordDataset([path]).batch(8192):
    parsed = tf.io.parse_example(batch, spec)
    serialized.extend(batch.numpy().tolist())
    for k in (k for pair in LABELS.values() for k in pair):
      columns[k].append(parsed[k].numpy())
    single = {k: parsed[k].numpy() for k in SLICE_FEATURES if k != "category"}
    cats = tf.RaggedTensor.from_sparse(parsed["category"]).to_list()
    for i, example_cats in enumerate(cats):
      names = [f"{k}:{v[i].decode()}" for k, v in single.items()]
      names += [f"category:{c.decode()}" for c in example_cats]
      slices.append(names)
  return serialized, {k: np.concatenate(v) if v else np.zeros(0, np.float32)
                      for k, v in columns.items()}, slices


def _predict(model_dir: str, serialized: Sequence[bytes],
             batch_size: int = 4096) -> dict[str, np.ndarray]:
  fn = tf.saved_model.load(model_dir).signatures[SIGNATURE]
  out = collections.defaultdict(list)
  for start in range(0, len(serialized), batch_size):
    result = fn(examples=tf.constant(serialized[start:start + batch_size]))
    for output in LABELS:
      out[output].append(np.reshape(result[output].numpy(), [-1]))
  return {k: np.concatenate(v) for k, v in out.items()}


def _head_metrics(pred: Mapping[str, np.ndarray],
                  cols: Mapping[str, np.ndarray],
                  rows: np.ndarray) -> dict[str, float]:
  """Our metric names over `rows`; each head on the rows its weight keeps."""
  out = {}
  for output, (label, weight) in LABELS.items():
    out[f"{output}_example_count"] = float(len(rows))
    keep = rows[cols[weight][rows] > 0]
    for ours, (out_name, _, _) in METRICS.items():
      if out_name == output:
        out[ours] = getattr(M, ours)(pred[output][keep], cols[label][keep])
  return out


def slice_metrics(model_dirs: Mapping[str, str],
                  labeled_path: str) -> dict[str, dict[str, dict[str, float]]]:
  """Ranking metrics per slice, {model: {slice: {metric: value}}}.

  Args:
    model_dirs: model name -> SavedModel directory (with predict_examples).
    labeled_path: the output of write_labeled_eval_examples.
  """
  serialized, cols, slices = _read_labeled(labeled_path)
  rows_of = collections.defaultdict(list)
  for i, names in enumerate(slices):
    for name in names:
      rows_of[name].append(i)
  results = {}
  for model, model_dir in model_dirs.items():
    pred = _predict(model_dir, serialized)
    results[model] = {
        name: _head_metrics(pred, cols, np.asarray(rows, np.int64))
        for name, rows in sorted(rows_of.items())}
    results[model][retrieval_eval.ALL] = _head_metrics(
        pred, cols, np.arange(len(serialized)))
  return results


def finite(x: Any) -> bool:
  return isinstance(x, (int, float)) and not math.isnan(x) and not (
      math.isinf(x))


