"""benchmarks/cold_start.py's franchise check and the cold-item section of
the suite, on hand-made catalogs: which titles form a series, whose part is
held out, which users are its fans, and how ranks and means come out."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import cold_start
from benchmarks.suite import cold_items
from benchmarks.suite import report


@pytest.mark.parametrize("title,key", [
    ("Toy Story (1995)", ("toy story", 1)),
    ("Toy Story 3 (2010)", ("toy story", 3)),
    ("Rocky IV (1985)", ("rocky", 4)),
    ("Pocahontas II: Journey to a New World (1998) ", ("pocahontas", 2)),
    ("Fox and the Hound, The (1981)", ("the fox and the hound", 1)),
    ("The Fox and the Hound 2 (2006)", ("the fox and the hound", 2)),
    ("Highlander III: The Sorcerer (a.k.a. Highlander: The Final "
     "Dimension) (1994)", ("highlander", 3)),
    # A number that is the title, not a part: "2001" is four digits.
    ("2001: A Space Odyssey (1968)", ("2001: a space odyssey", 1)),
    ("Se7en (1995)", ("se7en", 1)),
])
def test_series_key_reads_the_stem_and_the_part(title, key):
  assert cold_start.series_key(title) == key


def test_a_series_needs_its_first_part_and_distinct_numbers():
  ids = ["a1", "a2", "a3", "b2", "b3", "c1", "c1x", "d1"]
  titles = ["Alpha (1990)", "Alpha 2 (1992)", "Alpha III (1995)",
            "Beta 2 (2001)", "Beta 3 (2003)",  # no part 1: no series
            "Gamma (1980)", "Gamma (2015)",  # a remake: two part 1s
            "Delta (1999)"]  # alone
  assert cold_start.find_series(ids, titles) == [["a1", "a2", "a3"]]


def test_fans_rated_two_earlier_parts_four_or_higher():
  series = [["a1", "a2", "a3"]]
  train = [("u1", "a1", 1, 1, 4.0), ("u1", "a2", 2, 1, 5.0),  # fan
           ("u2", "a1", 1, 1, 5.0), ("u2", "a2", 2, 1, 3.5),  # one liked
           ("u3", "a1", 1, 1, 4.0), ("u3", "a3", 2, 1, 5.0),  # a3 is new
           ("u4", "a1", 1, 1, 4.5), ("u4", "a2", 2, 1, -1.0),  # unrated
           ("u5", "a2", 1, 1, 4.0), ("u5", "a1", 2, 1, 4.0)]  # fan
  assert cold_start.franchise_fans(series, train) == [("a3", "u1"),
                                                      ("a3", "u5")]


def _judge(scores_by_user):
  """A Judge over items a1, a2, a3, w (warm), without a pipeline."""
  judge = cold_start.Judge.__new__(cold_start.Judge)
  judge.ids = ["a1", "a2", "a3", "w"]
  judge.row = {i: n for n, i in enumerate(judge.ids)}
  judge.ks = [20]
  judge.cold_mask = np.array([False, False, True, False])
  judge.users = sorted(scores_by_user)
  judge.seen = {"u1": {0, 1}, "u2": {0}}
  judge.cold_pos = {"u1": set(), "u2": set()}
  judge.warm_pos = {"u1": set(), "u2": set()}
  judge.fans = [("a3", "u1"), ("a3", "u2")]
  judge.added_at = np.zeros(4, np.int64)  # no request times: all offered
  judge.request_at = {}
  judge.embedded_at = np.array([100, 500], np.int64)  # u1, u2
  return judge, np.array([scores_by_user[u] for u in judge.users])


def test_the_catalog_at_request_leaves_out_cold_items_not_yet_added():
  judge, scores = _judge({"u1": [9.0, 8.0, 3.0, 2.0],
                          "u2": [0.0, 5.0, 4.0, 3.0]})
  judge.ks = [1]
  judge.added_at = np.array([0, 0, 200, 0])  # a3 enters at t = 200
  judge.request_at = {"u1": 100, "u2": 300}
  judge.cold_pos = {"u1": {2}, "u2": {2}}
  judge.warm_pos = {"u1": {3}, "u2": {1}}
  got = judge._measure(scores)
  # u1 (seen a1, a2): a3 first in the whole catalog, but asked at t = 100
  # it is not there yet, so w is first. u2 (seen a1): a2 first either way.
  assert got["cold_in_all_recall_at_1"] == 0.5
  assert got["warm_in_all_recall_at_1"] == 0.5
  assert got["cold_at_request_recall_at_1"] == 0.0
  assert got["warm_at_request_recall_at_1"] == 1.0


# LM text of _judge's items: a3 is close to a1, w to a2.
_ITEM_TEXT = {"item_ids": ["a1", "a2", "a3", "w"],
              "vectors": np.array([[1, 0], [0, 1], [1, 0.1], [0, 1]],
                                  np.float32),
              "has_text": np.ones(4, np.int64)}


def test_the_new_item_match_lifts_matched_cold_items_by_the_user_spread():
  judge, scores = _judge({"u1": [9.0, 8.0, 1.0, 2.0],
                          "u2": [0.0, 5.0, 4.0, 3.0]})
  text = _ITEM_TEXT
  got = judge.new_item_match_metrics(
      scores, {"u1": ["a1"], "u2": ["a2"]}, text,
      [{"threshold": 0.9, "bonus": 1.0, "neighbors": 3}])["0.9/1/none/3"]
  # a3's text matches u1's liked a1 (cosine 0.995), not u2's a2 (0.0995):
  # u1's a3 gains 1 sd of [9, 8, 1, 2] = sqrt(12.5) = 3.54 and overtakes w
  # (rank 2 -> 1); u2's stays behind a2 (rank 2).
  assert got["matched_pairs"] == 1
  assert got["franchise_median_rank"] == 1.5


def test_the_match_cap_counts_ranks_among_the_items_not_seen():
  judge, scores = _judge({"u1": [9.0, 8.0, 1.0, 2.0],
                          "u2": [0.0, 5.0, 4.0, 3.0]})
  text = _ITEM_TEXT
  both_like_a1 = {"u1": ["a1"], "u2": ["a1"]}
  setting = {"threshold": 0.9, "bonus": 1.0, "neighbors": 3}
  got = judge.new_item_match_metrics(
      scores, both_like_a1, text,
      [setting, dict(setting, keep_top=1)])
  # a3 matches both. Uncapped, its bonus (u1: sqrt(12.5) = 3.54, u2:
  # sqrt(3.5) = 1.87) puts it first for both.
  assert got["0.9/1/none/3"]["franchise_median_rank"] == 1.0
  # keep_top 1: each user's best unseen item stays above a3. u1 has seen
  # a1 and a2, so that is w (2.0) and a3 stops just below it: 2nd (had the
  # seen items counted, the ceiling would be a1's 9.0 and a3 first). u2's
  # is a2 (5.0): a3 rises to just below it, 2nd.
  assert got["0.9/1/1/3"]["franchise_median_rank"] == 2.0
  assert got["0.9/1/1/3"]["keep_top"] == 1


def test_the_benchmark_measures_the_match_at_the_config_defaults():
  """The setting the README and the config comment quote (bonus 3 on the
  NewItemMatchConfig defaults) is one the cold-item section measures."""
  from trainer.config import NewItemMatchConfig  # pylint: disable=g-import-not-at-top
  defaults = NewItemMatchConfig(bonus=3.0).model_dump()
  measured = {cold_start.policy_setting_name(dict(
      threshold=t, bonus=b, keep_top=k, neighbors=n))
              for t, b, k, n in cold_start.NEW_ITEM_MATCH}
  assert cold_start.policy_setting_name(defaults) == "0.755/3/5/2"
  assert "0.755/3/5/2" in measured


def test_the_franchise_rank_excludes_seen_items_and_counts_from_one():
  judge, scores = _judge({"u1": [9.0, 8.0, 1.0, 2.0],  # a3 behind w only
                          "u2": [0.0, 5.0, 4.0, 3.0]})  # behind a2 only
  got = judge._franchise(scores)
  assert got["franchise_pairs"] == 2 and got["franchise_series"] == 1
  assert got["franchise_median_rank"] == 2.0
  assert got["franchise_top_50"] == 1.0


def test_the_freshness_bonus_lifts_cold_items_only():
  judge, scores = _judge({"u1": [9.0, 8.0, 1.0, 2.0],
                          "u2": [0.0, 5.0, 4.0, 3.0]})
  fresh = judge.freshness_metrics(scores, [1.5])["1.5"]
  # a3 (cold) + 1.5 overtakes w for u1 and a2 for u2: rank 1 both.
  assert fresh["franchise_top_50"] == 1.0
  base = judge._franchise(scores + np.where(judge.cold_mask, 1.5, 0)[None])
  assert base["franchise_median_rank"] == 1.0


def test_the_section_summarizes_seeds_and_renders():
  def one(value):
    return {"results": {"lm": {"cold_in_all_recall_at_20": value,
                               "warm_in_all_recall_at_20": 0.2,
                               "franchise_top_50": 0.5,
                               "franchise_median_rank": 40.0,
                               "freshness": {"1": {
                                   "cold_in_all_recall_at_20": value + 0.1,
                                   "warm_in_all_recall_at_20": 0.1,
                                   "franchise_top_50": 0.9}},
                               "new_item_match": {"0.71/2/5": {
                                   "cold_at_request_recall_at_20":
                                       value + 0.2,
                                   "warm_at_request_recall_at_20": 0.15,
                                   "warm_at_request_ndcg_at_20": 0.12,
                                   "franchise_top_50": 0.6,
                                   "matched_pairs": 10}}}}}
  summary = cold_items.summarize([one(0.1), one(0.3)])
  assert summary["lm"]["cold_in_all_recall_at_20"] == pytest.approx(
      [0.2, 0.1])
  assert summary["lm"]["freshness"]["1"]["cold_in_all_recall_at_20"] == (
      pytest.approx([0.3, 0.1]))
  text = "\n".join(report._cold_start({
      "config": "configs/x.yaml", "seeds": [1, 2], "cold_share": 0.1,
      "series": 3, "cold_items": 10, "catalog_items": 100,
      "summary": summary}))
  assert "## Cold items" in text
  assert "| lm | — | — | 0.2000 ± 0.1000 | 0.2000 ± 0.0000 |" in text
  # The freshness rows: at request (not measured here), then the whole
  # catalog.
  assert "| 1 | — | — | — | 0.3000 ± 0.1000 | 0.1000 ± 0.0000 |" in text
  assert "| off | — | — | — | 0.2000 ± 0.1000 | 0.2000 ± 0.0000 |" in text
  # The match rows: at request (recall, then warm NDCG), not the whole
  # catalog here, then the franchise.
  assert ("| 0.71/2/5 | 0.4000 ± 0.1000 | 0.1500 ± 0.0000 | 0.1200 ± 0.0000 "
          "| — | — | 0.6000 ± 0.0000 |") in text
  assert "0.71/2/5: 10" in text


def _fake_signature(table, input_name, calls, timestamps=None):
  """An embed_user(_at) / embed_item signature over a {id: vector} table;
  timestamps: a list that records each call's timestamp input."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def signature(**inputs):
    ids = [x.decode() for x in inputs[input_name].numpy()]
    calls.append(len(ids))
    if timestamps is not None:
      assert inputs["timestamp"].dtype == tf.int64
      timestamps.extend(inputs["timestamp"].numpy().tolist())
    return {"embedding": tf.constant([table[i] for i in ids])}
  return signature


