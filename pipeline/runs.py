"""Run history read back from run.json files: `mtrec runs` and `runs show`.

Everything here comes from `<pipeline_root>/<run_id>/run.json` (written by
pipeline/runner.py after every step), so the history and the lineage of any
artifact can be read without an orchestrator, a database or the code that
produced them.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

from contracts import run_record

# Preferred order of the metrics `mtrec runs` shows (those present).
KEY_METRICS = ("recall_at_20", "ndcg_at_20", "rmse", "auc", "recall_at_10",
               "ndcg_at_10")
MAX_KEY_METRICS = 4


def load_runs(pipeline_root: str) -> list[dict[str, Any]]:
  """Every run under the root, newest first."""
  runs = []
  for run in run_record.iter_runs(pipeline_root):
    if run.get("status") == "running" and not run_record.pid_alive(
        run.get("pid")):
      run["status"] = "interrupted"  # its process is gone
    runs.append(run)
  runs.sort(key=lambda r: (r.get("started_at", ""), r.get("run_id", "")),
            reverse=True)
  return runs


def find_run(pipeline_root: str, run_id: str) -> dict[str, Any]:
  """The run with this id (or unique id prefix); KeyError with a reason."""
  runs = load_runs(pipeline_root)
  exact = [r for r in runs if r.get("run_id") == run_id]
  matches = exact or [r for r in runs
                      if str(r.get("run_id", "")).startswith(run_id)]
  if len(matches) == 1:
    return matches[0]
  if not matches:
    raise KeyError(f"no run {run_id!r} under {pipeline_root}")
  raise KeyError(f"{run_id!r} matches {len(matches)} runs: " +
                 ", ".join(r["run_id"] for r in matches[:5]))


def duration(run: dict[str, Any]) -> Optional[float]:
  if isinstance(run.get("seconds"), (int, float)):
    return float(run["seconds"])
  if run.get("status") == "running" and run.get("started_at"):
    started = datetime.datetime.fromisoformat(run["started_at"])
    return (datetime.datetime.now(datetime.timezone.utc) -
            started).total_seconds()
  steps = [s.get("seconds") for s in run.get("steps", [])]
  return sum(s for s in steps if isinstance(s, (int, float))) or None


def key_metrics(run: dict[str, Any]) -> dict[str, Any]:
  """Candidate metrics, the verdict and the pushed version, when present."""
  arts = run.get("artifacts", {})
  out: dict[str, Any] = {}
  candidate = arts.get("Evaluator/evaluation", {}).get("summary", {}).get(
      "candidate", {})
  for name in KEY_METRICS:
    if isinstance(candidate.get(name), (int, float)):
      out[name] = candidate[name]
    if len(out) == MAX_KEY_METRICS:
      break
  verdict = arts.get("Evaluator/blessing", {}).get("summary", {}).get(
      "verdict")
  if verdict:
    out["verdict"] = verdict
  pushed = arts.get("Pusher/pushed_model", {}).get("summary", {})
  if pushed.get("pushed"):
    out["pushed"] = pushed.get("version")
  elif isinstance(run.get("pushed"), dict):  # a catalog refresh's record
    out["pushed"] = run["pushed"].get("version")
    out["from_version"] = run["pushed"].get("from_version")
  return out


def _fmt_seconds(seconds: Optional[float]) -> str:
  if seconds is None:
    return "-"
  return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _fmt_metrics(metrics: dict[str, Any]) -> str:
  parts = []
  for k, v in metrics.items():
    parts.append(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}")
  return " ".join(parts)


def format_runs(runs: list[dict[str, Any]]) -> str:
  """One line per run: id, status, start, duration, steps, key metrics."""
  rows = [("RUN", "STATUS", "STARTED", "TIME", "STEPS", "KEY METRICS")]
  for run in runs:
    steps = run.get("steps", [])
    ran = sum(s.get("status") == "succeeded" for s in steps)
    cached = sum(s.get("status") == "cached" for s in steps)
    status = run.get("status", "?")
    if status == "failed":
      status = f"failed at {run.get('failed_step', '?')}"
      detail = str(run.get("error", "")).splitlines()[0][:160] if run.get(
          "error") else ""
    else:
      detail = _fmt_metrics(key_metrics(run))
    rows.append((run.get("run_id", "?"), status,
                 str(run.get("started_at", "")).replace("+00:00", "Z"),
                 _fmt_seconds(duration(run)), f"{ran} ran, {cached} cached",
                 detail))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
  return "\n".join(
      "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1]
      for r in rows).rstrip() + "\n"


def format_lineage(run: dict[str, Any]) -> str:
  """Each step with its status, and each artifact with the inputs it came
  from (artifact and content fingerprint)."""
  arts = run.get("artifacts", {})
  lines = [f"run {run.get('run_id')}  {run.get('status')}  "
           f"{_fmt_seconds(duration(run))}  "
           f"(pipeline {run.get('pipeline_name', '?')})"]
  if run.get("status") == "failed":
    lines.append(f"failed at {run.get('failed_step')}: {run.get('error')}")
  steps = list(run.get("steps", []))
  named = {s.get("name") for s in steps}
  for component in sorted({k.split("/")[0] for k in arts} - named):
    steps.append({"name": component})  # an artifact without its step record
  for step in steps:
    name = step.get("name")
    status = step.get("status")
    lines.append("")
    if status == "cached":
      lines.append(f"{name}: cached from run {step.get('cached_from')} "
                   f"({_fmt_seconds(step.get('original_seconds'))} there)")
    elif status:
      lines.append(f"{name}: {status} in {_fmt_seconds(step.get('seconds'))}")
    else:
      lines.append(f"{name}:")
    if step.get("error"):
      lines.append(f"  error: {step['error']}")
    for key in sorted(k for k in arts if k.split("/")[0] == name):
      a = arts[key]
      origin = a.get("produced_by_run")
      made = f", made by run {origin}" if origin and origin != run.get(
          "run_id") else ""
      lines.append(f"  {key}  [{a.get('type')}]  "
                   f"{str(a.get('fingerprint', ''))[:12]}{made}")
      lines.append(f"    {a.get('uri')}")
      for input_name, inp in sorted(a.get("inputs", {}).items()):
        source = inp.get("artifact") or inp.get("uri")
        lines.append(f"    <- {input_name}: {source}  "
                     f"{str(inp.get('fingerprint', ''))[:12]}")
    if step.get("log"):
      lines.append(f"  log: {step['log']}")
  return "\n".join(lines) + "\n"
