"""The pipeline's KFP components: one lightweight component per step.

Each component body is the thin KFP-side half of a step: it validates the
config it received as a parameter, maps its typed input and output artifacts
to the URIs `pipeline.steps` expects, calls the step function (the one place
that wires a component to config and URIs) and copies what the step wrote
into KFP artifact metadata, so the Kubeflow UI shows counts, fingerprints and
metrics. The same compiled component runs in the project's image on Kubeflow
and, unchanged, as a local subprocess under `mtrec run` (pipeline/runner.py).

KFP embeds each function's source in the compiled YAML, so a body holds its
imports; everything else it needs comes from the installed project.

No `from __future__ import annotations` here, deliberately: KFP 2.17 reads
the parameter annotations with `inspect.signature` and does not evaluate
string annotations, so postponed annotations would hide the artifact types.
"""

import dataclasses
from typing import Any, Callable, List

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
    config_json: str,
    beam_args: List[str],
    run_id: str,
    examples: Output[Dataset],
    catalog: Output[Dataset],
    quarantine: Output[Dataset],
) -> str:
  """ExampleGen (Beam): read, validate, quarantine, dedupe and split."""
  import datetime  # pylint: disable=g-import-not-at-top
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  config = task_io.load_config(config_json, beam_args)
  message = steps.example_gen_step(
      config, run_id, {"ExampleGen/examples": examples.path,
                       "ExampleGen/catalog": catalog.path,
                       "ExampleGen/quarantine": quarantine.path},
      datetime.datetime.now(datetime.timezone.utc))
  task_io.describe(examples, catalog, quarantine)
  return message


def transform(
    config_json: str,
    beam_args: List[str],
    run_id: str,
    examples: Input[Dataset],
    transform_graph: Output[Model],
    transformed_examples: Output[Dataset],
) -> str:
  """Transform (TFT on Beam): vocabularies, labels, the transform graph."""
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  config = task_io.load_config(config_json, beam_args)
  message = steps.transform_step(
      config, run_id, {"ExampleGen/examples": examples.path,
                       "Transform/transform_graph": transform_graph.path,
                       "Transform/transformed_examples":
                           transformed_examples.path})
  task_io.describe(transform_graph, transformed_examples)
  return message


def text_embedder(
    config_json: str,
    beam_args: List[str],
    run_id: str,
    catalog: Input[Dataset],
    item_features: Output[Dataset],
) -> str:
  """TextEmbedder (Beam): each item's text through a frozen sentence encoder.

  Texts already in the text-hash cache are not embedded again.
  """
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  config = task_io.load_config(config_json, beam_args)
  message = steps.text_embedder_step(
      config, run_id, {"ExampleGen/catalog": catalog.path,
                       "TextEmbedder/item_features": item_features.path})
  task_io.describe(item_features)
  return message


def trainer_with_text(
    config_json: str,
    run_id: str,
    num_cpu_devices: int,
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    examples: Input[Dataset],
    catalog: Input[Dataset],
    item_features: Input[Dataset],
    model: Output[Model],
) -> str:
  """Trainer with the TextEmbedder's item features (see `trainer`).

  A component of its own rather than an optional input of `trainer`: the
  DAG has the TextEmbedder only when the config enables it, and a required
  input keeps the compiled spec explicit about what the model reads.
  """
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  config = task_io.load_config(config_json, [])
  message = steps.trainer_step(
      config, run_id, steps.trainer_uris(
          transform_graph.path, transformed_examples.path, examples.path,
          catalog.path, model.path, item_features.path),
      num_cpu_devices=num_cpu_devices)
  task_io.describe(model)
  return message


def trainer(
    config_json: str,
    run_id: str,
    num_cpu_devices: int,
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    examples: Input[Dataset],
    catalog: Input[Dataset],
    model: Output[Model],
) -> str:
  """Trainer (Keras TFRS): the multi-task model, exported for TF Serving.

  Distribution: a GPU the task was given (or TF_CONFIG naming several
  workers) picks the strategy; num_cpu_devices > 1 mirrors over that many
  logical CPUs, the same code path on a machine without one.
  """
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  config = task_io.load_config(config_json, [])
  message = steps.trainer_step(
      config, run_id, steps.trainer_uris(
          transform_graph.path, transformed_examples.path, examples.path,
          catalog.path, model.path),
      num_cpu_devices=num_cpu_devices)
  task_io.describe(model)
  return message


def evaluator(
    config_json: str,
    beam_args: List[str],
    run_id: str,
    model: Input[Model],
    examples: Input[Dataset],
    catalog: Input[Dataset],
    transform_graph: Input[Model],
    evaluation: Output[Metrics],
    blessing: Output[Artifact],
    report: Output[HTML],
    summary: Output[Markdown],
) -> str:
  """Evaluator: metrics against baselines, thresholds, the blessing.

  `evaluation` carries the candidate's scalar metrics as KFP metrics;
  `report` (HTML) and `summary` (Markdown) are what the KFP UI renders.
  """
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  config = task_io.load_config(config_json, beam_args)
  message = steps.evaluator_step(
      config, run_id, {"Trainer/model": model.path,
                       "ExampleGen/examples": examples.path,
                       "ExampleGen/catalog": catalog.path,
                       "Transform/transform_graph": transform_graph.path,
                       "Evaluator/evaluation": evaluation.path,
                       "Evaluator/blessing": blessing.path})
  task_io.describe(evaluation, blessing)
  task_io.log_metrics(evaluation)
  task_io.write_reports(evaluation, blessing, report, summary)
  return message


def pusher(
    config_json: str,
    run_id: str,
    model: Input[Model],
    blessing: Input[Artifact],
    pushed_model: Output[Model],
) -> str:
  """Pusher: copies a blessed model to <serving_root>/<model>/<version>/.

  serving_root comes from the config, like everything else that reads it
  (the evaluator's serving baseline, the trainer's warm start), so one run
  has one idea of where the served model lives.
  """
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  from pipeline import task_io  # pylint: disable=g-import-not-at-top
  config = task_io.load_config(config_json, [])
  message = steps.pusher_step(
      config, run_id, {"Trainer/model": model.path,
                       "Evaluator/blessing": blessing.path,
                       "Pusher/pushed_model": pushed_model.path},
      config.serving_root)
  task_io.describe(pushed_model)
  return message


@dataclasses.dataclass(frozen=True)
class Components:
  """The pipeline's components, built for one image."""
  example_gen: Callable[..., Any]
  transform: Callable[..., Any]
  trainer: Callable[..., Any]
  evaluator: Callable[..., Any]
  pusher: Callable[..., Any]
  text_embedder: Callable[..., Any]
  trainer_with_text: Callable[..., Any]


def build(image: str) -> Components:
  """Makes the KFP components, all running in `image`.

  The image is a setting, not a constant, so the decorator is applied here
  rather than at import. `install_kfp_package=False`: kfp is one of the
  image's pinned dependencies, so no task starts with a pip install.
  """
  make = dsl.component(base_image=image, install_kfp_package=False)
  return Components(make(example_gen), make(transform), make(trainer),
                    make(evaluator), make(pusher), make(text_embedder),
                    make(trainer_with_text))
