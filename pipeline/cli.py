"""The `mtrec` command.

  mtrec run --config CONFIG [--output-dir DIR] [--serving-root DIR] [--no-cache]
            [--num-cpu-devices N] [--beam-arg=--runner=... ...]
  mtrec demo [--config CONFIG] [--port PORT] [--no-cache]
  mtrec compile [--config CONFIG] --output FILE [--image IMAGE]
                [--accelerator TYPE] [--gpus N] [--pipeline-root URI]
  mtrec submit --host URL [--config CONFIG | --package FILE] [--image IMAGE]
               [--experiment NAME] [--run-name NAME] [--no-cache] ...
  mtrec runs [--root DIR] [--limit N]
  mtrec runs show RUN_ID [--root DIR]
  mtrec serve --port 8500 --model_name mtrec --model_base_path DIR
  mtrec recommend --user U [--server localhost:8500] [--model_name mtrec]
  mtrec score --user U --items I1,I2 [--server HOST:PORT] [--model_name M]
  mtrec metadata [--server HOST:PORT] [--model_name M] [--json]
  mtrec status [--server HOST:PORT] [--model_name M]
  mtrec rollback --model-name M --serving-root DIR [--to-version V]
  mtrec catalog refresh --items FILE [--config CONFIG] [--serving-root DIR]
                        [--model_name M] [--cache-dir DIR]
  mtrec tune --config CONFIG --space SPACE [--output FILE]
             [--katib-experiment FILE [--image IMAGE]]

`run` executes the same KFP pipeline that `compile` writes and `submit`
sends to Kubeflow, locally: no Docker, cluster or network. A step whose
inputs, parameters and code are unchanged is reused (`--no-cache` reruns
everything); rerunning after a failure resumes at the failed step.

`catalog refresh` adds or updates items (CSV or JSON Lines: item_id, title,
categories 'a|b', year, tags 'x|y') in the served model without retraining:
their text is embedded (text-hash cache first), the candidate index is
recomputed through the trained tower, and a new version is pushed and pinned.

`serve`, `recommend`, `score`, `metadata` and `status` take TF Serving's
own flag names, so scripts written
against the real server's command line work here unchanged. Every other
multi-word flag, and the client commands' too, takes either spelling:
`--model_name` or `--model-name`, `--serving-root` or `--serving_root`
(contracts/flags.py). Help is on stdout; `mtrec --version` prints the
installed version; no command imports TensorFlow before its flags parse, so
`--help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Callable, Optional

from contracts import flags

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "demo.yaml")


def _load_config(path: str, command: str):
  """The validated config, or None after printing why not."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    return config_lib.load_config(path)
  except config_lib.ConfigError as e:
    print(f"mtrec {command}: {e}", file=sys.stderr)
    return None


def _add_cache_flag(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--no-cache", action="store_true",
                      help="Rerun every step instead of reusing unchanged "
                      "ones.")


def _add_run_parameters(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--num-cpu-devices", type=int, default=1,
                      help="Mirror training over this many logical CPUs.")
  parser.add_argument("--beam-arg", action="append", default=[],
                      metavar="=--OPTION=VALUE",
                      help="An extra Beam pipeline option for ExampleGen, "
                      "Transform and the evaluator, after the config's "
                      "beam_args; repeatable, written with '=' "
                      "(--beam-arg=--runner=FlinkRunner).")


def _run(argv: list[str]) -> int:
  parser = flags.FlagParser(
      prog="mtrec run",
      description="Run the KFP pipeline locally, end to end.")
  parser.add_argument("--config", required=True, help="Pipeline YAML.")
  parser.add_argument("--output-dir", help="Pipeline root for this run "
                      "(default: the config's pipeline_root).")
  parser.add_argument("--serving-root", help="Where blessed models are pushed "
                      "(default: the config's serving_root).")
  _add_run_parameters(parser)
  _add_cache_flag(parser)
  args = parser.parse_args(argv)
  config = _load_config(args.config, "run")
  if config is None:
    return 2
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  try:
    runner.run_pipeline(config, args.output_dir, args.serving_root,
                        num_cpu_devices=args.num_cpu_devices,
                        use_cache=not args.no_cache, beam_args=args.beam_arg)
  except runner.StepFailed as e:
    print(f"mtrec run: {e}", file=sys.stderr)
    return 1
  return 0


