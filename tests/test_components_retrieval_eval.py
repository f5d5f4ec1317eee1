"""components.retrieval_eval: graded relevance and both orders, by hand.

A stand-in SavedModel serves a fixed catalog order through
`recommend_excluding` (the fused order) and, through `recommend_weighted`
with the retrieval-only weights (1, 0), the reverse order; every metric
below is computed by hand from those lists.
"""

import math

import pytest
import tensorflow as tf

from components import metrics as M
from components import retrieval_eval
from contracts import artifacts
from contracts import features as F
from contracts import records as r

CATALOG = ["x", "y", "z", "w", "v"]
CATEGORIES = [["A"], ["A"], ["B"], ["B"], ["C"]]
L3 = math.log2(3)


class _Ranker(tf.Module):
  """CATALOG in order, excluded items skipped; reversed under (1, 0)."""

  def __init__(self):
    super().__init__()
    self.items = tf.Variable(CATALOG, trainable=False)

  def _rank(self, exclude, k, reverse):
    n = len(CATALOG)
    position = tf.range(n, dtype=tf.float32)
    score = tf.where(reverse, position, float(n) - position)
    excluded = tf.reduce_any(tf.equal(
        exclude[:, :, None], self.items[None, None, :]), axis=1)
    scores = tf.where(excluded, -1e9, score[None, :])
    top = tf.math.top_k(scores, k)
    return {"item_ids": tf.gather(self.items, top.indices),
            "scores": top.values}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None, None], tf.string, name="exclude_item_ids"),
      tf.TensorSpec([], tf.int32, name="k")])
  def recommend_excluding(self, user_id, exclude_item_ids, k):
    del user_id
    return self._rank(exclude_item_ids, k, tf.constant(False))

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="user_id"),
      tf.TensorSpec([None, None], tf.string, name="exclude_item_ids"),
      tf.TensorSpec([], tf.int32, name="k"),
      tf.TensorSpec([None, None], tf.float32, name="fusion_weights")])
  def recommend_weighted(self, user_id, exclude_item_ids, k, fusion_weights):
    del user_id
    retrieval_only = tf.reduce_all(tf.equal(fusion_weights, [[1.0, 0.0]]))
    return self._rank(exclude_item_ids, k, retrieval_only)


def _example(**features) -> bytes:
  ex = tf.train.Example()
  for key, value in features.items():
    f = ex.features.feature[key]
    if isinstance(value, str):
      f.bytes_list.value.append(value.encode())
    elif isinstance(value, int):
      f.int64_list.value.append(value)
    else:
      f.float_list.value.append(value)
  return ex.SerializeToString()


def _write(path, records, gzip):
  with tf.io.TFRecordWriter(str(path), options="GZIP" if gzip else None) as w:
    for rec in records:
      w.write(rec)


# (user, item, consumed, liked) of the eval split. u1's x was consumed in
# training (not relevant again), its v only shown (not consumed).
EVAL = [("u1", "z", 1, 1), ("u1", "w", 1, 0), ("u1", "v", 0, 0),
        ("u1", "x", 1, 1), ("u2", "v", 1, 0), ("u3", "w", 1, 1),
        ("u3", "w", 1, 0)]  # consumed twice, liked once: liked
