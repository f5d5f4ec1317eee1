"""The blessing decision: every check, with its numbers, must pass.

Checks come from four places: the config's absolute bounds and the largest
regression allowed against the serving model (judged by TFMA for the binary
and regression tasks' metrics, here for the retrieval and multilabel ones),
the popularity baseline the candidate must beat, infra validation, and the
structure of the evaluation itself (an empty eval split). A missing or NaN
value fails its check: the evaluator never blesses what it could not
measure. Metrics may be named by their legacy aliases (`rmse` for
`rating_rmse`, components.metrics.LEGACY_ALIASES).

"Beats popularity" is decided on a paired bootstrap over users
(components.confidence): the interval of candidate − popularity, at
evaluator.bootstrap.confidence, must lie wholly on the better side of
evaluator.bootstrap.beat_margin (an absolute difference, in the metric's
own units, like max_regression). A candidate ahead on the point estimate
whose interval includes no gain FAILS the check, so it is not blessed: a
gain the eval users cannot tell from noise is not evidence that it beats
the baseline. The other checks keep their point-estimate rules (bounds and
the largest regression allowed are margins a user set, in the same units)
and carry an interval for reading: the candidate's own, or for a
regression against serving on a retrieval metric, the paired difference.

One exception to "no value, no pass": a regression bound on a task the
serving model does not have (a task this candidate adds). There is nothing
to regress from, and failing would block every model that adds a task, so
the check passes when the candidate's own value was measured, and says why.
"""

from __future__ import annotations

import math
from typing import Any, Collection, Mapping, Optional, Sequence

from components import confidence
from components import metric_names
from contracts import evaluation_files

BLESSED = evaluation_files.BLESSED
NOT_BLESSED = evaluation_files.NOT_BLESSED


def _finite(x: Any) -> bool:
  return isinstance(x, (int, float)) and not isinstance(
      x, bool) and math.isfinite(x)


def _compare(value: Any, op: str, bound: Any) -> bool:
  if not (_finite(value) and _finite(bound)):
    return False
  return {">=": value >= bound, "<=": value <= bound, ">": value > bound,
          "<": value < bound}[op]


