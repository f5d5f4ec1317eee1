"""Distances between two statistics of one feature, as TFDV measures drift.

Two datasets' statistics of a feature (components/statistics_gen.py) are
compared the way TFDV's drift and skew comparators do, so a threshold a
TFX user already tuned means the same here:

  - a string feature by the L-infinity distance: the largest difference in
    any one value's share of the feature's values, from the rank
    histograms (the 1,000 most frequent values; a value beyond them counts
    as 0 on that side, as in TFDV). 0.1 means some value's share moved by
    ten percentage points;
  - a numeric feature by the Jensen–Shannon divergence (base 2, in [0, 1])
    of the equal-width histograms, both spread over the union of their
    bucket boundaries first (mass uniform within a bucket), since two runs
    bucket different ranges.

Pure functions of the protos: the ExampleValidator applies them to the
previous run (drift) and to train against eval (skew).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy.spatial import distance
from tensorflow_metadata.proto.v0 import statistics_pb2

L_INFINITY = "l_infinity"
JENSEN_SHANNON = "jensen_shannon_divergence"

_Stats = statistics_pb2.FeatureNameStatistics


def is_categorical(stats: _Stats) -> bool:
  return stats.WhichOneof("stats") == "string_stats"


def metric_of(stats: _Stats) -> str:
  return L_INFINITY if is_categorical(stats) else JENSEN_SHANNON


def value_shares(stats: _Stats) -> dict[str, float]:
  """Each ranked value's share of all the feature's values."""
  total = stats.string_stats.common_stats.tot_num_values
  if not total:
    return {}
  return {b.label: b.sample_count / total
          for b in stats.string_stats.rank_histogram.buckets}


def l_infinity(current: _Stats, baseline: _Stats) -> float:
  a, b = value_shares(current), value_shares(baseline)
  return max((abs(a.get(v, 0.0) - b.get(v, 0.0)) for v in set(a) | set(b)),
             default=0.0)


def _standard_histogram(stats: _Stats) -> Optional[statistics_pb2.Histogram]:
  for h in stats.num_stats.histograms:
    if h.type == statistics_pb2.Histogram.STANDARD and h.buckets:
      return h
  return None


def rebucket(buckets: Sequence[tuple[float, float, float]],
             edges: Sequence[float]) -> np.ndarray:
  """Counts of (low, high, count) buckets over the intervals of `edges`.

  A bucket's count is spread over the intervals it overlaps in proportion
  to the overlap; a zero-width bucket (every value equal) goes whole to
  the interval starting at its value (the last one, at the top edge).
  """
  out = np.zeros(max(len(edges) - 1, 1))
  for low, high, count in buckets:
    if high <= low:
      i = int(np.searchsorted(edges, low, side="right")) - 1
      out[min(max(i, 0), len(out) - 1)] += count
      continue
    for i in range(len(edges) - 1):
      overlap = min(high, edges[i + 1]) - max(low, edges[i])
      if overlap > 0:
        out[i] += count * overlap / (high - low)
  return out


def jensen_shannon(current: _Stats, baseline: _Stats) -> float:
  a, b = _standard_histogram(current), _standard_histogram(baseline)
  if a is None or b is None:
    # One side has no values at all: as far apart as two can be, unless
    # neither has any.
    return 0.0 if a is None and b is None else 1.0
  parts = [[(x.low_value, x.high_value, x.sample_count) for x in h.buckets]
           for h in (a, b)]
  edges = sorted({v for p in parts for low, high, _ in p for v in (low, high)})
  p, q = (rebucket(part, edges) for part in parts)
  if p.sum() == 0 or q.sum() == 0:
    return 0.0 if p.sum() == q.sum() else 1.0
  # scipy gives the distance (the square root of the divergence).
  d = float(distance.jensenshannon(p, q, base=2) ** 2)
  return 0.0 if math.isnan(d) else d


def feature_distance(current: _Stats, baseline: _Stats) -> tuple[str, float]:
  """(metric, value): L-infinity for strings, JS divergence for numbers."""
  if is_categorical(current) and is_categorical(baseline):
    return L_INFINITY, l_infinity(current, baseline)
  if not is_categorical(current) and not is_categorical(baseline):
    return JENSEN_SHANNON, jensen_shannon(current, baseline)
  return metric_of(current), 1.0  # the type changed: nothing in common
