"""Baselines tuned on validation (benchmarks/suite/tuned_baselines.py).

The tuning must choose by the validation split only and refit the choice on
the whole training split; the protocols' objectives are checked on cases
worked out by hand.
"""

import numpy as np
import pytest

from benchmarks import baselines
from benchmarks.suite import tuned_baselines as tb


def _events(pairs, ratings=None):
  users, items = zip(*pairs)
  return tb.Events(np.array(users, np.int64), np.array(items, np.int64),
                   np.array(ratings if ratings else [-1.0] * len(pairs)),
                   np.ones(len(pairs), bool))


def test_events_from_a_split_leave_out_unknown_users_and_items():
  split = {"user": np.array(["a", "b", "zz", "a"], object),
           "item": np.array(["x", "y", "x", "nope"], object),
           "rating": np.array([4.0, -1.0, 3.0, 5.0]),
           "click": np.array([1, 0, 1, 1])}
  ev = tb.Events.from_split(split, {"a": 0, "b": 1}, {"x": 0, "y": 1})
  assert ev.users.tolist() == [0, 1] and ev.items.tolist() == [0, 1]
  assert ev.consumed.tolist() == [True, False]
  assert ev.rated.tolist() == [True, False]


def test_recall_objective_excludes_the_items_fitted_on():
  # User 0 was fitted on item 0 and holds out items 0 and 1: item 0 is no
  # target (seen) and is excluded from the ranking, which is then [2, 1].
  # User 1 was fitted on item 1, holds out item 2, ranks [2, 0].
  scores = np.array([[5.0, 1.0, 3.0], [0.0, 9.0, 2.0]])
  fitted = _events([(0, 0), (1, 1)])
  heldout = _events([(0, 1), (0, 0), (1, 2)])
  objective = tb.recall_objective(1)
  assert objective(lambda u: scores[u], fitted, heldout) == 0.5
  assert tb.recall_objective(2)(lambda u: scores[u], fitted, heldout) == 1.0


def test_top_k_accuracy_objective_excludes_nothing():
  scores = np.array([[5.0, 1.0, 3.0], [0.0, 9.0, 2.0]])
  # User 0's item 0 is top-1 although it was fitted on: a hit.
  acc = tb.top_k_accuracy_objective(1)(
      lambda u: scores[u], _events([(0, 0)]), _events([(0, 0), (1, 2)]))
  assert acc == 0.5


def test_tune_chooses_on_validation_and_refits_on_the_whole_train():
  train = _events([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)])
  validation = _events([(2, 1)])
  full = _events([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)])
  seen = []
  by_neighbors = {1: 0.25, 2: 0.75, 3: 0.75}

  def objective(scores, fitted_on, heldout):
    # Only ever the tuning split: never the refit's events (nor eval).
    assert fitted_on is train and heldout is validation
    seen.append(scores(np.arange(3)).copy())
    return by_neighbors[len(seen)]

  grid = [{"neighbors": n} for n in by_neighbors]
  tuned = tb.tune(train, validation, full, 3, 3, objective, log=lambda m: None,
                  rankers={"item-kNN": grid}, raters={})
  knn = tuned["item-kNN"]
  # The best validation score; the first of a tie.
  assert knn["params"] == {"neighbors": 2}
  assert [t["validation"] for t in knn["trials"]] == [0.25, 0.75, 0.75]
  # Scored with the tuning split's fit, returned refitted on all of train.
  x_train = baselines.interaction_matrix(train.users, train.items, 3, 3)
  np.testing.assert_allclose(seen[1], x_train @ baselines.item_knn(x_train, 2))
  x_full = baselines.interaction_matrix(full.users, full.items, 3, 3)
  np.testing.assert_allclose(knn["scores"](np.arange(3)),
                             x_full @ baselines.item_knn(x_full, 2))
  assert "scores" not in tb.summary(tuned)["item-kNN"]


def test_rating_baseline_is_chosen_by_the_lowest_validation_rmse():
  # Ratings of 3 users × 2 items; a tiny λ fits train exactly and
  # overfits, a huge one predicts about the mean of the rest.
  train = _events([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)],
                  [5.0, 1.0, 5.0, 1.0, 5.0])
  validation = _events([(2, 1)], [1.0])
  tuned = tb.tune(train, validation, train, 3, 2, tb.recall_objective(1),
                  log=lambda m: None, rankers={},
                  raters={"biased MF": [{"factors": 1, "l2": 1000.0},
                                        {"factors": 1, "l2": 0.01}]})
  mf = tuned["biased MF"]
  errors = {t["params"]["l2"]: t["validation"] for t in mf["trials"]}
  assert mf["params"]["l2"] == min(errors, key=errors.get)
  assert mf["model"].l2 == mf["params"]["l2"]
  assert tb.pick([{"validation": 2.0}, {"validation": 1.0}],
                 lower_is_better=True) == {"validation": 1.0}


def test_an_unknown_baseline_is_an_error():
  with pytest.raises(ValueError, match="unknown ranking baseline 'SLIM'"):
    tb.fit_ranker("SLIM", {}, _events([(0, 0)]), 1, 1)
