"""New-item matching (trainer/new_item_match.py) on hand-computed cases.

The export and `mtrec catalog refresh` path (real LM vectors, the bonus in
`recommend`) is tested in tests/test_catalog_refresh.py.
"""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest

from conftest import small_config_raw


def _unit(angles_degrees):
  a = np.radians(np.asarray(angles_degrees, np.float64))
  return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_match_uses_the_mean_of_the_highest_cosines():
  from trainer import new_item_match  # pylint: disable=g-import-not-at-top
  # Rows 0-2 liked items at 0, 10 and 90 degrees; rows 3 and 4 new items at
  # 5 and 60 degrees.
  vectors = _unit([0, 10, 90, 5, 60])
  cos = lambda d: math.cos(math.radians(d))  # noqa: E731
  # Item 3 against [0, 10, 90]: cosines cos5, cos5, cos85; item 4: cos60,
  # cos50, cos30.
  top2_item3 = (cos(5) + cos(5)) / 2  # 0.9962
  top2_item4 = (cos(30) + cos(50)) / 2  # 0.7544
  liked = [[0, 1, 2], [2], []]
  got = new_item_match.match(liked, vectors, [3, 4], threshold=0.75,
                             neighbors=2)
  assert top2_item3 >= 0.75 and top2_item4 >= 0.75
  # User 1 liked one item: the mean is over it alone (cos85 for item 3,
  # cos30 = 0.866 for item 4). User 2 liked nothing: no match.
  assert got == [[3, 4], [4], []]
  got = new_item_match.match(liked, vectors, [3, 4], threshold=0.76,
                             neighbors=2)
  assert got == [[3], [4], []]
  # Three neighbours bring the 90-degree item into item 3's mean:
  # (cos5 + cos5 + cos85) / 3 = 0.693.
  got = new_item_match.match(liked, vectors, [3, 4], threshold=0.7,
                             neighbors=3)
  assert got == [[], [4], []]
  assert new_item_match.match(liked, vectors, [], 0.5, 2) == [[], [], []]


def test_match_blocks_agree_with_one_block(monkeypatch):
  from trainer import new_item_match  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  vectors = new_item_match.unit_rows(rng.normal(size=(40, 8)))
  liked = [rng.choice(30, size=rng.integers(0, 6), replace=False).tolist()
           for _ in range(9)]
  liked[4] = []
  whole = new_item_match.match(liked, vectors, range(30, 40), 0.2, 3)
  # 100 similarities a block: a user or two (10 new items x up to 5 liked).
  monkeypatch.setattr(new_item_match, "_BLOCK_ELEMENTS", 100)
  blocks = new_item_match._blocks([len(r) for r in liked], 10)  # pylint: disable=protected-access
  assert len(blocks) > 3 and blocks[0][0] == 0 and blocks[-1][1] == 9
  assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
  assert new_item_match.match(liked, vectors, range(30, 40), 0.2, 3) == whole
  assert whole[4] == [] and 0 < sum(map(len, whole)) < 8 * 10


def test_add_bonus_is_bonus_times_each_row_spread_at_its_matches():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import new_item_match  # pylint: disable=g-import-not-at-top
  scores = np.array([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 4.0, 0.0]], np.float32)
  values, splits = new_item_match.ragged([[3], [0, 1]])
  assert values.tolist() == [3, 0, 1] and splits.tolist() == [0, 1, 3]
  spread = new_item_match.spread(scores)
  # Population standard deviations: sqrt(3.5) and sqrt(3).
  np.testing.assert_allclose(spread, [math.sqrt(3.5), math.sqrt(3.0)],
                             rtol=1e-6)
  got = new_item_match.add_bonus(
      scores, tf.RaggedTensor.from_row_splits(values, splits), 2.0,
      spread).numpy()
  want = scores.copy()
  want[0, 3] += 2 * math.sqrt(3.5)
  want[1, [0, 1]] += 2 * math.sqrt(3.0)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  none = new_item_match.add_bonus(
      scores, tf.RaggedTensor.from_row_splits(*new_item_match.ragged(
          [[], []])), 2.0, spread).numpy()
  np.testing.assert_array_equal(none, scores)


def test_keep_top_keeps_the_best_items_above_a_lifted_one_after_exclusions():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import new_item_match  # pylint: disable=g-import-not-at-top
  # keep_top 2. Row 0: item 0 (score 1) matched; without a cap it would
  # reach 1 + 2 * 2 = 5, above everything. Item 4 (score 5) is excluded, so
  # the 2nd best available score is 3 (item 2): item 0 stops just below it.
  # Row 1: matched item 3 (score 3.5) is already above its row's 2nd best
  # (3): a cap never lowers a score, so it stays at 3.5.
  # Row 2: the lifted score 0.5 + 2 * 0.1 = 0.7 stays below the ceiling.
  scores = np.array([[1.0, 2.0, 3.0, 4.0, -np.inf],
                     [1.0, 2.0, 3.0, 3.5, 0.0],
                     [0.5, 1.0, 2.0, 3.0, 4.0]], np.float32)
  matched = tf.RaggedTensor.from_row_splits(
      *new_item_match.ragged([[0], [3], [0]]))
  spread = np.array([2.0, 1.0, 0.1], np.float32)
  got = new_item_match.add_bonus(scores, matched, 2.0, spread,
                                 keep_top=2).numpy()
  want = scores.copy()
  want[0, 0], want[1, 3], want[2, 0] = 3.0, 3.5, 0.7
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got[0, 0] < 3.0  # strictly below: the 2nd best keeps its place
  assert np.argsort(-got[0]).tolist()[:3] == [3, 2, 0]
  # Without the cap, the same lifts land above the head of each row.
  uncapped = new_item_match.add_bonus(scores, matched, 2.0, spread).numpy()
  np.testing.assert_allclose(uncapped[[0, 1, 2], [0, 3, 0]], [5.0, 5.5, 0.7],
                             rtol=1e-6)
  # An excluded matched item stays excluded.
  gone = new_item_match.add_bonus(
      scores, tf.RaggedTensor.from_row_splits(
          *new_item_match.ragged([[4], [], []])), 2.0, spread, keep_top=2)
  assert gone.numpy()[0, 4] == -np.inf


def test_settings_are_validated_and_need_item_text():
  from pipeline import config as C  # pylint: disable=g-import-not-at-top
  from trainer.config import NewItemMatchConfig  # pylint: disable=g-import-not-at-top
  assert NewItemMatchConfig().bonus == 0  # off by default
  with pytest.raises(pydantic.ValidationError, match="threshold"):
    NewItemMatchConfig(bonus=1, threshold=1.5)
  with pytest.raises(pydantic.ValidationError, match="neighbors"):
    NewItemMatchConfig(bonus=1, neighbors=0)
  with pytest.raises(pydantic.ValidationError, match="keep_top"):
    NewItemMatchConfig(bonus=1, keep_top=0)
  assert NewItemMatchConfig(bonus=1, keep_top=None).keep_top is None
  raw = small_config_raw(serving={"new_item_match": {"bonus": 2.0}})
  with pytest.raises(C.ConfigError, match="serving.new_item_match.bonus: "
                     "matching new items reads their LM text"):
    C.parse_config(raw)
