"""components.ranking_eval: the model's tasks, their labels and metrics.

The labeled eval examples are written from a real transform graph (a tiny
tabular dataset with click, watch fraction and item categories); the
metrics are checked on hand-written labeled examples scored by a stand-in
SavedModel whose predictions are fixed per item, so every value is computed
by hand.
"""

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import example_gen
from components import parsing
from components import ranking_eval
from components import transform
from components.config import Threshold
from components.readers import build_reader
from contracts import features as F
from contracts import model_layout
from contracts import records as r

E = ranking_eval.EvalTask
CLICK = E("click", "binary", "click", "p_click")
WATCH = E("watch_fraction", "regression", "watch_fraction", "watch_fraction")
INTEREST = E("interest", "multilabel", "categories", "p_interest")
TASKS = (CLICK, WATCH, INTEREST)


# The labeled examples, from a real transform graph.


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
  d = tmp_path_factory.mktemp("labeled")
  # a's latest event (v) and b's (u, only shown) are the eval split.
  (d / "events.csv").write_text(
      "u,i,r,c,l,wf,t\n"
      "a,x,4.5,1,,0.9,100\n"
      "a,y,2.0,1,,0.3,200\n"
      "a,z,,1,1,,300\n"
      "a,w,3.0,1,,0.5,400\n"
      "a,v,5.0,1,,1.0,500\n"
      "b,x,1.0,1,,0.1,100\n"
      "b,y,,0,,,200\n"
      "b,z,4.0,1,,0.7,300\n"
      "b,w,,1,0,0.2,400\n"
      "b,u,,0,,,500\n")
  (d / "items.csv").write_text(
      "i,title,cats\n"
      "x,X,A|B\ny,Y,A\nz,Z,C\nw,W,B\nv,V,C|A\nu,U,D\n")
  reader = build_reader("tabular", interactions={
      "path": str(d / "events.csv"),
      "columns": {"user_id": "u", "item_id": "i", "rating": "r", "click": "c",
                  "like": "l", "watch_fraction": "wf", "timestamp": "t"}},
      items={"path": str(d / "items.csv"),
             "columns": {"item_id": "i", "title": "title",
                         "categories": "cats"}})
  examples = str(d / "examples")
  example_gen.run_example_gen(
      reader, parsing.ValidationRules(0, 5, 0, 2_000_000_000), examples,
      str(d / "catalog"), str(d / "quarantine"), "t", split="temporal_user",
      eval_fraction=0.2)
  transform.run_transform(examples, str(d / "graph"), str(d / "out"), "t",
                          like_threshold=4.0)
  return d


def _parse(path):
  rows = []
  for rec in tf.data.TFRecordDataset([str(path)]):
    f = tf.train.Example.FromString(rec.numpy()).features.feature
    row = {}
    for key, v in f.items():
      kind = v.WhichOneof("kind")
      values = list(getattr(v, kind).value)
      row[key] = values
    rows.append(row)
  return sorted(rows, key=lambda x: x[r.USER_ID])


def test_labeled_examples_carry_every_label_the_tasks_need(transformed):
  d = transformed
  graph = tft.TFTransformOutput(str(d / "graph"))
  users, items = ranking_eval.train_counts(str(d / "examples"))
  path = d / "labeled.tfrecord"
  n = ranking_eval.write_labeled_eval_examples(
      str(d / "examples"), graph, str(path), users, items, [3], TASKS)
  assert n == 2
  a, b = _parse(path)
  assert (a[r.USER_ID], a[r.ITEM_ID], b[r.USER_ID], b[r.ITEM_ID]) == (
      [b"a"], [b"v"], [b"b"], [b"u"])
  vocab = [c.decode() for c in graph.vocabulary_by_name(F.CATEGORIES_VOCAB)]
  assert sorted(vocab) == ["A", "B", "C"]  # train events' categories only
  # a consumed v (categories C, A), rated 5: liked (>= 4), watched it all.
  assert a[F.RETRIEVAL_WEIGHT] == [1.0]
  assert a[F.WATCH_FRACTION] == [1.0] and a[F.WATCH_FRACTION_WEIGHT] == [1.0]
  assert a[F.LIKE] == [1.0] and a[F.LIKE_WEIGHT] == [1.0]
  assert a[F.RATING] == [5.0] and a[F.RATING_WEIGHT] == [1.0]
  assert sorted(a[F.CATEGORIES]) == sorted([vocab.index("C"),
                                            vocab.index("A")])
  # b was only shown u (category D, unknown to the vocabulary: the OOV
  # index): clicked 0, and no label weighs.
  assert b[F.RETRIEVAL_WEIGHT] == [0.0]
  assert b[F.WATCH_FRACTION_WEIGHT] == [0.0] and b[F.LIKE_WEIGHT] == [0.0]
  assert b[F.CATEGORIES] == [len(vocab)]
  assert a["user_activity"] == [b"3+"] and b["new_user"] == [b"false"]
  assert a["category"] == [b"C", b"A"] and b["cold_item"] == [b"true"]


