"""run.json: the local runner's record of a run, and what reads it.

The local runner (pipeline/runner.py) writes `<pipeline_root>/<run_id>/
run.json` after every step: status, steps, and every artifact with its URI,
fingerprint and inputs, so lineage can be read back without an
orchestrator. Readers go through the artifacts it lists rather than
guessing where a component writes: a cached step's outputs, for instance,
may be links into another run's folders.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Iterator

from contracts import artifacts

RUN_FILE = "run.json"
# The StatisticsGen output's key in a run's artifacts: where the
# ExampleValidator finds an earlier run's statistics to measure drift.
STATISTICS_ARTIFACT = "StatisticsGen/statistics"
LOG_DIR = "logs"


def pid_alive(pid: Any) -> bool:
  """Whether `pid` names a live process on this host.

  A run record keeps its runner's pid (a "running" run whose runner is gone
  was interrupted), and the Pusher's temporary copies carry their writer's
  (one whose writer is gone was killed mid-copy).
  """
  if not isinstance(pid, int) or isinstance(pid, bool):
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, owned by someone else
    return True
  return True


def run_file(run_dir: str) -> str:
  return os.path.join(run_dir, RUN_FILE)


def read_run(run_dir: str) -> dict[str, Any]:
  with open(run_file(run_dir)) as f:
    loaded: dict[str, Any] = json.load(f)
  return loaded


def iter_runs(pipeline_root: str) -> Iterator[dict[str, Any]]:
  """Every readable run record under a pipeline root (unordered)."""
  for path in glob.glob(os.path.join(pipeline_root, "*", RUN_FILE)):
    try:
      with open(path) as f:
        yield json.load(f)
    except (OSError, json.JSONDecodeError):
      continue  # a record being replaced, or not a run


def artifact_uris(pipeline_root: str, key: str) -> list[str]:
  """The URIs of one artifact (`Component/output`) across recorded runs."""
  out = []
  for run in iter_runs(pipeline_root):
    artifact = run.get("artifacts", {}).get(key)
    if artifact and artifact.get("uri"):
      out.append(artifact["uri"])
  return out


def previous_artifact(pipeline_root: str, key: str, before_run: str,
                      differs_from: str | None = None
                      ) -> tuple[str, str, str] | None:
  """(run id, URI, fingerprint) of `key` in the run a new run is compared with.

  The latest recorded run, other than `before_run`, that pushed a model
  (the data behind what is served now); else, with no push on record, the
  latest run that produced `key`. Runs are ordered by start time. Skipped:
  a run whose artifact is no longer complete, and one whose artifact has
  the fingerprint `differs_from` (the same data as the new run's: comparing
  with it says nothing, and skipping it keeps an unchanged rerun's result,
  and so its cache entries, what they were).
  """
  found: list[tuple[bool, str, str, str, str]] = []
  for run in iter_runs(pipeline_root):
    artifact = run.get("artifacts", {}).get(key) or {}
    uri = artifact.get("uri")
    if run.get("run_id") == before_run or not uri:
      continue
    if not os.path.exists(os.path.join(uri, artifacts.METADATA_FILE)):
      continue
    fingerprint = str(artifact.get("fingerprint", ""))
    if differs_from is not None and fingerprint == differs_from:
      continue
    pushed = bool((run.get("artifacts", {}).get("Pusher/pushed_model") or {})
                  .get("summary", {}).get("pushed"))
    found.append((pushed, str(run.get("started_at", "")),
                  str(run.get("run_id")), uri, fingerprint))
  if not found:
    return None
  _, _, run_id, uri, fingerprint = max(found)
  return run_id, uri, fingerprint
