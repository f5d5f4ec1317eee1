"""The Trainer step: the multi-task model, exported for TF Serving."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from contracts import model_layout
from contracts import serving_layout
from contracts.config import parse_section
from pipeline import multi_worker
from pipeline.steps import ArtifactUris
from trainer import run as trainer_run
from trainer.config import ServingConfig
from trainer.config import TrainerConfig


def warm_start_source(config: TrainerConfig, serving_root: str,
                      model_name: str) -> Optional[str]:
  """With trainer.warm_start, the version served now (None: from scratch).

  Resolved when the step runs, not when the pipeline is compiled: the
  served version is whatever the last push or rollback left pinned.
  """
  if not config.warm_start:
    return None
  return serving_layout.served_model_dir(serving_root, model_name)


def teacher_source(config: TrainerConfig, uris: ArtifactUris
                   ) -> Optional[str]:
  """The export to distill from: distillation.teacher_model, else the
  Teacher step's (None: no distillation)."""
  if config.distillation is None:
    return None
  if config.distillation.teacher_model:
    return config.distillation.teacher_model
  uris.require("Trainer (distilling)", "teacher_model")
  return model_layout.saved_model_dir(uris.teacher_model)


def run(config: TrainerConfig, serving: ServingConfig, model_name: str,
        run_id: str, uris: ArtifactUris, *, with_item_text: bool,
        warm_start_from: Optional[str] = None, num_cpu_devices: int = 1,
        log: Callable[[str], None] = print) -> str:
  """Trains and exports.

  Args:
    config: the trainer section.
    serving: the signatures' sizes.
    model_name: the served model's name (in the warmup requests).
    run_id: the pipeline run.
    uris: the artifact URIs; it reads the transform graph, transformed
      examples, examples, catalog (and with_item_text the item features)
      and writes the model; with trainer.distillation and no
      teacher_model, also the Teacher step's teacher_model.
    with_item_text: read the TextEmbedder's item features.
    warm_start_from: the SavedModel to start from (`warm_start_source`);
      None trains from scratch.
    num_cpu_devices: >1 mirrors training over that many logical CPUs.
    log: progress sink.
  """
  uris.require("Trainer", "transform_graph", "transformed_examples",
               "examples", "catalog", "model",
               *(("item_features",) if with_item_text else ()))
  s = trainer_run.run_trainer(
      uris.transform_graph, uris.transformed_examples, uris.examples,
      uris.catalog, uris.model, run_id, config, model_name, serving.top_k,
      max_k=serving.max_k, num_cpu_devices=num_cpu_devices, log=log,
      warm_start_from=warm_start_from if config.warm_start else None,
      item_features_uri=uris.item_features if with_item_text else None,
      ranking=serving.ranking, freshness=serving.freshness,
      teacher_model_dir=teacher_source(config, uris),
      new_item_match=serving.new_item_match)
  return (f"{s['epochs']} epochs on {s['strategy']}, "
          f"{s['examples_per_second']:,.0f} examples/s")


def run_task(trainer_config: str, serving_config: str, model_name: str,
             serving_root: str, run_id: str, uris: ArtifactUris,
             num_cpu_devices: int) -> str:
  """`run` from a KFP task's parameters: sections as JSON, the warm start
  resolved now (the version served when the task runs), item text when the
  task was given item features, a teacher when it was given one. With
  trainer.workers > 1 it launches that many workers, each running this
  (pipeline/multi_worker.py)."""
  config = parse_section(TrainerConfig, trainer_config, "trainer")
  if config.workers > 1 and not multi_worker.is_worker():
    return multi_worker.launch(multi_worker.WorkerSpec(
        "trainer", dict(trainer_config=trainer_config,
                        serving_config=serving_config, model_name=model_name,
                        serving_root=serving_root, run_id=run_id,
                        num_cpu_devices=1),
        dataclasses.asdict(uris)), config.workers, config.tfjob)
  return run(config, parse_section(ServingConfig, serving_config, "serving"),
             model_name, run_id, uris,
             with_item_text=uris.item_features is not None,
             num_cpu_devices=num_cpu_devices,
             warm_start_from=warm_start_source(config, serving_root,
                                               model_name))
