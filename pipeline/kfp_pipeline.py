"""The KFP v2 pipeline: the only description of mtrec's DAG.

  ExampleGen ─► Transform ─► Trainer (GPU) ─► Evaluator ─► Pusher
      │  └──────────────┴──────────┴──────────────┘  (examples, catalog, graph)
      └─► TextEmbedder (item text → LM vectors) ─┘  when text_embedder.enabled

`mtrec compile` writes it as YAML for Kubeflow, `mtrec submit` sends that to
a KFP endpoint, and `mtrec run` executes the same compiled spec locally
(pipeline/runner.py), so there is no second list of steps to drift.

Run-time parameters are what a Kubeflow user may change per run without
recompiling: the config (JSON, validated inside every task; it also says
where blessed models go), extra Beam options (e.g. `--runner=DataflowRunner
...` for ExampleGen, Transform and the evaluator) and the trainer's
distribution settings.
Compile-time settings are the container image and the trainer's GPU.

No `from __future__ import annotations`: KFP reads the pipeline function's
annotations with `inspect.signature` and cannot resolve string annotations.
"""

import dataclasses
import json
import os
import tempfile
from typing import Any, Dict, Optional

from kfp import compiler
from kfp import dsl
import yaml

from pipeline import config as config_lib
from pipeline import kfp_components

DEFAULT_IMAGE = "mtrec:latest"
IMAGE_ENV = "MTREC_IMAGE"  # overrides DEFAULT_IMAGE when set
DEFAULT_ACCELERATOR = "NVIDIA_TESLA_T4"


def default_image() -> str:
  return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


@dataclasses.dataclass(frozen=True)
class Settings:
  """Compile-time settings: what the cluster needs, not what the model does.

  Attributes:
    image: the component image (built from the project's Dockerfile).
    accelerator: the trainer's accelerator type, e.g. NVIDIA_TESLA_T4.
    gpus: accelerators the trainer requests; 0 trains on CPU.
    pipeline_root: default root for artifacts on the cluster (e.g. gs://...);
      None leaves it to the KFP deployment.
  """
  image: str = dataclasses.field(default_factory=default_image)
  accelerator: str = DEFAULT_ACCELERATOR
  gpus: int = 1
  pipeline_root: Optional[str] = None


def encode_config(config: config_lib.PipelineConfig) -> str:
  """The config as the pipeline's `config_json` parameter.

  Only what the file set (paths already resolved): each task applies the
  defaults of the code it runs, and the compiled YAML shows the user's
  config rather than every default.
  """
  return json.dumps(config.model_dump(mode="json", exclude_unset=True),
                    sort_keys=True)


def build_pipeline(config: config_lib.PipelineConfig,
                   settings: Settings = Settings()):
  """The pipeline function; `config` gives its name and parameter defaults."""
  c = kfp_components.build(settings.image)
  job_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER  # the run id, on any backend
  default_config = encode_config(config)
  no_beam_args: list = []

  @dsl.pipeline(name=config.pipeline_name,
                description="mtrec: ExampleGen, Transform, Trainer, "
                "Evaluator, Pusher for a multi-task recommender.",
                pipeline_root=settings.pipeline_root)
  def mtrec_pipeline(config_json: str = default_config,
                     beam_args: list = no_beam_args,
                     num_cpu_devices: int = 1):
    example_gen = c.example_gen(
        config_json=config_json, beam_args=beam_args,
        run_id=job_id).set_display_name("ExampleGen")
    transform = c.transform(
        config_json=config_json, beam_args=beam_args, run_id=job_id,
        examples=example_gen.outputs["examples"]).set_display_name("Transform")
    trainer_inputs = dict(
        config_json=config_json, run_id=job_id,
        num_cpu_devices=num_cpu_devices,
        transform_graph=transform.outputs["transform_graph"],
        transformed_examples=transform.outputs["transformed_examples"],
        examples=example_gen.outputs["examples"],
        catalog=example_gen.outputs["catalog"])
    if config.text_embedder.enabled:
      text_embedder = c.text_embedder(
          config_json=config_json, beam_args=beam_args, run_id=job_id,
          catalog=example_gen.outputs["catalog"]
      ).set_display_name("TextEmbedder")
      trainer = c.trainer_with_text(
          item_features=text_embedder.outputs["item_features"],
          **trainer_inputs).set_display_name("Trainer")
    else:
      trainer = c.trainer(**trainer_inputs).set_display_name("Trainer")
    if settings.gpus:
      trainer.set_accelerator_type(settings.accelerator)
      trainer.set_accelerator_limit(settings.gpus)
    evaluator = c.evaluator(
        config_json=config_json, beam_args=beam_args, run_id=job_id,
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        catalog=example_gen.outputs["catalog"],
        transform_graph=transform.outputs["transform_graph"],
    ).set_display_name("Evaluator")
    c.pusher(
        config_json=config_json, run_id=job_id,
        model=trainer.outputs["model"],
        blessing=evaluator.outputs["blessing"]).set_display_name("Pusher")

  return mtrec_pipeline


def compile_pipeline(config: config_lib.PipelineConfig, output_path: str,
                     settings: Settings = Settings()) -> str:
  """Writes the pipeline YAML (IR) to `output_path`; returns the path."""
  parent = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(parent, exist_ok=True)
  compiler.Compiler().compile(build_pipeline(config, settings), output_path)
  return output_path


def pipeline_spec(config: config_lib.PipelineConfig,
                  settings: Settings = Settings()) -> Dict[str, Any]:
  """The compiled pipeline spec, as the YAML a cluster would receive."""
  with tempfile.TemporaryDirectory() as tmp:
    path = compile_pipeline(config, os.path.join(tmp, "pipeline.yaml"),
                            settings)
    with open(path) as f:
      return yaml.safe_load(f)
