"""Ranking-head metrics with TensorFlow Model Analysis.

The heads measured are the model's own tasks, read from its model card
(contracts.model_layout.MODEL_CARD_FILE; a model exported before cards has
the old default tasks, rating and like): a regression task by RMSE and MAE,
a binary task by AUC, log loss and calibration (Σ predicted / Σ observed,
plus a calibration plot), a multilabel task by AUC over (example, label)
pairs and recall@5 (the share of the event item's labels among the five most
probable). Names are `<task>_<metric>` (components.metrics).

TFMA evaluates the SavedModel's `predict_examples` signature (the candidate,
and the serving model as TFMA's baseline for the tasks it shares) on the
eval split, with the config's bounds expressed as TFMA MetricThresholds:
absolute bounds (value_threshold) and the largest regression allowed against
the serving model (change_threshold). TFMA's validation result is the
verdict for these metrics; the evaluator folds it into the blessing.

Multilabel tasks are not given to TFMA. Its multi-label metrics want the
label as a dense multi-hot vector of the output's width in every example and
then compute per class (sub_keys, a Python combiner each) or micro-average
after binarizing, and TFMA has no "labels in the top k of a probability
vector" metric at all, so recall@5 would be a custom per-example combiner:
the per-example Python cost that made slicing several times slower than the
trainer (below). Their metrics come from the vectorized path (slice_metrics)
for every slice, overall included, and the evaluator judges their
thresholds itself, as it does for the retrieval metrics.

The eval examples are first rewritten with what TFMA needs and raw examples
lack: labels and weights as the transform derives them (one definition of
"like", in the TFT graph; the retrieval evaluation reads its relevance and
graded gains from the same file), and slice features (user activity
bucket, new user, cold item, category).

TFMA judges the overall slice only. Its combiners run per example and per
slice in Python: on ml-latest-small each slicing spec costs seconds, the
category spec alone fans every example out to ~2.5 slices, and slicing made
the ranking stage several times slower than the whole trainer step (figures
in docs/design_measurements.md). The slices are
for reading, not for the verdict, so `slice_metrics` computes them vectorized
from one `predict_examples` pass per model, with the same formulas
(components.metrics) on the same labeled examples. Where both exist, the
overall values agree to TFMA's AUC bucketing (1e-3; tested). The same pass
gives each head metric's confidence interval, a bootstrap over examples
(`slice_metrics_and_intervals`; components/confidence.py says why not
TFMA's own intervals).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
from tensorflow_model_analysis.proto import config_pb2

from contracts import artifacts
from components import confidence
from contracts import features as F
from contracts import model_layout
from components import metric_names
from components import metrics as M
from contracts import records as r
from components import retrieval_eval
from components import schema

CANDIDATE = "candidate"
SERVING = "serving"
SIGNATURE = "predict_examples"

# Our metric -> (TFMA metric class, TFMA result name), for the scalar kinds.
TFMA_METRICS = {
    "rmse": ("RootMeanSquaredError", "root_mean_squared_error"),
    "mae": ("MeanAbsoluteError", "mean_absolute_error"),
    "auc": ("AUC", "auc"),
    "log_loss": ("BinaryCrossentropy", "binary_crossentropy"),
    "calibration": ("Calibration", "calibration"),
}
assert all(set(metric_names.TASK_METRICS[k]) <= set(TFMA_METRICS)
           for k in metric_names.SCALAR_KINDS)
LABEL_TABLES = {"regression": F.REGRESSION_LABELS,
                "binary": F.BINARY_LABELS,
                "multilabel": F.MULTILABEL_LABELS}
# Written for every model, whatever its tasks: the retrieval evaluation's
# relevance (consumed) and graded gains (liked) come from the same file.
RELEVANCE_COLUMNS = (F.RETRIEVAL_WEIGHT, F.LIKE, F.LIKE_WEIGHT)
SLICE_FEATURES = ("user_activity", "new_user", "cold_item", "category")
CALIBRATION_BUCKETS = 10


@dataclasses.dataclass(frozen=True)
class EvalTask:
  """A ranking task as the model card states it."""

  name: str
  kind: str  # regression, binary or multilabel
  label: str  # a key of the kind's table in contracts.features
  output: str  # the serving output, e.g. p_click

  @property
  def label_feature(self) -> str:
    return LABEL_TABLES[self.kind][self.label][0]

  @property
  def weight_feature(self) -> Optional[str]:
    """The rows that count: a weight > 0; None: every row."""
    if self.kind == "multilabel":
      # As in training: consumed rows (those without a label drop out
      # where the metric is computed).
      return F.RETRIEVAL_WEIGHT
    return LABEL_TABLES[self.kind][self.label][1]

  @property
  def scalar(self) -> bool:
    """One value per example: judged by TFMA."""
    return self.kind in metric_names.SCALAR_KINDS

  def metric_names(self) -> list[str]:
    return metric_names.task_metric_names(self.name, self.kind)


# The tasks of a model exported before model cards.
LEGACY_TASKS = (EvalTask("rating", "regression", "rating", "rating"),
                EvalTask("like", "binary", "like", "p_like"))


def read_model_card(saved_model_dir: str) -> dict[str, Any]:
  """The model card; for a model exported before cards, its default tasks
  (retrieval, rating, like) and no fused ranking stage."""
  path = model_layout.model_card_path(saved_model_dir)
  if not os.path.exists(path):
    return {"tasks": [{"name": "retrieval", "kind": "retrieval",
                       "label": None, "output": None}] + [
                           dataclasses.asdict(t) for t in LEGACY_TASKS],
            "ranking": None, "signatures": None}
  with open(path) as f:
    return json.load(f)


def eval_tasks(card: Mapping[str, Any]) -> list[EvalTask]:
  """The card's ranking tasks (retrieval is retrieval_eval's)."""
  out = []
  for t in card.get("tasks") or ():
    table = LABEL_TABLES.get(t.get("kind"))
    if table is None:
      continue
    if t.get("label") not in table:
      raise ValueError(f"model card: task {t.get('name')!r} has the label "
                       f"{t.get('label')!r}, unknown to the evaluator")
    out.append(EvalTask(t["name"], t["kind"], t["label"], t["output"]))
  return out


def same_label_vocabulary(model_dir: str, other_dir: str,
                          task: EvalTask) -> bool:
  """Whether two SavedModels index a multilabel task's classes alike.

  A multilabel output's columns are the label vocabulary of the model's own
  transform graph (kept in the SavedModel's assets under its vocabulary
  name); labels indexed by the candidate's transform only fit a model whose
  vocabulary is the same.
  """
  if task.kind != "multilabel":
    return True
  vocab = F.MULTILABEL_LABELS[task.label][1]
  contents = []
  for d in (model_dir, other_dir):
    path = os.path.join(d, "assets", vocab)
    if not os.path.exists(path):
      return False
    with open(path, "rb") as f:
      contents.append(f.read())
  return contents[0] == contents[1]


def union_tasks(task_lists: Iterable[Sequence[EvalTask]]) -> list[EvalTask]:
  """Every task of the lists, once, in order (what the labeled file holds)."""
  return list(dict.fromkeys(t for tasks in task_lists for t in tasks))


def _scalar_columns(tasks: Sequence[EvalTask]) -> tuple[list[str], list[str]]:
  """(required, all) float columns of the labeled examples.

  Every scalar label and weight the transform makes is written (readers
  such as benchmarks/model_comparison.py expect rating and like whatever the
  model); the tasks' and the relevance columns must be there.
  """
  required = list(dict.fromkeys([
      *RELEVANCE_COLUMNS,
      *(c for t in tasks if t.scalar
        for c in (t.label_feature, t.weight_feature) if c)]))
  every = list(dict.fromkeys(
      [*required, *(c for table in (F.REGRESSION_LABELS, F.BINARY_LABELS)
                    for pair in table.values() for c in pair if c)]))
  return required, every


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
    activity_boundaries: Sequence[int],
    tasks: Sequence[EvalTask] = LEGACY_TASKS) -> int:
  """Eval split + labels/weights from the TFT graph + slice features.

  Args:
    tasks: every task that will be measured on the file (the candidate's
      and the serving model's): a multilabel task's label is written as the
      int64 class indices of its transformed feature, a scalar one as a
      float, with its weight.

  Raises:
    ValueError: the transform graph makes no feature a task needs.
  """
  raw_spec = schema.read_feature_spec(examples_uri)
  layer = tft_output.transform_features_layer()
  required, every = _scalar_columns(tasks)
  multilabel = list(dict.fromkeys(t.label_feature for t in tasks
                                  if t.kind == "multilabel"))
  files = artifacts.split_files(examples_uri, "eval")
  n = 0
  with tf.io.TFRecordWriter(path) as writer:
    for batch in tf.data.TFRecordDataset(files,
                                         compression_type="GZIP").batch(4096):
      raw = tf.io.parse_example(batch, raw_spec)
      labels = layer(raw)
      missing = [k for k in [*required, *multilabel] if k not in labels]
      if missing:
        raise ValueError(f"the transform graph makes no {missing}, which "
                         "the model's tasks need")
      scalar = [k for k in every if k in labels]
      cats = tf.RaggedTensor.from_sparse(raw[r.CATEGORIES]).to_list()
      cols = {k: raw[k].numpy() for k in (r.USER_ID, r.ITEM_ID, r.TIMESTAMP)}
      cols.update({k: labels[k].numpy() for k in scalar})
      classes = {k: tf.RaggedTensor.from_sparse(labels[k]).to_list()
                 for k in multilabel}
      for i in range(len(cols[r.USER_ID])):
        user, item = cols[r.USER_ID][i], cols[r.ITEM_ID][i]
        seen = user_counts.get(user, 0)
        ex = tf.train.Example()
        f = ex.features.feature
        f[r.USER_ID].bytes_list.value.append(user)
        f[r.ITEM_ID].bytes_list.value.append(item)
        f[r.TIMESTAMP].int64_list.value.append(int(cols[r.TIMESTAMP][i]))
        for key in scalar:
          f[key].float_list.value.append(float(cols[key][i]))
        for key in multilabel:
          f[key].int64_list.value.extend(classes[key][i])
        f["user_activity"].bytes_list.value.append(
            retrieval_eval.activity_bucket(seen, activity_boundaries).encode())
        f["new_user"].bytes_list.value.append(b"true" if not seen else b"false")
        f["cold_item"].bytes_list.value.append(
            b"true" if not item_counts.get(item, 0) else b"false")
        f["category"].bytes_list.value.extend(cats[i] or [b"(none)"])
        writer.write(ex.SerializeToString())
        n += 1
  return n


def compared_tasks(tasks: Sequence[EvalTask],
                   serving_tasks: Optional[Sequence[EvalTask]]
                   ) -> list[EvalTask]:
  """The candidate's tasks the serving model has too (same name, kind,
  label and output): the only ones a regression can be measured on."""
  serving = set(serving_tasks or ())
  return [t for t in tasks if t in serving]


def _bound(table: Mapping[str, Any], metric: str) -> Any:
  """The config's entry for a metric, under its name or its alias."""
  if metric in table:
    return table[metric]
  for alias, name in metric_names.LEGACY_ALIASES.items():
    if name == metric and alias in table:
      return table[alias]
  return None


