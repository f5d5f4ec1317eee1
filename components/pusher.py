"""Pusher: publishes a blessed model in TF Serving's layout, atomically.

`<serving_root>/<model_name>/<version>/` with an integer version, as TF
Serving expects. The copy is written under a hidden temporary name in the
same directory and renamed into place in one step, so a server polling the
directory never sees (or loads) a half-copied version: TF Serving, and the
project's server, ignore names that are not integers.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from typing import Any, Optional

from components import artifacts
from components import evaluator


def existing_versions(model_root: str) -> list[int]:
  if not os.path.isdir(model_root):
    return []
  return sorted(int(n) for n in os.listdir(model_root) if n.isdigit())


def next_version(model_root: str, now: Optional[float] = None) -> int:
  """Unix seconds (as TFX's Pusher), but always above any existing version."""
  latest = max(existing_versions(model_root), default=0)
  return max(int(now if now is not None else time.time()), latest + 1)


def is_blessed(blessing_uri: str) -> bool:
  return os.path.exists(os.path.join(blessing_uri, evaluator.BLESSED))


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


def run_pusher(model_uri: str, model_dir: str, blessing_uri: str,
               serving_root: str, model_name: str, pushed_uri: str,
               run_id: str) -> dict[str, Any]:
  """Pushes when blessed; always publishes a PushedModel record saying what."""
  inputs = {"model": model_uri, "blessing": blessing_uri}
  model_root = os.path.join(os.path.abspath(serving_root), model_name)
  with artifacts.write_artifact(pushed_uri, "PushedModel", "Pusher", run_id,
                                {"serving_root": serving_root,
                                 "model_name": model_name}, inputs) as w:
    if is_blessed(blessing_uri):
      version, target = publish_version(model_dir, model_root)
      w.summary = {"pushed": True, "version": version, "destination": target}
    else:
      w.summary = {"pushed": False,
                   "reason": "the model is not blessed: see "
                             f"{os.path.join(blessing_uri, 'blessing.json')}"}
  return w.summary
