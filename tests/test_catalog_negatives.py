"""The training catalog (trainer/catalog.py) and the losses that span it:
catalog negatives for retrieval, the catalog-wide retrieval soft target, and
a teacher of several members read as their mean."""

import math
import os

import numpy as np
import pytest

import trainer  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from contracts import features as F
from contracts import model_layout
from trainer import catalog
from trainer import distillation
from trainer import tasks as tasks_lib
from trainer.config import RetrievalTaskConfig


def _batch(ids, years, categories):
  """A parsed batch: item ids, a dense and a sparse item feature."""
  return {F.ITEM_ID: tf.constant(ids, tf.int64),
          F.YEAR_Z: tf.constant(years, tf.float32),
          F.CATEGORIES: tf.ragged.constant(categories, tf.int64).to_sparse()}


def test_the_table_keeps_each_items_first_row_in_index_order():
  batches = [_batch([3, 1, 3], [0.3, 0.1, 9.0], [[7], [5, 6], [9]]),
             _batch([0, 1], [0.0, 9.0], [[], [9]])]
  table = catalog.item_table(batches, [F.ITEM_ID, F.YEAR_Z, F.CATEGORIES],
                             item_vocab_size=5)
  assert table[F.ITEM_ID].numpy().tolist() == [0, 1, 3]
  np.testing.assert_allclose(table[F.YEAR_Z].numpy(), [0.0, 0.1, 0.3])
  assert isinstance(table[F.CATEGORIES], tf.SparseTensor)
  assert tf.RaggedTensor.from_sparse(table[F.CATEGORIES]).to_list() == [
      [], [5, 6], [7]]
  # Items 2, 4 and the OOV index (5) have no row.
  assert catalog.rows_by_item(table, 5).tolist() == [0, 1, -1, 2, -1, -1]
  with pytest.raises(ValueError, match="at least one training row"):
    catalog.item_table([], [F.ITEM_ID], 5)


def _softmax_loss(logits, label):
  return -(logits[label] - math.log(sum(math.exp(x) for x in logits)))


