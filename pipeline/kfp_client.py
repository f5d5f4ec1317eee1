"""Sends the compiled pipeline to a Kubeflow Pipelines endpoint.

A thin layer over `kfp.Client` so that `mtrec submit` says what it sent and
where to look, and so tests can swap the client for a stub: nothing here
talks to the network except through `kfp.Client`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import kfp


@dataclasses.dataclass(frozen=True)
class Submitted:
  run_id: str
  url: str


def submit(package_path: str, host: str, arguments: Mapping[str, Any],
           run_name: Optional[str] = None, experiment: Optional[str] = None,
           namespace: Optional[str] = None, pipeline_root: Optional[str] = None,
           enable_caching: Optional[bool] = None) -> Submitted:
  """Creates a run of the pipeline package on the KFP endpoint at `host`.

  Args:
    package_path: the compiled pipeline YAML.
    host: the KFP API endpoint, e.g. https://kubeflow.example.com/pipeline.
    arguments: run parameters (the *_config sections, beam_args, ...).
    run_name: the run's name in the UI (KFP picks one when None).
    experiment: the experiment to file it under (KFP's default when None).
    namespace: the Kubernetes namespace of a multi-user deployment.
    pipeline_root: where the run's artifacts go (e.g. gs://bucket/root).
    enable_caching: None keeps the compiled setting (cache on); False reruns
      every task.
  """
  client = kfp.Client(host=host, namespace=namespace) if namespace else (
      kfp.Client(host=host))
  result = client.create_run_from_pipeline_package(
      package_path, arguments=dict(arguments), run_name=run_name,
      experiment_name=experiment, namespace=namespace,
      pipeline_root=pipeline_root, enable_caching=enable_caching)
  return Submitted(result.run_id,
                   f"{host.rstrip('/')}/#/runs/details/{result.run_id}")
