"""The local runner: executes the compiled KFP pipeline on this machine.

`mtrec run` compiles pipeline/kfp_pipeline.py to the same PipelineSpec that
`mtrec compile` writes for Kubeflow and walks its DAG: tasks in dependency
order (kfp.local's own graph and argument helpers), each task's compiled
command run as a subprocess (pipeline/task_launcher.py), typed artifacts
passed between tasks by URI. No Docker, cluster or network.

Why not kfp.local.SubprocessRunner itself? It runs the same compiled
commands in the same kind of subprocess and costs the same (measured on one
small synthetic run; figures in docs/design_measurements.md): each task
pays a fresh interpreter importing TensorFlow, TFT and Beam, never a pip
install (install_kfp_package=False) or Docker. One
process per task is also what makes the trainer's num_cpu_devices work: in a
single process TensorFlow is initialized by Transform before the trainer can
split the CPU into logical devices. What kfp.local imposes is the rest:
  - it lays a run out as <root>/<pipeline>-<timestamp>/<task-name>/<output>
    with lower-cased task names, not the project's
    <pipeline_root>/<run_id>/<Component>/<output>/ that run.json, the tests
    and the serving tools read;
  - its cache keys on the command, the whole config parameter and the input
    artifacts' URIs, so a changed trainer setting reruns ExampleGen, and a
    hit leaves the new run pointing into an old run's directories; here the
    key is per step (pipeline/cache.py) and a hit is linked into the new run;
  - a failed task surfaces as "Inner task failed: <task>"; here run.json and
    the last line of output name the step and its exception.
So this runner keeps kfp.local's task semantics (executor input, placeholders,
one process per task) and owns only the orchestration around them.

Layout of a run, as in ARCHITECTURE.md:
  <pipeline_root>/<run_id>/run.json
  <pipeline_root>/<run_id>/<Component>/<output>/   (artifacts, metadata.json)
  <pipeline_root>/<run_id>/logs/<Component>.log   (each task's whole output)
  <pipeline_root>/.cache/<Component>/<key>.json   (what a rerun may reuse)
run.json is rewritten after every step, so a run that fails still says which
step failed and why, and lineage can be read back without any orchestrator.
Rerunning after a failure reuses every step that succeeded (the cache), so
the run resumes at the step that failed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
import uuid
from typing import Any, Callable, Mapping, Optional, Sequence

from google.protobuf import json_format
from kfp import dsl
from kfp.pipeline_spec import pipeline_spec_pb2

from contracts import artifacts
from contracts import run_record
from contracts import serving_layout
from pipeline import cache as cache_lib
from pipeline import kfp_local
from pipeline import kfp_pipeline
from pipeline import step_deps
from pipeline import steps as steps_lib
from pipeline import task_launcher
from pipeline.config import PipelineConfig

RUN_FILE = run_record.RUN_FILE
LOG_DIR = run_record.LOG_DIR
# Parameters that carry a config section whose values key the cache, and
# what else a step that receives them depends on.
DATA_PARAMETER = "data_config"  # the source files it names (stamped)
TRAINER_PARAMETER = "trainer_config"  # with warm_start: the served model
# The ExampleValidator's: its drift baseline, found in the run records.
DATA_VALIDATION_PARAMETER = "data_validation_config"


class StepFailed(RuntimeError):
  """A pipeline step raised; the message names the step and the error."""

  def __init__(self, message: str, step: str = "", run_dir: str = ""):
    super().__init__(message)
    self.step = step
    self.run_dir = run_dir


@dataclasses.dataclass
class RunResult:
  """A finished run.

  `uris` maps every task output of the spec that ran, `"Component/output"`
  -> URI: the runner walks any compiled spec (the tests run small ones), so
  it cannot know the pipeline's artifacts. `artifacts` is the pipeline's
  view of the same URIs, by field.
  """
  run_id: str
  run_dir: str
  status: str
  uris: dict[str, str]
  steps: list[dict[str, Any]]

  @property
  def artifacts(self) -> steps_lib.ArtifactUris:
    return steps_lib.ArtifactUris.from_keys(self.uris)

  @property
  def pushed(self) -> dict[str, Any]:
    return artifacts.read_metadata(self.artifacts.pushed_model)["summary"]


def new_run_id() -> str:
  now = datetime.datetime.now(datetime.timezone.utc)
  return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_pipeline(config: PipelineConfig, output_dir: Optional[str] = None,
                 serving_root: Optional[str] = None,
                 run_id: Optional[str] = None,
                 num_cpu_devices: int = 1,
                 log: Callable[[str], None] = print,
                 use_cache: bool = True,
                 beam_args: Sequence[str] = (),
                 heartbeat_s: float = task_launcher.HEARTBEAT_SECONDS
                 ) -> RunResult:
  """Runs the KFP pipeline locally: ExampleGen → ... → Pusher.

  Args:
    config: the validated pipeline config.
    output_dir: pipeline root for this run (default: config.pipeline_root).
    serving_root: where the Pusher publishes (default: config.serving_root).
    run_id: defaults to a timestamped id.
    num_cpu_devices: >1 mirrors training over that many logical CPUs.
    log: progress sink.
    use_cache: False reruns every step (`--no-cache`).
    beam_args: extra Beam options, after the config's own.
    heartbeat_s: a step quiet this long gets a "still running" line, and
      again every as long (<= 0: never).

  Raises:
    StepFailed: a step raised; run.json records the failure.
  """
  root = os.path.abspath(output_dir or config.pipeline_root)
  serving_root = os.path.abspath(serving_root or config.serving_root)
  # The tasks see where this run really writes, whatever the file said.
  config = config.model_copy(
      update={"pipeline_root": root, "serving_root": serving_root})
  spec = kfp_pipeline.pipeline_spec(config)
  arguments = dict(kfp_pipeline.section_arguments(config))
  arguments["beam_args"] = [*arguments["beam_args"], *map(str, beam_args)]
  arguments["num_cpu_devices"] = num_cpu_devices
  return run_spec(spec, arguments, root, run_id=run_id, log=log,
                  use_cache=use_cache, heartbeat_s=heartbeat_s,
                  record={"config": config.model_dump(mode="json"),
                          "serving_root": serving_root})


def _task_key(step: str, container: Any, arguments: Mapping[str, Any],
              run_id: str = "") -> tuple[str, dict[str, Any]]:
  """The cache key of a task (see pipeline/cache.py) and what it covers.

  The task's parameters carry its code version and only its own config
  sections, so they key it as Kubeflow's cache would; the local cache adds
  what a parameter names but cannot carry: the content of the source files
  behind `data_config`, the model a warm-starting trainer starts from,
  and the earlier statistics the ExampleValidator measures drift against
  (components/example_validator.py: find_baseline makes the same choice).
  """
  source, function_name = task_launcher.embedded_source(container)
  _, modules = step_deps.code_version(source, function_name)
  command = json.dumps([list(container.command), list(container.args)])
  parameters: dict[str, Any] = {}
  inputs: dict[str, str] = {}
  for name, value in sorted(arguments.items()):
    if isinstance(value, dsl.Artifact):
      inputs[name] = cache_lib.artifact_fingerprint(value.uri)
    elif isinstance(value, str) and "{{$." in value:
      continue  # run-identity placeholders: the run id is not an input
    else:
      parameters[name] = value
  sources = []
  if DATA_PARAMETER in parameters:
    sources = cache_lib.source_stamps(
        json.loads(parameters[DATA_PARAMETER]).get("options", {}))
  if TRAINER_PARAMETER in parameters and json.loads(
      parameters[TRAINER_PARAMETER]).get("warm_start"):
    # The model it starts from is an input the config does not name: a push
    # since the last run must retrain, as a changed base model does in TFX.
    parameters["warm_start_from"] = cache_lib.served_model_stamp(
        serving_layout.served_model_dir(parameters["serving_root"],
                                        parameters["model_name"]))
  if DATA_VALIDATION_PARAMETER in parameters and not json.loads(
      parameters[DATA_VALIDATION_PARAMETER]).get("baseline_statistics") and (
          parameters.get("pipeline_root")):
    previous = run_record.previous_artifact(
        parameters["pipeline_root"], run_record.STATISTICS_ARTIFACT, run_id,
        differs_from=inputs.get("statistics"))
    parameters["drift_baseline"] = previous[2] if previous else None
  key = cache_lib.step_key(step, command, parameters, inputs, sources)
  covers = {"modules": modules, "parameters": sorted(parameters),
            "inputs": inputs, "sources": len(sources)}
  return key, covers


METADATA = artifacts.METADATA_FILE


def _complete(uri: str) -> bool:
  """A published artifact: a directory with metadata.json, or a file."""
  return os.path.isfile(uri) or os.path.isfile(os.path.join(uri, METADATA))


def _artifact_objects(component_spec: Any, uris: Mapping[str, str],
                      metadata: Mapping[str, Any]) -> dict[str, Any]:
  out = {}
  for name, uri in uris.items():
    spec = component_spec.output_definitions.artifacts[name]
    out[name] = kfp_local.artifact(name, uri, metadata.get(name) or {},
                                   spec.artifact_type.schema_title)
  return out


def _artifact_record(uri: str, kfp_type: str, task_inputs: Mapping[str, Any],
                     producer_run: str) -> dict[str, Any]:
  if os.path.isdir(uri):
    meta = artifacts.read_metadata(uri)
    return {"uri": uri, "type": meta["artifact_type"], "kfp_type": kfp_type,
            "fingerprint": meta["fingerprint"], "inputs": meta["inputs"],
            "summary": meta["summary"], "produced_by_run": meta["run_id"]}
  # A single-file artifact (an HTML or Markdown report for the KFP UI):
  # its inputs are the task's.
  return {"uri": uri, "type": kfp_type.split(".")[-1], "kfp_type": kfp_type,
          "fingerprint": artifacts.fingerprint(uri),
          "inputs": {n: {"uri": a.uri,
                         "fingerprint": cache_lib.artifact_fingerprint(a.uri)}
                     for n, a in task_inputs.items()
                     if isinstance(a, dsl.Artifact)},
          "summary": {}, "produced_by_run": producer_run}


def _link_inputs(record: dict[str, Any]) -> None:
  """Names, for every recorded input, the artifact of this run it is."""
  by_uri = {a["uri"]: k for k, a in record["artifacts"].items()}
  by_fp: dict[str, list[str]] = {}
  for k, a in record["artifacts"].items():
    by_fp.setdefault(a["fingerprint"], []).append(k)
  for a in record["artifacts"].values():
    for inp in a["inputs"].values():
      match = by_uri.get(inp.get("uri"))
      if match is None and len(by_fp.get(inp.get("fingerprint"), [])) == 1:
        match = by_fp[inp["fingerprint"]][0]
      inp["artifact"] = match


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


class _RunRecord:
  """run.json of one run: rewritten after every change, so a run that fails
  still says which step failed and why, and lineage reads back without an
  orchestrator."""

  def __init__(self, run_dir: str, fields: Mapping[str, Any]):
    self.path = os.path.join(run_dir, RUN_FILE)
    self.run = {**fields, "steps": [], "artifacts": {}}
    self.started = time.time()
    self.save()

  def save(self) -> None:
    artifacts.write_json_atomic(self.path, self.run)

  def add_step(self, entry: dict[str, Any]) -> None:
    self.run["steps"].append(entry)
    self.save()  # a run killed now still says which step was running

  def add_outputs(self, step: str, component_spec: Any,
                  out_uris: Mapping[str, str],
                  task_args: Mapping[str, Any], producer_run: str) -> None:
    for name, uri in out_uris.items():
      self.run["artifacts"][f"{step}/{name}"] = _artifact_record(
          uri, component_spec.output_definitions.artifacts[name]
          .artifact_type.schema_title, task_args, producer_run)
    _link_inputs(self.run)
    self.save()

  def finish(self, status: str, **fields: Any) -> None:
    self.run.update(status=status, **fields,
                    seconds=round(time.time() - self.started, 2),
                    finished_at=_now())
    self.save()


@dataclasses.dataclass(frozen=True)
class _Task:
  """One task of the compiled DAG, ready to run or to reuse."""
  name: str  # the DAG's task name
  step: str  # its display name: the component, in paths and run.json
  component_spec: Any
  container: Any
  args: dict[str, Any]
  root: str  # <run_dir>/<step>
  out_uris: dict[str, str]


def _reuse(task: _Task, hit: dict[str, Any], step_cache: cache_lib.StepCache,
           run_id: str, pipeline_root: str,
           entry: dict[str, Any]) -> dict[str, Any]:
  """Links a cached copy of the task's outputs into this run."""
  start = time.time()
  for name, uri in hit["copy"]["outputs"].items():
    cache_lib.link_copy(uri, task.out_uris[name])
  step_cache.add_copy(hit, run_id, task.out_uris)
  entry.update(status="cached", seconds=round(time.time() - start, 2),
               cached_from=hit["run_id"], original_seconds=hit["seconds"],
               log=os.path.join(pipeline_root, hit["run_id"], LOG_DIR,
                                f"{task.step}.log"))
  return {**hit["output_parameters"],
          **_artifact_objects(task.component_spec, task.out_uris,
                              hit.get("kfp_metadata", {}))}