def test_catalog_softmax_hand_computed():
  """Query [1, 0]; the catalog's items embed as [1, 0], [0, 1], [3, 0]. A
  row of item 0 whose own embedding is [2, 0] (its id dropped, say)
  scores 2 for its item, the rest of the catalog 0 and 3; a row of an item
  outside the catalog competes with all three; a row that is no query
  adds nothing."""
  config = RetrievalTaskConfig(name="retrieval", kind="retrieval",
                               negatives="catalog", temperature=1.0)
  task = tasks_lib.RetrievalTask(config, np.full(4, 0.25),
                                 catalog_rows=np.array([0, 1, 2, -1]))
  features = {F.ITEM_ID: tf.constant([0, 3, 1], tf.int64),
              F.RETRIEVAL_WEIGHT: tf.constant([1.0, 1.0, 0.0])}
  outputs = {"query": tf.constant([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),
             "candidate": tf.constant([[2.0, 0.0], [0.5, 0.0], [9.0, 9.0]]),
             tasks_lib.CATALOG_CANDIDATES: tf.constant(
                 [[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])}
  expected = (_softmax_loss([2.0, 0.0, 3.0], 0) +
              _softmax_loss([1.0, 0.0, 3.0, 0.5], 3))
  assert float(task(features, outputs)) == pytest.approx(expected, rel=1e-5)
  # At temperature 2 every logit is halved.
  halved = tasks_lib.RetrievalTask(
      config.model_copy(update={"temperature": 2.0}), np.full(4, 0.25),
      catalog_rows=np.array([0, 1, 2, -1]))
  expected = (_softmax_loss([1.0, 0.0, 1.5], 0) +
              _softmax_loss([0.5, 0.0, 1.5, 0.25], 3))
  assert float(halved(features, outputs)) == pytest.approx(expected,
                                                           rel=1e-5)
  without = tasks_lib.RetrievalTask(config, np.full(4, 0.25))
  with pytest.raises(ValueError, match="catalog table"):
    without(features, outputs)


def test_catalog_kl_hand_computed():
  """Teacher logits over a 3-item catalog [2, 0, 0], student's [0, 0, 0]:
  T² · KL(softmax(t / T) || softmax(s / T)); zero when they agree."""
  tq = tf.constant([[1.0, 0.0], [4.0, 4.0]])
  tcat = tf.constant([[2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  sq = tf.constant([[0.0, 0.0], [1.0, 1.0]])
  scat = tf.constant([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
  weight = tf.constant([1.0, 0.0])  # row 2 is no query
  for t in (1.0, 2.0):
    p = np.exp(np.array([2.0, 0.0, 0.0]) / t)
    p /= p.sum()
    expected = t ** 2 * float(np.sum(p * np.log(p * 3)))
    got = float(distillation.catalog_kl(tq, tcat, sq, scat, weight, t))
    assert got == pytest.approx(expected, rel=1e-5)
  assert float(distillation.catalog_kl(tq, tcat, tq, tcat, weight,
                                       1.0)) == pytest.approx(0.0, abs=1e-6)


class _Member(tf.keras.Model):
  """A stand-in trained model: fixed embeddings and head outputs."""

  def __init__(self, query, candidate, rating, like):
    super().__init__()
    self.values = {"query": tf.constant(query), "candidate": tf.constant(
        candidate), "rating": tf.constant(rating), "like": tf.constant(like)}

  def call(self, features, training=False):
    return dict(self.values)

  def candidate_tower(self, features, training=False):
    return self.values["candidate"]

  def score(self, query, candidate, features):
    """A stand-in head: the dot product plus the member's rating."""
    return {"rating": tf.reduce_sum(query * candidate, axis=-1) +
            self.values["rating"][0]}


def test_an_ensemble_teacher_is_the_mean_of_its_members():
  """Its retrieval logits (query · candidate) are the members' mean, and
  so are its heads' outputs."""
  a = _Member([[1.0, 2.0]], [[3.0, 0.0], [1.0, 1.0]], [4.0], [2.0])
  b = _Member([[0.0, 1.0]], [[1.0, 1.0], [2.0, -1.0]], [2.0], [-1.0])
  ensemble = distillation.Ensemble([a, b])
  out = ensemble({})
  logits = out["query"].numpy() @ out["candidate"].numpy().T
  mean = ((np.array([[1.0, 2.0]]) @ np.array([[3.0, 0.0], [1.0, 1.0]]).T) +
          (np.array([[0.0, 1.0]]) @ np.array([[1.0, 1.0], [2.0, -1.0]]).T)) / 2
  np.testing.assert_allclose(logits, mean, rtol=1e-6)
  np.testing.assert_allclose(out["rating"].numpy(), [3.0])
  np.testing.assert_allclose(out["like"].numpy(), [0.5])
  np.testing.assert_allclose(ensemble.candidate_tower({}).numpy(),
                             out["candidate"].numpy())
  assert not a.trainable and not b.trainable
  # Each member scores its own part of the concatenated embeddings.
  query = out["query"]
  candidate = ensemble.candidate_tower({})[:1]
  got = ensemble.score(query, candidate, {})["rating"].numpy()
  np.testing.assert_allclose(got, [((1 * 3 + 0) + 4.0 + (0 + 1) + 2.0) / 2],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="at least one member"):
    distillation.Ensemble([])


def test_member_dirs_follow_the_artifact_layout(tmp_path):
  def saved_model(path):
    os.makedirs(path)
    open(os.path.join(path, "saved_model.pb"), "w").close()

  uri = str(tmp_path / "teacher")
  first = model_layout.saved_model_dir(uri)
  saved_model(first)
  assert model_layout.member_dirs(first) == [first]
  saved_model(model_layout.member_model_dir(uri, 1))
  saved_model(model_layout.member_model_dir(uri, 2))
  # An incomplete member (no saved_model.pb yet) and those after it: none.
  os.makedirs(model_layout.member_model_dir(uri, 3))
  saved_model(model_layout.member_model_dir(uri, 4))
  assert model_layout.member_dirs(first) == [
      first, os.path.join(uri, "Member-1"), os.path.join(uri, "Member-2")]
  # A SavedModel outside an artifact (e.g. a served version) is one model.
  other = str(tmp_path / "serving" / "3")
  saved_model(other)
  assert model_layout.member_dirs(other) == [other]


def test_members_are_a_teachers_setting_only():
  from conftest import small_config  # pylint: disable=g-import-not-at-top
  ok = small_config(trainer={"epochs": 1, "distillation": {
      "teacher": {"members": 3}, "retrieval_candidates": "catalog"}})
  assert ok.trainer.teacher_config().members == 3
  assert ok.trainer.members == 1
  with pytest.raises(Exception, match="only a teacher trains several"):
    small_config(trainer={"epochs": 1, "members": 2})
  with pytest.raises(Exception, match="retrieval_candidates"):
    small_config(trainer={"distillation": {"retrieval_candidates": "all"}})


class _Task:
  def __init__(self, name, kind):
    self.task_name, self.kind = name, kind


def test_heads_also_learn_the_teachers_opinion_of_catalog_items():
  """A one-item catalog, so every drawn item is that one. Row soft
  targets: (3.5 - 3)² + (4 - 4)²; the drawn pairs: the teacher scores
  query · [2, 0] (2 and 0), the student query · [1, 1] + 1 (3 and 3), so
  (3 - 2)² + (3 - 0)² per draw, each row's draws weighing one row."""
  teacher = _Member([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0]], [3.0, 4.0],
                    [0.0, 0.0])
  teacher.score = lambda q, c, f: {"rating": tf.reduce_sum(q * c, axis=-1)}
  student = {"query": tf.constant([[1.0, 1.0], [0.0, 2.0]]),
             "rating": tf.constant([3.5, 4.0]),
             tasks_lib.CATALOG_CANDIDATES: tf.constant([[1.0, 1.0]])}

  def student_score(query, candidate, features):
    assert features[F.HOUR].shape[0] == 2 * 4  # the context, per draw
    return {"rating": tf.reduce_sum(query * candidate, axis=-1) + 1.0}

  features = {F.HOUR: tf.constant([3, 4]), F.WEEKDAY: tf.constant([0, 1])}
  for per_row, expected in ((4, 0.25 + 1.0 + 9.0), (0, 0.25)):
    soft = distillation.SoftTargets(
        teacher, [_Task("rating", "regression")], {"rating": 1.0}, 1.0,
        catalog={F.ITEM_ID: tf.constant([0], tf.int64)},
        catalog_items_per_row=per_row)
    got = soft(features, student, student_score)["rating"]
    assert float(got) == pytest.approx(expected, rel=1e-6), per_row
