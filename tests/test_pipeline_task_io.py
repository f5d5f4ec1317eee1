"""What a KFP component body does around its step (pipeline/task_io.py)."""

from __future__ import annotations

import json
import math
import os

from contracts import artifacts
from contracts import evaluation_files
from pipeline import task_io


class _Output:
  """The part of a KFP artifact object task_io touches."""

  def __init__(self, path):
    self.path = str(path)
    self.metadata = {}
    self.metrics = {}

  def log_metric(self, name, value):
    self.metrics[name] = value


def _artifact(path, summary, files=()):
  with artifacts.write_artifact(str(path), "ModelEvaluation", "Evaluator",
                                "r1") as w:
    for name, content in files:
      with open(os.path.join(w.uri, name), "w") as f:
        f.write(content)
    w.summary = summary
  return _Output(path)


def test_describe_copies_metadata_into_the_kfp_artifact(tmp_path):
  out = _artifact(tmp_path / "a", {"rows": 3, "when": 2})
  task_io.describe(out)
  meta = artifacts.read_metadata(out.path)
  assert out.metadata == {"mtrec_type": "ModelEvaluation",
                          "fingerprint": meta["fingerprint"],
                          "producer": "Evaluator",
                          "summary": {"rows": 3, "when": 2}}


def test_log_metrics_logs_numbers_and_skips_nan_and_flags(tmp_path):
  kfp = json.dumps({"recall_at_20": 0.25, "rmse": math.nan, "blessed": True,
                    "name": "x", "count": 7})
  out = _artifact(tmp_path / "e", {},
                  [(evaluation_files.KFP_METRICS_FILE, kfp)])
  task_io.log_metrics(out)
  assert out.metrics == {"count": 7.0, "recall_at_20": 0.25}
  # Without the file: the summary's candidate metrics.
  out = _artifact(tmp_path / "f", {"candidate": {"auc": 0.75}})
  task_io.log_metrics(out)
  assert out.metrics == {"auc": 0.75}


def test_write_reports_copies_the_evaluators_pages_or_renders_checks(tmp_path):
  blessing = tmp_path / "blessing"
  blessing.mkdir()
  verdict = {"verdict": "NOT_BLESSED", "checks": [
      {"check": "threshold", "metric": "rmse", "value": 1.2, "op": "<=",
       "bound": 1.0, "passed": False}]}
  (blessing / evaluation_files.BLESSING_FILE).write_text(json.dumps(verdict))
  with_pages = _artifact(tmp_path / "e1", {}, [
      (evaluation_files.REPORT_HTML, "<p>report</p>"),
      (evaluation_files.SUMMARY_MD, "# summary")])
  report, summary = _Output(tmp_path / "r1.html"), _Output(tmp_path / "s1.md")
  task_io.write_reports(with_pages, _Output(blessing), report, summary)
  assert open(report.path).read() == "<p>report</p>"
  assert open(summary.path).read() == "# summary"
  assert report.metadata == summary.metadata == {"verdict": "NOT_BLESSED"}
  bare = _artifact(tmp_path / "e2", {})
  report, summary = _Output(tmp_path / "r2.html"), _Output(tmp_path / "s2.md")
  task_io.write_reports(bare, _Output(blessing), report, summary)
  assert open(summary.path).read().splitlines()[:1] == ["# NOT_BLESSED"]
  assert "| threshold | rmse | 1.2 | &lt;= 1.0 | NO |" in open(
      report.path).read()