def test_a_task_whose_label_the_transform_lacks_fails_naming_it(
    transformed, monkeypatch):
  d = transformed
  graph = tft.TFTransformOutput(str(d / "graph"))
  monkeypatch.setitem(F.REGRESSION_LABELS, "dwell", ("dwell_label", None))
  with pytest.raises(ValueError, match="dwell_label"):
    ranking_eval.write_labeled_eval_examples(
        str(d / "examples"), graph, str(d / "x.tfrecord"), {}, {}, [3],
        [E("dwell", "regression", "dwell", "dwell")])


# The metrics, on hand-written labeled examples and a stand-in model.

P_CLICK = {"z": 0.3, "w": 0.6, "v": 0.2}
P_INTEREST = {"z": [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.0],
              "w": [0.0, 0.9, 0.1, 0.8, 0.8, 0.8, 0.8],
              "v": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}
# user, item, consumed, watch fraction (None: unknown), category indices,
# category, activity bucket.
ROWS = [("u1", "z", 1, 0.8, [1], "B", "1-4"),
        ("u1", "w", 1, 0.4, [1, 2], "B", "1-4"),
        ("u1", "v", 0, None, [2], "C", "1-4"),
        ("u2", "v", 1, 0.1, [2], "C", "5+"),
        ("u3", "w", 1, None, [1, 2], "B", "1-4")]


class _Scorer(tf.Module):
  """predict_examples with fixed outputs per item."""

  def __init__(self):
    super().__init__()
    items = sorted(P_CLICK)
    self.rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(items), tf.range(len(items), dtype=tf.int64)), -1)
    self.click = tf.constant([P_CLICK[i] for i in items])
    self.interest = tf.constant([P_INTEREST[i] for i in items])

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="examples")])
  def predict_examples(self, examples):
    parsed = tf.io.parse_example(examples, {
        r.ITEM_ID: tf.io.FixedLenFeature([], tf.string)})
    row = self.rows.lookup(parsed[r.ITEM_ID])
    return {"p_click": tf.gather(self.click, row),
            "watch_fraction": tf.fill(tf.shape(row), 0.5),
            "p_interest": tf.gather(self.interest, row)}


def _save_scorer(path, tasks):
  module = _Scorer()
  tf.saved_model.save(module, str(path),
                      signatures={"predict_examples": module.predict_examples})
  card = model_layout.model_card_path(str(path))
  os.makedirs(os.path.dirname(card))
  with open(card, "w") as f:
    json.dump({"tasks": [{"name": "retrieval", "kind": "retrieval",
                          "label": None, "output": None}] +
                        [dataclasses.asdict(t) for t in tasks],
               "ranking": None, "signatures": ["predict_examples"]}, f)
  return str(path)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
  d = tmp_path_factory.mktemp("scored")
  labeled = d / "labeled.tfrecord"
  with tf.io.TFRecordWriter(str(labeled)) as w:
    for user, item, consumed, watch, cats, category, bucket in ROWS:
      ex = tf.train.Example()
      f = ex.features.feature
      f[r.USER_ID].bytes_list.value.append(user.encode())
      f[r.ITEM_ID].bytes_list.value.append(item.encode())
      f[r.TIMESTAMP].int64_list.value.append(0)
      for key, value in ((F.RETRIEVAL_WEIGHT, consumed), (F.LIKE, 0.0),
                         (F.LIKE_WEIGHT, consumed),
                         (F.WATCH_FRACTION, watch or 0.0),
                         (F.WATCH_FRACTION_WEIGHT, watch is not None)):
        f[key].float_list.value.append(float(value))
      f[F.CATEGORIES].int64_list.value.extend(cats)
      f["user_activity"].bytes_list.value.append(bucket.encode())
      f["new_user"].bytes_list.value.append(b"false")
      f["cold_item"].bytes_list.value.append(b"false")
      f["category"].bytes_list.value.append(category.encode())
      w.write(ex.SerializeToString())
  return {"labeled": str(labeled), "dir": d,
          "candidate": _save_scorer(d / "candidate", TASKS),
          "serving": _save_scorer(d / "serving", [CLICK])}