def eval_config(thresholds: Mapping[str, Any],
                max_regression: Mapping[str, float],
                has_baseline: bool,
                tasks: Sequence[EvalTask] = LEGACY_TASKS,
                serving_tasks: Optional[Sequence[EvalTask]] = None
                ) -> config_pb2.EvalConfig:
  """The TFMA EvalConfig: models, labels, weights, slices, thresholds.

  Args:
    tasks: the candidate's tasks; only the scalar ones go to TFMA.
    serving_tasks: the serving model's (None: the legacy ones). Only tasks
      both models have are computed for the baseline and get a change
      threshold: a task the candidate adds has nothing to regress from.
  """
  tasks = [t for t in tasks if t.scalar]
  compared = set(compared_tasks(tasks, LEGACY_TASKS if serving_tasks is None
                                else serving_tasks)) if has_baseline else set()
  cfg = config_pb2.EvalConfig()
  for name, is_baseline, outputs in (
      (CANDIDATE, False, tasks),
      (SERVING, True, [t for t in tasks if t in compared])):
    if is_baseline and not compared:
      continue
    spec = cfg.model_specs.add(name=name, signature_name=SIGNATURE,
                               is_baseline=is_baseline)
    for t in outputs:
      spec.label_keys[t.output] = t.label_feature
      if t.weight_feature:  # else every row weighs 1 (e.g. click)
        spec.example_weight_keys[t.output] = t.weight_feature
      spec.prediction_keys[t.output] = t.output
  cfg.slicing_specs.add()  # Overall; the slices come from slice_metrics.
  for t in tasks:
    ms = cfg.metrics_specs.add(output_names=[t.output])
    ms.model_names.append(CANDIDATE)
    if t in compared:
      ms.model_names.append(SERVING)
    ms.metrics.add(class_name="ExampleCount")
    if t.kind == "binary":
      ms.metrics.add(class_name="CalibrationPlot",
                     config=f'"num_buckets": {CALIBRATION_BUCKETS}')
    for metric_name in metric_names.TASK_METRICS[t.kind]:
      ours = f"{t.name}_{metric_name}"
      metric = ms.metrics.add(class_name=TFMA_METRICS[metric_name][0])
      if metric_name == "auc":
        # TFMA's default of 10,000 thresholds makes every slice cost seconds;
        # 1,000 keep AUC within ~1e-3 (Keras' own default is 200).
        metric.config = '"num_thresholds": 1000'

      bounds = _bound(thresholds, ours)
      regression = _bound(max_regression, ours) if (
          t in compared and metric_names.has_direction(ours)) else None
      if bounds is None and regression is None:
        continue
      # Thresholds judge the overall slice; slices are for reading.
      pst = metric.per_slice_thresholds.add()
      pst.slicing_specs.add()
      if bounds is not None and bounds.min is not None:
        pst.threshold.value_threshold.lower_bound.value = bounds.min
      if bounds is not None and bounds.max is not None:
        pst.threshold.value_threshold.upper_bound.value = bounds.max
      if regression is not None:
        ct = pst.threshold.change_threshold
        higher = metric_names.higher_is_better(ours)
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
             beam_args: Sequence[str] = (),
             tasks: Sequence[EvalTask] = LEGACY_TASKS,
             serving_tasks: Optional[Sequence[EvalTask]] = None
             ) -> dict[str, Any]:
  """Runs TFMA on the scalar tasks.

  Returns:
    metrics {model: {slice: {metric: value}}} (with the legacy aliases),
    calibration {binary task: buckets} of the candidate, validation_ok,
    failures (TFMA's, under our metric names) and judged (the metric names
    TFMA judged for the candidate).
  """
  from components import beam_runtime  # pylint: disable=g-import-not-at-top
  tasks = [t for t in tasks if t.scalar]
  if serving_tasks is None:
    serving_tasks = LEGACY_TASKS
  compared = compared_tasks(tasks, serving_tasks) if serving_dir else []
  judged = [m for t in tasks for m in t.metric_names()]
  if not tasks:
    return {"metrics": {}, "calibration": {}, "validation_ok": True,
            "failures": [], "judged": []}
  cfg = eval_config(thresholds, max_regression, bool(compared), tasks,
                    serving_tasks)
  models = [tfma.default_eval_shared_model(candidate_dir, eval_config=cfg,
                                           model_name=CANDIDATE)]
  if compared:
    models.append(tfma.default_eval_shared_model(
        serving_dir, eval_config=cfg, model_name=SERVING))
  tfma.run_model_analysis(
      eval_shared_model=models, eval_config=cfg, data_location=eval_examples,
      output_path=output_path,
      pipeline_options=beam_runtime.pipeline_options(beam_args))

  ours = {(t.output, TFMA_METRICS[m][1]): f"{t.name}_{m}"
          for t in tasks for m in metric_names.TASK_METRICS[t.kind]}
  task_of = {t.output: t.name for t in tasks}
  results: dict[str, dict[str, dict[str, float]]] = collections.defaultdict(
      lambda: collections.defaultdict(dict))
  for m in tfma.load_metrics(output_path):
    slice_name = _slice_name(
        tfma.slicer.slicer_lib.deserialize_slice_key(m.slice_key))
    for kv in m.metric_keys_and_values:
      key = kv.key
      if key.is_diff:
        continue
      name = ours.get((key.output_name, key.name))
      if key.name == "example_count" and key.output_name in task_of:
        name = f"{task_of[key.output_name]}_example_count"
      if name is None:
        continue
      results[key.model_name or CANDIDATE][slice_name][name] = (
          kv.value.double_value.value)

  calibration: dict[str, list[dict[str, float]]] = {}
  for plots in tfma.load_plots(output_path):
    if plots.slice_key.single_slice_keys:
      continue
    for kv in plots.plot_keys_and_values:
      if (kv.key.model_name or CANDIDATE) != CANDIDATE or (
          kv.key.output_name not in task_of):
        continue
      buckets = calibration.setdefault(task_of[kv.key.output_name], [])
      for b in kv.value.calibration_histogram_buckets.buckets:
        w = b.num_weighted_examples.value
        if w > 0:
          buckets.append({
              "lower": max(0.0, b.lower_threshold_inclusive),
              "upper": min(1.0, b.upper_threshold_exclusive),
              "count": w,
              "mean_predicted": b.total_weighted_refined_prediction.value / w,
              "observed_rate": b.total_weighted_label.value / w})

  validation = tfma.load_validation_result(output_path)
  failures = []
  for per_slice in validation.metric_validations_per_slice:
    for f in per_slice.failures:
      key = f.metric_key
      failures.append({
          "metric": ours.get((key.output_name, key.name),
                             f"{key.output_name}:{key.name}"),
          "is_diff": key.is_diff,
          "value": f.metric_value.double_value.value,
          "threshold": str(f.metric_threshold).replace("\n", " ").strip(),
      })
  return {"metrics": {model: {name: metric_names.with_aliases(values)
                              for name, values in by_slice.items()}
                      for model, by_slice in results.items()},
          "calibration": calibration, "validation_ok": validation.validation_ok,
          "failures": failures, "judged": judged}


