"""The blessing decision: every check, with its numbers, must pass.

Checks come from four places: the config's absolute bounds and the largest
regression allowed against the serving model (judged by TFMA for the ranking
metrics, here for the retrieval metrics), the popularity baseline the
candidate must beat, infra validation, and the structure of the evaluation
itself (an empty eval split). A missing or NaN value fails its check: the
evaluator never blesses what it could not measure.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from components import metrics as M
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


def decide(candidate: Mapping[str, Any], serving: Optional[Mapping[str, Any]],
           popularity: Mapping[str, Any], thresholds: Mapping[str, Any],
           max_regression: Mapping[str, float],
           must_beat_popularity: Sequence[str],
           tfma_failures: Sequence[Mapping[str, Any]] = (),
           infra: Optional[Mapping[str, Any]] = None,
           eval_users: int = 0) -> list[dict[str, Any]]:
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
  """
  failed_by_tfma = {(f["metric"], f["is_diff"]) for f in tfma_failures}
  checks = []
  for metric, bounds in sorted(thresholds.items()):
    value = candidate.get(metric, float("nan"))
    for op, bound in ((">=", bounds.min), ("<=", bounds.max)):
      if bound is None:
        continue
      if metric in M.RANKING_METRICS:
        checks.append(check(metric, "threshold (TFMA)", value, op, bound,
                            passed=(metric, False) not in failed_by_tfma and
                            _compare(value, op, bound)))
      else:
        checks.append(check(metric, "threshold", value, op, bound))
  if serving is not None:
    for metric, allowed in sorted(max_regression.items()):
      value, base = candidate.get(metric), serving.get(metric)
      higher = M.higher_is_better(metric)
      bound = (base - allowed if higher else base + allowed) if _finite(
          base) else float("nan")
      kind = "regression vs serving" + (
          " (TFMA)" if metric in M.RANKING_METRICS else "")
      passed = None
      if metric in M.RANKING_METRICS:
        passed = (metric, True) not in failed_by_tfma and _compare(
            value, ">=" if higher else "<=", bound)
      checks.append(check(metric, kind, value, ">=" if higher else "<=",
                          bound, passed))
  for metric in must_beat_popularity:
    checks.append(check(metric, "beats popularity",
                        candidate.get(metric, float("nan")),
                        ">" if M.higher_is_better(metric) else "<",
                        popularity.get(metric, float("nan"))))
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
