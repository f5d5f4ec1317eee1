"""Blessing decisions: every check listed, NaN never passes."""

import math

from components import evaluator
from pipeline.config import Threshold


def test_decide_lists_every_check_with_numbers():
  checks = evaluator.decide(
      {"rmse": 0.9, "recall_at_20": 0.10},
      {"recall_at_20": 0.12},
      {"rmse": Threshold(max=1.0), "recall_at_20": Threshold(min=0.05)},
      ["recall_at_20"])
  assert [(c["metric"], c["check"], c["op"], c["bound"], c["passed"])
          for c in checks] == [
              ("recall_at_20", "threshold", ">=", 0.05, True),
              ("rmse", "threshold", "<=", 1.0, True),
              ("recall_at_20", "beats popularity", ">", 0.12, False)]


def test_nan_and_missing_metrics_fail():
  checks = evaluator.decide({"rmse": float("nan")}, {},
                            {"rmse": Threshold(max=1.0),
                             "auc": Threshold(min=0.5)}, ["recall_at_20"])
  assert not any(c["passed"] for c in checks)
  assert math.isnan(checks[1]["value"])
