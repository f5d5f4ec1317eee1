"""The KFP v2 pipeline: the only description of mtrec's DAG.

  ExampleGen ─► Transform ─► Trainer (GPU) ─► Evaluator ─► Pusher
      │                        (trainer.workers > 1: a TFJob of N workers)
      │  └──────────────┴──────────┴──────────────┘  (examples, catalog, graph)
      ├─► TextEmbedder (item text → LM vectors) ─┘  when text_embedder.enabled
      │   Transform ─► Teacher (GPU) ─► Trainer    when trainer.distillation
      │                                            trains its teacher
      └─► StatisticsGen ─► ExampleValidator ─────► Evaluator  (anomalies:
                                  a blocking one blesses nothing)

`mtrec compile` writes it as YAML for Kubeflow, `mtrec submit` sends that to
a KFP endpoint, and `mtrec run` executes the same compiled spec locally
(pipeline/runner.py), so there is no second list of steps to drift.

Run-time parameters are what a Kubeflow user may change per run without
recompiling: each config section as JSON (`trainer_config`, ...; validated
inside the task that reads it, and only that task receives it), the model
name and serving root, Beam options (e.g. `--runner=DataflowRunner ...` for
ExampleGen, TextEmbedder, Transform and the evaluator) and the trainer's
distribution settings. Compile-time settings are the container image, the
trainer's GPU and each task's `code_version` (pipeline/step_deps.py).

No `from __future__ import annotations`: KFP reads the pipeline function's
annotations with `inspect.signature` and cannot resolve string annotations.
"""

import dataclasses
import os
import tempfile
from typing import Any, Dict, Optional

from kfp import compiler
from kfp import dsl
import yaml

from contracts.config import encode_section
from pipeline import config as config_lib
from pipeline import kfp_components
from pipeline import multi_worker
from pipeline import step_deps

DEFAULT_IMAGE = "mtrec:latest"
IMAGE_ENV = multi_worker.IMAGE_ENV  # overrides DEFAULT_IMAGE when set
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


def section_arguments(config: config_lib.PipelineConfig) -> Dict[str, Any]:
  """The pipeline's parameters for a config: one JSON string per section.

  Each task receives only the sections its step reads, so a changed
  trainer setting leaves ExampleGen's and Transform's parameters, and their
  cache entries on Kubeflow and locally, as they were.
  """
  return {
      "data_config": encode_section(config.data),
      "example_gen_config": encode_section(config.example_gen),
      "transform_config": encode_section(config.transform),
      "text_embedder_config": encode_section(config.text_embedder),
      "trainer_config": encode_section(config.trainer),
      # The Teacher's own section (trainer.teacher_config()), so a student
      # setting leaves the teacher's cache entry as it was ("" : none).
      "teacher_config": (encode_section(config.trainer.teacher_config())
                         if config.trainer.trains_teacher() else ""),
      "serving_config": encode_section(config.serving),
      "evaluator_config": encode_section(config.evaluator),
      "data_validation_config": encode_section(config.data_validation),
      "model_name": config.model_name,
      "serving_root": config.serving_root,
      "text_cache_dir": config.text_embedding_cache_dir(),
      "history_root": config.pipeline_root,
      "beam_args": list(config.beam_args),
  }


def code_versions() -> Dict[str, str]:
  """Component function name -> its code version (pipeline/step_deps.py)."""
  return {fn.__name__: step_deps.function_code_version(fn) for fn in (
      kfp_components.example_gen, kfp_components.statistics_gen,
      kfp_components.example_validator, kfp_components.transform,
      kfp_components.text_embedder, kfp_components.trainer,
      kfp_components.trainer_with_text, kfp_components.teacher,
      kfp_components.evaluator, kfp_components.pusher)}


