"""The blessing decision: every check, with its numbers, must pass.

Checks come from four places: the config's absolute bounds and the largest
regression allowed against the serving model (judged by TFMA for the binary
and regression tasks' metrics, here for the retrieval and multilabel ones),
the popularity baseline the candidate must beat, infra validation, and the
structure of the evaluation itself (an empty eval split). A missing or NaN
value fails its check: the evaluator never blesses what it could not
measure. Metrics may be named by their legacy aliases (`rmse` for
`rating_rmse`, components.metrics.LEGACY_ALIASES).

One exception to "no value, no pass": a regression bound on a task the
serving model does not have (a task this candidate adds). There is nothing
to regress from, and failing would block every model that adds a task, so
the check passes when the candidate's own value was measured, and says why.
"""

from __future__ import annotations

import math
from typing import Any, Collection, Mapping, Optional, Sequence

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
          passed: Optional[bool] = None) -> dict[str, Any]:
  ok = _compare(value, op, bound) if passed is None else (
      passed and _finite(value))
  return {"metric": metric, "check": kind, "value": value, "op": op,
          "bound": bound, "passed": bool(ok)}


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
           serving_lacks: Optional[Mapping[str, str]] = None
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
  """
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
      if name in judged:
        checks.append(check(metric, "threshold (TFMA)", value, op, bound,
                            passed=(name, False) not in failed_by_tfma and
                            _compare(value, op, bound)))
      else:
        checks.append(check(metric, "threshold", value, op, bound))
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
      checks.append(check(metric, kind, value, ">=" if higher else "<=",
                          bound, passed))
  for metric in must_beat_popularity:
    checks.append(check(metric, "beats popularity",
                        value_of(candidate, metric),
                        ">" if metric_names.higher_is_better(metric) else "<",
                        value_of(popularity, metric)))
  checks.append(check("eval_users", "non-empty eval split", eval_users, ">",
                      0))
  if infra is not None:
    for c in infra["checks"]:
      checks.append({"metric": c["check"], "check": "infra validation",
                     "value": c["detail"], "op": "", "bound": "",
                     "passed": bool(c["passed"])})
  return checks


def verdict(checks: Sequence[Mapping[str, Any]]) -> str:
  return BLESSED if checks and all(c["passed"] for c in checks) else (
      NOT_BLESSED)
