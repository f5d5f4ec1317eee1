"""The pipeline's KFP components: one lightweight component per step.

Each component body is the thin KFP-side half of a step: it validates the
config sections it received as parameters (only the ones its step reads,
each as JSON, so Kubeflow's cache, keyed on a task's parameters, reruns a
step only when its own sections change), maps its typed input and output
artifacts to the `ArtifactUris` its `pipeline.steps` module expects, calls
that step (the one place that wires a component to config and URIs) and
copies what the step wrote into KFP artifact metadata, so the Kubeflow UI
shows counts, fingerprints and metrics. `code_version` is the hash of the
code the step can run (pipeline/step_deps.py), set at compile time: it is
unused in the body and there for the cache, so new code on an unchanged
config reruns the step on Kubeflow as it does locally. The same compiled
component runs in the project's image on Kubeflow and, unchanged, as a
local subprocess under `mtrec run` (pipeline/runner.py).

KFP embeds each function's source in the compiled YAML, so a body holds its
imports; everything else it needs comes from the installed project.

No `from __future__ import annotations` here, deliberately: KFP 2.17 reads
the parameter annotations with `inspect.signature` and does not evaluate
string annotations, so postponed annotations would hide the artifact types.
"""

import dataclasses
from typing import Any, Callable, List, Optional

from kfp import dsl
from kfp.dsl import HTML
from kfp.dsl import Artifact
from kfp.dsl import Dataset
from kfp.dsl import Input
from kfp.dsl import Markdown
from kfp.dsl import Metrics
from kfp.dsl import Model
from kfp.dsl import Output


def example_gen(
    data_config: str,
    example_gen_config: str,
    beam_args: List[str],
    run_id: str,
    code_version: str,
    examples: Output[Dataset],
    catalog: Output[Dataset],
    quarantine: Output[Dataset],
) -> str:
  """ExampleGen (Beam): read, validate, quarantine, dedupe and split."""
  import datetime  # pylint: disable=g-import-not-at-top
  from components.config import DataConfig  # pylint: disable=g-import-not-at-top
  from components.config import ExampleGenConfig  # pylint: disable=g-import-not-at-top
  from contracts.config import parse_section  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import example_gen as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run(
      parse_section(DataConfig, data_config, "data"),
      parse_section(ExampleGenConfig, example_gen_config, "example_gen"),
      beam_args, run_id,
      ArtifactUris(examples=examples.path, catalog=catalog.path,
                   quarantine=quarantine.path),
      datetime.datetime.now(datetime.timezone.utc))
  task_io.describe(examples, catalog, quarantine)
  return message


def statistics_gen(
    beam_args: List[str],
    run_id: str,
    code_version: str,
    examples: Input[Dataset],
    statistics: Output[Artifact],
) -> str:
  """StatisticsGen (Beam): per-feature statistics of each split.

  Written as TFX does (Split-<name>/FeatureStats.pb, tensorflow_metadata
  DatasetFeatureStatisticsList), so TFDV and Facets read them.
  """
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import statistics_gen as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run(beam_args, run_id,
                     ArtifactUris(examples=examples.path,
                                  statistics=statistics.path))
  task_io.describe(statistics)
  return message


def example_validator(
    data_validation_config: str,
    pipeline_root: str,
    run_id: str,
    code_version: str,
    statistics: Input[Artifact],
    examples: Input[Dataset],
    anomalies: Output[Artifact],
    report: Output[HTML],
) -> str:
  """ExampleValidator: anomalies against the schema, drift and skew.

  Drift is measured against the statistics of the run the served model
  came from, found through the run records under `pipeline_root` ("" for
  none: then only data_validation.baseline_statistics gives a baseline).
  `report` is the data section as a page the KFP UI renders.
  """
  import shutil  # pylint: disable=g-import-not-at-top
  from components import example_validator as validator  # pylint: disable=g-import-not-at-top
  from components.config import DataValidationConfig  # pylint: disable=g-import-not-at-top
  from contracts.config import parse_section  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import example_validator as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run(
      parse_section(DataValidationConfig, data_validation_config,
                    "data_validation"), run_id,
      ArtifactUris(statistics=statistics.path, examples=examples.path,
                   anomalies=anomalies.path),
      pipeline_root=pipeline_root or None)
  task_io.describe(anomalies)
  shutil.copyfile(f"{anomalies.path}/{validator.REPORT_HTML}", report.path)
  return message


