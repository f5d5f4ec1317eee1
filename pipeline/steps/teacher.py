"""The Teacher step: the bigger model a distilled Trainer learns from.

It trains `trainer.teacher_config()` (the trainer section with
`distillation.teacher` merged over it, a section of its own in the compiled
pipeline: the `teacher_config` parameter) on the same transformed data, and
exports it like any model, so the Evaluator can measure it beside its
student and `distillation.teacher_model` of a later run can name it. A step
of its own, cached on its own inputs: retraining the student (a new
temperature, a smaller embedding) reuses the teacher.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from contracts.config import parse_section
from pipeline import multi_worker
from pipeline.steps import ArtifactUris
from trainer import run as trainer_run
from trainer.config import ServingConfig
from trainer.config import TrainerConfig


def run(config: TrainerConfig, serving: ServingConfig, model_name: str,
        run_id: str, uris: ArtifactUris, *, with_item_text: bool,
        num_cpu_devices: int = 1, log: Callable[[str], None] = print) -> str:
  """Trains and exports the teacher (`config`: its own trainer section).

  The teacher serves nobody: its fusion weights are not searched (its
  soft targets are the heads' outputs, not its fused order).
  """
  uris.require("Teacher", "transform_graph", "transformed_examples",
               "examples", "catalog", "teacher_model",
               *(("item_features",) if with_item_text else ()))
  ranking = serving.ranking.model_copy(update={
      "search": serving.ranking.search.model_copy(update={"enabled": False})})
  s = trainer_run.run_trainer(
      uris.transform_graph, uris.transformed_examples, uris.examples,
      uris.catalog, uris.teacher_model, run_id, config,
      model_name, serving.top_k, max_k=serving.max_k,
      num_cpu_devices=num_cpu_devices, log=log,
      item_features_uri=uris.item_features if with_item_text else None,
      ranking=ranking, freshness=serving.freshness)
  return (f"teacher: {s['epochs']} epochs on {s['strategy']}, "
          f"{s['examples_per_second']:,.0f} examples/s")


def run_task(teacher_config: str, serving_config: str, model_name: str,
             run_id: str, uris: ArtifactUris, num_cpu_devices: int) -> str:
  """`run` from a KFP task's parameters (sections as JSON); on
  trainer.workers workers when that is > 1 (pipeline/multi_worker.py)."""
  config = parse_section(TrainerConfig, teacher_config,
                         "trainer.distillation.teacher")
  if config.workers > 1 and not multi_worker.is_worker():
    return multi_worker.launch(multi_worker.WorkerSpec(
        "teacher", dict(teacher_config=teacher_config,
                        serving_config=serving_config, model_name=model_name,
                        run_id=run_id, num_cpu_devices=1),
        dataclasses.asdict(uris)), config.workers, config.tfjob)
  return run(config,
             parse_section(ServingConfig, serving_config, "serving"),
             model_name, run_id, uris,
             with_item_text=uris.item_features is not None,
             num_cpu_devices=num_cpu_devices)
