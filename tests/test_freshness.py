"""trainer/freshness.py: the serving policy that gives new items exposure.

The bonus on hand-computed ages, when an item counts as new, and the policy
in a served model: a refreshed item with a large bonus tops every user's
list, its `added_at` survives the next refresh, and with the policy off
(the default) nothing changes.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from contracts import model_layout

DAY = 86400
SETTINGS = {"bonus": 2.0, "half_life_days": 7.0, "max_age_days": 30.0}


def _bonus(added_at, now, settings=SETTINGS):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import freshness  # pylint: disable=g-import-not-at-top
  return freshness.bonus(tf.constant(added_at, tf.int64),
                         tf.constant(now, tf.int64), settings).numpy()


def test_the_bonus_halves_every_half_life_and_stops_at_the_maximum_age():
  now = 1_000 * DAY
  got = _bonus([now, now - 7 * DAY, now - 14 * DAY, now - 29 * DAY,
                now - 30 * DAY, now - 400 * DAY], now)
  np.testing.assert_allclose(got, [2.0, 1.0, 0.5, 2.0 * 0.5 ** (29 / 7),
                                   0.0, 0.0], rtol=1e-6)


def test_trained_items_are_never_new_and_future_times_are_age_zero():
  now = 1_000 * DAY
  np.testing.assert_allclose(_bonus([0, now + 3 * DAY], now), [0.0, 2.0])


def test_added_at_keeps_known_times_and_dates_untrained_items_now():
  from trainer import freshness  # pylint: disable=g-import-not-at-top
  got = freshness.added_at(["a", "b", "c", "d"], trained_item_ids=["a", "b"],
                           known={"b": 5, "c": 7}, now=99)
  # a: trained, not new; b, c: recorded; d: untrained, new as of now.
  assert got.tolist() == [0, 5, 7, 99]


def test_the_policy_is_off_unless_configured():
  from trainer.config import FreshnessConfig  # pylint: disable=g-import-not-at-top
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  assert FreshnessConfig().bonus == 0.0
  with pytest.raises(ValueError, match="half_life_days"):
    FreshnessConfig(half_life_days=0)
  with pytest.raises(ValueError, match="bonus"):
    FreshnessConfig(bonus=-1)
  shipped = config_lib.load_config(os.path.join(
      os.path.dirname(os.path.dirname(__file__)), "configs",
      "movielens_latest_small.yaml"))
  assert shipped.serving.freshness.bonus == 0.0


def _with_policy(source, target, settings):
  """A copy of an exported model whose refresh state carries `settings`."""
  from trainer import refresh_state  # pylint: disable=g-import-not-at-top
  shutil.copytree(source, target)
  path = os.path.join(target, refresh_state.STATE_DIR, "state.json")
  with open(path) as f:
    state = json.load(f)
  state["freshness"] = settings
  with open(path, "w") as f:
    json.dump(state, f)
  return target


def _top_items(export_dir, users):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(export_dir)
  got = model.signatures["recommend"](user_id=tf.constant(users))
  return [[i.decode() for i in row] for row in got["item_ids"].numpy()]


@pytest.mark.slow
def test_a_refreshed_item_gets_the_bonus_and_keeps_its_age(small_run,
                                                           tmp_path):
  from trainer import refresh  # pylint: disable=g-import-not-at-top
  from trainer import refresh_state  # pylint: disable=g-import-not-at-top
  source = model_layout.saved_model_dir(small_run.artifacts.model)
  users = [f"u{n}" for n in range(8)]
  new_item = {"item_id": "brand-new", "title": "Brand new", "year": 0}

  plain = str(tmp_path / "plain")
  refresh.rebuild(source, [new_item], None, plain, "mtrec", log=print)
  state = refresh_state.load_state(plain)
  added = dict(zip(state["items"]["item_id"], state["items"]["added_at"]))
  new = {i for i, t in added.items() if t > 0}
  # New: the refreshed item and the catalog items no training event had.
  assert "brand-new" in new and 0 < len(new) < 0.2 * len(added)
  assert state["freshness"]["bonus"] == 0.0  # off unless configured
  plain_lists = _top_items(plain, users)
  assert sum(i in new for row in plain_lists for i in row) < (
      len(users) * len(plain_lists[0]))

  # A bonus far above any retrieval score: new items fill every list.
  boosted_source = _with_policy(source, str(tmp_path / "source"), dict(
      SETTINGS, bonus=1e4))
  boosted = str(tmp_path / "boosted")
  refresh.rebuild(boosted_source, [new_item], None, boosted, "mtrec",
                  log=print)
  boosted_lists = _top_items(boosted, users)
  assert all(i in new for row in boosted_lists for i in row), boosted_lists
  state = refresh_state.load_state(boosted)
  assert state["freshness"]["bonus"] == 1e4
  added = dict(zip(state["items"]["item_id"], state["items"]["added_at"]))

  # A later refresh keeps when the item became new.
  again = str(tmp_path / "again")
  refresh.rebuild(boosted, [{"item_id": "newer", "title": "Newer"}], None,
                  again, "mtrec", log=print)
  state = refresh_state.load_state(again)
  added_again = dict(zip(state["items"]["item_id"],
                         state["items"]["added_at"]))
  assert added_again["brand-new"] == added["brand-new"]
  assert added_again["newer"] >= added["brand-new"]