def _read_labeled(path: str, tasks: Sequence[EvalTask]
                  ) -> tuple[list[bytes], dict[str, Any], list[list[str]]]:
  """Serialized examples, their labels/weights, and each one's slice names.

  A multilabel task's column is a list of class-index arrays (its width is
  the model's output's); the others are float arrays.
  """
  required, _ = _scalar_columns(tasks)
  multilabel = list(dict.fromkeys(t.label_feature for t in tasks
                                  if t.kind == "multilabel"))
  spec = {k: tf.io.FixedLenFeature([], tf.float32) for k in required}
  spec.update({k: tf.io.VarLenFeature(tf.int64) for k in multilabel})
  spec.update({k: tf.io.FixedLenFeature([], tf.string)
               for k in SLICE_FEATURES if k != "category"})
  spec["category"] = tf.io.VarLenFeature(tf.string)
  serialized, columns, slices = [], collections.defaultdict(list), []
  classes: dict[str, list[np.ndarray]] = {k: [] for k in multilabel}
  for batch in tf.data.TFRecordDataset([path]).batch(8192):
    parsed = tf.io.parse_example(batch, spec)
    serialized.extend(batch.numpy().tolist())
    for k in required:
      columns[k].append(parsed[k].numpy())
    for k in multilabel:
      classes[k].extend(np.asarray(row, np.int64) for row in
                        tf.RaggedTensor.from_sparse(parsed[k]).to_list())
    single = {k: parsed[k].numpy() for k in SLICE_FEATURES if k != "category"}
    cats = tf.RaggedTensor.from_sparse(parsed["category"]).to_list()
    for i, example_cats in enumerate(cats):
      names = [f"{k}:{v[i].decode()}" for k, v in single.items()]
      names += [f"category:{c.decode()}" for c in example_cats]
      slices.append(names)
  out: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0, np.float32)
                         for k, v in columns.items()}
  out.update(classes)
  return serialized, out, slices


