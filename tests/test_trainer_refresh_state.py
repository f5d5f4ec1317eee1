"""trainer.refresh_state: what an export carries to rebuild its model."""

import json
import os

import numpy as np
import pytest

from contracts import model_layout
from contracts import records as r
from trainer import refresh_state
from trainer.config import TrainerConfig

ITEMS = {
    r.ITEM_ID: ["i1", "i2"],
    r.TITLE: ["Alpha", "Beta"],
    r.CATEGORIES: [["Drama"], ["Comedy", "Drama"]],
    r.YEAR: [1999, None],
    r.TAGS: [["dark"], []],
    "ignored_column": ["x", "y"],  # not an item column: not kept
}
USERS = {"user_id": ["u1", "u2"], "age": ["25", "35"]}
HISTORIES = {"u1": ["i1", "i2"], "u2": []}
STATS = {"label_means": {"rating": 3.5, "like": 0.25}, "rows": 10,
         "item_probabilities": [0.75, 0.25]}


@pytest.fixture
def graph(tmp_path):
  """A transform graph directory, with the metadata file the copy skips."""
  g = tmp_path / "transform_graph"
  (g / "transform_fn").mkdir(parents=True)
  (g / "transform_fn" / "saved_model.pb").write_bytes(b"\x00graph")
  (g / "metadata.json").write_text("{}")
  return str(g)


def _save(export_dir, graph, item_text=None, text_settings=None):
  config = TrainerConfig(embedding_dim=8, epochs=1)
  refresh_state.save_state(
      str(export_dir), graph, config, ["age"], STATS, ITEMS, USERS, HISTORIES,
      item_text, text_settings, top_k=5, max_k=50)
  return config


def test_state_round_trips(tmp_path, graph):
  export_dir = tmp_path / "export"
  assert not refresh_state.has_state(str(export_dir))
  config = _save(export_dir, graph)
  assert refresh_state.has_state(str(export_dir))
  state = refresh_state.load_state(str(export_dir))
  assert state["format"] == 1
  assert TrainerConfig.model_validate(state["trainer"]) == config
  assert state["user_features"] == ["age"]
  assert state["label_means"] == {"rating": 3.5, "like": 0.25}
  assert (state["top_k"], state["max_k"]) == (5, 50)
  assert state["text"] is None
  assert state["items"] == {k: ITEMS[k] for k in refresh_state.ITEM_COLUMNS}
  assert state["users"] == USERS
  assert state["histories"] == HISTORIES
  assert list(state["arrays"]) == ["item_probabilities"]
  np.testing.assert_array_equal(state["arrays"]["item_probabilities"],
                                [0.75, 0.25])
  assert refresh_state.text_settings(str(export_dir)) is None
  assert state["new_item_match"] is None and state["liked"] == {}


def test_the_new_item_match_and_liked_items_survive_a_refresh(tmp_path,
                                                             graph):
  """What a refresh needs to match the items it adds (new_item_match)."""
  match = {"bonus": 2.0, "threshold": 0.7, "neighbors": 3}
  refresh_state.save_state(
      str(tmp_path / "export"), graph, TrainerConfig(embedding_dim=8),
      ["age"], STATS, ITEMS, USERS, HISTORIES, None, None, top_k=5,
      max_k=50, new_item_match=match, liked={"u1": ["i2", "i1"]})
  state = refresh_state.load_state(str(tmp_path / "export"))
  assert state["new_item_match"] == match
  assert state["liked"] == {"u1": ["i2", "i1"]}


def test_state_lives_under_the_layout_directory(tmp_path, graph):
  export_dir = tmp_path / "export"
  _save(export_dir, graph)
  state_dir = export_dir / model_layout.REFRESH_STATE_DIR
  assert refresh_state.STATE_DIR == model_layout.REFRESH_STATE_DIR
  assert sorted(os.listdir(state_dir)) == [
      "arrays.npz", "catalog.json", "state.json", "transform_graph",
      "users.json"]
  loaded = refresh_state.load_state(str(export_dir))
  assert loaded["transform_graph"] == str(state_dir / "transform_graph")
  # The graph is copied without its artifact metadata.
  copied = state_dir / "transform_graph"
  assert (copied / "transform_fn" / "saved_model.pb").read_bytes() == (
      b"\x00graph")
  assert not (copied / "metadata.json").exists()
  with open(state_dir / "state.json") as f:
    assert set(json.load(f)) == {"format", "trainer", "user_features",
                                 "label_means", "top_k", "max_k", "text",
                                 "fusion", "freshness", "new_item_match",
                                 "history_modes"}


def test_item_text_and_its_settings_round_trip(tmp_path, graph):
  export_dir = tmp_path / "export"
  settings = {"model": "tiny-lm", "fields": ["title"], "max_tags": 3}
  item_text = {"item_ids": ["i1", "i2"],
               "vectors": [[0.5, -1.0], [0.0, 0.0]],
               "has_text": [1, 0]}
  _save(export_dir, graph, item_text, settings)
  assert refresh_state.text_settings(str(export_dir)) == settings
  arrays = refresh_state.load_state(str(export_dir))["arrays"]
  assert sorted(arrays) == ["item_probabilities", "text_has",
                            "text_item_ids", "text_vectors"]
  assert arrays["text_item_ids"].tolist() == ["i1", "i2"]
  assert arrays["text_vectors"].dtype == np.float32
  np.testing.assert_array_equal(arrays["text_vectors"],
                                [[0.5, -1.0], [0.0, 0.0]])
  assert arrays["text_has"].dtype == np.int64
  assert arrays["text_has"].tolist() == [1, 0]



def test_the_chosen_fusion_survives_a_refresh(tmp_path, graph):
  from trainer import fusion  # pylint: disable=g-import-not-at-top
  spec = fusion.FusionSpec(("retrieval", "rating"), ("retrieval",
                                                     "regression"),
                           (1.0, 0.35), (0.0, 3.5), (1.0, 0.9), 200,
                           {"objective": "graded_ndcg_at_20"})
  export_dir = tmp_path / "export"
  config = TrainerConfig(embedding_dim=8, epochs=1)
  refresh_state.save_state(
      str(export_dir), graph, config, ["age"], STATS, ITEMS, USERS, HISTORIES,
      None, None, top_k=5, max_k=50, fusion=spec)
  state = refresh_state.load_state(str(export_dir))
  assert fusion.FusionSpec.from_json(state["fusion"]) == spec
  _save(tmp_path / "older", graph)  # exported without a spec: None
  assert refresh_state.load_state(str(tmp_path / "older"))["fusion"] is None