# Click over every row (labels 1 1 0 1 1 at p .3 .6 .2 .2 .6); watch
# fraction over the rows that have one (0.8, 0.4, 0.1 against 0.5).
CLICK_LOG_LOSS = -(math.log(0.3) + math.log(0.6) + math.log(0.8) +
                   math.log(0.2) + math.log(0.6)) / 5
WATCH_RMSE = math.sqrt((0.3**2 + 0.1**2 + 0.4**2) / 3)


def test_slice_metrics_of_every_task_by_hand(scored):
  out = ranking_eval.slice_metrics({"candidate": scored["candidate"]},
                                   scored["labeled"])["candidate"]
  overall = out["all"]
  # Positive pairs won: .3 > .2, .6 > .2 (twice), .2 = .2 half: 3.5 of 4.
  assert overall["click_auc"] == pytest.approx(0.875)
  assert overall["click_log_loss"] == pytest.approx(CLICK_LOG_LOSS)
  assert overall["click_calibration"] == pytest.approx(1.9 / 4)
  assert overall["watch_fraction_rmse"] == pytest.approx(WATCH_RMSE)
  assert overall["watch_fraction_mae"] == pytest.approx(0.8 / 3)
  # Interest over the consumed rows (z, w, v, w). Top 5 of z leaves out
  # class 1 (0/1), of w class 2 (1/2), of v keeps class 2 (1/1).
  assert overall["interest_recall_at_5"] == pytest.approx(
      (0 + 0.5 + 1 + 0.5) / 4)
  # 6 positive (example, class) pairs at .1 .9 .1 .3 .9 .1 against 22
  # negatives: each .1 beats the three 0s and ties one .1 (3.5), .3 beats
  # five, each .9 beats 21 and ties one (21.5): 58.5 of 132.
  assert overall["interest_auc"] == pytest.approx(58.5 / 132)
  assert overall["click_example_count"] == 5.0
  # No legacy alias without a task named rating or like.
  assert "rmse" not in overall and "auc" not in overall
  heavy = out["user_activity:5+"]  # u2's v alone
  assert math.isnan(heavy["click_auc"])
  assert heavy["watch_fraction_rmse"] == pytest.approx(0.4)
  assert heavy["interest_recall_at_5"] == pytest.approx(1.0)
  assert out["category:C"]["click_example_count"] == 2.0


def test_intervals_of_every_task_from_the_same_predictions(scored):
  """Bootstrap over examples: every head metric gets an interval around
  its value; watch fraction's constant prediction 0.5 against labels 0.8,
  0.4, 0.1 puts MAE between the smallest and largest error."""
  from components import confidence  # pylint: disable=g-import-not-at-top
  sliced, intervals = ranking_eval.slice_metrics_and_intervals(
      {"candidate": scored["candidate"]}, scored["labeled"],
      bootstrap=confidence.Bootstrap(resamples=500, seed=0))
  overall = sliced["candidate"]["all"]
  got = intervals["candidate"]
  assert set(got) == {"click_auc", "click_log_loss", "click_calibration",
                      "watch_fraction_rmse", "watch_fraction_mae",
                      "interest_auc", "interest_recall_at_5"}
  for metric, (low, high) in got.items():
    assert low <= overall[metric] <= high, metric
  low, high = got["watch_fraction_mae"]
  assert 0.1 - 1e-6 <= low < high <= 0.4 + 1e-6  # float32 predictions
  # Without a bootstrap: no intervals, the same metrics.
  same, none = ranking_eval.slice_metrics_and_intervals(
      {"candidate": scored["candidate"]}, scored["labeled"])
  assert none == {}
  assert same["candidate"]["all"] == pytest.approx(
      sliced["candidate"]["all"], nan_ok=True)


