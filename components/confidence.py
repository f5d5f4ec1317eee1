"""Confidence intervals by bootstrap: over users for retrieval, over
examples for the ranking heads, and paired differences against a baseline.

Why a bootstrap: a mean over ~1,000 users is an estimate. The demo was once
blessed for Recall@20 0.298 against popularity's 0.284 without saying
whether 0.014 is more than the noise of which users landed in eval; an
interval says it.

scipy.stats.bootstrap draws the resamples and takes the percentiles. What
it resamples is the *index* of the unit (user or example), and each
statistic gathers its own arrays with those indices, so

  - one resample is the same set of users for every model and metric of a
    run (one seed, one n): the candidate's and a baseline's means move
    together, and their difference is a paired bootstrap;
  - a statistic over a whole table (AUC of a multilabel head: every
    (example, label) pair) resamples examples, not pairs.

The percentile method (not BCa) because BCa's jackknife evaluates the
statistic once per unit (thousands of AUCs) and the percentile interval's
meaning is plain: the middle `confidence` share of the resampled values.

TFMA's own confidence intervals (Options.compute_confidence_intervals)
were not used for the heads: TFMA 0.52 takes no confidence level and no
seed (ConfidenceIntervalOptions has a method only, its level fixed at 95%),
and jackknifing its Python combiners multiplies the cost that made the
evaluator compute slices vectorized (components/ranking_eval.py).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np
import scipy.stats

# Elements of the largest [resamples, units] array one batch may gather.
_BATCH_ELEMENTS = 4_000_000
Interval = tuple[float, float]
NO_INTERVAL: Interval = (float("nan"), float("nan"))


@dataclasses.dataclass(frozen=True)
class Bootstrap:
  """How intervals are drawn (components.config.BootstrapConfig + seed)."""

  resamples: int = 1000
  confidence: float = 0.95
  seed: int = 0

  def interval(self, statistic: Callable[[np.ndarray], np.ndarray], n: int,
               width: int = 1) -> Interval:
    """The percentile interval of `statistic` over resamples of n units.

    Args:
      statistic: [resamples, n] unit indices -> [resamples] values (NaN
        where a resample leaves it undefined, e.g. AUC without a negative).
      n: how many units (users, examples) there are.
      width: array elements the statistic gathers per unit (to keep a
        batch of resamples within memory).

    Returns:
      (low, high); NaN, NaN with fewer than two units, or when the
      statistic is undefined in half the resamples or more. Resamples that
      leave it undefined (an AUC drawn without a negative: small slices
      only) are left out of the percentiles, i.e. the interval is
      conditional on the statistic existing.
    """
    if n < 2:
      return NO_INTERVAL
    batch = max(1, min(self.resamples, _BATCH_ELEMENTS // max(1, n * width)))
    with warnings.catch_warnings():
      # Undefined resamples are handled below; scipy's warning for them
      # speaks of BCa, which is not used.
      warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
      result = scipy.stats.bootstrap(
          (np.arange(n),), lambda idx, axis=-1: statistic(idx),
          n_resamples=self.resamples, batch=batch, vectorized=True,
          confidence_level=self.confidence, method="percentile",
          rng=np.random.default_rng(self.seed))
    low, high = result.confidence_interval
    if math.isfinite(low) and math.isfinite(high):
      return (float(low), float(high))
    values = result.bootstrap_distribution
    values = values[np.isfinite(values)]
    if 2 * len(values) <= self.resamples:
      return NO_INTERVAL
    tail = 100 * (1 - self.confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def mean_of(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
  """The mean of per-unit values (a per-user recall, a per-example loss)."""
  values = np.asarray(values, np.float64)
  return lambda idx: values[idx].mean(axis=-1)


def root_mean_of(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
  """sqrt of the mean of per-unit values (RMSE from squared errors)."""
  values = np.asarray(values, np.float64)
  return lambda idx: np.sqrt(values[idx].mean(axis=-1))


def ratio_of_sums(numerator: np.ndarray, denominator: np.ndarray
                  ) -> Callable[[np.ndarray], np.ndarray]:
  """Σ numerator / Σ denominator (the calibration ratio), NaN where 0."""
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)

  def statistic(idx: np.ndarray) -> np.ndarray:
    den = denominator[idx].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.where(den > 0, numerator[idx].sum(axis=-1) / den, np.nan)
  return statistic


def auc_of(scores: np.ndarray, labels: np.ndarray,
           unit_of: Optional[np.ndarray] = None
           ) -> Callable[[np.ndarray], np.ndarray]:
  """ROC AUC (ties count half, as components.metrics.auc) of resampled units.

  Args:
    scores, labels: one value per scored pair.
    unit_of: the unit (example) each pair belongs to; None: pair i is unit
      i. A resampled unit brings all its pairs, as many times as drawn.

  Written here rather than taken from a library because a resample only
  re-weights the units: the pairs are sorted once, and each resample's AUC
  is a weighted Mann-Whitney U over the sorted tie groups, O(pairs) instead
  of a sort per resample (sklearn's roc_auc_score would sort 1,000 times).
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  labels = np.asarray(labels).reshape(-1).astype(bool)
  if unit_of is None:
    unit_of = np.arange(len(scores))
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  units = np.asarray(unit_of, np.int64).reshape(-1)[order]
  positive = labels[order]
  # Tie group of each sorted pair; positives and negatives gathered apart
  # (each sorted, so a group's pairs are contiguous in each).
  group = np.cumsum(np.r_[False, sorted_scores[1:] != sorted_scores[:-1]])
  n_groups = int(group[-1]) + 1 if len(scores) else 0

  def split(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = group[mask]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else (
        np.zeros(0, np.int64))
    return units[mask], first, g[first]

  pos_units, pos_starts, pos_groups = split(positive)
  neg_units, neg_starts, neg_groups = split(~positive)

  def statistic(idx: np.ndarray) -> np.ndarray:
    idx = np.atleast_2d(idx)
    rows, n = idx.shape
    if not len(scores):
      return np.full(rows, np.nan)
    n_units = max(int(units.max()) + 1, n)
    counts = np.bincount(
        (idx + np.arange(rows)[:, None] * n_units).ravel(),
        minlength=rows * n_units).reshape(rows, n_units).astype(np.float32)
    # float32: counts and their group sums are small integers, exact.
    pos = np.add.reduceat(counts[:, pos_units], pos_starts, axis=1)
    neg = np.add.reduceat(counts[:, neg_units], neg_starts, axis=1)
    # Group sums of positives / negatives at every tie group (0 where none).
    pos_g = np.zeros((rows, n_groups), np.float64)
    neg_g = np.zeros((rows, n_groups), np.float64)
    pos_g[:, pos_groups] = pos
    neg_g[:, neg_groups] = neg
    below = np.cumsum(neg_g, axis=1) - neg_g
    u = (pos_g * (below + 0.5 * neg_g)).sum(axis=1)
    total = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.where(total > 0, u / total, np.nan)
  return statistic


def beats(difference: Interval, higher_is_better: bool,
          margin: float = 0.0) -> bool:
  """Whether a paired difference (candidate − baseline) clears `margin`
  in the better direction at the interval's level: its whole interval is
  on the better side, not only its point estimate."""
  low, high = difference
  if not (math.isfinite(low) and math.isfinite(high)):
    return False
  return low > margin if higher_is_better else high < -margin


def as_list(interval: Interval) -> list[Optional[float]]:
  """JSON-safe [low, high] (None for NaN)."""
  return [v if math.isfinite(v) else None for v in interval]


def from_list(value: Optional[Sequence[Optional[float]]]) -> Interval:
  """The inverse of as_list; a missing interval is NO_INTERVAL."""
  if not value or len(value) != 2:
    return NO_INTERVAL
  return tuple(float("nan") if v is None else float(v)  # type: ignore
               for v in value)


# Per-unit tables: {metric: [units] values, NaN where a unit has none (a
# user without a liked item has no liked recall)}, every model's table with
# the same units in the same order.
Table = dict[str, np.ndarray]


def mean_intervals(table: Table, bootstrap: Bootstrap
                   ) -> dict[str, list[Optional[float]]]:
  """{metric: [low, high]} of each metric's mean over the units that have
  it (the mean the evaluator reports)."""
  out = {}
  for metric, values in sorted(table.items()):
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    out[metric] = as_list(bootstrap.interval(mean_of(values), len(values)))
  return out


def paired_differences(candidate: Table, baseline: Table,
                       bootstrap: Bootstrap) -> dict[str, dict[str, Any]]:
  """{metric: {difference, interval, units}} of candidate − baseline.

  Over the units both have a value for, each resample drawing the same
  units for both: what varies is the per-unit gain, not two independent
  means (a paired bootstrap, far narrower when the models agree on which
  users are easy).
  """
  out = {}
  for metric in sorted(set(candidate) & set(baseline)):
    a = np.asarray(candidate[metric], np.float64)
    b = np.asarray(baseline[metric], np.float64)
    both = ~(np.isnan(a) | np.isnan(b))
    gain = a[both] - b[both]
    out[metric] = {
        "difference": float(gain.mean()) if len(gain) else None,
        "interval": as_list(bootstrap.interval(mean_of(gain), len(gain))),
        "units": int(len(gain))}
  return out