def check(metric: str, kind: str, value: Any, op: str, bound: Any,
          passed: Optional[bool] = None,
          interval: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
  ok = _compare(value, op, bound) if passed is None else (
      passed and _finite(value))
  out = {"metric": metric, "check": kind, "value": value, "op": op,
         "bound": bound, "passed": bool(ok)}
  if interval is not None:
    out["interval"] = dict(interval)
  return out


def interval_of(what: str, bounds: Any, level: float
                ) -> Optional[dict[str, Any]]:
  """A check's interval: of `what` (the candidate's value, or a
  difference), [low, high] at `level`; None when there is none."""
  low, high = confidence.from_list(bounds)
  if not (_finite(low) and _finite(high)):
    return None
  return {"of": what, "low": low, "high": high, "level": level}


# The metrics TFMA judges when the caller does not say: the old default
# tasks' (rating regression, like binary).
LEGACY_TFMA_METRICS = tuple(
    metric_names.task_metric_names("rating", "regression") +
    metric_names.task_metric_names("like", "binary"))


def decide(candidate: Mapping[str, Any], serving: Optional[Mapping[str, Any]],
           popularity: Mapping[str, Any], thresholds: Mapping[str, Any],
           max_regression: Mapping[str, float],
           must_beat_popularity: Sequence[str],
           tfma_failures: Sequence[Mapping[str, Any]] = (),
           infra: Optional[Mapping[str, Any]] = None,
           eval_users: int = 0,
           tfma_metrics: Optional[Collection[str]] = None,
           serving_lacks: Optional[Mapping[str, str]] = None,
           intervals: Optional[Mapping[str, Any]] = None,
           differences: Optional[Mapping[str, Mapping[str, Any]]] = None,
           confidence_level: float = 0.95,
           beat_margin: float = 0.0
           ) -> list[dict[str, Any]]:
  """Returns every check; the model is blessed when all pass.

  Args:
    candidate, serving, popularity: overall metrics of each model (serving
      is None when nothing is served yet).
    thresholds: metric -> bounds with optional `min` / `max`.
    max_regression: metric -> largest allowed worsening vs the serving model.
    must_beat_popularity: metrics on which the candidate must be better.
    tfma_failures: TFMA's validation failures (ranking metrics).
    infra: the infra validator's result.
    eval_users: users evaluated for retrieval.
    tfma_metrics: the metric names TFMA judged (None: the legacy tasks').
    serving_lacks: metric -> why the serving model has no value for it (a
      task it does not have).
    intervals: metric -> the candidate's [low, high] (shown beside
      thresholds and TFMA's regression checks).
    differences: baseline ("popularity", "serving") -> metric ->
      {difference, interval, units}: the paired bootstrap of candidate −
      baseline over users. "Beats popularity" passes only on an interval
      wholly past `beat_margin`; without one it fails.
    confidence_level: the level of those intervals (for the reader).
    beat_margin: the gain the interval must clear (absolute).
  """
  own = dict(intervals or {})
  paired = dict(differences or {})
  level = f"{confidence_level:.0%}"
  judged = set(LEGACY_TFMA_METRICS if tfma_metrics is None else tfma_metrics)
  lacks = dict(serving_lacks or {})
  failed_by_tfma = {(metric_names.canonical(f["metric"]), f["is_diff"])
                    for f in tfma_failures}

  def value_of(metrics: Mapping[str, Any], metric: str) -> Any:
    return metrics.get(metric, metrics.get(metric_names.canonical(metric),
                                           float("nan")))

  checks = []
  for metric, bounds in sorted(thresholds.items()):
    value = value_of(candidate, metric)
    name = metric_names.canonical(metric)
    for op, bound in ((">=", bounds.min), ("<=", bounds.max)):
      if bound is None:
        continue
      spread = interval_of("candidate", own.get(metric, own.get(name)),
                           confidence_level)
      if name in judged:
        checks.append(check(metric, "threshold (TFMA)", value, op, bound,
                            passed=(name, False) not in failed_by_tfma and
                            _compare(value, op, bound), interval=spread))
      else:
        checks.append(check(metric, "threshold", value, op, bound,
                            interval=spread))
  if serving is not None:
    for metric, allowed in sorted(max_regression.items()):
      name = metric_names.canonical(metric)
      value = value_of(candidate, metric)
      if name in lacks:
        checks.append({"metric": metric,
                       "check": f"regression vs serving: {lacks[name]}",
                       "value": value, "op": "", "bound": "",
                       "passed": _finite(value)})
        continue
      base = serving.get(metric, serving.get(name))
      higher = metric_names.higher_is_better(metric)
      bound = (base - allowed if higher else base + allowed) if _finite(
          base) else float("nan")
      kind = "regression vs serving" + (" (TFMA)" if name in judged else "")
      passed = None
      if name in judged:
        passed = (name, True) not in failed_by_tfma and _compare(
            value, ">=" if higher else "<=", bound)
      diff = paired.get("serving", {}).get(name)
      spread = interval_of("candidate − serving", diff.get("interval"),
                           confidence_level) if diff else interval_of(
                               "candidate", own.get(metric, own.get(name)),
                               confidence_level)
      checks.append(check(metric, kind, value, ">=" if higher else "<=",
                          bound, passed, interval=spread))
  for metric in must_beat_popularity:
    # value: the point difference; passed: its whole interval past the
    # margin (components.confidence.beats).
    higher = metric_names.higher_is_better(metric)
    diff = paired.get("popularity", {}).get(metric_names.canonical(metric))
    diff = diff or {}
    gain = diff.get("difference")
    checks.append(check(
        metric, f"beats popularity (paired bootstrap, {level})",
        float("nan") if gain is None else gain, ">" if higher else "<",
        beat_margin if higher or not beat_margin else -beat_margin,
        passed=confidence.beats(confidence.from_list(diff.get("interval")),
                                higher, beat_margin),
        interval=interval_of("candidate − popularity", diff.get("interval"),
                             confidence_level)))
  checks.append(check("eval_users", "non-empty eval split", eval_users, ">",
                      0))
  if infra is not None:
    for c in infra["checks"]:
      checks.append({"metric": c["check"], "check": "infra validation",
                     "value": c["detail"], "op": "", "bound": "",
                     "passed": bool(c["passed"])})
  return checks


def data_checks(anomalies: Mapping[str, Any]) -> list[dict[str, Any]]:
  """The ExampleValidator's verdict on the data, as checks.

  One check that no anomaly of a blocking kind (data_validation.blocking)
  was found, then one failed check per blocking anomaly, naming its
  feature and saying what moved. Non-blocking anomalies are in the
  report's data section only: they do not decide the blessing.
  """
  kinds = ", ".join(anomalies.get("blocking_kinds", [])) or "none"
  blocking = [a for a in anomalies.get("anomalies", []) if a.get("blocking")]
  checks = [check("data_anomalies", f"data validation (blocking: {kinds})",
                  len(blocking), "<=", 0)]
  for a in blocking:
    checks.append({"metric": a["feature"] or a["split"],
                   "check": f"{a['kind']} anomaly in {a['split']}: "
                            f"{a['description']}",
                   "value": a.get("value", a["short"]),
                   "op": "<=" if "threshold" in a else "",
                   "bound": a.get("threshold", ""), "passed": False})
  return checks


def verdict(checks: Sequence[Mapping[str, Any]]) -> str:
  return BLESSED if checks and all(c["passed"] for c in checks) else (
      NOT_BLESSED)
