"""The private kfp.local helpers the local runner uses, behind one module.

`mtrec run` executes the compiled pipeline with kfp.local's own task
semantics (executor input, placeholders, the DAG order, argument passing)
but its own orchestration (pipeline/runner.py says why). Those helpers are
kfp's internals, not its public API, so every use of them is here, and
tests/test_kfp_local.py fails loudly, naming this module, when the installed
kfp is not the version they were checked against. On a kfp upgrade: run
that test, check each function below against the new kfp.local, then bump
TESTED_KFP_VERSION.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

import kfp
from kfp.dsl import executor as kfp_executor
from kfp.local import executor_input_utils
from kfp.local import executor_output_utils
from kfp.local import io as kfp_io
from kfp.local import placeholder_utils
from kfp.local import subprocess_task_handler
from kfp.local import utils as kfp_local_utils
from kfp.local.orchestrator import orchestrator_utils
from kfp.pipeline_spec import pipeline_spec_pb2

TESTED_KFP_VERSION = "2.17.0"
# (module, attribute) of every private helper used here.
USED = (
    (kfp_executor, "create_artifact_instance"),
    (executor_input_utils, "construct_executor_input"),
    (executor_input_utils, "executor_input_to_dict"),
    (executor_output_utils, "get_outputs_for_task"),
    (kfp_io, "IOStore"),
    (kfp_io.IOStore, "put_task_output"),
    (kfp_io.IOStore, "put_parent_input"),
    (placeholder_utils, "replace_placeholders"),
    (subprocess_task_handler, "replace_python_executable"),
    (kfp_local_utils, "struct_to_executor_spec"),
    (orchestrator_utils.OrchestratorUtils, "join_user_inputs_and_defaults"),
    (orchestrator_utils.OrchestratorUtils, "make_task_arguments"),
)


def installed_version() -> str:
  return kfp.__version__


def executor_specs(pspec: pipeline_spec_pb2.PipelineSpec) -> dict[str, Any]:
  """Executor label -> its PipelineContainerSpec."""
  return {name: kfp_local_utils.struct_to_executor_spec(e)
          for name, e in pspec.deployment_spec["executors"].items()}


def task_order(dag: Any) -> list[str]:
  """The DAG's task names, producers before consumers.

  Kahn's algorithm with ties broken by name, so every run (and every
  Python hash seed) runs and logs the steps in one order; kfp's own
  topological sort leaves ties to set order.
  """
  waiting = {name: set(task.dependent_tasks) for name, task in
             dag.tasks.items()}
  order: list[str] = []
  while waiting:
    ready = sorted(n for n, deps in waiting.items() if not deps - set(order))
    if not ready:
      raise ValueError(f"the DAG has a cycle among {sorted(waiting)}")
    order.append(ready[0])
    del waiting[ready[0]]
  return order


def io_store(pspec: pipeline_spec_pb2.PipelineSpec,
             arguments: Mapping[str, Any]) -> Any:
  """An IOStore holding the run's parameters (defaults where not given)."""
  store = kfp_io.IOStore()
  for k, v in orchestrator_utils.OrchestratorUtils.join_user_inputs_and_defaults(
      dag_arguments=dict(arguments),
      dag_inputs_spec=pspec.root.input_definitions).items():
    store.put_parent_input(k, v)
  return store


def put_task_output(store: Any, task_name: str, name: str,
                    value: Any) -> None:
  """Hands a finished task's output to the tasks downstream."""
  store.put_task_output(task_name, name, value)


def task_arguments(task: Any, store: Any) -> dict[str, Any]:
  """A task's arguments: parameters and upstream artifacts."""
  return orchestrator_utils.OrchestratorUtils.make_task_arguments(
      task_inputs_spec=task.inputs, io_store=store)


def artifact(name: str, uri: str, metadata: Mapping[str, Any],
             schema_title: str) -> Any:
  """A dsl.Artifact of the given type, as an executor would hand it on."""
  return kfp_executor.create_artifact_instance({
      "name": name, "uri": uri, "metadata": dict(metadata),
      "type": {"schemaTitle": schema_title}})


def task_command(component_spec: Any, container: Any,
                 arguments: Mapping[str, Any], task_root: str,
                 output_uris: Mapping[str, str], output_file: str,
                 run_id: str, task_name: str,
                 pipeline_root: str) -> tuple[Any, list[str]]:
  """(executor input, command line) of one task, run by this interpreter."""
  executor_input = executor_input_utils.construct_executor_input(
      component_spec=component_spec, arguments=dict(arguments),
      task_root=task_root, block_input_artifact=False)
  for name, artifact_list in executor_input.outputs.artifacts.items():
    artifact_list.artifacts[0].uri = output_uris[name]
  executor_input.outputs.output_file = output_file
  executor_input_dict = executor_input_utils.executor_input_to_dict(
      executor_input=executor_input, component_spec=component_spec)
  command = placeholder_utils.replace_placeholders(
      full_command=list(container.command) + list(container.args),
      executor_input_dict=executor_input_dict,
      pipeline_resource_name=run_id, task_resource_name=task_name,
      pipeline_root=pipeline_root, unique_pipeline_id=run_id)
  return executor_input, subprocess_task_handler.replace_python_executable(
      command, sys.executable)


def task_outputs(executor_input: Any, component_spec: Any) -> dict[str, Any]:
  """What a finished task returned: parameters and artifacts."""
  return executor_output_utils.get_outputs_for_task(
      executor_input=executor_input, component_spec=component_spec)
