"""TF Serving's layout on disk, and the one rule for "the served version".

`<serving_root>/<model_name>/<version>/` holds one SavedModel per integer
version (TF Serving ignores any other name, which is what lets the Pusher
copy under a hidden name and rename into place), and
`<serving_root>/models.config` is the text ModelServerConfig that
`--model_config_file` reads: the Pusher pins each model to the version it
pushed, `mtrec rollback` re-pins an older one.

Which version is served? `served_version` answers for every tool that needs
to know (warm start, the evaluator's regression baseline, catalog refresh,
rollback, the step cache): the version models.config pins when that version
is complete on disk, else the highest complete version (TF Serving's default
`latest` policy). A version directory still missing saved_model.pb is never
an answer.

models.config is parsed with the official `ModelServerConfig` message, whose
module imports no TensorFlow, so this layer stays framework-free. The server
itself reads the same file through serving/config.py, which adds TF
Serving's validation and status codes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from typing import Any, Iterator, Optional

from google.protobuf import text_format
from tensorflow_serving.config.model_server_config_pb2 import (
    ModelServerConfig)

from contracts import model_layout

MODEL_CONFIG_FILE = "models.config"
TENSORFLOW_PLATFORM = "tensorflow"
_LOCK_FILE = ".models.config.lock"
_HEADER = ("# Written by mtrec (the pusher, rollback, catalog refresh): one "
           "entry per model,\n# pinned to the version it serves. `mtrec "
           "rollback` re-pins the previous one.\n")


class ModelConfigError(ValueError):
  """models.config cannot be parsed; the message is TF Serving's."""


def model_root(serving_root: str, model_name: str) -> str:
  """`<serving_root>/<model_name>`, absolute: a model's base path."""
  return os.path.join(os.path.abspath(serving_root), model_name)


def version_dir(serving_root: str, model_name: str, version: int) -> str:
  return os.path.join(model_root(serving_root, model_name), str(version))


def existing_versions(root: str) -> list[int]:
  """Integer-named directories under a model root, complete or not."""
  if not os.path.isdir(root):
    return []
  return sorted(int(n) for n in os.listdir(root) if n.isdigit())


def complete_versions(root: str) -> list[int]:
  """Versions a server would load: integer directories with a SavedModel."""
  return [v for v in existing_versions(root)
          if model_layout.is_saved_model(os.path.join(root, str(v)))]


def model_config_path(serving_root: str) -> str:
  return os.path.join(os.path.abspath(serving_root), MODEL_CONFIG_FILE)


def parse_model_config(text: str, source: str = "<string>"
                       ) -> ModelServerConfig:
  """Parses a text-format ModelServerConfig.

  Raises:
    ModelConfigError: "Invalid protobuf file: '<source>': ..." (TF Serving's
      message).
  """
  config = ModelServerConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as e:
    raise ModelConfigError(
        f"Invalid protobuf file: '{source}': {e}") from None
  return config


def format_model_config(config: ModelServerConfig) -> str:
  text: str = text_format.MessageToString(config)
  return text


def read_model_config(serving_root: str) -> ModelServerConfig:
  """The ModelServerConfig in models.config (empty when there is none)."""
  path = model_config_path(serving_root)
  if not os.path.exists(path):
    return ModelServerConfig()
  with open(path) as f:
    return parse_model_config(f.read(), path)


@contextlib.contextmanager
def _exclusive(serving_root: str, lock_file: str) -> Iterator[None]:
  os.makedirs(serving_root, exist_ok=True)
  with open(os.path.join(serving_root, lock_file), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released by the kernel on SIGKILL.
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def config_lock(serving_root: str) -> contextlib.AbstractContextManager[None]:
  """Serializes read-modify-write of models.config across processes."""
  return _exclusive(serving_root, _LOCK_FILE)


def push_lock(serving_root: str,
              model_name: str) -> contextlib.AbstractContextManager[None]:
  """Serializes pushes of one model: numbering a version and pinning it.

  Without it, two pipelines pushing at once could each take a number and
  pin in the opposite order, leaving models.config on the older version.
  Held only around the rename and the pin, not the copy. (flock, like
  config_lock: on a shared network volume it needs a filesystem with
  working POSIX locks.)
  """
  return _exclusive(serving_root, f".push-{model_name}.lock")


def _write_model_config(serving_root: str, config: ModelServerConfig) -> str:
  path = model_config_path(serving_root)
  tmp = f"{path}.tmp-{uuid.uuid4().hex}"
  try:
    with open(tmp, "w") as f:
      f.write(_HEADER)
      f.write(format_model_config(config))
    os.replace(tmp, path)  # A polling server never reads half a file.
  except BaseException:
    with contextlib.suppress(OSError):  # e.g. the disk filled up
      os.remove(tmp)
    raise
  return path


def _model_entry(config: ModelServerConfig, model_name: str,
                 base_path: str) -> Any:
  for entry in config.model_config_list.config:
    if entry.name == model_name:
      return entry
  entry = config.model_config_list.config.add()
  entry.name = model_name
  entry.base_path = base_path
  entry.model_platform = TENSORFLOW_PLATFORM
  return entry


def pin_version(serving_root: str, model_name: str, version: int,
                base_path: Optional[str] = None) -> str:
  """Points models.config's entry for a model at one version.

  Other models' entries, and anything else in the file (labels, extra
  settings), are left as they are.

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
  with config_lock(root):
    config = read_model_config(root)
    entry = _model_entry(config, model_name,
                         base_path or model_root(root, model_name))
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
        version: int = policy.specific.versions[0]
        return version
  return None


def served_version(serving_root: str, model_name: str) -> Optional[int]:
  """The version served now: the pinned one if complete, else the highest.

  None when the model has no complete version.
  """
  versions = complete_versions(model_root(serving_root, model_name))
  if not versions:
    return None
  pinned = pinned_version(serving_root, model_name)
  return pinned if pinned in versions else versions[-1]


def served_model_dir(serving_root: str, model_name: str) -> Optional[str]:
  """The SavedModel directory of the served version, if any."""
  version = served_version(serving_root, model_name)
  if version is None:
    return None
  return version_dir(serving_root, model_name, version)
