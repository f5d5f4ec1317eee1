"""Metric names: which names exist, which way is better, the aliases.

Retrieval metrics are `recall_at_K`, `ndcg_at_K`, ... (K one of
evaluator.ks) and a few fixed names; a ranking task's metrics are named
`<task>_<metric>` after the model's tasks (TASK_METRICS per task kind); the
unprefixed names of the default tasks (`rmse`, `mae` of the task named
rating; `auc`, `log_loss` of the task named like) stay as aliases
(LEGACY_ALIASES), so older configs and reports keep working. The formulas
are components/metrics.py's. Apart from them because the config validates
names at load (components/config.py): the data steps' cache keys follow the
code they import, and a change to a formula must not invalidate ExampleGen.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence


# Metric names. Retrieval metrics: recall_at_K, ... (K one of evaluator.ks),
# and the fixed names below. A ranking task's metrics: `<task>_<metric>`.
RETRIEVAL_AT_K = ("recall", "ndcg", "hit_rate", "liked_recall",
                  "graded_ndcg")
RETRIEVAL_FIXED = ("mrr", "mean_popularity_at_10", "catalog_coverage_at_10")
_RETRIEVAL_AT_K = re.compile(
    r"(" + "|".join(RETRIEVAL_AT_K) + r")_at_([0-9]+)")
MULTILABEL_K = 5  # interest_recall_at_5: the event item's labels in the top 5
TASK_METRICS = {
    "regression": ("rmse", "mae"),
    "binary": ("auc", "log_loss", "calibration"),
    "multilabel": ("auc", f"recall_at_{MULTILABEL_K}"),
}
# Kinds whose metrics TFMA judges (components.ranking_eval); a multilabel
# task's are computed by the vectorized path only (ranking_eval says why).
SCALAR_KINDS = ("regression", "binary")
# The unprefixed names of the default tasks (rating, like), kept as aliases.
LEGACY_ALIASES = {"rmse": "rating_rmse", "mae": "rating_mae",
                  "auc": "like_auc", "log_loss": "like_log_loss"}
_LOWER_IS_BETTER = ("rmse", "mae", "log_loss")
# Best at 1, not at either end: bounds only, no "better" to regress from.
_TWO_SIDED = ("calibration",)


def canonical(metric: str) -> str:
  """A metric's own name (an alias resolved: `rmse` -> `rating_rmse`)."""
  return LEGACY_ALIASES.get(metric, metric)


def with_aliases(metrics: Mapping[str, Any]) -> dict[str, Any]:
  """`metrics` plus the legacy alias of every canonical name present."""
  out = dict(metrics)
  for alias, name in LEGACY_ALIASES.items():
    if name in out and alias not in out:
      out[alias] = out[name]
  return out


def task_metric_names(task: str, kind: str) -> list[str]:
  """The metric names of one ranking task ([] for retrieval)."""
  return [f"{task}_{m}" for m in TASK_METRICS.get(kind, ())]


def _ends_with(metric: str, suffixes: Sequence[str]) -> bool:
  metric = canonical(metric)
  return any(metric == s or metric.endswith("_" + s) for s in suffixes)


def higher_is_better(metric: str) -> bool:
  """Direction of a metric, for regression checks and popularity."""
  if metric == "mean_popularity_at_10":
    return False
  return not _ends_with(metric, _LOWER_IS_BETTER)


def has_direction(metric: str) -> bool:
  """False for metrics that are best at a value, not at an end."""
  return not _ends_with(metric, _TWO_SIDED)


def is_retrieval_metric(metric: str) -> bool:
  return metric in RETRIEVAL_FIXED or bool(_RETRIEVAL_AT_K.fullmatch(metric))


def metric_name_problem(metric: str, ks: Optional[Sequence[int]] = None,
                        tasks: Optional[Mapping[str, str]] = None
                        ) -> Optional[str]:
  """Why `metric` names nothing the Evaluator reports; None if it does.

  Args:
    metric: a name from the evaluator config.
    ks: evaluator.ks, which a retrieval metric's K must be one of; None:
      any K.
    tasks: task name -> kind; None checks the name's shape only (the
      evaluator section alone does not know the trainer's tasks).
  """
  if metric in RETRIEVAL_FIXED:
    return None
  match = _RETRIEVAL_AT_K.fullmatch(metric)
  if match:
    k = int(match.group(2))
    return None if ks is None or k in ks else (
        f"K={k} is not one of evaluator.ks {sorted(ks)}")
  if metric in LEGACY_ALIASES:
    problem = metric_name_problem(LEGACY_ALIASES[metric], ks, tasks)
    return problem and f"{metric} is {LEGACY_ALIASES[metric]}: {problem}"
  suffixes = sorted({m for ms in TASK_METRICS.values() for m in ms},
                    key=len, reverse=True)
  for suffix in suffixes:
    task = metric[:-len(suffix) - 1]
    if not (metric.endswith("_" + suffix) and task):
      continue
    if tasks is None:
      return None
    if task not in tasks:
      return f"no task named {task}"
    kind = tasks[task]
    names = task_metric_names(task, kind)
    if metric in names:
      return None
    if not names:
      return (f"task {task} is a {kind} task: name its metrics without the "
              f"task (recall_at_K, ndcg_at_K, ...)")
    return f"task {task} is {kind}: its metrics are {', '.join(names)}"
  return ("unknown metric; retrieval: " +
          ", ".join(f"{m}_at_K" for m in RETRIEVAL_AT_K) +
          " (K in evaluator.ks), " + ", ".join(RETRIEVAL_FIXED) +
          "; ranking: <task>_<metric> (regression: rmse, mae; binary: auc, "
          "log_loss, calibration; multilabel: auc, "
          f"recall_at_{MULTILABEL_K})")