def _demo(argv: list[str]) -> int:
  """Runs the pipeline on the embedded default, serves it, asks for items."""
  parser = flags.FlagParser(prog="mtrec demo")
  parser.add_argument("--config", default=DEMO_CONFIG)
  parser.add_argument("--port", type=int, default=0,
                      help="gRPC port for the server (0: any free port).")
  _add_cache_flag(parser)
  args = parser.parse_args(argv)
  config = _load_config(args.config, "demo")
  if config is None:
    return 2
  # After the flags and the config: `--help` or a bad config answers at once
  # instead of after TensorFlow loads.
  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft
  from contracts import features as F
  from pipeline import runner
  from serving import client as client_lib
  from serving import client_cli
  from serving import model_server
  # pylint: enable=g-import-not-at-top
  try:
    result = runner.run_pipeline(config, use_cache=not args.no_cache)
  except runner.StepFailed as e:
    print(f"mtrec demo: {e}", file=sys.stderr)
    return 1
  pushed = result.pushed
  if not pushed["pushed"]:
    print(f"mtrec demo: {pushed['reason']}", file=sys.stderr)
    return 1
  base_path = os.path.dirname(pushed["destination"])
  user = tft.TFTransformOutput(result.artifacts.transform_graph
                               ).vocabulary_by_name(F.USER_ID_VOCAB)[0].decode()
  with model_server.ModelServer(config.model_name, base_path, port=args.port,
                                host="127.0.0.1") as server:
    target = f"localhost:{server.port}"
    print(f"\nserving {config.model_name} version {server.version} on "
          f"{target} (gRPC, TF Serving API)")
    print(f"$ mtrec recommend --user {user} --server {target} "
          f"--model_name {config.model_name}")
    status = client_cli.recommend_main(
        ["--user", user, "--server", target, "--model_name",
         config.model_name])
    if status == 0:  # and why the first item
      with client_lib.PredictionClient(target) as client:
        item = client_lib.recommend(client, config.model_name, user)[0][
            "item_id"]
      print(f"\n$ mtrec explain --user {user} --item {item} --server "
            f"{target} --model_name {config.model_name}")
      status = client_cli.explain_main(
          ["--user", user, "--item", item, "--server", target,
           "--model_name", config.model_name])
  print(f"\nTo serve it yourself: mtrec serve --port 8500 --model_name "
        f"{config.model_name} --model_base_path {base_path}")
  return status


def _add_compile_settings(parser: argparse.ArgumentParser) -> None:
  from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top
  parser.add_argument(
      "--image", default=None,
      help="Component image (default: $MTREC_IMAGE or "
      f"{kfp_pipeline.DEFAULT_IMAGE}); build it from the Dockerfile.")
  parser.add_argument("--accelerator", default=kfp_pipeline.DEFAULT_ACCELERATOR,
                      help="The trainer's accelerator type.")
  parser.add_argument("--gpus", type=int, default=1,
                      help="Accelerators the trainer requests (0: none).")
  parser.add_argument("--pipeline-root", default=None,
                      help="Artifact root on the cluster, e.g. gs://b/root "
                      "(default: the KFP deployment's).")


def _settings(args: argparse.Namespace):
  from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top
  return kfp_pipeline.Settings(
      image=args.image or kfp_pipeline.default_image(),
      accelerator=args.accelerator, gpus=args.gpus,
      pipeline_root=args.pipeline_root)


def _compile(argv: list[str]) -> int:
  from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top
  parser = flags.FlagParser(
      prog="mtrec compile",
      description="Write the KFP v2 pipeline YAML for Kubeflow. Each config "
      "section becomes the default of its run parameter (trainer_config, "
      "...), received only by the steps that read it.")
  parser.add_argument("--config", default=DEMO_CONFIG,
                      help="Pipeline YAML (default: the demo config).")
  parser.add_argument("--output", required=True, help="Pipeline YAML to write.")
  _add_compile_settings(parser)
  args = parser.parse_args(argv)
  config = _load_config(args.config, "compile")
  if config is None:
    return 2
  settings = _settings(args)
  kfp_pipeline.compile_pipeline(config, args.output, settings)
  gpu = (f"{settings.gpus} x {settings.accelerator}" if settings.gpus else
         "no GPU")
  workers = config.trainer.workers
  if workers > 1:
    tfjob = config.trainer.tfjob
    gpu = (f"a TFJob of {workers} workers in namespace {tfjob.namespace}, "
           f"{tfjob.gpus_per_worker} GPU(s) each")
  print(f"wrote {args.output} (pipeline {config.pipeline_name}, image "
        f"{settings.image}, trainer: {gpu})")
  return 0