TRAIN = [("u1", "x"), ("u2", "y"), ("u3", "x"), ("u3", "y")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = tmp_path_factory.mktemp("retrieval")
  model = str(d / "model")
  module = _Ranker()
  tf.saved_model.save(module, model, signatures={
      "recommend_excluding": module.recommend_excluding,
      "recommend_weighted": module.recommend_weighted})
  examples = d / "examples"
  for split, rows in (("train", [(u, i, 1) for u, i in TRAIN]),
                      ("eval", [(u, i, c) for u, i, c, _ in EVAL])):
    split_dir = artifacts.split_dir(str(examples), split)
    tf.io.gfile.makedirs(split_dir)
    _write(f"{split_dir}/data-00000.gz", [
        _example(**{r.USER_ID: u, r.ITEM_ID: i, r.CLICK: c})
        for u, i, c in rows], gzip=True)
  labeled = d / "eval_labeled.tfrecord"
  _write(labeled, [_example(**{
      r.USER_ID: u, r.ITEM_ID: i, F.RETRIEVAL_WEIGHT: float(c),
      F.LIKE: float(liked), F.LIKE_WEIGHT: float(c)})
                   for u, i, c, liked in EVAL], gzip=False)
  return {"model": model, "examples": str(examples), "labeled": str(labeled),
          "dir": d}


def _evaluate(setup, scratch, labeled):
  tf.io.gfile.makedirs(str(scratch))
  return retrieval_eval.evaluate_retrieval(
      {"candidate": setup["model"],
       "candidate_retrieval_order": retrieval_eval.Ranker(
           setup["model"], (1.0, 0.0))},
      setup["examples"], CATALOG, CATEGORIES, [1, 2], [5], str(scratch),
      labeled_path=labeled)


def test_graded_metrics_of_both_orders_and_popularity(setup):
  out = _evaluate(setup, setup["dir"] / "graded", setup["labeled"])
  fused = out["candidate"]["all"]
  # Fused order x y z w v. u1 (x seen): [y, z], relevant {z: 2, w: 1};
  # u2 (y seen): [x, z], relevant {v: 1}; u3 (x, y seen): [z, w],
  # relevant {w: 2}.
  assert fused["users"] == 3
  assert fused["recall_at_1"] == 0.0
  assert fused["recall_at_2"] == pytest.approx((0.5 + 0 + 1) / 3)
  assert fused["graded_ndcg_at_1"] == 0.0
  assert fused["graded_ndcg_at_2"] == pytest.approx(
      ((2 / L3) / (2 + 1 / L3) + 0 + (2 / L3) / 2) / 3)
  # Liked recall over u1 and u3 only (u2 liked nothing): not over 3 users.
  assert fused["liked_users"] == 2
  assert fused["liked_recall_at_1"] == 0.0
  assert fused["liked_recall_at_2"] == pytest.approx(1.0)
  assert fused["mrr"] == pytest.approx((0.5 + 0 + 0.5) / 3)

  plain = out["candidate_retrieval_order"]["all"]
  # Retrieval order v w z y x: [v, w] for every user.
  assert plain["users"] == 3
  assert plain["recall_at_1"] == pytest.approx(1 / 3)
  assert plain["recall_at_2"] == pytest.approx((0.5 + 1 + 1) / 3)
  assert plain["graded_ndcg_at_2"] == pytest.approx(
      ((1 / L3) / (2 + 1 / L3) + 1 + (2 / L3) / 2) / 3)
  assert plain["liked_recall_at_2"] == pytest.approx((0 + 1) / 2)

  popular = out["popularity"]["all"]
  # Popularity x y v w z: u1 [y, v], u2 [x, v], u3 [v, w].
  assert popular["recall_at_2"] == pytest.approx((0 + 1 + 1) / 3)
  assert popular["liked_recall_at_2"] == pytest.approx((0 + 1) / 2)
  assert popular["graded_ndcg_at_2"] == pytest.approx(
      (0 + 1 / L3 + (2 / L3) / 2) / 3)

  # A slice: users with a relevant item of category B (u1: z, w; u3: w).
  b = out["candidate"]["category:B"]
  assert b["users"] == 2
  assert b["recall_at_2"] == pytest.approx((0.5 + 1) / 2)
  assert b["liked_recall_at_2"] == pytest.approx(1.0)


def test_per_user_values_are_what_the_means_average(setup):
  """Each user's overall metrics under every model, sorted by user: the
  bootstrap's input (components.confidence), whose mean is the reported
  value and whose paired difference compares users one by one."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  scratch = setup["dir"] / "per_user"
  out = _evaluate(setup, scratch, setup["labeled"])
  per_user = retrieval_eval.read_per_user(str(scratch))
  assert set(per_user) == {"candidate", "candidate_retrieval_order",
                           "popularity"}
  # u1, u2, u3 (hand values in the test above).
  fused = per_user["candidate"]
  assert fused["recall_at_2"].tolist() == [0.5, 0.0, 1.0]
  assert fused["liked_recall_at_2"][[0, 2]].tolist() == [1.0, 1.0]
  assert np.isnan(fused["liked_recall_at_2"][1])  # u2 liked nothing
  assert per_user["popularity"]["recall_at_2"].tolist() == [0.0, 1.0, 1.0]
  for model, table in per_user.items():
    for metric, values in table.items():
      assert np.nanmean(values) == pytest.approx(out[model]["all"][metric])


def test_without_labels_the_raw_split_gives_ungraded_metrics(setup):
  out = _evaluate(setup, setup["dir"] / "raw", None)
  fused = out["candidate"]["all"]
  assert fused["users"] == 3
  assert fused["recall_at_2"] == pytest.approx((0.5 + 0 + 1) / 3)
  assert not any(k.startswith(("graded_", "liked_")) for k in fused)


def test_mean_of_dicts_counts_each_metric_over_its_own_users():
  combine = retrieval_eval._MeanOfDicts()  # pylint: disable=protected-access
  a = combine.add_input(combine.create_accumulator(), {
      "recall_at_1": 1.0, "liked_recall_at_1": 1.0})
  b = combine.add_input(combine.create_accumulator(), {"recall_at_1": 0.0})
  b = combine.add_input(b, {"recall_at_1": 0.5, "liked_recall_at_1": 0.0})
  out = combine.extract_output(combine.merge_accumulators([a, b]))
  assert out == {"recall_at_1": pytest.approx(0.5),
                 "liked_recall_at_1": pytest.approx(0.5), "users": 3,
                 "liked_users": 2}


def test_retrieval_order_weights_from_the_model_card():
  tasks = [{"name": "retrieval", "kind": "retrieval"},
           {"name": "click", "kind": "binary"},
           {"name": "like", "kind": "binary"}]
  card = {"tasks": tasks, "signatures": ["recommend_weighted"],
          "ranking": {"fusion_tasks": ["retrieval", "click", "like"],
                      "fusion_weights": [1.0, 0.2, 0.5]}}
  assert retrieval_eval.retrieval_order_weights(card) == (1.0, 0.0, 0.0)
  # Nothing fused: the served order is the retrieval order already.
  assert retrieval_eval.retrieval_order_weights(dict(card, ranking={
      "fusion_tasks": ["retrieval"], "fusion_weights": [1.0]})) is None
  # No recommend_weighted, or a model without a card (ranking None).
  assert retrieval_eval.retrieval_order_weights(
      dict(card, signatures=["recommend_excluding"])) is None
  assert retrieval_eval.retrieval_order_weights(
      {"tasks": tasks, "ranking": None, "signatures": None}) is None
  assert M.LIKED_GAIN == 2.0 and M.CONSUMED_GAIN == 1.0
