"""Classical baselines tuned on a validation split, the way mtrec is tuned.

Why: a comparison is only as honest as its weakest opponent's settings.
EASE with Steck's λ for MovieLens-20M, or a biased MF with round-number
factors, is not the best those models do on another dataset, while mtrec's
defaults were searched (`mtrec tune`). So every baseline gets a grid, scored
the way `mtrec tune` scores mtrec: ExampleGen runs once more on the same data
with `example_gen.validation_fraction` (under temporal_user each user's
events just before their eval ones, under random a hash band beside eval's;
eval's events are the same either way, and none of them is read here). Each
setting is fitted on the remaining training events and scored on the
validation events by the protocol's own metric; the best setting is refitted
on the protocol's whole training split, as the shipped mtrec config is
trained on it, and only then does the protocol measure it on eval.

Models: EASE (λ) and item-kNN (neighbors kept per item) rank items; biased
MF (factors, λ) predicts ratings.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from benchmarks import baselines
from benchmarks.suite import common

# The share of each user's (or, under a random split, of all) events that
# `mtrec tune` validates on (docs/benchmarks.md, "Hyperparameter search").
VALIDATION_FRACTION = 0.1
# Wide enough that no protocol's choice lies on an edge of its grid on
# ml-latest-small (the random split wants a far stronger EASE penalty and
# more neighbors than the temporal one).
RANKERS = {
    "EASE": [{"l2": v} for v in (50.0, 150.0, 500.0, 1500.0, 5000.0,
                                 15000.0, 50000.0)],
    "item-kNN": [{"neighbors": v} for v in (10, 20, 50, 100, 200)],
}
RATERS = {
    "biased MF": [{"factors": f, "l2": v} for f in (32, 64, 128)
                  for v in (5.0, 10.0, 20.0)],
}
# EASE's Gram matrix is items × items in float64: skip it past this many.
EASE_MAX_ITEMS = 20_000

ScoreFn = Callable[[np.ndarray], np.ndarray]  # user rows -> [n, items]


@dataclasses.dataclass(frozen=True)
class Events:
  """Interactions as rows of one user and one item vocabulary."""
  users: np.ndarray     # [n] int64
  items: np.ndarray     # [n] int64
  ratings: np.ndarray   # [n] float64, < 0 where the event has no rating
  consumed: np.ndarray  # [n] bool: a retrieval positive

  @classmethod
  def from_split(cls, split: Mapping[str, np.ndarray],
                 user_of: Mapping[str, int],
                 item_of: Mapping[str, int]) -> "Events":
    """An ExampleGen split read by common.read_split; events of users or
    items outside the vocabularies are left out."""
    keep = np.array([u in user_of and i in item_of for u, i in zip(
        split["user"], split["item"])], bool)
    return cls(
        np.array([user_of[u] for u in split["user"][keep]], np.int64),
        np.array([item_of[i] for i in split["item"][keep]], np.int64),
        np.asarray(split["rating"], np.float64)[keep],
        (np.asarray(split["click"]) > 0)[keep])

  @property
  def rated(self) -> np.ndarray:
    return self.ratings >= 0


def validation_splits(config: Any, work_dir: str,
                      log: Callable[[str], None] = print
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(train, validation) of ExampleGen rerun with a validation split."""
  example_gen = config.example_gen.model_copy(
      update={"validation_fraction": VALIDATION_FRACTION})
  ran = common.run_steps(
      config.model_copy(update={"example_gen": example_gen}),
      os.path.join(work_dir, "baseline_validation"), ("ExampleGen",), log)
  examples = ran["uris"].examples
  return (common.read_split(examples, "train"),
          common.read_split(examples, "validation"))


def fit_ranker(name: str, params: Mapping[str, Any], events: Events,
               num_users: int, num_items: int) -> ScoreFn:
  """A ranking baseline fitted on `events`' consumed events."""
  x = baselines.interaction_matrix(
      events.users[events.consumed], events.items[events.consumed],
      num_users, num_items)
  if name == "EASE":
    # Over the items seen in training (the Gram matrix of the rest is
    # singular at small λ); the others rank last.
    cols = np.flatnonzero(x.sum(axis=0) > 0)
    xs = np.ascontiguousarray(x[:, cols])
    b = baselines.ease(xs, params["l2"]).astype(np.float32)

    def ease_scores(u: np.ndarray) -> np.ndarray:
      out = np.full((len(u), num_items), -np.inf, np.float32)
      out[:, cols] = xs[u] @ b
      return out
    return ease_scores
  if name == "item-kNN":
    s = baselines.item_knn(x, params["neighbors"])
    return lambda u: x[u] @ s
  raise ValueError(f"unknown ranking baseline {name!r}")


def fit_rater(name: str, params: Mapping[str, Any], events: Events,
              num_users: int, num_items: int,
              seed: int = 42) -> baselines.BiasedMF:
  """A rating baseline with `params`, its factors initialised from `seed`."""
  if name != "biased MF":
    raise ValueError(f"unknown rating baseline {name!r}")
  rated = events.rated
  return baselines.BiasedMF(factors=params["factors"], l2=params["l2"],
                            seed=seed).fit(
      events.users[rated], events.items[rated], events.ratings[rated],
      num_users, num_items)


