"""`mtrec rollback`: serve the previous version of a model again.

A bad version is rolled back by configuration, not by deleting it: the
pusher's models.config pins each model to one version, and rolling back
re-pins the previous one (`rollback` below). Servers pick the
change up the way TF Serving does:

* a server started with `--model_config_file=<serving_root>/models.config
  --model_config_file_poll_wait_seconds=N` re-reads the file within N
  seconds (in Kubernetes, the same file in a ConfigMap);
* with `--server host:port`, this command also sends the new config through
  ModelService.HandleReloadConfigRequest, so the switch happens now.

Either way the server loads the old version from disk, warms it up, and only
then unloads the bad one: no request fails during a rollback.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import grpc

from contracts import flags
from contracts import serving_layout


def rollback(serving_root: str, model_name: str,
             to_version: Optional[int] = None) -> tuple[int, int]:
  """Re-pins a model to the version before the one it serves.

  The served version is `serving_layout.served_version`'s (the pinned one,
  or the newest complete one when nothing is pinned). Repeated rollbacks
  walk further back.

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
  model_root = serving_layout.model_root(serving_root, model_name)
  versions = serving_layout.complete_versions(model_root)
  current = serving_layout.served_version(serving_root, model_name)
  if current is None:
    raise ValueError(f"No versions of {model_name} under {model_root}")
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
  serving_layout.pin_version(serving_root, model_name, target)
  return current, target


def reload_server(target: str, config: serving_layout.ModelServerConfig,
                  timeout: float) -> None:
  """Sends a config with HandleReloadConfigRequest; raises grpc.RpcError.

  serving.apis (TensorFlow's protos) is imported here, not at the top, so
  `mtrec rollback --help` and a rollback without --server stay fast.
  """
  from serving import apis  # pylint: disable=g-import-not-at-top
  request = apis.ReloadConfigRequest()
  request.config.CopyFrom(config)
  with grpc.insecure_channel(target) as channel:
    apis.ModelServiceStub(channel).HandleReloadConfigRequest(
        request, timeout=timeout)


def rollback_main(argv: Optional[list[str]] = None) -> int:
  """`mtrec rollback --model-name M [--serving-root D] [--to-version V]`.

  Every flag takes `_` or `-` (`--model_name`, `--to_version` too).

  Args:
    argv: arguments without the program name; None reads sys.argv.

  Returns:
    0 on success; 1 when there is nothing to roll back to or the server
    refused the new config.
  """
  parser = flags.FlagParser(
      prog="mtrec rollback",
      description="Point serving back to the previous version of a model.")
  parser.add_argument("--model-name", default="mtrec",
                      help="The model to roll back.")
  parser.add_argument("--serving-root", default="serving_models",
                      help="The pusher's serving root (holds models.config).")
  parser.add_argument("--to-version", type=int, default=None,
                      help="Go to this version instead of the previous one.")
  parser.add_argument("--server", default=None,
                      help="host:port of a running server to reload now.")
  parser.add_argument("--timeout", type=float, default=120.0,
                      help="Seconds to wait for the server's reload.")
  args = parser.parse_args(argv)
  try:
    before, after = rollback(args.serving_root, args.model_name,
                             args.to_version)
  except ValueError as e:  # ModelConfigError too
    print(f"mtrec rollback: {e}", file=sys.stderr)
    return 1
  path = serving_layout.model_config_path(args.serving_root)
  print(f"{args.model_name}: version {before} -> {after} (pinned in {path})")
  if args.server:
    config = serving_layout.read_model_config(args.serving_root)
    try:
      reload_server(args.server, config, args.timeout)
    except grpc.RpcError as e:
      print(f"mtrec rollback: {args.server} refused the config:"
            f" {e.code().name}: {e.details()}", file=sys.stderr)
      return 1
    print(f"{args.server} reloaded its config")
  else:
    print("Servers polling "
          f"{os.path.basename(path)} (--model_config_file_poll_wait_seconds)"
          " switch at their next poll; pass --server to switch one now.")
  return 0


if __name__ == "__main__":
  sys.exit(rollback_main())
