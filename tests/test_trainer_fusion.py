"""The fused ranking stage: transforms, fusion, weight checks, the search,
the validation slice, and the exported model's fused order."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from contracts import model_layout
from trainer import fusion
from trainer import fusion_search
from trainer.config import RegressionTaskConfig
from trainer.config import RetrievalTaskConfig
from trainer.config import BinaryTaskConfig
from trainer.config import ServingConfig

TASKS = [
    RetrievalTaskConfig(name="retrieval", kind="retrieval"),
    RegressionTaskConfig(name="rating", kind="regression", label="rating"),
    BinaryTaskConfig(name="like", kind="binary", label="like"),
]
STATS = {"label_means": {"rating": 3.5, "like": 0.4},
         "label_stds": {"rating": 0.5, "like": 0.49}}


def _spec(weights=None):
  return fusion.build_spec(
      TASKS, weights or {"rating": 0.5, "like": 2.0}, STATS, 200)


def test_the_spec_orders_terms_and_keeps_the_label_scales():
  spec = _spec()
  assert spec.tasks == ("retrieval", "rating", "like")
  assert spec.kinds == ("retrieval", "regression", "binary")
  assert spec.weights == (1.0, 0.5, 2.0)
  assert spec.centres == (0.0, 3.5, 0.0)  # a logit is not centred
  assert spec.scales == (1.0, 0.5, 1.0)
  assert fusion.FusionSpec.from_json(json.loads(json.dumps(
      spec.to_json()))) == spec
  # Undeclared: retrieval 1, ranking tasks 0.
  assert fusion.build_spec(TASKS, {}, STATS, 200).weights == (1.0, 0.0, 0.0)


def test_a_fusion_weight_for_no_such_task_names_the_key():
  with pytest.raises(ValueError, match=r"serving\.ranking\.fusion\.ctr"):
    fusion.build_spec(TASKS, {"ctr": 1.0}, STATS, 200)


def test_fusion_of_three_items_computed_by_hand():
  # Retrieval scores 3, 1, 2: mean 2, std sqrt(2/3), so z = ±sqrt(1.5), 0.
  # Ratings 3, 4.5, 3.5 around 3.5 in units of 0.5: -1, 2, 0.
  # Like logits 0, 1, -1. Weights 1, 0.5, 2:
  #   item 0: 1.2247449 - 0.5 + 0 = 0.7247449
  #   item 1: -1.2247449 + 1 + 2  = 1.7752551
  #   item 2: 0 + 0 - 2           = -2
  spec = _spec()
  retrieval = tf.constant([[3.0, 1.0, 2.0]])
  heads = {"rating": tf.constant([[3.0, 4.5, 3.5]]),
           "like": tf.constant([[0.0, 1.0, -1.0]])}
  values = fusion.task_values(spec, retrieval, heads)
  z = math.sqrt(1.5)
  np.testing.assert_allclose(values.numpy()[0], [[z, -1, 0], [-z, 2, 1],
                                                 [0, 0, -1]], rtol=1e-5)
  fused, contributions = fusion.fuse(values, tf.constant(spec.weights),
                                     retrieval)
  np.testing.assert_allclose(fused.numpy()[0],
                             [z - 0.5, -z + 3, -2], rtol=1e-5)
  np.testing.assert_allclose(contributions.numpy().sum(-1), fused.numpy(),
                             rtol=1e-6)
  assert tf.math.top_k(fused, 3).indices.numpy().tolist() == [[1, 0, 2]]


def test_zero_ranking_weights_keep_the_retrieval_order():
  spec = _spec()
  rng = np.random.default_rng(0)
  retrieval = tf.constant(np.sort(rng.normal(size=(4, 50)))[:, ::-1].copy(),
                          tf.float32)
  heads = {t: tf.constant(rng.normal(size=(4, 50)), tf.float32)
           for t in ("rating", "like")}
  values = fusion.task_values(spec, retrieval, heads)
  for weights in ([1.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.0]):
    fused, _ = fusion.fuse(values, tf.constant(weights), retrieval)
    top = tf.math.top_k(fused, 50).indices.numpy()
    np.testing.assert_array_equal(top, np.tile(np.arange(50), (4, 1)))


def test_unservable_candidates_rank_last_and_do_not_skew_the_scale():
  spec = _spec({"rating": 0.0, "like": 0.0})
  retrieval = tf.constant([[3.0, -np.inf, 1.0]])
  heads = {"rating": tf.constant([[3.5, 9.0, 3.5]]),
           "like": tf.constant([[0.0, 9.0, 0.0]])}
  values = fusion.task_values(spec, retrieval, heads)
  np.testing.assert_allclose(values.numpy()[0, [0, 2], 0], [1.0, -1.0],
                             rtol=1e-5)
  fused, _ = fusion.fuse(values, tf.constant([1.0, 5.0, 5.0]), retrieval)
  assert fused.numpy()[0, 1] == -np.inf
  assert tf.math.top_k(fused, 3).indices.numpy().tolist() == [[0, 2, 1]]


@pytest.mark.parametrize("weights, message", [
    ([[1.0, 0.5]], "each row needs 3 weights"),
    ([[1.0, 0.5, 0.1], [1.0, 0.5, 0.1]], "one row of weights per user_id"),
    ([[1.0, float("nan"), 0.0]], "NaN or infinite"),
    ([[1.0, -0.1, 0.0]], "must be >= 0"),
])
def test_bad_request_weights_are_invalid_arguments_naming_the_input(
    weights, message):
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f"fusion_weights: .*{message}"):
    fusion.check_weights(tf.constant(weights, tf.float32), tf.constant(1),
                         _spec())


def test_candidates_must_cover_the_largest_k():
  with pytest.raises(ValueError, match="ranking.candidates"):
    ServingConfig(max_k=100, ranking={"candidates": 50})


def _table():
  # Two users, three candidates in retrieval order, two terms (retrieval
  # z-score, like logit). User 0 liked candidate 2; user 1 consumed
  # candidate 0 and liked candidate 1.
  values = np.array([
      [[1.0, -1.0], [0.0, 0.0], [-1.0, 3.0]],
      [[1.0, 0.0], [0.0, 1.0], [-1.0, -2.0]],
  ])
  ids = np.array([["a", "b", "c"], ["a", "b", "c"]])
  gains = [{"c": 2.0}, {"a": 1.0, "b": 2.0}]
  return values, ids, gains


def test_objective_under_given_weights_by_hand():
  values, ids, gains = _table()
  # Retrieval order: user 0 finds c at rank 3 of k=2: 0; user 1 has a, b
  # at ranks 1, 2: DCG 1 + 2/log2(3), ideal 2 + 1/log2(3).
  ideal = 2 + 1 / math.log2(3)
  assert fusion_search.evaluate(values, ids, gains, [1.0, 0.0],
                                "graded_ndcg_at_2") == pytest.approx(
                                    (0 + (1 + 2 / math.log2(3)) / ideal) / 2)
  # Weight 1 on like: user 0 -> c (2.0), a (0.0); user 1 -> b (1), a (1):
  # tie broken by retrieval order, a first.
  # user 0: DCG 2 / IDCG 2 = 1; user 1: as before.
  assert fusion_search.evaluate(values, ids, gains, [1.0, 1.0],
                                "graded_ndcg_at_2") == pytest.approx(
                                    (1 + (1 + 2 / math.log2(3)) / ideal) / 2)
  assert fusion_search.evaluate(values, ids, gains, [1.0, 1.0],
                                "liked_recall_at_1") == pytest.approx(0.5)


def test_the_search_moves_a_weight_only_for_a_strict_gain():
  values, ids, gains = _table()
  weights, info = fusion_search.search(
      values, ids, gains, ("retrieval", "like"), ("retrieval", "binary"),
      (1.0, 0.0), "graded_ndcg_at_2", grid=[0.0, 0.5, 1.0, 2.0], rounds=2)
  # 0.5: user 0 scores a 0.5, b 0, c 0.5 -> a first (tie, retrieval order),
  # c second. 1.0 puts c first for user 0; user 1's a and b tie at 1 (a
  # first). 2.0 puts b (liked) before a for user 1 as well: both ideal.
  assert weights == [1.0, 2.0]
  assert info["chosen_weights"] == {"retrieval": 1.0, "like": 2.0}
  assert info["chosen_objective"] == pytest.approx(1.0)
  assert info["chosen_objective"] > info["retrieval_only_objective"]
  assert [p["weight"] for p in info["curve"] if p["round"] == 1] == [
      0.0, 0.5, 1.0, 2.0]
  # Nothing to gain: the declared weights stay.
  flat = np.zeros_like(values)
  flat[..., 0] = values[..., 0]
  weights, _ = fusion_search.search(
      flat, ids, gains, ("retrieval", "like"), ("retrieval", "binary"),
      (1.0, 0.0), "graded_ndcg_at_2", grid=[0.0, 1.0], rounds=1)
  assert weights == [1.0, 0.0]


# The exported model (one small pipeline run, shared).


def _card(small_run):
  path = model_layout.model_card_path(
      model_layout.saved_model_dir(small_run.artifacts.model))
  with open(path) as f:
    return json.load(f)


@pytest.mark.slow
def test_the_model_card_describes_tasks_and_the_chosen_fusion(small_run):
  card = _card(small_run)
  assert [(t["name"], t["kind"], t["output"]) for t in card["tasks"]] == [
      ("retrieval", "retrieval", None), ("rating", "regression", "rating"),
      ("like", "binary", "p_like")]
  ranking = card["ranking"]
  assert ranking["fusion_tasks"] == ["retrieval", "rating", "like"]
  search = ranking["search"]
  assert search["users"] > 0 and search["curve"]
  assert ranking["fusion_weights"] == [
      search["chosen_weights"][t] for t in ranking["fusion_tasks"]]
  assert search["chosen_objective"] >= search["retrieval_only_objective"]
  assert "recommend_weighted" in card["signatures"]


@pytest.mark.slow
def test_recommend_serves_the_fused_order_and_its_parts(small_run):
  m = tf.saved_model.load(model_layout.saved_model_dir(
      small_run.artifacts.model))
  card = _card(small_run)
  users = tf.constant(["u1", "u2", "nobody"])
  rec = m.signatures["recommend"](user_id=users)
  scores = rec["scores"].numpy()
  assert np.all(np.diff(scores, axis=1) <= 1e-6)
  parts = sum(rec[f"contribution_{t}"].numpy()
              for t in card["ranking"]["fusion_tasks"])
  np.testing.assert_allclose(parts, scores, rtol=1e-5, atol=1e-5)
  # The same weights sent with the request give the same list.
  weights = tf.constant([card["ranking"]["fusion_weights"]] * 3, tf.float32)
  same = m.signatures["recommend_weighted"](
      user_id=users, exclude_item_ids=tf.constant([[""]] * 3),
      k=tf.constant(5), fusion_weights=weights)
  np.testing.assert_array_equal(same["item_ids"].numpy(),
                                rec["item_ids"].numpy())
  # All the weight on like: the list is ordered by p_like.
  like_only = tf.constant([[0.0, 0.0, 1.0]] * 3)
  by_like = m.signatures["recommend_weighted"](
      user_id=users, exclude_item_ids=tf.constant([[""]] * 3),
      k=tf.constant(5), fusion_weights=like_only)
  p_like = by_like["p_like"].numpy()
  assert np.all(np.diff(p_like, axis=1) <= 1e-6)


@pytest.mark.slow
def test_the_validation_slice_is_left_out_and_precedes_nothing_it_ranks(
    small_run):
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from trainer import data  # pylint: disable=g-import-not-at-top
  from trainer import validation_slice  # pylint: disable=g-import-not-at-top
  art = small_run.artifacts
  tft_output = tft.TFTransformOutput(art.transform_graph)
  vslice = validation_slice.carve(art.examples, tft_output, 0.5, 0.2, 1000,
                                  seed=42, history_length=20)
  assert len(vslice) > 5
  for seen, history, gains in zip(vslice.seen, vslice.histories,
                                  vslice.gains):
    assert set(history) <= set(seen)
    assert gains and not set(gains) & set(seen)
    assert set(gains.values()) <= {1.0, 2.0}
  assert any(2.0 in g.values() for g in vslice.gains)
  keys = validation_slice.pair_keys(vslice.held_out_pairs, tft_output)
  modulus = tft_output.vocabulary_size_by_name("item_id") + 1
  spec = tft_output.transformed_feature_spec()

  def rows(drop):
    n = 0
    for batch in data.make_dataset(art.transformed_examples, "train", spec,
                                   4096, shuffle=False, drop_pairs=drop):
      key = batch["user_id_index"].numpy() * modulus + batch[
          "item_id_index"].numpy()
      if drop is not None:
        assert not np.isin(key, keys).any()
      n += len(key)
    return n

  everything = rows(None)
  assert 0 < everything - rows((keys, modulus)) < everything * 0.2
  assert os.path.exists(art.transformed_examples)