def build_pipeline(config: config_lib.PipelineConfig,
                   settings: Settings = Settings()):
  """The pipeline function; `config` gives its name and parameter defaults."""
  c = kfp_components.build(settings.image)
  job_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER  # the run id, on any backend
  d = section_arguments(config)
  code = code_versions()

  @dsl.pipeline(name=config.pipeline_name,
                description="mtrec: ExampleGen, StatisticsGen, ExampleValidator, "
                "Transform, Trainer, Evaluator, Pusher for a multi-task "
                "recommender.",
                pipeline_root=settings.pipeline_root)
  def mtrec_pipeline(data_config: str = d["data_config"],
                     example_gen_config: str = d["example_gen_config"],
                     transform_config: str = d["transform_config"],
                     text_embedder_config: str = d["text_embedder_config"],
                     trainer_config: str = d["trainer_config"],
                     teacher_config: str = d["teacher_config"],
                     serving_config: str = d["serving_config"],
                     evaluator_config: str = d["evaluator_config"],
                     data_validation_config: str = d[
                         "data_validation_config"],
                     model_name: str = d["model_name"],
                     serving_root: str = d["serving_root"],
                     text_cache_dir: str = d["text_cache_dir"],
                     history_root: str = d["history_root"],
                     beam_args: list = d["beam_args"],
                     num_cpu_devices: int = 1):
    example_gen = c.example_gen(
        data_config=data_config, example_gen_config=example_gen_config,
        beam_args=beam_args, run_id=job_id,
        code_version=code["example_gen"]).set_display_name("ExampleGen")
    statistics_gen = c.statistics_gen(
        beam_args=beam_args, run_id=job_id,
        code_version=code["statistics_gen"],
        examples=example_gen.outputs["examples"]
    ).set_display_name("StatisticsGen")
    # Drift is measured against the run records under history_root: the
    # local runner adds the chosen statistics to this task's cache key. On
    # Kubeflow there are no records (data_validation.baseline_statistics
    # names a baseline, and as a parameter it is in the key).
    example_validator = c.example_validator(
        data_validation_config=data_validation_config,
        pipeline_root=history_root, run_id=job_id,
        code_version=code["example_validator"],
        statistics=statistics_gen.outputs["statistics"],
        examples=example_gen.outputs["examples"]
    ).set_display_name("ExampleValidator")
    transform = c.transform(
        transform_config=transform_config, beam_args=beam_args,
        run_id=job_id, code_version=code["transform"],
        examples=example_gen.outputs["examples"]).set_display_name("Transform")
    trainer_inputs = dict(
        trainer_config=trainer_config, serving_config=serving_config,
        model_name=model_name, serving_root=serving_root, run_id=job_id,
        num_cpu_devices=num_cpu_devices,
        transform_graph=transform.outputs["transform_graph"],
        transformed_examples=transform.outputs["transformed_examples"],
        examples=example_gen.outputs["examples"],
        catalog=example_gen.outputs["catalog"])
    text_inputs = {}
    if config.text_embedder.enabled:
      text_embedder = c.text_embedder(
          text_embedder_config=text_embedder_config,
          cache_dir=text_cache_dir, beam_args=beam_args, run_id=job_id,
          code_version=code["text_embedder"],
          catalog=example_gen.outputs["catalog"]
      ).set_display_name("TextEmbedder")
      text_inputs = {"item_features": text_embedder.outputs["item_features"]}
    training_tasks = []
    if config.trainer.trains_teacher():
      teacher = c.teacher(
          teacher_config=teacher_config, code_version=code["teacher"],
          **text_inputs, **{k: v for k, v in trainer_inputs.items()
                            if k not in ("serving_root", "trainer_config")}
      ).set_display_name("Teacher")
      trainer_inputs["teacher_model"] = teacher.outputs["teacher_model"]
      training_tasks.append(teacher)
    if text_inputs:
      trainer = c.trainer_with_text(
          code_version=code["trainer_with_text"], **text_inputs,
          **trainer_inputs).set_display_name("Trainer")
    else:
      trainer = c.trainer(code_version=code["trainer"],
                          **trainer_inputs).set_display_name("Trainer")
    training_tasks.append(trainer)
    for task in training_tasks:
      # The image a multi-worker task's TFJob runs (pipeline/multi_worker.py).
      task.set_env_variable(multi_worker.IMAGE_ENV, settings.image)
      # With several workers the task only launches and waits: the GPUs go
      # to the TFJob's workers (trainer.tfjob.gpus_per_worker).
      if settings.gpus and config.trainer.workers == 1:
        task.set_accelerator_type(settings.accelerator)
        task.set_accelerator_limit(settings.gpus)
    evaluator = c.evaluator(
        evaluator_config=evaluator_config, model_name=model_name,
        serving_root=serving_root, pipeline_root=history_root,
        beam_args=beam_args, run_id=job_id, code_version=code["evaluator"],
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        catalog=example_gen.outputs["catalog"],
        transform_graph=transform.outputs["transform_graph"],
        anomalies=example_validator.outputs["anomalies"],
    ).set_display_name("Evaluator")
    c.pusher(
        model_name=model_name, serving_root=serving_root, run_id=job_id,
        code_version=code["pusher"], model=trainer.outputs["model"],
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