def _execute(task: _Task, run_id: str, pipeline_root: str, log_dir: str,
             log: Callable[[str], None],
             heartbeat_s: float) -> task_launcher.TaskResult:
  """Runs the task as a subprocess; a result without every output fails."""
  result = task_launcher.launch(
      task.component_spec, task.container, task.args, task.root, task.step,
      run_id, pipeline_root, log_dir, lambda line: log(f"      {line}"),
      heartbeat_s)
  missing = [n for n, u in task.out_uris.items() if not _complete(u)]
  if result.succeeded and missing:
    result = dataclasses.replace(
        result, succeeded=False,
        error=f"IncompleteOutput: {task.step} returned without publishing "
        f"{', '.join(missing)} (an artifact needs its {METADATA})")
  return result


def run_spec(spec: Mapping[str, Any], arguments: Mapping[str, Any],
             pipeline_root: str, run_id: Optional[str] = None,
             log: Callable[[str], None] = print, use_cache: bool = True,
             record: Optional[Mapping[str, Any]] = None,
             heartbeat_s: float = task_launcher.HEARTBEAT_SECONDS
             ) -> RunResult:
  """Executes a compiled KFP pipeline spec (a dict, as loaded from YAML).

  A running step quiet for `heartbeat_s` gets a "still running" line
  (pipeline/task_launcher.py: Heartbeat).
  """
  run_id = run_id or new_run_id()
  run_dir = os.path.join(pipeline_root, run_id)
  log_dir = os.path.join(run_dir, LOG_DIR)
  os.makedirs(run_dir, exist_ok=True)
  pspec = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
  executors = kfp_local.executor_specs(pspec)
  dag = pspec.root.dag
  order = kfp_local.task_order(dag)
  io_store = kfp_local.io_store(pspec, arguments)
  step_cache = cache_lib.StepCache(pipeline_root)
  display = {name: dag.tasks[name].task_info.name or name for name in order}
  run_json = _RunRecord(run_dir, {
      "run_id": run_id,
      "pipeline_name": pspec.pipeline_info.name,
      "status": "running",
      "started_at": _now(),
      "pid": os.getpid(),
      "cache": use_cache,
      "parameters": {k: v for k, v in arguments.items()
                     if not k.endswith("_config")},  # sections: in "config"
      **dict(record or {}),
  })
  log(f"run {run_id} → {run_dir}")
  uris: dict[str, str] = {}
  for i, task_name in enumerate(order, 1):
    dag_task = dag.tasks[task_name]
    step = display[task_name]
    component_spec = pspec.components[dag_task.component_ref.name]
    task = _Task(
        task_name, step, component_spec,
        executors[component_spec.executor_label].container,
        kfp_local.task_arguments(dag_task, io_store),
        os.path.join(run_dir, step),
        task_launcher.output_uris(component_spec, os.path.join(run_dir, step)))
    entry = {"name": step, "status": "running",
             "inputs": {n: f"{display[a.task_output_artifact.producer_task]}/"
                           f"{a.task_output_artifact.output_artifact_key}"
                        for n, a in dag_task.inputs.artifacts.items()},
             "log": os.path.join(log_dir, f"{step}.log")}
    run_json.add_step(entry)
    key, covers = _task_key(step, task.container, task.args, run_id)
    entry["cache_key"] = key
    hit = (step_cache.lookup(step, key)
           if use_cache and dag_task.caching_options.enable_cache else None)
    if hit:
      outputs = _reuse(task, hit, step_cache, run_id, pipeline_root, entry)
      log(f"[{i}/{len(order)}] {step} ... cached (run {hit['run_id']}, "
          f"{hit['seconds']:.1f}s there)")
    else:
      log(f"[{i}/{len(order)}] {step} ...")
      result = _execute(task, run_id, pipeline_root, log_dir, log,
                        heartbeat_s)
      if not result.succeeded:
        entry.update(status="failed", seconds=result.seconds,
                     error=result.error, traceback=result.traceback)
        run_json.finish("failed", failed_step=step, error=result.error)
        log(f"      failed after {result.seconds:.1f}s; its output: "
            f"{entry['log']}")
        log(f"run {run_id} failed at {step}. Rerun the same command to resume "
            f"from {step}: the steps before it are reused from the cache.")
        # One line, so the end of the output names the step and the error;
        # run.json and the log keep the whole message and traceback.
        raise StepFailed(
            f"step {step} failed: {result.error.splitlines()[0]}", step,
            run_dir)
      outputs = result.outputs
      entry.update(status="succeeded", seconds=result.seconds)
      is_artifact = {n: isinstance(v, dsl.Artifact) for n, v in outputs.items()}
      step_cache.store(
          step, key, run_id,
          {n: v.uri for n, v in outputs.items() if is_artifact[n]},
          {n: v for n, v in outputs.items() if not is_artifact[n]},
          result.seconds, covers,
          {n: v.metadata for n, v in outputs.items() if is_artifact[n]})
    for name, value in outputs.items():
      kfp_local.put_task_output(io_store, task_name, name, value)
    uris.update({f"{step}/{name}": uri for name, uri in task.out_uris.items()})
    run_json.add_outputs(step, component_spec, task.out_uris, task.args,
                        entry.get("cached_from", run_id))
    message = outputs.get("Output")
    if message:
      log(f"      {message}")
    if entry["status"] == "succeeded":
      log(f"      done in {entry['seconds']:.1f}s")
  run_json.finish("succeeded")
  run = run_json.run
  times = ", ".join(
      f"{s['name']} cached" if s["status"] == "cached" else
      f"{s['name']} {s['seconds']:.0f}s" for s in run["steps"])
  log(f"run {run_id} succeeded in {run['seconds']:.1f}s ({times})")
  return RunResult(run_id, run_dir, "succeeded", uris, run["steps"])