def test_embed_all_calls_a_chunk_at_a_time_and_keeps_the_order():
  from benchmarks import signature_batches  # pylint: disable=g-import-not-at-top
  calls = []
  table = {"a": [1.0], "b": [2.0], "c": [3.0], "d": [4.0]}
  got = signature_batches.embed_all(
      _fake_signature(table, "item_id", calls), "item_id",
      ["d", "b", "a", "c"], chunk=3)
  assert got.tolist() == [[4.0], [2.0], [1.0], [3.0]] and calls == [3, 1]
  with pytest.raises(ValueError, match="no item_id"):
    signature_batches.embed_all(_fake_signature(table, "item_id", calls),
                                "item_id", [])
  stamps = []
  signature_batches.embed_all(
      _fake_signature(table, "item_id", calls, stamps), "item_id",
      ["d", "b", "a"], chunk=2, timestamp=[7, 8, 9])
  assert stamps == [7, 8, 9]
  with pytest.raises(ValueError, match="2 timestamp for 3 item_id"):
    signature_batches.embed_all(_fake_signature(table, "item_id", calls),
                                "item_id", ["d", "b", "a"], timestamp=[1, 2])


def test_model_metrics_scores_users_against_items_through_the_export(
    monkeypatch):
  """The scores are embed_user · embed_item of the loaded export: the same
  franchise ranks as the hand-made scores of the tests above."""
  import types  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  calls, timestamps = [], []
  export = types.SimpleNamespace(signatures={
      "embed_user_at": _fake_signature(
          {"u1": [1.0, 0.0], "u2": [0.0, 1.0]}, "user_id", calls,
          timestamps),
      "embed_item": _fake_signature(
          {"a1": [9.0, 0.0], "a2": [8.0, 5.0], "a3": [1.0, 4.0],
           "w": [2.0, 3.0]}, "item_id", calls)})
  monkeypatch.setattr(tf.saved_model, "load", lambda model_dir: export)
  judge, _ = _judge({"u1": [9.0, 8.0, 1.0, 2.0],  # u1 = (1, 0)
                     "u2": [0.0, 5.0, 4.0, 3.0]})  # u2 = (0, 1)
  got = judge.model_metrics("/export")
  assert (got["franchise_pairs"], got["franchise_median_rank"],
          got["franchise_top_50"]) == (2, 2.0, 1.0)
  assert calls == [2, 4]
  # Each user is embedded as of their own time (_judge: u1 asked at 100,
  # u2 without a request at the data's last event), not the clock's.
  assert timestamps == [100, 500]