def _submit(argv: list[str]) -> int:
  from pipeline import kfp_client  # pylint: disable=g-import-not-at-top
  from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top
  parser = flags.FlagParser(
      prog="mtrec submit",
      description="Send the pipeline to a Kubeflow Pipelines endpoint.")
  parser.add_argument("--host", required=True, help="KFP API endpoint URL.")
  parser.add_argument("--config", default=None,
                      help="Pipeline YAML (default: the demo config); its "
                      "sections are sent as the run's *_config parameters.")
  parser.add_argument("--package", default=None,
                      help="A pipeline YAML from `mtrec compile` (default: "
                      "compile one now).")
  parser.add_argument("--experiment", default=None)
  parser.add_argument("--run-name", default=None)
  parser.add_argument("--namespace", default=None,
                      help="Kubernetes namespace (multi-user deployments).")
  parser.add_argument("--serving-root", default=None,
                      help="Where the Pusher publishes, as the pods see it.")
  _add_run_parameters(parser)
  _add_compile_settings(parser)
  _add_cache_flag(parser)
  args = parser.parse_args(argv)
  config = _load_config(args.config or DEMO_CONFIG, "submit")
  if config is None:
    return 2
  if args.serving_root:
    config = config.model_copy(update={"serving_root": args.serving_root})
  arguments = dict(kfp_pipeline.section_arguments(config))
  arguments["beam_args"] = [*arguments["beam_args"], *args.beam_arg]
  arguments["num_cpu_devices"] = args.num_cpu_devices
  with tempfile.TemporaryDirectory() as tmp:
    package = args.package or kfp_pipeline.compile_pipeline(
        config, os.path.join(tmp, "pipeline.yaml"), _settings(args))
    submitted = kfp_client.submit(
        package, args.host, arguments, run_name=args.run_name,
        experiment=args.experiment, namespace=args.namespace,
        pipeline_root=args.pipeline_root,
        enable_caching=False if args.no_cache else None)
  print(f"submitted run {submitted.run_id}: {submitted.url}")
  return 0


def _runs(argv: list[str]) -> int:
  from pipeline import runs  # pylint: disable=g-import-not-at-top
  show = bool(argv) and argv[0] == "show"
  parser = flags.FlagParser(
      prog="mtrec runs show" if show else "mtrec runs",
      description="The lineage of one run: each step and the inputs every "
      "artifact came from." if show else "Runs under a pipeline root, newest "
      "first, with status, duration and key metrics.")
  if show:
    parser.add_argument("run_id", help="A run id (or a unique prefix).")
  parser.add_argument("--root", default=None,
                      help="Pipeline root (default: the --config's "
                      "pipeline_root, else ./runs).")
  parser.add_argument("--config", default=None)
  if not show:
    parser.add_argument("--limit", type=int, default=20)
  args = parser.parse_args(argv[1:] if show else argv)
  root = args.root
  if root is None and args.config:
    config = _load_config(args.config, "runs")
    if config is None:
      return 2
    root = config.pipeline_root
  root = root or "runs"
  if show:
    try:
      run = runs.find_run(root, args.run_id)
    except KeyError as e:
      print(f"mtrec runs show: {e.args[0]}", file=sys.stderr)
      return 1
    sys.stdout.write(runs.format_lineage(run))
    return 0
  found = runs.load_runs(root)
  if not found:
    print(f"no runs under {root}")
    return 0
  sys.stdout.write(runs.format_runs(found[:args.limit]))
  return 0


