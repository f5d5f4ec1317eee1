"""The export of a model with history modes (QueryTower.history_modes).

A model trained with served histories (trainer.served_history_fraction)
reads a user's served history one way for a request after it and another
for a request before its last event (F.HISTORY_AHEAD). The export keeps a
user term per mode and picks one by the request's timestamp; every
signature must pick the same way, and the precomputed terms must be what
the whole query tower computes.
"""

import json
import os
import shutil
import time

import numpy as np
import pytest

import trainer  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from contracts import model_layout
from trainer import data
from trainer import refresh
from trainer import refresh_state
from trainer import run
from trainer.config import TrainerConfig

WEEK = 7 * 86400  # a week apart: the same hour and weekday, the same context


@pytest.fixture(scope="module")
def trained(small_run, tmp_path_factory):
  u = small_run.artifacts
  model_uri = str(tmp_path_factory.mktemp("modes") / "model")
  config = TrainerConfig(epochs=2, batch_size=256, embedding_dim=16,
                         served_history_fraction=0.5)
  run.run_trainer(u.transform_graph, u.transformed_examples, u.examples,
                  u.catalog, model_uri, "t", config, "mtrec", 5,
                  log=lambda m: None)
  export_dir = model_layout.saved_model_dir(model_uri)
  histories, ends = data.latest_histories_with_ends(u.examples,
                                                    config.history_length)
  users = sorted(u for u in histories if histories[u])[:6]
  return {"model": tf.saved_model.load(export_dir), "dir": export_dir,
          "users": users, "ends": ends, "histories": histories}


def _recommend_at(model, users, timestamps, k=10):
  n = len(users)
  weights = np.tile(model.fusion_weights.numpy(), (n, 1)).astype(np.float32)
  return model.signatures["recommend_at"](
      user_id=tf.constant(users), exclude_item_ids=tf.fill([n, 1], ""),
      k=tf.constant(k), fusion_weights=tf.constant(weights),
      timestamp=tf.constant(timestamps, tf.int64))


def _embed_at(model, users, timestamps):
  return model.signatures["embed_user_at"](
      user_id=tf.constant(users),
      timestamp=tf.constant(timestamps, tf.int64))["embedding"].numpy()


