"""Pipeline configuration: YAML in, one typed and validated object out.

Every knob of a run lives here, so a reader finds what can be tuned in one
place and a typo fails at load time with the offending key named
(`trainer.epochs: Input should be a valid integer`), not an hour into a run.
Relative data paths are resolved against the config file's directory, so a
config works from whatever directory the command is started in.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Literal, Optional

import pydantic
import yaml


class ConfigError(ValueError):
  """A config file that cannot be used; the message names file and key."""


class _Strict(pydantic.BaseModel):
  model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
  """Where interactions come from: a reader format and its options."""

  format: Literal["movielens_latest", "movielens_100k", "movielens_1m",
                  "tabular", "synthetic"]
  # Passed to the reader's constructor (components.readers.build_reader):
  # e.g. {path: ...} for MovieLens, {num_interactions: ..., seed: ...} for
  # synthetic, {interactions: {path, format, columns}, items: ..., users: ...}
  # for tabular.
  options: dict[str, Any] = {}


class ExampleGenConfig(_Strict):
  split: Literal["temporal_user", "temporal_global", "random"] = "temporal_user"
  # temporal_user: each user's latest `eval_fraction` of interactions go to
  # eval. temporal_global: events after the (1 - eval_fraction) time quantile.
  # random: a seeded hash of the event.
  eval_fraction: float = pydantic.Field(0.2, gt=0.0, lt=1.0)
  seed: int = 42
  rating_min: float = 0.0
  rating_max: float = 5.0
  timestamp_min: datetime.datetime = datetime.datetime(
      1970, 1, 1, tzinfo=datetime.timezone.utc)
  # None: the moment the run starts (events from the future are bad rows).
  timestamp_max: Optional[datetime.datetime] = None
  # Fail the run when more than this share of interaction rows is bad.
  max_quarantine_fraction: float = pydantic.Field(0.25, ge=0.0, le=1.0)


class TransformConfig(_Strict):
  like_threshold: float = 4.0  # like = rating >= this, when no explicit like
  max_title_tokens_vocab: int = pydantic.Field(20000, gt=0)


class TaskWeights(_Strict):
  retrieval: float = pydantic.Field(1.0, ge=0.0)
  rating: float = pydantic.Field(1.0, ge=0.0)
  like: float = pydantic.Field(1.0, ge=0.0)


class TrainerConfig(_Strict):
  embedding_dim: int = pydantic.Field(32, gt=0)
  hidden_units: list[pydantic.PositiveInt] = [64, 32]
  epochs: int = pydantic.Field(5, gt=0)
  batch_size: int = pydantic.Field(1024, gt=0)
  learning_rate: float = pydantic.Field(0.01, gt=0.0)
  optimizer: Literal["adagrad", "adam"] = "adam"
  task_weights: TaskWeights = TaskWeights()
  seed: int = 42
  # Optional cap on steps per epoch (tests, smoke runs); None = whole split.
  steps_per_epoch: Optional[pydantic.PositiveInt] = None


class Threshold(_Strict):
  min: Optional[float] = None
  max: Optional[float] = None


class EvaluatorConfig(_Strict):
  ks: list[pydantic.PositiveInt] = [10, 20, 50, 100]
  # Absolute bounds: metric -> {min, max}, e.g. {rmse: {max: 1.0}}. Ranking
  # metrics (rmse, mae, auc, log_loss) are judged by TFMA; retrieval ones
  # (recall_at_K, ndcg_at_K, hit_rate_at_K, mrr, ...) by the evaluator.
  thresholds: dict[str, Threshold] = {}
  # Largest worsening allowed against the model now serving, per metric, in
  # the metric's own units (e.g. {recall_at_20: 0.01, rmse: 0.02}).
  max_regression: dict[str, pydantic.NonNegativeFloat] = {}
  # Metrics on which the candidate must beat the popularity baseline.
  must_beat_popularity: list[str] = ["recall_at_20"]
  # Evaluate at most this many eval users (None = all); sampled with a seed.
  max_eval_users: Optional[pydantic.PositiveInt] = None
  # Training-interaction counts that bound the user activity slices.
  activity_boundaries: list[pydantic.PositiveInt] = [5, 20, 100]
  # Infra validation: p95 latency budget of each warmup request.
  latency_budget_ms: float = pydantic.Field(250.0, gt=0)


class ServingConfig(_Strict):
  top_k: int = pydantic.Field(10, gt=0)  # items the `recommend` signature returns
  # Largest k `recommend_excluding` answers (and the evaluator's largest K).
  max_k: int = pydantic.Field(100, gt=0)


class PipelineConfig(_Strict):
  pipeline_name: str = "mtrec"
  model_name: str = "mtrec"
  pipeline_root: str = "runs"  # relative to the working directory
  serving_root: str = "serving_models"  # relative to the working directory
  data: DataConfig
  example_gen: ExampleGenConfig = ExampleGenConfig()
  transform: TransformConfig = TransformConfig()
  trainer: TrainerConfig = TrainerConfig()
  evaluator: EvaluatorConfig = EvaluatorConfig()
  serving: ServingConfig = ServingConfig()
  # Extra Apache Beam pipeline options for every Beam step, e.g.
  # ["--runner=FlinkRunner", "--flink_master=host:8081"].
  beam_args: list[str] = []

  @pydantic.model_validator(mode="after")
  def _evaluator_ks_are_served(self) -> "PipelineConfig":
    if max(self.evaluator.ks) > self.serving.max_k:
      raise ValueError(f"evaluator.ks: {max(self.evaluator.ks)} is above "
                       f"serving.max_k={self.serving.max_k}")
    return self


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
    problems = "; ".join(
        (f"{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "") +
        err["msg"].removeprefix("Value error, ") for err in e.errors())
    raise ConfigError(f"{source}: {problems}") from None


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