def _predict(model_dir: str, serialized: Sequence[bytes],
             tasks: Sequence[EvalTask] = LEGACY_TASKS,
             batch_size: int = 4096) -> dict[str, np.ndarray]:
  """Each task's output: [n] for the scalar kinds, [n, classes] else."""
  fn = tf.saved_model.load(model_dir).signatures[SIGNATURE]
  out = collections.defaultdict(list)
  for start in range(0, len(serialized), batch_size):
    result = fn(examples=tf.constant(serialized[start:start + batch_size]))
    for t in tasks:
      value = result[t.output].numpy()
      out[t.output].append(np.reshape(value, [-1]) if t.scalar else value)
  return {k: np.concatenate(v) for k, v in out.items()}


def _head_metrics(pred: Mapping[str, np.ndarray],
                  cols: Mapping[str, np.ndarray],
                  rows: np.ndarray,
                  tasks: Sequence[EvalTask] = LEGACY_TASKS
                  ) -> dict[str, float]:
  """Our metric names over `rows`; each head on the rows its weight keeps.

  A multilabel task's column is multi-hot ([examples, classes]); its rows
  are the consumed ones with at least one label, as in training.
  """
  out = {}
  for t in tasks:
    out[f"{t.name}_example_count"] = float(len(rows))
    keep = rows if t.weight_feature is None else (
        rows[cols[t.weight_feature][rows] > 0])
    p, y = pred[t.output][keep], cols[t.label_feature][keep]
    if t.kind == "regression":
      out[f"{t.name}_rmse"] = M.rmse(p, y)
      out[f"{t.name}_mae"] = M.mae(p, y)
    elif t.kind == "binary":
      out[f"{t.name}_auc"] = M.auc(p, y)
      out[f"{t.name}_log_loss"] = M.log_loss(p, y)
      out[f"{t.name}_calibration"] = M.calibration_ratio(p, y)
    else:
      labeled = y.any(axis=1)
      p, y = p[labeled], y[labeled]
      out[f"{t.name}_auc"] = M.multilabel_auc(p, y) if len(y) else (
          float("nan"))
      out[f"{t.name}_recall_at_{metric_names.MULTILABEL_K}"] = (
          M.multilabel_recall_at_k(p, y, metric_names.MULTILABEL_K))
  return metric_names.with_aliases(out)


