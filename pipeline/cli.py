"""The `mtrec` command.

  mtrec run --config CONFIG [--output-dir DIR] [--serving-root DIR]
  mtrec demo [--config CONFIG] [--port PORT]
  mtrec serve --port 8500 --model_name mtrec --model_base_path DIR
  mtrec recommend --user U [--server localhost:8500] [--model_name mtrec]

`serve` and `recommend` take TF Serving's own flag names, so scripts written
against the real server's command line work here unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "demo.yaml")


def _run(argv: list[str]) -> int:
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog="mtrec run", description="Run the pipeline locally, end to end.")
  parser.add_argument("--config", required=True, help="Pipeline YAML.")
  parser.add_argument("--output-dir", help="Pipeline root for this run "
                      "(default: the config's pipeline_root).")
  parser.add_argument("--serving-root", help="Where blessed models are pushed "
                      "(default: the config's serving_root).")
  parser.add_argument("--num-cpu-devices", type=int, default=1,
                      help="Mirror training over this many logical CPUs.")
  args = parser.parse_args(argv)
  try:
    config = config_lib.load_config(args.config)
  except config_lib.ConfigError as e:
    print(f"mtrec run: {e}", file=sys.stderr)
    return 2
  try:
    runner.run_pipeline(config, args.output_dir, args.serving_root,
                        num_cpu_devices=args.num_cpu_devices)
  except runner.StepFailed as e:
    print(f"mtrec run: {e}", file=sys.stderr)
    return 1
  return 0


def _demo(argv: list[str]) -> int:
  """Runs the pipeline on the embedded default, serves it, asks for items."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  from serving import model_server  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from components import features as F  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="mtrec demo")
  parser.add_argument("--config", default=DEMO_CONFIG)
  parser.add_argument("--port", type=int, default=0,
                      help="gRPC port for the server (0: any free port).")
  args = parser.parse_args(argv)
  config = config_lib.load_config(args.config)
  try:
    result = runner.run_pipeline(config)
  except runner.StepFailed as e:
    print(f"mtrec demo: {e}", file=sys.stderr)
    return 1
  pushed = result.pushed
  if not pushed["pushed"]:
    print(f"mtrec demo: {pushed['reason']}", file=sys.stderr)
    return 1
  base_path = os.path.dirname(pushed["destination"])
  user = tft.TFTransformOutput(result.uris["Transform/transform_graph"]
                               ).vocabulary_by_name(F.USER_ID_VOCAB)[0].decode()
  with model_server.ModelServer(config.model_name, base_path, port=args.port,
                                host="127.0.0.1") as server:
    target = f"localhost:{server.port}"
    print(f"\nserving {config.model_name} version {server.version} on "
          f"{target} (gRPC, TF Serving API)")
    print(f"$ mtrec recommend --user {user} --server {target} "
          f"--model_name {config.model_name}")
    status = client_lib.recommend_main(
        ["--user", user, "--server", target, "--model_name",
         config.model_name])
  print(f"\nTo serve it yourself: mtrec serve --port 8500 --model_name "
        f"{config.model_name} --model_base_path {base_path}")
  return status


def main(argv: Optional[list[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  commands = {"run": _run, "demo": _demo}
  if not argv or argv[0] in ("-h", "--help") or argv[0] not in (
      *commands, "serve", "recommend"):
    print(__doc__.strip(), file=sys.stderr)
    return 0 if argv and argv[0] in ("-h", "--help") else 2
  command, rest = argv[0], argv[1:]
  if command == "serve":
    from serving import model_server  # pylint: disable=g-import-not-at-top
    return model_server.serve_main(rest)
  if command == "recommend":
    from serving import client  # pylint: disable=g-import-not-at-top
    return client.recommend_main(rest)
  return commands[command](rest)


if __name__ == "__main__":
  sys.exit(main())
