"""The local step cache: reuse a step whose inputs have not changed.

A step's key hashes everything that can change what it writes:
  - the step (its display name) and the compiled task (image, command, the
    component's embedded source);
  - its parameters: its `code_version` (the project code it can run and the
    versions of the libraries that compute, pipeline/step_deps.py) and the
    config sections it receives, only its own: changing the trainer's epochs
    leaves ExampleGen and Transform cached; beam_args, num_cpu_devices, ...
    too, except run-identity placeholders such as the run id;
  - the fingerprints of its input artifacts (content hashes from their
    metadata.json), so a rerun upstream that produced identical bytes still
    lets downstream steps hit;
  - for a step that warm-starts (trainer.warm_start): the model now served
    (its path and saved_model.pb stamp), an input the config does not name;
  - for a step that reads `data`: size and mtime of each local source file
    the data options name (remote sources are named, not stat'ed: use
    --no-cache after changing one in place).

An entry, `<pipeline_root>/.cache/<step>/<key>.json`, lists where the step's
outputs live (every run that has a copy) and what the step printed. A hit
is taken only while a recorded copy is still complete (metadata.json present
with the recorded fingerprint) and, for a PushedModel, while the version it
published still exists. The outputs are hard-linked into the new run's own
directories (copied where links are impossible), so each run stays a
complete, self-contained record that survives deleting the run it came from.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import shutil
from typing import Any, Mapping, Optional

from contracts import artifacts

CACHE_DIR = ".cache"


def _json(value: Any) -> str:
  return json.dumps(value, sort_keys=True, default=str)


def served_model_stamp(model_dir: Optional[str]) -> Optional[list[Any]]:
  """(path, size, mtime_ns) of a served version's saved_model.pb, or None."""
  if model_dir is None:
    return None
  st = os.stat(os.path.join(model_dir, "saved_model.pb"))
  return [os.path.abspath(model_dir), st.st_size, st.st_mtime_ns]


def source_stamps(data_options: Any) -> list[list[Any]]:
  """(path, size, mtime_ns) for each local file a `path` option names."""
  stamps: list[list[Any]] = []

  def visit(value: Any) -> None:
    if isinstance(value, dict):
      for k, v in sorted(value.items()):
        if k == "path" and isinstance(v, str):
          stamp(v)
        else:
          visit(v)
    elif isinstance(value, list):
      for v in value:
        visit(v)

  def stamp(path: str) -> None:
    if "://" in path:
      stamps.append([path, None, None])
      return
    files = []
    for match in sorted(glob.glob(path)) or [path]:
      if os.path.isdir(match):
        for dirpath, dirnames, filenames in os.walk(match):
          dirnames.sort()
          files.extend(os.path.join(dirpath, f) for f in sorted(filenames))
      else:
        files.append(match)
    for f in files:
      try:
        st = os.stat(f)
        stamps.append([f, st.st_size, st.st_mtime_ns])
      except OSError:
        stamps.append([f, None, None])

  visit(data_options)
  return stamps


def step_key(step: str, command: str, parameters: Mapping[str, Any],
             input_fingerprints: Mapping[str, str],
             sources: list[list[Any]]) -> str:
  return hashlib.sha256(_json({
      "step": step, "command": command, "parameters": parameters,
      "inputs": input_fingerprints, "sources": sources}).encode()).hexdigest()


def artifact_fingerprint(uri: str) -> str:
  """A published artifact's fingerprint; file artifacts are hashed."""
  if os.path.isdir(uri):
    return artifacts.read_metadata(uri)["fingerprint"]
  return artifacts.fingerprint(uri)


def _pushed_version_exists(uri: str) -> bool:
  summary = artifacts.read_metadata(uri).get("summary", {})
  return not summary.get("pushed") or os.path.isdir(
      summary.get("destination", ""))


# Artifact type -> what must still hold outside the artifact for a reuse.
_STILL_VALID = {"PushedModel": _pushed_version_exists}


def _copy_is_valid(outputs: Mapping[str, str],
                   fingerprints: Mapping[str, str]) -> bool:
  for name, uri in outputs.items():
    try:
      if artifact_fingerprint(uri) != fingerprints[name]:
        return False
      if os.path.isdir(uri):
        check = _STILL_VALID.get(artifacts.read_metadata(uri)["artifact_type"])
        if check and not check(uri):
          return False
    except (OSError, KeyError, ValueError):
      return False
  return True


def link_copy(src: str, dst: str) -> None:
  """Copies a file or tree by hard links (bytes copied only where needed)."""

  def link(s: str, d: str) -> None:
    try:
      os.link(s, d)
    except OSError:
      shutil.copy2(s, d)

  os.makedirs(os.path.dirname(dst), exist_ok=True)
  tmp = os.path.join(os.path.dirname(dst), f".tmp-{os.path.basename(dst)}")
  shutil.rmtree(tmp, ignore_errors=True)
  if os.path.isdir(src):
    shutil.copytree(src, tmp, copy_function=link)
  else:
    link(src, tmp)
  os.rename(tmp, dst)  # appears complete, like any artifact


class StepCache:
  """Cache entries of one pipeline root."""

  def __init__(self, pipeline_root: str):
    self.root = os.path.join(pipeline_root, CACHE_DIR)

  def _path(self, step: str, key: str) -> str:
    return os.path.join(self.root, step, f"{key}.json")

  def lookup(self, step: str, key: str) -> Optional[dict[str, Any]]:
    """The entry with `copy` set to a valid copy of the outputs, or None."""
    try:
      with open(self._path(step, key)) as f:
        entry = json.load(f)
    except (OSError, json.JSONDecodeError):
      return None
    for copy in entry["copies"]:
      if _copy_is_valid(copy["outputs"], entry["fingerprints"]):
        return dict(entry, copy=copy)
    return None

  def store(self, step: str, key: str, run_id: str,
            outputs: Mapping[str, str], parameters_out: Mapping[str, Any],
            seconds: float, covers: Mapping[str, Any],
            kfp_metadata: Mapping[str, Any]) -> None:
    """Records a step's fresh outputs under its key.

    `kfp_metadata` (per output: what the component set on its KFP artifact,
    e.g. logged metrics) is handed downstream again on a reuse.
    """
    entry = {
        "step": step, "key": key, "run_id": run_id, "seconds": seconds,
        "created_at": datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec="seconds"),
        "fingerprints": {n: artifact_fingerprint(u)
                         for n, u in outputs.items()},
        "output_parameters": dict(parameters_out),
        "kfp_metadata": json.loads(_json(kfp_metadata)),
        "copies": [{"run_id": run_id, "outputs": dict(outputs)}],
        "covers": dict(covers),
    }
    os.makedirs(os.path.dirname(self._path(step, key)), exist_ok=True)
    artifacts.write_json_atomic(self._path(step, key), entry)

  def add_copy(self, entry: dict[str, Any], run_id: str,
               outputs: Mapping[str, str]) -> None:
    """Records another run's copy, newest first, dropping dead ones."""
    copies = [{"run_id": run_id, "outputs": dict(outputs)}] + [
        c for c in entry["copies"]
        if all(os.path.exists(u) for u in c["outputs"].values())]
    entry = {k: v for k, v in entry.items() if k != "copy"}
    entry["copies"] = copies
    artifacts.write_json_atomic(self._path(entry["step"], entry["key"]), entry)