def _head_intervals(pred: Mapping[str, np.ndarray],
                    cols: Mapping[str, np.ndarray],
                    tasks: Sequence[EvalTask],
                    bootstrap: confidence.Bootstrap
                    ) -> dict[str, list[Optional[float]]]:
  """{metric: [low, high]} of every head metric over all eval rows.

  A bootstrap over each head's examples (the rows _head_metrics uses),
  the statistics the same formulas as components.metrics: a per-example
  mean for MAE, log loss and multilabel recall@5, its root for RMSE, a
  ratio of sums for calibration, AUC as a weighted Mann-Whitney U.
  """
  out: dict[str, list[Optional[float]]] = {}
  for t in tasks:
    rows = np.arange(len(pred[t.output]))
    keep = rows if t.weight_feature is None else (
        rows[cols[t.weight_feature] > 0])
    p = np.asarray(pred[t.output][keep], np.float64)
    y = np.asarray(cols[t.label_feature][keep], np.float64)
    n = len(keep)
    stats: dict[str, tuple[Any, int]] = {}
    if t.kind == "regression":
      stats["rmse"] = (confidence.root_mean_of((p - y) ** 2), 1)
      stats["mae"] = (confidence.mean_of(np.abs(p - y)), 1)
    elif t.kind == "binary":
      q = np.clip(p, 1e-7, 1 - 1e-7)  # as components.metrics.log_loss
      stats["auc"] = (confidence.auc_of(p, y.astype(bool)), 1)
      stats["log_loss"] = (confidence.mean_of(
          -(y * np.log(q) + (1 - y) * np.log(1 - q))), 1)
      stats["calibration"] = (confidence.ratio_of_sums(p, y), 1)
    else:
      y = y.astype(bool)
      labeled = y.any(axis=1)
      p, y = p[labeled], y[labeled]
      n, width = len(y), p.shape[1] if p.ndim == 2 else 1
      k = metric_names.MULTILABEL_K
      top = np.argsort(-p, axis=1, kind="stable")[:, :k]
      hits = np.take_along_axis(y, top, axis=1).sum(axis=1)
      stats["auc"] = (confidence.auc_of(
          p, y, np.repeat(np.arange(n), width)), width)
      stats[f"recall_at_{k}"] = (confidence.mean_of(
          hits / np.maximum(1, y.sum(axis=1))), 1)
    for metric, (statistic, width) in stats.items():
      out[f"{t.name}_{metric}"] = confidence.as_list(
          bootstrap.interval(statistic, n, width))
  return metric_names.with_aliases(out)