def _tune(argv: list[str]) -> int:
  parser = flags.FlagParser(
      prog="mtrec tune",
      description="Hyperparameter search for the trainer section, scored "
      "on the validation split (pipeline/tuning.py): run here, or written "
      "as a Katib Experiment.")
  parser.add_argument("--config", default=DEMO_CONFIG,
                      help="Pipeline YAML (example_gen.validation_fraction "
                      "> 0).")
  parser.add_argument("--space", required=True,
                      help="Search space YAML (e.g. configs/search_space.yaml).")
  parser.add_argument("--work-dir", default=None,
                      help="Where the prepared artifacts and trials go "
                      "(default: <pipeline_root>/tune).")
  parser.add_argument("--output", default=None,
                      help="Also write the trials and the best as JSON.")
  parser.add_argument("--katib-experiment", default=None,
                      help="Write a Katib Experiment YAML instead of "
                      "searching here; its trials read --work-dir's "
                      "artifacts, which this prepares.")
  parser.add_argument("--image", default=None,
                      help="The trials' image (default: $MTREC_IMAGE or "
                      "mtrec:latest).")
  parser.add_argument("--name", default="mtrec-tune")
  parser.add_argument("--namespace", default="kubeflow")
  args = parser.parse_args(argv)
  config = _load_config(args.config, "tune")
  if config is None:
    return 2
  import json  # pylint: disable=g-import-not-at-top
  import yaml  # pylint: disable=g-import-not-at-top
  from pipeline import tuning  # pylint: disable=g-import-not-at-top
  try:
    space = tuning.load_space(args.space)
    work_dir = args.work_dir or os.path.join(config.pipeline_root, "tune")
    if args.katib_experiment:
      from pipeline import kfp_pipeline  # pylint: disable=g-import-not-at-top
      experiment = tuning.katib_experiment(
          config, space, os.path.abspath(work_dir),
          args.image or kfp_pipeline.default_image(), args.name,
          args.namespace)
      tuning.prepare(config, work_dir)
      with open(args.katib_experiment, "w") as f:
        yaml.safe_dump(experiment, f, sort_keys=False)
      print(f"wrote {args.katib_experiment}: {space.max_trials} trials on "
            f"{work_dir} (kubectl apply -f {args.katib_experiment})")
      return 0
    result = tuning.search_locally(config, space, work_dir)
  except ValueError as e:
    print(f"mtrec tune: {e}", file=sys.stderr)
    return 2
  print(tuning.table(result))
  print(f"best: {result['best']['settings']} "
        f"({result['objective']} {result['best'][result['objective']]:.4f})")
  if args.output:
    with open(args.output, "w") as f:
      json.dump(result, f, indent=2)
  return 0


def _catalog(argv: list[str]) -> int:
  """`mtrec catalog refresh`: new or changed items, no retraining."""
  parser = flags.FlagParser(
      prog="mtrec catalog refresh",
      description="Add or update catalog items in the served model: embed "
      "their text, rebuild it from the served version, validate it, push and "
      "pin a new version, recorded as a run under the pipeline root. No "
      "retraining.")
  parser.add_argument("action", choices=["refresh"])
  parser.add_argument("--items", required=True,
                      help="CSV or JSON Lines of items: item_id, title, "
                      "categories ('a|b'), year, tags ('x|y').")
  parser.add_argument("--config", default=None,
                      help="Pipeline YAML: serving_root, model_name, "
                      "pipeline_root and the text cache default to its "
                      "values.")
  parser.add_argument("--serving-root", default=None)
  parser.add_argument("--model-name", default=None)
  parser.add_argument("--output-dir", "--pipeline-root", dest="output_dir",
                      default=None,
                      help="Where the refresh's run record and model go "
                      "(default: the config's pipeline_root, else runs).")
  parser.add_argument("--cache-dir", default=None,
                      help="The TextEmbedder's text-hash cache (default: "
                      "the config's text_embedder.cache_dir, else "
                      "<pipeline_root>/.cache/text_embeddings).")
  args = parser.parse_args(argv)
  config = None
  if args.config:
    config = _load_config(args.config, "catalog refresh")
    if config is None:
      return 2
  serving_root = args.serving_root or (config.serving_root if config else
                                       "serving_models")
  model_name = args.model_name or (config.model_name if config else "mtrec")
  pipeline_root = args.output_dir or (config.pipeline_root if config else
                                      "runs")
  cache_dir = args.cache_dir
  if cache_dir is None and config is not None:
    cache_dir = config.model_copy(
        update={"pipeline_root": pipeline_root}).text_embedding_cache_dir()
  # pylint: disable-next=g-import-not-at-top
  from pipeline import catalog_refresh
  from trainer import refresh  # pylint: disable=g-import-not-at-top
  try:
    items = refresh.read_items_file(args.items)
    result = catalog_refresh.refresh_catalog(
        serving_root, model_name, items, pipeline_root, cache_dir,
        latency_budget_ms=(config.evaluator.latency_budget_ms if config
                           else 250.0))
  except (OSError, ValueError, catalog_refresh.RefreshFailed) as e:
    print(f"mtrec catalog refresh: {e}", file=sys.stderr)
    return 1
  print(f"version {result['version']} pushed: {result['added']} added, "
        f"{result['updated']} updated, {result['catalog_items']} items "
        f"indexed ({result['embedded']} texts embedded, {result['cached']} "
        "from the cache)")
  return 0


