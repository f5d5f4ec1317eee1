"""`mtrec runs` and `mtrec runs show`, on run.json files written here."""

from __future__ import annotations

import json
import os

import pytest

from pipeline import cli
from pipeline import runs

DEAD_PID = 2**22 + 12345  # above Linux's pid_max default: never alive


def _art(uri, kind, fp, inputs=None, summary=None, made_by=None):
  return {"uri": uri, "type": kind, "fingerprint": fp,
          "inputs": inputs or {}, "summary": summary or {},
          "produced_by_run": made_by}


def _write_run(root, run):
  os.makedirs(os.path.join(root, run["run_id"]))
  with open(os.path.join(root, run["run_id"], "run.json"), "w") as f:
    json.dump(run, f)


@pytest.fixture
def root(tmp_path):
  root = str(tmp_path / "runs")
  examples = f"{root}/r1/ExampleGen/examples"
  model = f"{root}/r2/Trainer/model"
  _write_run(root, {
      "run_id": "20260101-000000-aaaaaa", "status": "succeeded",
      "started_at": "2026-01-01T00:00:00+00:00", "seconds": 61.5,
      "pipeline_name": "p",
      "steps": [{"name": "ExampleGen", "status": "succeeded", "seconds": 9.0},
                {"name": "Trainer", "status": "succeeded", "seconds": 20.0},
                {"name": "Evaluator", "status": "succeeded", "seconds": 30.0},
                {"name": "Pusher", "status": "succeeded", "seconds": 2.5}],
      "artifacts": {
          "Evaluator/evaluation": _art("e", "ModelEvaluation", "f1", summary={
              "candidate": {"recall_at_20": 0.31234, "ndcg_at_20": 0.2,
                            "rmse": 0.95, "auc": 0.7, "users": 100}}),
          "Evaluator/blessing": _art("b", "ModelBlessing", "f2",
                                     summary={"verdict": "BLESSED"}),
          "Pusher/pushed_model": _art("p", "PushedModel", "f3", summary={
              "pushed": True, "version": 1767225600})}})
  _write_run(root, {
      "run_id": "20260102-000000-bbbbbb", "status": "failed",
      "started_at": "2026-01-02T00:00:00+00:00", "seconds": 12.0,
      "pipeline_name": "p", "failed_step": "Trainer",
      "error": "ValueError: no rows\nmore detail",
      "steps": [
          {"name": "ExampleGen", "status": "cached", "seconds": 0.0,
           "cached_from": "20260101-000000-aaaaaa", "original_seconds": 9.0},
          {"name": "Trainer", "status": "failed", "seconds": 12.0,
           "error": "ValueError: no rows\nmore detail"}],
      "artifacts": {
          "ExampleGen/examples": _art(examples, "Examples", "abcdef0123456789",
                                      made_by="20260101-000000-aaaaaa")}})
  _write_run(root, {
      "run_id": "20260103-000000-cccccc", "status": "running",
      "started_at": "2026-01-03T00:00:00+00:00", "pid": DEAD_PID,
      "pipeline_name": "p", "steps": [], "artifacts": {
          "Trainer/model": _art(model, "Model", "99aa", inputs={
              "examples": {"uri": examples, "fingerprint": "abcdef0123456789",
                           "artifact": "ExampleGen/examples"}})}})
  return root


def test_runs_lists_newest_first_with_status_time_and_metrics(root, capsys):
  assert cli.main(["runs", "--root", root]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].split()[:5] == ["RUN", "STATUS", "STARTED", "TIME", "STEPS"]
  newest, failed, ok = lines[1:]
  # A "running" run whose process is gone was interrupted.
  assert newest.startswith("20260103-000000-cccccc") and "interrupted" in newest
  assert "failed at Trainer" in failed and "ValueError: no rows" in failed
  assert "more detail" not in failed and "0 ran, 1 cached" in failed
  assert "succeeded" in ok and "61.5s" in ok and "4 ran, 0 cached" in ok
  assert ("recall_at_20=0.3123 ndcg_at_20=0.2000 rmse=0.9500 auc=0.7000 "
          "verdict=BLESSED pushed=1767225600") in ok


def test_runs_show_prints_lineage(root, capsys):
  assert cli.main(["runs", "show", "20260103", "--root", root]) == 0
  out = capsys.readouterr().out
  assert "Trainer/model  [Model]  99aa" in out
  assert "<- examples: ExampleGen/examples  abcdef012345" in out
  assert cli.main(["runs", "show", "20260102-000000-bbbbbb", "--root",
                   root]) == 0
  out = capsys.readouterr().out
  assert "failed at Trainer: ValueError: no rows" in out
  assert ("ExampleGen: cached from run 20260101-000000-aaaaaa (9.0s there)"
          in out)
  assert "made by run 20260101-000000-aaaaaa" in out


def test_runs_show_unknown_or_ambiguous_ids(root, capsys):
  assert cli.main(["runs", "show", "nope", "--root", root]) == 1
  assert "no run 'nope'" in capsys.readouterr().err
  assert cli.main(["runs", "show", "2026", "--root", root]) == 1
  assert "matches 3 runs" in capsys.readouterr().err
  with pytest.raises(KeyError):
    runs.find_run(root, "2026")


def test_runs_on_an_empty_root(tmp_path, capsys):
  assert cli.main(["runs", "--root", str(tmp_path / "none")]) == 0
  assert "no runs under" in capsys.readouterr().out