@pytest.mark.slow
def test_a_request_before_the_history_ends_reads_it_as_running_past(trained):
  m, users, ends = trained["model"], trained["users"], trained["ends"]
  before = [ends[u] - WEEK for u in users]
  after = [ends[u] + WEEK for u in users]
  at_end = [ends[u] for u in users]  # not before it: after the history
  q_before, q_after = _embed_at(m, users, before), _embed_at(m, users, after)
  np.testing.assert_allclose(_embed_at(m, users, at_end), q_after,
                             rtol=1e-5, atol=1e-6)
  # Same hour and weekday: only the history's mode differs.
  assert np.abs(q_before - q_after).max() > 1e-3
  # Per row: a batch mixing both gets each row's own mode.
  mixed = [b if n % 2 else a for n, (b, a) in enumerate(zip(before, after))]
  q_mixed = _embed_at(m, users, mixed)
  np.testing.assert_allclose(q_mixed[1::2], q_before[1::2], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(q_mixed[0::2], q_after[0::2], rtol=1e-5,
                             atol=1e-6)
  # An unknown user has no history to be ahead of.
  unknown = _embed_at(m, ["nobody", "nobody"], [WEEK, 6000 * WEEK])
  np.testing.assert_allclose(unknown[0], unknown[1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_recommend_at_ranks_with_the_query_of_the_whole_tower(trained):
  """recommend_at's precomputed user terms, one table per mode, give the
  scores of embed_user_at (the whole query tower) on either side of the
  history's end."""
  m, users, ends = trained["model"], trained["users"], trained["ends"]
  for timestamps in ([ends[u] - WEEK for u in users],
                     [ends[u] + WEEK for u in users]):
    ranked = _recommend_at(m, users, timestamps)
    items = m.signatures["embed_item"](
        item_id=tf.reshape(ranked["item_ids"], [-1]))["embedding"].numpy()
    query = _embed_at(m, users, timestamps)
    dots = np.sum(np.repeat(query, 10, axis=0) * items, axis=1).reshape(
        len(users), 10)
    np.testing.assert_allclose(dots, ranked["retrieval_scores"].numpy(),
                               rtol=1e-4, atol=1e-4)
  # embed_user reads the clock, which is after every history here.
  before = int(time.time())
  assert before > max(ends[u] for u in users)
  now = m.signatures["embed_user"](user_id=tf.constant(users))[
      "embedding"].numpy()
  if before // 3600 != int(time.time()) // 3600:
    pytest.skip("the clock crossed an hour between the two calls")
  np.testing.assert_allclose(now, _embed_at(m, users, [before] * len(users)),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_an_example_with_its_own_history_is_never_ahead(trained):
  """predict_examples: an example's own history is what came before it;
  one without a history reads the served one, ahead of it or not."""
  m, users, ends, histories = (trained["model"], trained["users"],
                               trained["ends"], trained["histories"])
  user = users[0]

  def example(timestamp, history):
    ex = tf.train.Example()
    f = ex.features.feature
    f["user_id"].bytes_list.value.append(user.encode())
    f["item_id"].bytes_list.value.append(histories[user][0].encode())
    f["timestamp"].int64_list.value.append(timestamp)
    f["history_item_ids"].bytes_list.value.extend(
        [h.encode() for h in history])
    return ex.SerializeToString()

  before, after = ends[user] - WEEK, ends[user] + WEEK
  affinity = m.signatures["predict_examples"](examples=tf.constant([
      example(before, []), example(after, []),
      example(before, histories[user]), example(after, histories[user])
  ]))["affinity"].numpy()
  # Its own copy of the served history, before or after: the "after" mode.
  assert affinity[2] == pytest.approx(affinity[1], abs=1e-5)
  assert affinity[3] == pytest.approx(affinity[1], abs=1e-5)
  assert affinity[0] != pytest.approx(affinity[1], abs=1e-4)


@pytest.mark.slow
def test_a_catalog_refresh_keeps_both_modes(trained, tmp_path):
  """The refresh state carries when each history ends, so a refreshed
  model answers its users as the trained one did, on either side."""
  state = refresh_state.load_state(trained["dir"])
  assert state["history_ends"] == {u: trained["ends"][u]
                                   for u in state["histories"]}
  refreshed_dir = str(tmp_path / "refreshed")
  refresh.rebuild(trained["dir"], [{"item_id": "new-item", "title": "New"}],
                  None, refreshed_dir, "mtrec", log=lambda m: None)
  assert refresh_state.history_modes(trained["dir"])
  assert refresh_state.history_modes(refreshed_dir)
  refreshed = tf.saved_model.load(refreshed_dir)
  users, ends = trained["users"], trained["ends"]
  for timestamps in ([ends[u] - WEEK for u in users],
                     [ends[u] + WEEK for u in users]):
    np.testing.assert_allclose(_embed_at(refreshed, users, timestamps),
                               _embed_at(trained["model"], users, timestamps),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_model_exported_before_history_modes_refreshes_as_it_was(
    small_run, tmp_path):
  """An export written before history modes has none in its state; its
  trainer section may still set served_history_fraction (the shipped
  config did). The refresh rebuilds it without modes, so its weights fit."""
  source = str(tmp_path / "before")
  shutil.copytree(model_layout.saved_model_dir(small_run.artifacts.model),
                  source)
  state_file = os.path.join(source, refresh_state.STATE_DIR, "state.json")
  with open(state_file) as f:
    state = json.load(f)
  assert state.pop("history_modes") is False
  state["trainer"]["served_history_fraction"] = 0.1
  with open(state_file, "w") as f:
    json.dump(state, f)
  assert not refresh_state.history_modes(source)
  refreshed_dir = str(tmp_path / "refreshed")
  refresh.rebuild(source, [{"item_id": "new-item", "title": "New"}], None,
                  refreshed_dir, "mtrec", log=lambda m: None)
  users = ["u1", "u2"]
  np.testing.assert_allclose(
      _embed_at(tf.saved_model.load(refreshed_dir), users, [WEEK] * 2),
      _embed_at(tf.saved_model.load(source), users, [WEEK] * 2),
      rtol=1e-5, atol=1e-6)
