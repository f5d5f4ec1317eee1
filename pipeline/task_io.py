"""What a KFP component body does around its step, wherever it runs.

Config sections arrive as JSON parameters and are validated by the
component body (contracts.config.parse_section), so a bad value fails the
task with the key named. After the step, the KFP artifact objects get the step's
metadata.json (type, fingerprint, summary) as their KFP metadata, the
candidate's scalar metrics become KFP metrics, and the evaluator's reports
become the HTML and Markdown artifacts the Kubeflow UI renders.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from typing import Any

from contracts import artifacts
from contracts import evaluation_files

# Written by components/evaluator.py inside the evaluation artifact; when a
# version of it writes none, write_reports renders the blessing's checks.
_HTML_REPORT = evaluation_files.REPORT_HTML
_MARKDOWN_REPORT = evaluation_files.SUMMARY_MD
_KFP_METRICS = evaluation_files.KFP_METRICS_FILE
_BLESSING_FILE = evaluation_files.BLESSING_FILE


def describe(*outputs: Any) -> None:
  """Copies each output's metadata.json into its KFP artifact metadata."""
  for output in outputs:
    meta = artifacts.read_metadata(output.path)
    output.metadata.update({
        "mtrec_type": meta["artifact_type"],
        "fingerprint": meta["fingerprint"],
        "producer": meta["producer"],
        "summary": json.loads(json.dumps(meta["summary"], default=str)),
    })


def _number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def log_metrics(evaluation: Any) -> None:
  """The candidate's scalar metrics, as KFP metrics on the Metrics artifact."""
  path = os.path.join(evaluation.path, _KFP_METRICS)
  if os.path.exists(path):
    with open(path) as f:
      metrics = json.load(f)
  else:
    metrics = artifacts.read_metadata(evaluation.path)["summary"].get(
        "candidate", {})
  for name, value in sorted(metrics.items()):
    if _number(value) and value == value:  # KFP rejects NaN
      evaluation.log_metric(name, float(value))


def _checks_markdown(blessing: dict[str, Any]) -> str:
  lines = [f"# {blessing.get('verdict', '?')}", "",
           "| check | metric | value | bound | passed |",
           "|---|---|---|---|---|"]
  for c in blessing.get("checks", []):
    passed = "yes" if c.get("passed") else "NO"
    lines.append(f"| {c.get('check', '')} | {c.get('metric', '')} | "
                 f"{c.get('value', '')} | {c.get('op', '')} "
                 f"{c.get('bound', '')} | {passed} |")
  return "\n".join(lines) + "\n"


def write_reports(evaluation: Any, blessing: Any, report: Any,
                  summary: Any) -> None:
  """Fills the HTML and Markdown outputs from the evaluator's reports."""
  with open(os.path.join(blessing.path, _BLESSING_FILE)) as f:
    verdict = json.load(f)
  markdown = os.path.join(evaluation.path, _MARKDOWN_REPORT)
  if os.path.exists(markdown):
    shutil.copyfile(markdown, summary.path)
  else:
    with open(summary.path, "w") as f:
      f.write(_checks_markdown(verdict))
  page = os.path.join(evaluation.path, _HTML_REPORT)
  if os.path.exists(page):
    shutil.copyfile(page, report.path)
  else:
    with open(report.path, "w") as f:
      f.write("<!doctype html><meta charset='utf-8'><pre>" +
              html.escape(_checks_markdown(verdict)) + "</pre>\n")
  for output in (report, summary):
    output.metadata["verdict"] = verdict.get("verdict")