def slice_metrics(model_dirs: Mapping[str, str], labeled_path: str,
                  tasks: Optional[Mapping[str, Sequence[EvalTask]]] = None
                  ) -> dict[str, dict[str, dict[str, float]]]:
  """Ranking metrics per slice, {model: {slice: {metric: value}}}.

  Args:
    model_dirs: model name -> SavedModel directory (with predict_examples).
    labeled_path: the output of write_labeled_eval_examples.
    tasks: model name -> the tasks to measure; a model not in it: the
      tasks of its model card.
  """
  return slice_metrics_and_intervals(model_dirs, labeled_path, tasks)[0]


def slice_metrics_and_intervals(
    model_dirs: Mapping[str, str], labeled_path: str,
    tasks: Optional[Mapping[str, Sequence[EvalTask]]] = None,
    bootstrap: Optional[confidence.Bootstrap] = None
) -> tuple[dict[str, dict[str, dict[str, float]]],
           dict[str, dict[str, list[Optional[float]]]]]:
  """slice_metrics, and with `bootstrap` each model's overall intervals
  ({model: {metric: [low, high]}}; {} without), from the same predictions.
  """
  tasks = tasks or {}
  tasks_of = {m: list(tasks[m]) if m in tasks else eval_tasks(
      read_model_card(d)) for m, d in model_dirs.items()}
  serialized, cols, slices = _read_labeled(labeled_path,
                                           union_tasks(tasks_of.values()))
  rows_of = collections.defaultdict(list)
  for i, names in enumerate(slices):
    for name in names:
      rows_of[name].append(i)
  results = {}
  intervals: dict[str, dict[str, list[Optional[float]]]] = {}
  for model, model_dir in model_dirs.items():
    model_tasks = tasks_of[model]
    # A model without ranking tasks (retrieval only) has nothing to score.
    pred = _predict(model_dir, serialized, model_tasks) if model_tasks else {}
    model_cols = dict(cols)
    for t in model_tasks:
      if t.kind == "multilabel":
        model_cols[t.label_feature] = M.multi_hot(
            cols[t.label_feature], pred[t.output].shape[1])
    results[model] = {
        name: _head_metrics(pred, model_cols, np.asarray(rows, np.int64),
                            model_tasks)
        for name, rows in sorted(rows_of.items())}
    results[model][retrieval_eval.ALL] = _head_metrics(
        pred, model_cols, np.arange(len(serialized)), model_tasks)
    if bootstrap is not None and model_tasks:
      intervals[model] = _head_intervals(pred, model_cols, model_tasks,
                                         bootstrap)
  return results, intervals


def ensemble_metrics(model_dirs: Sequence[str], labeled_path: str,
                     tasks: Sequence[EvalTask]) -> dict[str, float]:
  """Overall metrics of the mean of several models' predictions (a
  teacher of several members, trainer/distillation.Ensemble): ratings
  averaged, probabilities averaged as logits, as the ensemble does."""
  serialized, cols, _ = _read_labeled(labeled_path, list(tasks))
  preds = [_predict(d, serialized, tasks) for d in model_dirs]
  mean = {}
  for t in tasks:
    values = np.stack([p[t.output] for p in preds]).astype(np.float64)
    if t.kind == "regression":
      mean[t.output] = values.mean(axis=0)
    else:
      clipped = np.clip(values, 1e-7, 1 - 1e-7)
      logits = np.log(clipped / (1 - clipped)).mean(axis=0)
      mean[t.output] = 1.0 / (1.0 + np.exp(-logits))
  return _head_metrics(mean, cols, np.arange(len(serialized)), tasks)


def finite(x: Any) -> bool:
  return isinstance(x, (int, float)) and not math.isnan(x) and not (
      math.isinf(x))