def transform(
    transform_config: str,
    beam_args: List[str],
    run_id: str,
    code_version: str,
    examples: Input[Dataset],
    transform_graph: Output[Model],
    transformed_examples: Output[Dataset],
) -> str:
  """Transform (TFT on Beam): vocabularies, labels, the transform graph."""
  from components.config import TransformConfig  # pylint: disable=g-import-not-at-top
  from contracts.config import parse_section  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import transform as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run(
      parse_section(TransformConfig, transform_config, "transform"),
      beam_args, run_id,
      ArtifactUris(examples=examples.path,
                   transform_graph=transform_graph.path,
                   transformed_examples=transformed_examples.path))
  task_io.describe(transform_graph, transformed_examples)
  return message


def text_embedder(
    text_embedder_config: str,
    cache_dir: str,
    beam_args: List[str],
    run_id: str,
    code_version: str,
    catalog: Input[Dataset],
    item_features: Output[Dataset],
) -> str:
  """TextEmbedder (Beam): each item's text through a frozen sentence encoder.

  Texts already in the text-hash cache (`cache_dir`) are not embedded again.
  """
  from components.config import TextEmbedderConfig  # pylint: disable=g-import-not-at-top
  from contracts.config import parse_section  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import text_embedder as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run(
      parse_section(TextEmbedderConfig, text_embedder_config,
                    "text_embedder"),
      cache_dir, beam_args, run_id,
      ArtifactUris(catalog=catalog.path, item_features=item_features.path))
  task_io.describe(item_features)
  return message


def trainer_with_text(
    trainer_config: str,
    serving_config: str,
    model_name: str,
    serving_root: str,
    run_id: str,
    code_version: str,
    num_cpu_devices: int,
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    examples: Input[Dataset],
    catalog: Input[Dataset],
    item_features: Input[Dataset],
    model: Output[Model],
    teacher_model: Optional[Input[Model]] = None,
) -> str:
  """Trainer with the TextEmbedder's item features (see `trainer`).

  A component of its own rather than an optional input of `trainer`: the
  DAG has the TextEmbedder only when the config enables it, and a required
  input keeps the compiled spec explicit about what the model reads.
  """
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import trainer as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run_task(
      trainer_config, serving_config, model_name, serving_root, run_id,
      ArtifactUris(transform_graph=transform_graph.path,
                   transformed_examples=transformed_examples.path,
                   examples=examples.path, catalog=catalog.path,
                   item_features=item_features.path, model=model.path,
                   teacher_model=(teacher_model.path if teacher_model
                                  else None)),
      num_cpu_devices)
  task_io.describe(model)
  return message


def trainer(
    trainer_config: str,
    serving_config: str,
    model_name: str,
    serving_root: str,
    run_id: str,
    code_version: str,
    num_cpu_devices: int,
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    examples: Input[Dataset],
    catalog: Input[Dataset],
    model: Output[Model],
    teacher_model: Optional[Input[Model]] = None,
) -> str:
  """Trainer (Keras TFRS): the multi-task model, exported for TF Serving.

  Distribution: a GPU the task was given (or TF_CONFIG naming several
  workers) picks the strategy; num_cpu_devices > 1 mirrors over that many
  logical CPUs, the same code path on a machine without one. With
  trainer.warm_start it starts from the version served now under
  `serving_root` (resolved when the task runs, not when it was compiled).
  `teacher_model` (the Teacher's, when trainer.distillation trains one):
  its predictions become soft targets (an optional input: a KFP 2 input
  the DAG may leave unconnected).
  """
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import trainer as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run_task(
      trainer_config, serving_config, model_name, serving_root, run_id,
      ArtifactUris(transform_graph=transform_graph.path,
                   transformed_examples=transformed_examples.path,
                   examples=examples.path, catalog=catalog.path,
                   model=model.path,
                   teacher_model=(teacher_model.path if teacher_model
                                  else None)),
      num_cpu_devices)
  task_io.describe(model)
  return message


