"""pipeline/task_io.py: several outputs, precedence and the fallbacks.

tests/test_pipeline_task_io.py covers each function's main path; this file
the rest: several outputs at once, which metrics source wins, the exact
checks table rendered when the evaluator wrote no pages, and HTML escaping.
"""

from __future__ import annotations

import json
import os

import pytest

from contracts import artifacts
from contracts import evaluation_files
from pipeline import task_io


class _Output:
  """The part of a KFP artifact object task_io touches."""

  def __init__(self, path, metadata=None):
    self.path = str(path)
    self.metadata = dict(metadata or {})
    self.logged = []

  def log_metric(self, name, value):
    self.logged.append((name, value))


def _artifact(path, artifact_type, producer, summary, files=()):
  with artifacts.write_artifact(str(path), artifact_type, producer,
                                "r1") as w:
    for name, content in files:
      with open(os.path.join(w.uri, name), "w") as f:
        f.write(content)
    w.summary = summary
  return _Output(path, {"kept": 1})


def _blessing(tmp_path, verdict):
  d = tmp_path / "blessing"
  d.mkdir()
  (d / evaluation_files.BLESSING_FILE).write_text(json.dumps(verdict))
  return _Output(d)


def test_describe_fills_each_output_and_keeps_other_metadata(tmp_path):
  a = _artifact(tmp_path / "a", "Examples", "ExampleGen", {"rows": 10},
                [("data", "a")])
  b = _artifact(tmp_path / "b", "Model", "Trainer",
                {"loss": 0.5, "nested": {"k": [1, 2]}}, [("data", "b")])
  task_io.describe(a, b)
  assert a.metadata == {
      "kept": 1, "mtrec_type": "Examples", "producer": "ExampleGen",
      "fingerprint": artifacts.fingerprint(a.path), "summary": {"rows": 10}}
  assert b.metadata == {
      "kept": 1, "mtrec_type": "Model", "producer": "Trainer",
      "fingerprint": artifacts.fingerprint(b.path),
      "summary": {"loss": 0.5, "nested": {"k": [1, 2]}}}
  assert a.metadata["fingerprint"] != b.metadata["fingerprint"]


def test_describe_of_an_unfinished_artifact_is_an_error(tmp_path):
  (tmp_path / "half").mkdir()
  with pytest.raises(FileNotFoundError, match="not a complete artifact"):
    task_io.describe(_Output(tmp_path / "half"))


def test_the_kfp_metrics_file_wins_over_the_summary(tmp_path):
  out = _artifact(
      tmp_path / "e", "ModelEvaluation", "Evaluator",
      {"candidate": {"auc": 0.75, "rmse": 0.5}},
      [(evaluation_files.KFP_METRICS_FILE, json.dumps({"mrr": 0.5}))])
  task_io.log_metrics(out)
  assert out.logged == [("mrr", 0.5)]


def test_metrics_are_logged_as_floats_in_name_order(tmp_path):
  out = _artifact(tmp_path / "e", "ModelEvaluation", "Evaluator",
                  {"candidate": {"rmse": 1, "auc": 0.5, "eval_users": 12,
                                 "slices": {"a": 1}, "none": None,
                                 "flag": False}})
  task_io.log_metrics(out)
  assert out.logged == [("auc", 0.5), ("eval_users", 12.0), ("rmse", 1.0)]
  assert all(type(v) is float for _, v in out.logged)


def test_no_candidate_in_the_summary_logs_nothing(tmp_path):
  out = _artifact(tmp_path / "e", "ModelEvaluation", "Evaluator",
                  {"verdict": "NOT_BLESSED"})
  task_io.log_metrics(out)
  assert out.logged == []


def test_the_checks_table_rendered_without_the_evaluators_pages(tmp_path):
  blessing = _blessing(tmp_path, {"verdict": "BLESSED", "checks": [
      {"check": "threshold", "metric": "recall_at_20", "value": 0.5,
       "op": ">=", "bound": 0.25, "passed": True},
      {"check": "infra validation", "metric": "loads", "value": "",
       "op": "", "bound": "", "passed": True}]})
  evaluation = _artifact(tmp_path / "e", "ModelEvaluation", "Evaluator", {})
  report = _Output(tmp_path / "r.html", {"kept": 1})
  summary = _Output(tmp_path / "s.md")
  task_io.write_reports(evaluation, blessing, report, summary)
  table = ("# BLESSED\n"
           "\n"
           "| check | metric | value | bound | passed |\n"
           "|---|---|---|---|---|\n"
           "| threshold | recall_at_20 | 0.5 | >= 0.25 | yes |\n"
           "| infra validation | loads |  |   | yes |\n")
  with open(summary.path) as f:
    assert f.read() == table
  with open(report.path) as f:
    assert f.read() == (
        "<!doctype html><meta charset='utf-8'><pre>"
        + table.replace(">", "&gt;") + "</pre>\n")
  assert report.metadata == {"kept": 1, "verdict": "BLESSED"}
  assert summary.metadata == {"verdict": "BLESSED"}


def test_only_the_missing_page_is_rendered(tmp_path):
  blessing = _blessing(tmp_path, {"verdict": "NOT_BLESSED", "checks": []})
  evaluation = _artifact(tmp_path / "e", "ModelEvaluation", "Evaluator", {},
                         [(evaluation_files.SUMMARY_MD, "# from evaluator")])
  report, summary = _Output(tmp_path / "r.html"), _Output(tmp_path / "s.md")
  task_io.write_reports(evaluation, blessing, report, summary)
  with open(summary.path) as f:
    assert f.read() == "# from evaluator"
  with open(report.path) as f:
    assert f.read() == (
        "<!doctype html><meta charset='utf-8'><pre># NOT_BLESSED\n\n"
        "| check | metric | value | bound | passed |\n"
        "|---|---|---|---|---|\n</pre>\n")


def test_a_sparse_blessing_still_renders_and_is_escaped(tmp_path):
  blessing = _blessing(tmp_path, {"checks": [
      {"metric": "<script>&"}, {"check": "c", "passed": 0}]})
  evaluation = _artifact(tmp_path / "e", "ModelEvaluation", "Evaluator", {})
  report, summary = _Output(tmp_path / "r.html"), _Output(tmp_path / "s.md")
  task_io.write_reports(evaluation, blessing, report, summary)
  with open(summary.path) as f:
    lines = f.read().splitlines()
  assert lines[0] == "# ?"
  assert lines[4:] == ["|  | <script>& |  |   | NO |",
                       "| c |  |  |   | NO |"]
  with open(report.path) as f:
    page = f.read()
  assert "<script>" not in page
  assert "|  | &lt;script&gt;&amp; |  |   | NO |" in page
  assert report.metadata == summary.metadata == {"verdict": None}


def test_a_missing_blessing_file_is_an_error(tmp_path):
  (tmp_path / "b").mkdir()
  evaluation = _artifact(tmp_path / "e", "ModelEvaluation", "Evaluator", {})
  report = _Output(tmp_path / "r.html")
  with pytest.raises(FileNotFoundError):
    task_io.write_reports(evaluation, _Output(tmp_path / "b"), report,
                          _Output(tmp_path / "s.md"))
  assert not os.path.exists(report.path)
