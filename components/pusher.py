"""Pusher: publishes a blessed model in TF Serving's layout, atomically.

`<serving_root>/<model_name>/<version>/` with an integer version, as TF
Serving expects. The copy is written under a hidden temporary name in the
same directory and renamed into place in one step, so a server polling the
directory never sees (or loads) a half-copied version: TF Serving, and the
project's server, ignore names that are not integers.

The pusher also keeps `<serving_root>/models.config` current: a text
ModelServerConfig (what `--model_config_file` reads) with one entry per
model, pinned to the version just pushed (`specific { versions: N }`).
Pinning, rather than relying on "latest", is what makes a rollback a config
change: `rollback()` re-pins the previous version, and a server that polls
the file (`--model_config_file_poll_wait_seconds`) or receives it through
HandleReloadConfigRequest loads it from disk, warms it up, and swaps it in
before unloading the bad one. Other models' entries, and anything else in
the file (labels, extra settings), are left as they are.

The warmup records TF Serving replays before serving a version
(assets.extra/tf_serving_warmup_requests) are written by the trainer into the
SavedModel (trainer/export.py); the pusher copies them with it and reports
how many the pushed version carries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import time
import uuid
from typing import Any, Iterator, Optional

from components import artifacts
from components import blessing

MODEL_CONFIG_FILE = "models.config"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_LOCK_FILE = ".models.config.lock"
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def existing_versions(model_root: str) -> list[int]:
  if not os.path.isdir(model_root):
    return []
  return sorted(int(n) for n in os.listdir(model_root) if n.isdigit())


def complete_versions(model_root: str) -> list[int]:
  """Versions a server would load: integer directories with a saved model."""
  return [v for v in existing_versions(model_root)
          if any(os.path.exists(os.path.join(model_root, str(v), f))
                 for f in _SAVED_MODEL_FILES)]


def next_version(model_root: str, now: Optional[float] = None) -> int:
  """Unix seconds (as TFX's Pusher), but always above any existing version."""
  latest = max(existing_versions(model_root), default=0)
  return max(int(now if now is not None else time.time()), latest + 1)


def is_blessed(blessing_uri: str) -> bool:
  return os.path.exists(os.path.join(blessing_uri, blessing.BLESSED))


def publish_version(model_dir: str, model_root: str) -> tuple[int, str]:
  """Copies a SavedModel into a new version directory; returns (version, dir)."""
  os.makedirs(model_root, exist_ok=True)
  tmp = os.path.join(model_root, f".tmp-{uuid.uuid4().hex}")
  shutil.copytree(model_dir, tmp)
  while True:
    version = next_version(model_root)
    target = os.path.join(model_root, str(version))
    try:
      os.rename(tmp, target)  # fails if a concurrent push took the number
      return version, target
    except OSError:
      if not os.path.exists(target):
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def count_warmup_records(version_dir: str) -> int:
  """Records in a SavedModel's warmup file (0 without one).

  Reads TFRecord framing (length, length CRC, data, data CRC) directly, so
  the pusher needs no TensorFlow.
  """
  path = os.path.join(version_dir, WARMUP_FILE)
  if not os.path.exists(path):
    return 0
  count = 0
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if not header:
        return count
      if len(header) < 12:
        raise ValueError(f"{path}: truncated TFRecord header")
      (length,) = struct.unpack("<Q", header[:8])
      f.seek(length + 4, os.SEEK_CUR)
      count += 1


# models.config upkeep.


def model_config_path(serving_root: str) -> str:
  return os.path.join(os.path.abspath(serving_root), MODEL_CONFIG_FILE)


@contextlib.contextmanager
def _config_lock(serving_root: str) -> Iterator[None]:
  """Serializes read-modify-write of models.config across processes."""
  os.makedirs(serving_root, exist_ok=True)
  with open(os.path.join(serving_root, _LOCK_FILE), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def read_model_config(serving_root: str):
  """The ModelServerConfig in models.config (empty when there is none)."""
  # pylint: disable-next=g-import-not-at-top
  from serving import config as serving_config
  path = model_config_path(serving_root)
  if not os.path.exists(path):
    # pylint: disable-next=g-import-not-at-top
    from serving import apis
    return apis.ModelServerConfig()
  with open(path) as f:
    return serving_config.parse_model_server_config(f.read(), path)


def _write_model_config(serving_root: str, config) -> str:
  # pylint: disable-next=g-import-not-at-top
  from serving import config as serving_config
  path = model_config_path(serving_root)
  tmp = f"{path}.tmp-{uuid.uuid4().hex}"
  with open(tmp, "w") as f:
    f.write("# Written by the mtrec pusher: one entry per model, pinned to the"
            " version\n# it serves. `mtrec rollback` re-pins the previous"
            " one.\n")
    f.write(serving_config.format_model_server_config(config))
  os.replace(tmp, path)  # A polling server never reads half a file.
  return path


def _model_entry(config, model_name: str, base_path: str):
  for entry in config.model_config_list.config:
    if entry.name == model_name:
      return entry
  entry = config.model_config_list.config.add()
  entry.name = model_name
  entry.base_path = base_path
  entry.model_platform = "tensorflow"
  return entry


def pin_version(serving_root: str, model_name: str, version: int,
                base_path: Optional[str] = None) -> str:
  """Points models.config's entry for a model at one version.

  Args:
    serving_root: the directory holding `<model_name>/<version>/`.
    model_name: the model's entry (created if missing).
    version: the version to serve.
    base_path: the model's base path as the server sees it; default the
      absolute `<serving_root>/<model_name>`. Kept as it is for an existing
      entry unless given.

  Returns:
    The path of models.config.
  """
  root = os.path.abspath(serving_root)
  with _config_lock(root):
    config = read_model_config(root)
    entry = _model_entry(config, model_name,
                         base_path or os.path.join(root, model_name))
    if base_path:
      entry.base_path = base_path
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.versions.append(version)
    return _write_model_config(root, config)


def pinned_version(serving_root: str, model_name: str) -> Optional[int]:
  """The version models.config pins a model to, if it pins exactly one."""
  for entry in read_model_config(serving_root).model_config_list.config:
    if entry.name == model_name:
      policy = entry.model_version_policy
      if (policy.WhichOneof("policy_choice") == "specific" and
          len(policy.specific.versions) == 1):
        return policy.specific.versions[0]
  return None


def rollback(serving_root: str, model_name: str,
             to_version: Optional[int] = None) -> tuple[int, int]:
  """Re-pins a model to the version before the one it serves.

  The served version is the pinned one, or the newest on disk when nothing
  is pinned. Repeated rollbacks walk further back.

  Args:
    serving_root: the pusher's serving root.
    model_name: the model.
    to_version: a specific version to go to instead of the previous one.

  Returns:
    (the version served before, the version now pinned).

  Raises:
    ValueError: no version on disk to go back to, or `to_version` is not a
      complete version.
  """
  model_root = os.path.join(os.path.abspath(serving_root), model_name)
  versions = complete_versions(model_root)
  if not versions:
    raise ValueError(f"No versions of {model_name} under {model_root}")
  current = pinned_version(serving_root, model_name)
  if current is None:
    current = versions[-1]
  if to_version is None:
    older = [v for v in versions if v < current]
    if not older:
      raise ValueError(
          f"{model_name} serves version {current}, and there is no older"
          f" version under {model_root} to roll back to")
    target = older[-1]
  else:
    if to_version not in versions:
      raise ValueError(
          f"Version {to_version} of {model_name} is not under {model_root};"
          f" versions there: {versions}")
    target = to_version
  pin_version(serving_root, model_name, target)
  return current, target


def run_pusher(model_uri: str, model_dir: str, blessing_uri: str,
               serving_root: str, model_name: str, pushed_uri: str,
               run_id: str, config_base_path: Optional[str] = None
               ) -> dict[str, Any]:
  """Pushes when blessed; always publishes a PushedModel record saying what.

  A push also pins the new version in `<serving_root>/models.config`.

  Args:
    model_uri: the Model artifact (lineage).
    model_dir: the SavedModel to publish.
    blessing_uri: the ModelBlessing artifact.
    serving_root: where `<model_name>/<version>/` and models.config live.
    model_name: the served model's name.
    pushed_uri: the PushedModel artifact to write.
    run_id: the pipeline run.
    config_base_path: the model's base path as the server will see it, for
      models.config (default: the absolute local path).
  """
  inputs = {"model": model_uri, "blessing": blessing_uri}
  model_root = os.path.join(os.path.abspath(serving_root), model_name)
  with artifacts.write_artifact(pushed_uri, "PushedModel", "Pusher", run_id,
                                {"serving_root": serving_root,
                                 "model_name": model_name}, inputs) as w:
    if is_blessed(blessing_uri):
      version, target = publish_version(model_dir, model_root)
      config_path = pin_version(serving_root, model_name, version,
                                config_base_path)
      w.summary = {"pushed": True, "version": version, "destination": target,
                   "model_config": config_path,
                   "warmup_records": count_warmup_records(target)}
    else:
      w.summary = {"pushed": False,
                   "reason": "the model is not blessed: see "
                             f"{os.path.join(blessing_uri, 'blessing.json')}"}
  return w.summary