def rmse(model: baselines.BiasedMF, events: Events) -> float:
  rated = events.rated
  error = model.predict(events.users[rated], events.items[rated]) - (
      events.ratings[rated])
  return float(np.sqrt(np.mean(np.square(error))))


def pick(trials: Sequence[Mapping[str, Any]], lower_is_better: bool
         ) -> Mapping[str, Any]:
  """The trial with the best `validation` score; the first on a tie."""
  sign = 1.0 if lower_is_better else -1.0
  return min(trials, key=lambda t: sign * t["validation"])


def tune(train: Events, validation: Events, full_train: Events,
         num_users: int, num_items: int,
         ranking_objective: Callable[[ScoreFn, Events, Events], float],
         log: Callable[[str], None] = print,
         rankers: Mapping[str, Sequence[Mapping[str, Any]]] = RANKERS,
         raters: Mapping[str, Sequence[Mapping[str, Any]]] = RATERS
         ) -> dict[str, dict[str, Any]]:
  """Every baseline's grid on validation, the winner refitted on full_train.

  Args:
    train, validation: the tuning split (validation events are not in
      train); full_train: the protocol's training split (train ∪
      validation), on which each chosen setting is refitted.
    ranking_objective: (score function, the events it was fitted on,
      held-out events) -> the protocol's retrieval metric, higher better.

  Returns:
    {name: {"params", "trials" [{params, validation}], "metric",
    "tune_seconds", and "scores" (a ranker's ScoreFn) or "model" (a
    rater's BiasedMF), both refitted on full_train}}.
  """
  def search(name, grid, fit, score, lower_is_better, metric, key):
    """Scores every setting of `grid` fitted on train; refits the best."""
    start = time.time()
    trials = []
    for params in grid:
      value = score(fit(name, params, train, num_users, num_items))
      trials.append({"params": dict(params), "validation": value})
      log(f"  {name} {params}: validation {metric} {value:.4f}")
    best = pick(trials, lower_is_better)["params"]
    return {"params": best, "trials": trials, "metric": metric,
            "tune_seconds": round(time.time() - start, 1),
            key: fit(name, best, full_train, num_users, num_items)}

  out: dict[str, dict[str, Any]] = {}
  seen_items = int(np.unique(full_train.items[full_train.consumed]).size)
  for name, grid in rankers.items():
    if name == "EASE" and seen_items > EASE_MAX_ITEMS:
      log(f"  {name}: skipped, {seen_items:,} items > {EASE_MAX_ITEMS:,}")
      continue
    out[name] = search(
        name, grid, fit_ranker,
        lambda scores: ranking_objective(scores, train, validation),
        False, "retrieval", "scores")
  for name, grid in raters.items():
    out[name] = search(name, grid, fit_rater,
                       lambda model: rmse(model, validation), True, "rmse",
                       "model")
  return out


def top_k_accuracy_objective(k: int
                             ) -> Callable[[ScoreFn, Events, Events], float]:
  """Protocol 1's metric: top-k accuracy, training items not excluded."""
  def objective(scores: ScoreFn, fitted_on: Events, heldout: Events) -> float:
    del fitted_on  # nothing is excluded under this protocol
    c = heldout.consumed
    return baselines.top_k_categorical_accuracy(
        scores, heldout.users[c], heldout.items[c], k)
  return objective


def recall_objective(k: int) -> Callable[[ScoreFn, Events, Events], float]:
  """Protocol 2's metric: Recall@k per user with the items the model was
  fitted on excluded (components/metrics.py), averaged over users."""
  from components import metrics as M  # pylint: disable=g-import-not-at-top

  def objective(scores: ScoreFn, fitted_on: Events, heldout: Events) -> float:
    c = heldout.consumed
    relevant: dict[int, set] = {}
    for u, i in zip(heldout.users[c], heldout.items[c]):
      relevant.setdefault(int(u), set()).add(int(i))
    seen: dict[int, list] = {}
    f = fitted_on.consumed
    for u, i in zip(fitted_on.users[f], fitted_on.items[f]):
      seen.setdefault(int(u), []).append(int(i))
    # As the evaluator: an item the user consumed in training is no target.
    relevant = {u: items - set(seen.get(u, ())) for u, items in
                relevant.items()}
    users = np.array([u for u, items in relevant.items() if items], np.int64)
    recalls = []
    for start in range(0, users.size, 256):
      block = users[start:start + 256]
      top = M.top_k_excluding(scores(block),
                              [seen.get(int(u), []) for u in block], k)
      recalls += [M.recall_at_k(list(row), relevant[int(u)], k)
                  for u, row in zip(block, top)]
    return float(np.mean(recalls)) if recalls else float("nan")
  return objective


def summary(tuned: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """What the report shows of the tuning: grids, scores, choices."""
  return {name: {k: v for k, v in t.items() if k not in ("scores", "model")}
          for name, t in tuned.items()}