def test_tfma_judges_the_scalar_tasks_and_compares_only_shared_ones(scored):
  result = ranking_eval.run_tfma(
      scored["candidate"], scored["serving"], scored["labeled"],
      str(scored["dir"] / "tfma"),
      thresholds={"click_auc": Threshold(min=0.5),
                  "click_calibration": Threshold(min=0.9),
                  "watch_fraction_rmse": Threshold(max=0.1)},
      max_regression={"click_auc": 0.01, "watch_fraction_rmse": 0.01},
      tasks=TASKS, serving_tasks=[CLICK])
  candidate = result["metrics"]["candidate"]["all"]
  assert candidate["click_auc"] == pytest.approx(0.875, abs=2e-3)
  assert candidate["click_log_loss"] == pytest.approx(CLICK_LOG_LOSS,
                                                      rel=1e-4)
  assert candidate["click_calibration"] == pytest.approx(1.9 / 4, rel=1e-4)
  assert candidate["watch_fraction_rmse"] == pytest.approx(WATCH_RMSE,
                                                           rel=1e-4)
  assert not any(k.startswith("interest") for k in candidate)
  # The serving model has the click task only: nothing else to compare.
  serving = result["metrics"]["serving"]["all"]
  assert serving["click_auc"] == pytest.approx(candidate["click_auc"])
  assert not any(k.startswith("watch_fraction") for k in serving)
  assert {(f["metric"], f["is_diff"]) for f in result["failures"]} == {
      ("click_calibration", False), ("watch_fraction_rmse", False)}
  assert result["judged"] == [
      "click_auc", "click_log_loss", "click_calibration",
      "watch_fraction_rmse", "watch_fraction_mae"]
  assert set(result["calibration"]) == {"click"}
  buckets = result["calibration"]["click"]
  assert sum(b["count"] for b in buckets) == pytest.approx(5.0)


def test_a_model_without_a_card_has_the_old_default_tasks(tmp_path):
  card = ranking_eval.read_model_card(str(tmp_path))
  assert ranking_eval.eval_tasks(card) == list(ranking_eval.LEGACY_TASKS)
  assert [(t.name, t.output) for t in ranking_eval.LEGACY_TASKS] == [
      ("rating", "rating"), ("like", "p_like")]
  assert card["ranking"] is None
  # The legacy tasks' metric names, with the unprefixed aliases.
  pred = {"rating": np.array([4.0]), "p_like": np.array([0.5])}
  cols = {F.RATING: np.array([5.0]), F.RATING_WEIGHT: np.array([1.0]),
          F.LIKE: np.array([1.0]), F.LIKE_WEIGHT: np.array([1.0])}
  m = ranking_eval._head_metrics(pred, cols, np.array([0]))  # pylint: disable=protected-access
  assert m["rmse"] == m["rating_rmse"] == pytest.approx(1.0)
  assert m["log_loss"] == m["like_log_loss"] == pytest.approx(math.log(2))
  with pytest.raises(ValueError, match="unknown to the evaluator"):
    ranking_eval.eval_tasks({"tasks": [{"name": "t", "kind": "binary",
                                        "label": "dwell", "output": "p_t"}]})


def test_multilabel_tasks_compare_only_with_the_same_vocabulary(tmp_path):
  for name, vocab in (("a", "A\nB\n"), ("b", "A\nB\n"), ("c", "B\nA\n")):
    os.makedirs(tmp_path / name / "assets")
    (tmp_path / name / "assets" / F.CATEGORIES_VOCAB).write_text(vocab)
  same = ranking_eval.same_label_vocabulary
  assert same(str(tmp_path / "a"), str(tmp_path / "b"), INTEREST)
  assert not same(str(tmp_path / "a"), str(tmp_path / "c"), INTEREST)
  assert not same(str(tmp_path / "a"), str(tmp_path / "none"), INTEREST)
  assert same(str(tmp_path / "a"), str(tmp_path / "none"), CLICK)
