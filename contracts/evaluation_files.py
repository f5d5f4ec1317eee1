"""The files inside the Evaluator's artifacts, for everyone who reads them.

The `evaluation` artifact (ModelEvaluation) holds the metrics, the reports a
person reads (and the KFP UI renders) and the history page; the `blessing`
artifact (ModelBlessing) holds the verdict, both as JSON and as TFX's empty
marker file named after it, which is what the Pusher checks. The Trainer
leaves its per-epoch losses in the Model artifact for the report.
"""

from __future__ import annotations

import json
import os
from typing import Any

# In the evaluation artifact.
METRICS_FILE = "metrics.json"  # candidate, baselines, slices, checks
KFP_METRICS_FILE = "kfp_metrics.json"  # the candidate's scalars, for KFP
REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"
HISTORY_HTML = "history.html"
# In the blessing artifact.
BLESSING_FILE = "blessing.json"
BLESSED = "BLESSED"  # marker files, as TFX's ModelBlessing
NOT_BLESSED = "NOT_BLESSED"
# In the Model artifact, written by the Trainer.
TRAINING_HISTORY_FILE = "training_history.json"


def is_blessed(blessing_uri: str) -> bool:
  return os.path.exists(os.path.join(blessing_uri, BLESSED))


def read_metrics(evaluation_uri: str) -> dict[str, Any]:
  with open(os.path.join(evaluation_uri, METRICS_FILE)) as f:
    loaded: dict[str, Any] = json.load(f)
  return loaded


def read_blessing(blessing_uri: str) -> dict[str, Any]:
  with open(os.path.join(blessing_uri, BLESSING_FILE)) as f:
    loaded: dict[str, Any] = json.load(f)
  return loaded
