"""Pipeline configuration: YAML in, one typed and validated object out.

The file a user writes composes the sections that live beside the code that
reads them (components/config.py: data, example_gen, transform,
text_embedder, evaluator; trainer/config.py: trainer, serving) with what
only the pipeline knows: names, roots and Beam options. A typo fails at load
time with the offending key named (`trainer.epochs: Input should be a valid
integer`), not an hour into a run. Relative data paths are resolved against
the config file's directory, so a config works from whatever directory the
command is started in.
"""

from __future__ import annotations

import os
from typing import Any

import pydantic
import yaml

from components.config import DataConfig
from components.config import DataValidationConfig
from components.config import EvaluatorConfig
from components.config import ExampleGenConfig
from components.config import metric_name_error
from components.config import TextEmbedderConfig
from components.config import TransformConfig
from contracts.config import ConfigError
from contracts.config import describe_errors
from contracts.config import StrictConfig as _Strict
from trainer.config import ServingConfig
from trainer.config import TrainerConfig

__all__ = ["ConfigError", "PipelineConfig", "load_config", "parse_config"]

TEXT_EMBEDDING_CACHE = os.path.join(".cache", "text_embeddings")


class PipelineConfig(_Strict):
  pipeline_name: str = "mtrec"
  model_name: str = "mtrec"
  pipeline_root: str = "runs"  # relative to the working directory
  serving_root: str = "serving_models"  # relative to the working directory
  data: DataConfig
  example_gen: ExampleGenConfig = ExampleGenConfig()
  transform: TransformConfig = TransformConfig()
  trainer: TrainerConfig = TrainerConfig()
  data_validation: DataValidationConfig = DataValidationConfig()
  evaluator: EvaluatorConfig = EvaluatorConfig()
  serving: ServingConfig = ServingConfig()
  text_embedder: TextEmbedderConfig = TextEmbedderConfig()
  # Extra Apache Beam pipeline options for every Beam step, e.g.
  # ["--runner=FlinkRunner", "--flink_master=host:8081"].
  beam_args: list[str] = []

  @pydantic.model_validator(mode="after")
  def _evaluator_ks_are_served(self) -> "PipelineConfig":
    if max(self.evaluator.ks) > self.serving.max_k:
      raise ValueError(f"evaluator.ks: {max(self.evaluator.ks)} is above "
                       f"serving.max_k={self.serving.max_k}")
    # The evaluator section checked its names' shape; only the whole file
    # knows the tasks they must belong to.
    problems = self.evaluator.metric_problems(
        {t.name: t.kind for t in self.trainer.tasks})
    if problems:
      raise metric_name_error(
          [(("evaluator", *loc), problem) for loc, problem in problems],
          type(self).__name__)
    if self.serving.new_item_match.bonus > 0 and (
        not self.text_embedder.enabled):
      raise ValueError(
          "serving.new_item_match.bonus: matching new items reads their LM "
          "text; set text_embedder.enabled: true (or bonus: 0)")
    if self.trainer.members > 1:
      raise ValueError(
          "trainer.members: the served model is one model; only a teacher "
          "trains several (trainer.distillation.teacher: {members: N})")
    stopping = [name for name, section in (
        ("trainer", self.trainer),
        ("trainer.distillation.teacher",
         self.trainer.teacher_config() if self.trainer.trains_teacher()
         else None)) if section is not None and section.early_stopping]
    if stopping and not self.example_gen.validation_fraction:
      raise ValueError(
          f"{stopping[0]}.early_stopping: it watches the validation split; "
          "set example_gen.validation_fraction > 0 (the eval split decides "
          "blessing, so it must not choose the epoch too)")
    if self.evaluator.seed is None:  # frozen: completed once, here
      object.__setattr__(self, "evaluator", self.evaluator.model_copy(
          update={"seed": self.example_gen.seed}))
    return self

  def text_embedding_cache_dir(self) -> str:
    """The text-hash cache: the config's, else under the pipeline root.

    Every run under a root, and `mtrec catalog refresh`, share it.
    """
    return self.text_embedder.cache_dir or os.path.join(
        self.pipeline_root, TEXT_EMBEDDING_CACHE)


def _resolve_paths(value: Any, base_dir: str) -> Any:
  """Resolves relative `path` entries under data.options against base_dir."""
  if isinstance(value, dict):
    return {
        k: (os.path.normpath(os.path.join(base_dir, v)) if k == "path" and
            isinstance(v, str) and "://" not in v and not os.path.isabs(v) else
            _resolve_paths(v, base_dir)) for k, v in value.items()
    }
  return value


def parse_config(raw: Any, source: str = "<config>",
                 base_dir: str = ".") -> PipelineConfig:
  """Validates a mapping (e.g. parsed YAML) into a PipelineConfig."""
  if not isinstance(raw, dict):
    raise ConfigError(f"{source}: expected a mapping at the top level")
  raw = dict(raw)
  if isinstance(raw.get("data"), dict):
    raw["data"] = _resolve_paths(raw["data"], base_dir)
  try:
    return PipelineConfig.model_validate(raw)
  except pydantic.ValidationError as e:
    raise ConfigError(f"{source}: {describe_errors(e)}") from None


def load_config(path: str) -> PipelineConfig:
  """Reads and validates a YAML config file."""
  try:
    with open(path) as f:
      raw = yaml.safe_load(f)
  except OSError as e:
    raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
  except yaml.YAMLError as e:
    raise ConfigError(f"{path}: invalid YAML: {e}") from None
  return parse_config(raw, source=path,
                      base_dir=os.path.dirname(os.path.abspath(path)))