def _lazy(module: str, function: str) -> Callable[[list[str]], int]:
  """A handler that imports its module only when the command runs."""

  def handler(argv: list[str]) -> int:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(module), function)(argv)

  return handler


def _serve(argv: list[str]) -> int:
  """`mtrec serve`: the model server program (serving/model_server.py)."""
  if "-h" in argv or "--help" in argv:  # without loading TensorFlow
    from serving import server_flags  # pylint: disable=g-import-not-at-top
    server_flags.build_arg_parser().print_help()
    return 0
  from serving import runtime  # pylint: disable=g-import-not-at-top
  runtime.use_server_kernels()  # Before the server module loads TensorFlow.
  return _lazy("serving.model_server", "serve_main")(argv)


# Subcommand -> handler(argv after the subcommand) -> exit status.
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "demo": _demo,
    "compile": _compile,
    "submit": _submit,
    "runs": _runs,
    "serve": _serve,
    "recommend": _lazy("serving.client_cli", "recommend_main"),
    "score": _lazy("serving.client_cli", "score_main"),
    "explain": _lazy("serving.client_cli", "explain_main"),
    "metadata": _lazy("serving.client_cli", "metadata_main"),
    "status": _lazy("serving.client_cli", "status_main"),
    "rollback": _lazy("serving.rollback", "rollback_main"),
    "catalog": _catalog,
    "tune": _tune,
}


# One line each for `mtrec --help`; `mtrec COMMAND --help` has the flags.
SUMMARIES = {
    "run": "run the pipeline locally, end to end (cached steps reused)",
    "demo": "run the demo pipeline on synthetic data, serve it, ask it",
    "compile": "compile the pipeline to a KFP v2 YAML for Kubeflow",
    "submit": "send the compiled pipeline to a Kubeflow Pipelines endpoint",
    "runs": "list local runs, or show one (steps, artifacts, errors)",
    "serve": "serve models over TF Serving's gRPC and REST APIs",
    "recommend": "ask a server for a user's top items",
    "score": "ask a server to score items for a user",
    "explain": "ask a server why it ranks an item for a user",
    "metadata": "print a served model's signatures",
    "status": "print a served model's version states",
    "rollback": "re-pin the previously served version in models.config",
    "catalog": "catalog refresh: add items to the served model, no training",
    "tune": "hyperparameter search on the validation split (or for Katib)",
}


def version() -> str:
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  try:
    return importlib.metadata.version("mtrec")
  except importlib.metadata.PackageNotFoundError:  # run from a source tree
    return "unknown (not installed)"


def usage() -> str:
  width = max(map(len, COMMANDS))
  return "\n".join(
      ["usage: mtrec COMMAND [--help] ...", "", "commands:"] +
      [f"  {name:<{width}}  {SUMMARIES[name]}" for name in COMMANDS] +
      ["", "mtrec --version prints the version; mtrec COMMAND --help a "
       "command's flags."])


def main(argv: Optional[list[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] in ("-h", "--help", "help"):
    print(usage())  # asked for: stdout, success
    return 0
  if argv and argv[0] in ("-V", "--version"):
    print(f"mtrec {version()}")
    return 0
  if not argv or argv[0] not in COMMANDS:
    if argv:
      print(f"mtrec: unknown command {argv[0]!r}", file=sys.stderr)
    print(usage(), file=sys.stderr)
    return 2
  return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
  sys.exit(main())