def teacher(
    teacher_config: str,
    serving_config: str,
    model_name: str,
    run_id: str,
    code_version: str,
    num_cpu_devices: int,
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    examples: Input[Dataset],
    catalog: Input[Dataset],
    teacher_model: Output[Model],
    item_features: Optional[Input[Dataset]] = None,
) -> str:
  """Teacher: the bigger model a distilled Trainer learns from.

  Trains `teacher_config` (the trainer section with
  trainer.distillation.teacher merged over it, its own parameter so that
  student settings keep the teacher cached) on the Trainer's inputs (item
  features when the run embeds item text), and exports it as a model the
  Evaluator can measure.
  """
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import teacher as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run_task(
      teacher_config, serving_config, model_name, run_id,
      ArtifactUris(transform_graph=transform_graph.path,
                   transformed_examples=transformed_examples.path,
                   examples=examples.path, catalog=catalog.path,
                   item_features=(item_features.path if item_features
                                  else None),
                   teacher_model=teacher_model.path),
      num_cpu_devices)
  task_io.describe(teacher_model)
  return message


def evaluator(
    evaluator_config: str,
    model_name: str,
    serving_root: str,
    pipeline_root: str,
    beam_args: List[str],
    run_id: str,
    code_version: str,
    model: Input[Model],
    examples: Input[Dataset],
    catalog: Input[Dataset],
    transform_graph: Input[Model],
    anomalies: Input[Artifact],
    evaluation: Output[Metrics],
    blessing: Output[Artifact],
    report: Output[HTML],
    summary: Output[Markdown],
) -> str:
  """Evaluator: metrics against baselines, thresholds, the blessing.

  The regression baseline is the version served now under `serving_root`.
  `evaluation` carries the candidate's scalar metrics as KFP metrics;
  `report` (HTML) and `summary` (Markdown) are what the KFP UI renders.
  `anomalies` (the ExampleValidator's): a blocking one blesses nothing,
  and the report includes the data section.
  `pipeline_root`: where run records live for the history page ("" for
  none).
  """
  from components.config import EvaluatorConfig  # pylint: disable=g-import-not-at-top
  from contracts.config import parse_section  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import evaluator as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run(
      parse_section(EvaluatorConfig, evaluator_config, "evaluator"),
      model_name, serving_root, beam_args, run_id,
      ArtifactUris(model=model.path, examples=examples.path,
                   catalog=catalog.path,
                   transform_graph=transform_graph.path,
                   anomalies=anomalies.path,
                   evaluation=evaluation.path, blessing=blessing.path),
      pipeline_root=pipeline_root or None)
  task_io.describe(evaluation, blessing)
  task_io.log_metrics(evaluation)
  task_io.write_reports(evaluation, blessing, report, summary)
  return message


def pusher(
    model_name: str,
    serving_root: str,
    run_id: str,
    code_version: str,
    model: Input[Model],
    blessing: Input[Artifact],
    pushed_model: Output[Model],
) -> str:
  """Pusher: copies a blessed model to <serving_root>/<model>/<version>/.

  serving_root and model_name are pipeline parameters shared with the
  trainer's warm start and the evaluator's serving baseline, so one run has
  one idea of where the served model lives.
  """
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  from pipeline.steps import ArtifactUris  # pylint: disable=g-import-not-at-top
  from pipeline.steps import pusher as step  # pylint: disable=g-import-not-at-top
  del code_version  # a cache key only
  message = step.run(model_name, serving_root, run_id,
                     ArtifactUris(model=model.path, blessing=blessing.path,
                                  pushed_model=pushed_model.path))
  task_io.describe(pushed_model)
  return message


@dataclasses.dataclass(frozen=True)
class Components:
  """The pipeline's components, built for one image."""
  example_gen: Callable[..., Any]
  statistics_gen: Callable[..., Any]
  example_validator: Callable[..., Any]
  transform: Callable[..., Any]
  trainer: Callable[..., Any]
  evaluator: Callable[..., Any]
  pusher: Callable[..., Any]
  text_embedder: Callable[..., Any]
  trainer_with_text: Callable[..., Any]
  teacher: Callable[..., Any]


def build(image: str) -> Components:
  """Makes the KFP components, all running in `image`.

  The image is a setting, not a constant, so the decorator is applied here
  rather than at import. `install_kfp_package=False`: kfp is one of the
  image's pinned dependencies, so no task starts with a pip install.
  """
  make = dsl.component(base_image=image, install_kfp_package=False)
  return Components(make(example_gen), make(statistics_gen),
                    make(example_validator), make(transform), make(trainer),
                    make(evaluator), make(pusher), make(text_embedder),
                    make(trainer_with_text), make(teacher))
