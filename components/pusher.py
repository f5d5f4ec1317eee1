"""Pusher: publishes a blessed model in TF Serving's layout, atomically.

`<serving_root>/<model_name>/<version>/` with an integer version, as TF
Serving expects. The copy is written under a hidden temporary name in the
same directory and renamed into place in one step, so a server polling the
directory never sees (or loads) a half-copied version: TF Serving, and the
project's server, ignore names that are not integers.

The pusher also keeps `<serving_root>/models.config` current: a text
ModelServerConfig (what `--model_config_file` reads) with one entry per
model, pinned to the version just pushed (`specific { versions: N }`;
contracts/serving_layout.py owns the file and the served-version rule).
Pinning, rather than relying on "latest", is what makes a rollback a config
change: `mtrec rollback` re-pins the previous version, and a server that polls
the file (`--model_config_file_poll_wait_seconds`) or receives it through
HandleReloadConfigRequest loads it from disk, warms it up, and swaps it in
before unloading the bad one. Other models' entries, and anything else in
the file (labels, extra settings), are left as they are.

Concurrent pushes of one model (two pipelines, a refresh) serialize on a
lock around numbering and pinning (`push`), so the last version pinned is
the highest. A push killed mid-copy leaves only a hidden directory, removed
by the next push on that host; a push that fails (a full disk) removes
what it wrote and raises PushError.

The warmup records TF Serving replays before serving a version
(assets.extra/tf_serving_warmup_requests) are written by the trainer into the
SavedModel (trainer/export.py); the pusher copies them with it and reports
how many the pushed version carries.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time
import uuid
from typing import Any, Optional

from contracts import artifacts
from contracts import evaluation_files
from contracts import model_layout
from contracts import run_record
from contracts import serving_layout


def next_version(model_root: str, now: Optional[float] = None) -> int:
  """Unix seconds (as TFX's Pusher), but always above any existing version."""
  latest = max(serving_layout.existing_versions(model_root), default=0)
  return max(int(now if now is not None else time.time()), latest + 1)


class PushError(OSError):
  """Publishing failed (e.g. a full disk); nothing partial is visible."""


_TMP_PREFIX = ".tmp-"


def _tmp_name() -> str:
  # Host and pid in the name let a later push on the same host remove what
  # a killed one left (_remove_orphans); the uuid keeps names unique.
  return f"{_TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"


def _remove_orphans(model_root: str) -> list[str]:
  """Deletes the temporary copies of pushes killed on this host."""
  ours = f"{_TMP_PREFIX}{socket.gethostname()}-"
  removed = []
  for name in os.listdir(model_root):
    pid = name[len(ours):].split("-", 1)[0]
    if name.startswith(ours) and pid.isdigit() and not run_record.pid_alive(int(pid)):
      shutil.rmtree(os.path.join(model_root, name), ignore_errors=True)
      removed.append(name)
  return removed


class _FileCopyFailed(Exception):
  """Carries a file's OSError out of copytree, which would collect it and
  go on copying every other file onto a full disk."""

  def __init__(self, error: OSError):
    super().__init__(error)
    self.error = error


def _copy_file(src: str, dst: str) -> Any:
  try:
    return shutil.copy2(src, dst)
  except OSError as e:
    raise _FileCopyFailed(e) from e


def _copy(model_dir: str, model_root: str) -> str:
  """Copies a SavedModel under a hidden name; a failed copy leaves nothing."""
  os.makedirs(model_root, exist_ok=True)
  _remove_orphans(model_root)
  tmp = os.path.join(model_root, _tmp_name())
  try:
    shutil.copytree(model_dir, tmp, copy_function=_copy_file)
  except (OSError, _FileCopyFailed) as e:
    shutil.rmtree(tmp, ignore_errors=True)
    error = e.error if isinstance(e, _FileCopyFailed) else e
    raise PushError(
        error.errno, f"Pusher: copying {model_dir} into {model_root} failed "
        f"({error.strerror or error}); nothing was published and the served "
        "version is unchanged") from error
  return tmp


def _rename_into_place(tmp: str, model_root: str) -> tuple[int, str]:
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


def publish_version(model_dir: str, model_root: str) -> tuple[int, str]:
  """Copies a SavedModel into a new version directory; returns (version, dir).

  Does not pin it: `push` does both under the push lock.
  """
  tmp = _copy(model_dir, model_root)
  serving_root, model_name = os.path.split(os.path.abspath(model_root))
  with serving_layout.push_lock(serving_root, model_name):
    return _rename_into_place(tmp, model_root)


def push(model_dir: str, serving_root: str, model_name: str,
         config_base_path: Optional[str] = None) -> tuple[int, str, str]:
  """Publishes a new version and pins it; returns (version, dir, config).

  The copy runs unlocked; numbering, the rename and the pin run under the
  model's push lock, so concurrent pushes end in number order and the
  highest version is the one pinned. If the pin fails (a full disk), the
  new version is removed again: a push is all or nothing.
  """
  model_root = serving_layout.model_root(serving_root, model_name)
  tmp = _copy(model_dir, model_root)
  with serving_layout.push_lock(serving_root, model_name):
    version, target = _rename_into_place(tmp, model_root)
    try:
      config_path = serving_layout.pin_version(
          serving_root, model_name, version, config_base_path)
    except OSError as e:
      hidden = os.path.join(model_root, _tmp_name())
      os.rename(target, hidden)  # out of sight first, then delete
      shutil.rmtree(hidden, ignore_errors=True)
      raise PushError(
          e.errno, f"Pusher: pinning version {version} in models.config "
          f"failed ({e.strerror or e}); the version was removed and the "
          "served version is unchanged") from e
  return version, target, config_path


def count_warmup_records(version_dir: str) -> int:
  """Records in a SavedModel's warmup file (0 without one).

  Reads TFRecord framing (length, length CRC, data, data CRC) directly, so
  the pusher needs no TensorFlow.
  """
  path = model_layout.warmup_path(version_dir)
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
  with artifacts.write_artifact(pushed_uri, "PushedModel", "Pusher", run_id,
                                {"serving_root": serving_root,
                                 "model_name": model_name}, inputs) as w:
    if evaluation_files.is_blessed(blessing_uri):
      version, target, config_path = push(
          model_dir, serving_root, model_name, config_base_path)
      w.summary = {"pushed": True, "version": version, "destination": target,
                   "model_config": config_path,
                   "warmup_records": count_warmup_records(target)}
    else:
      w.summary = {"pushed": False,
                   "reason": "the model is not blessed: see "
                             f"{os.path.join(blessing_uri, 'blessing.json')}"}
  return w.summary
