"""ModelServerConfig: reading, validating and applying it as TF Serving does.

One config format for both servers: the text-format
`tensorflow.serving.ModelServerConfig` that `--model_config_file` names and
`HandleReloadConfigRequest` carries, parsed with the official message so a
file that works here works in production and vice versa. This module holds
what TF Serving's ServerCore and FileSystemStoragePathSource decide from it:
which configs are legal (unique names, absolute base paths, the "tensorflow"
platform), which integer directories are versions, and which versions a
version policy wants loaded.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Iterable, Optional

import tensorflow as tf

from contracts import model_layout
from contracts import serving_layout
from serving import apis
from serving import status

_LOG = logging.getLogger("serving.config")

_VERSION_DIR_NAME = re.compile(r"[0-9]+")
_URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def parse_model_server_config(
    text: str, source: str = "<string>") -> apis.ModelServerConfig:
  """Parses a text-format ModelServerConfig.

  Raises:
    status.ServingError: INVALID_ARGUMENT "Invalid protobuf file: '<source>'"
      (TF Serving's message) followed by the parser's explanation.
  """
  try:
    return serving_layout.parse_model_config(text, source)
  except serving_layout.ModelConfigError as e:
    raise status.invalid_argument(str(e)) from None


def read_model_server_config(path: str) -> apis.ModelServerConfig:
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      text = f.read()
  except tf.errors.OpError as e:
    raise status.from_exception(e) from None
  return parse_model_server_config(text, path)


def format_model_server_config(config: apis.ModelServerConfig) -> str:
  return serving_layout.format_model_config(config)


def single_model_config(model_name: str,
                        model_base_path: str) -> apis.ModelServerConfig:
  """BuildSingleModelConfig: what --model_name/--model_base_path mean."""
  config = apis.ModelServerConfig()
  model = config.model_config_list.config.add()
  model.name = model_name
  model.base_path = model_base_path
  model.model_platform = apis.TENSORFLOW_PLATFORM
  return config


def is_relative_path(uri: str) -> bool:
  """UriIsRelativePath: no scheme and not an absolute path."""
  return not _URI_SCHEME.match(uri) and not os.path.isabs(uri)


def _platform(model: apis.ModelConfig) -> str:
  if model.model_type:  # The deprecated ModelType enum; 1 is TENSORFLOW.
    if model.model_platform:
      raise status.invalid_argument(
          "Illegal setting both ModelServerConfig::model_type (deprecated)"
          " and ModelServerConfig::model_platform.")
    if model.model_type == 1:
      return apis.TENSORFLOW_PLATFORM
    raise status.invalid_argument(
        f"ModelServerConfig::model_type choice {model.model_type} not"
        " supported.")
  if not model.model_platform:
    raise status.invalid_argument(
        "Illegal setting neither ModelServerConfig::model_type (deprecated)"
        " nor ModelServerConfig::model_platform.")
  return model.model_platform


def validate(config: apis.ModelServerConfig) -> None:
  """ServerCore's checks of a new config (ValidateModelConfigList & co).

  Raises:
    status.ServingError: with TF Serving's code and message.
  """
  kind = config.WhichOneof("config")
  if kind is None:
    return  # An empty config is legal and does nothing.
  if kind != "model_config_list":
    raise status.invalid_argument(
        "ServerModelConfig type not supported by HandleReloadConfigRequest."
        " Only ModelConfigList is currently supported")
  names = set()
  for model in config.model_config_list.config:
    if model.name in names:
      raise status.invalid_argument(
          f"Illegal to list model {model.name} multiple times in config list")
    names.add(model.name)
  for model in config.model_config_list.config:
    if is_relative_path(model.base_path):
      raise status.invalid_argument(
          f"Expected model {model.name} to have an absolute path or URI; got"
          f" base_path()={model.base_path}")
  for model in config.model_config_list.config:
    platform = _platform(model)
    if platform != apis.TENSORFLOW_PLATFORM:
      raise status.invalid_argument(
          f"Model {model.name} requests unsupported platform {platform}")


def list_versions(base_path: str) -> Optional[dict[int, str]]:
  """Version -> directory of the complete versions under a base path.

  As TF Serving's file-system source: every integer-named child is a
  version; anything else (".tmp-3", "3.partial") is not. Stricter than TF
  Serving, a directory still missing saved_model.pb (tf.saved_model.save
  writes it last) is not a version yet, so a version written in place is
  picked up when complete instead of failing its load.

  Returns:
    None when the base path cannot be listed (it does not exist).
  """
  try:
    names = tf.io.gfile.listdir(base_path)
  except tf.errors.OpError:
    return None
  versions = {}
  for name in sorted(names):
    name = name.rstrip("/")  # Object stores list directories as "3/".
    if not _VERSION_DIR_NAME.fullmatch(name):
      continue
    path = os.path.join(base_path, name)
    if any(tf.io.gfile.exists(os.path.join(path, f))
           for f in model_layout.SAVED_MODEL_FILES):
      versions.setdefault(int(name), path)
  return versions


def aspired_versions(model: apis.ModelConfig,
                     on_disk: Iterable[int]) -> set[int]:
  """The versions a model's version policy wants loaded.

  latest {num_versions: N} (the default, N at least 1): the N largest;
  all {}: every one; specific {versions: ...}: those of them on disk.
  """
  on_disk = sorted(set(on_disk))
  policy = model.model_version_policy
  choice = policy.WhichOneof("policy_choice")
  if choice == "all":
    return set(on_disk)
  if choice == "specific":
    wanted = set(policy.specific.versions)
    for version in sorted(wanted.difference(on_disk)):
      _LOG.warning(
          "version %d of servable %s, which was requested to be served as a"
          " 'specific' version in the servable's version policy, was not"
          " found in the file system", version, model.name)
    return wanted.intersection(on_disk)
  num_versions = max(policy.latest.num_versions, 1)
  return set(on_disk[-num_versions:])


def policy_description(model: apis.ModelConfig) -> str:
  """A short, log-friendly rendering of a model's version policy."""
  policy = model.model_version_policy
  choice = policy.WhichOneof("policy_choice")
  if choice == "all":
    return "all"
  if choice == "specific":
    return "specific " + ",".join(str(v) for v in policy.specific.versions)
  return f"latest {max(policy.latest.num_versions, 1)}"
