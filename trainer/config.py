"""The trainer's config sections: the model, its tasks, and its signatures.

`trainer` says what the multi-task model is and how it trains; `serving`
sizes the signatures the export writes (`recommend`'s top_k, the largest k
of `recommend_excluding`). pipeline/config.py composes them into the file a
user writes; the Trainer's KFP component receives only these two sections.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

import pydantic

from contracts import features as F
from contracts.config import StrictConfig as _Strict


class TaskWeights(_Strict):
  """The weights of the three default tasks (older configs' way to set them).

  Ranking losses are weighted well below retrieval by default: under Adam the
  heads' own layers learn at the same speed whatever their loss's weight, so
  the weight mostly sets how hard rating and like pull on the towers that
  retrieval shares; on MovieLens 1:0.1:0.1 keeps retrieval at the level of a
  retrieval-only model (benchmarks/model_comparison.py).
  """

  retrieval: float = pydantic.Field(1.0, ge=0.0)
  rating: float = pydantic.Field(0.1, ge=0.0)
  like: float = pydantic.Field(0.1, ge=0.0)


_TASK_NAME = r"^[a-z][a-z0-9_]*$"


class _Task(_Strict):
  # The task's name: its loss and metrics are logged as `<name>_loss`,
  # `<name>_<metric>`; a ranking task's serving output is named after it.
  name: str = pydantic.Field(pattern=_TASK_NAME)
  weight: float = pydantic.Field(1.0, ge=0.0)  # static weight; uncertainty
  # weighting starts from it


class RetrievalTaskConfig(_Task):
  """In-batch sampled softmax over the consumed items of the batch."""

  kind: Literal["retrieval"]
  temperature: float = pydantic.Field(1.0, gt=0.0)  # logits / temperature
  logq_correction: bool = True  # subtract log(item frequency) from logits
  remove_accidental_hits: bool = True  # a repeat of the positive is no negative
  # in_batch: the batch's consumed items are the negatives (sampled softmax,
  # logQ-corrected). catalog: every item of the train split is (an exact
  # softmax; logQ and accidental hits do not apply), at the cost of running
  # the candidate tower over the catalog at every step (trainer/catalog.py).
  # On ml-latest-small's temporal split it did not beat in_batch (seed 1,
  # Recall@20 / NDCG@20: 0.147 / 0.156 against 0.145 / 0.161, training 1.8x
  # longer; temperature 0.5 or 2 no better), so in_batch stays the default.
  negatives: Literal["in_batch", "catalog"] = "in_batch"
  metrics: list[Literal["batch_top_10"]] = []


class RegressionTaskConfig(_Task):
  kind: Literal["regression"]
  label: Literal[tuple(F.REGRESSION_LABELS)]  # type: ignore[valid-type]
  loss: Literal["mse", "huber"] = "mse"
  huber_delta: float = pydantic.Field(1.0, gt=0.0)
  metrics: list[Literal["rmse", "mae"]] = ["rmse"]


class BinaryTaskConfig(_Task):
  kind: Literal["binary"]
  label: Literal[tuple(F.BINARY_LABELS)]  # type: ignore[valid-type]
  metrics: list[Literal["auc", "accuracy"]] = ["auc"]


class MultiLabelTaskConfig(_Task):
  """The labels (e.g. categories) of the event's item, from the query side."""

  kind: Literal["multilabel"]
  label: Literal[tuple(F.MULTILABEL_LABELS)]  # type: ignore[valid-type]
  metrics: list[Literal["auc"]] = ["auc"]


TaskConfig = Annotated[
    Union[RetrievalTaskConfig, RegressionTaskConfig, BinaryTaskConfig,
          MultiLabelTaskConfig], pydantic.Field(discriminator="kind")]
RANKING_KINDS = ("regression", "binary")  # tasks on the shared layers


def default_tasks(weights: TaskWeights = TaskWeights()) -> list[Any]:
  """Retrieval, rating (MSE) and like (BCE): the tasks when none are listed."""
  return [
      RetrievalTaskConfig(name="retrieval", kind="retrieval",
                          weight=weights.retrieval),
      RegressionTaskConfig(name="rating", kind="regression", label="rating",
                           weight=weights.rating),
      BinaryTaskConfig(name="like", kind="binary", label="like",
                       weight=weights.like),
  ]


class SharedLayersConfig(_Strict):
  """What the ranking tasks share below their own towers.

  shared_bottom: one MLP (`trainer.hidden_units`) for all tasks. mmoe (Ma et
  al., KDD 2018): `num_experts` such MLPs mixed by a softmax gate per task.
  ple (Tang et al., RecSys 2020): `levels` of CGC, each with `num_experts`
  shared experts and `task_experts` experts per task.
  """

  kind: Literal["shared_bottom", "mmoe", "ple"] = "mmoe"
  num_experts: int = pydantic.Field(4, gt=0)
  task_experts: int = pydantic.Field(1, gt=0)
  levels: int = pydantic.Field(2, gt=0)
  tower_units: list[pydantic.PositiveInt] = []  # per task, after the sharing


class EarlyStoppingConfig(_Strict):
  """Stop when a metric on the validation split stops improving.

  The split comes from example_gen.validation_fraction (> 0 is required):
  the eval split is the Evaluator's alone.
  """

  # val_loss, val_<task>_loss or val_<task>_<metric>.
  monitor: str = "val_loss"
  patience: int = pydantic.Field(1, ge=0)
  min_delta: float = pydantic.Field(0.0, ge=0.0)
  restore_best_weights: bool = True


class TextAdapterConfig(_Strict):
  """How the candidate tower uses the LM embedding, when the run has one.

  The LM vector goes through a trainable low-rank adapter (LM width -> rank
  -> embedding_dim; the LM itself is frozen), joins the item's other content
  features, and a learned per-dimension gate mixes that content embedding
  with the item's id embedding. id_dropout replaces a training row's item id
  by the out-of-vocabulary id with this probability, so the content path
  learns to stand alone: a cold item at serving time is exactly such a row.
  """

  rank: int = pydantic.Field(32, gt=0)
  id_dropout: float = pydantic.Field(0.25, ge=0.0, lt=1.0)
  # The user side: mean of the adapted LM vectors of the items in the
  # user's history, added to the query tower.
  user_history: bool = True


class DistillationConfig(_Strict):
  """Train the served model on a teacher's predictions too (trainer/distillation.py).

  The teacher is a bigger model of the same tasks: either trained by the
  pipeline's Teacher step from this trainer section with `teacher` merged
  over it (e.g. {embedding_dim: 128, epochs: 10}), or an existing mtrec
  export (`teacher_model`, e.g. the version served now), whose own trainer
  section says how to rebuild it. The student keeps its hard-label losses
  and adds, per task, `weights[task]` times a soft-target loss (a task not
  listed weighs as much as its hard loss; 0 turns its distillation off).
  Distill only what the teacher does better: on ml-latest-small no wider
  single teacher retrieves better than the tuned student, the mean of three
  students does (`teacher: {members: 3}`), and its retrieval reaches the
  student only through the catalog-wide soft target
  (`retrieval_candidates: catalog`; benchmarks/distillation.py,
  docs/benchmarks.md).
  """

  # Overrides of this trainer section for the teacher (validated as one).
  teacher: dict[str, Any] = {}
  # An exported mtrec SavedModel directory to distill from instead of
  # training a teacher ("" : train one).
  teacher_model: str = ""
  # Softens the retrieval softmax and the binary heads' probabilities.
  temperature: float = pydantic.Field(2.0, gt=0.0)
  weights: dict[str, pydantic.NonNegativeFloat] = {}
  # What the retrieval soft target spans: the batch's candidates, or the
  # whole catalog of trained items (the teacher's full distribution over
  # what serving ranks; trainer/catalog.py).
  retrieval_candidates: Literal["in_batch", "catalog"] = "in_batch"
  # With retrieval_candidates: catalog, the heads (rating, like, ...) also
  # learn the teacher's predictions for this many catalog items per row,
  # drawn at random: pairs no one rated, which the ranking stage scores at
  # serving and the labeled rows never show (0: the rows' own items only).
  catalog_items_per_row: int = pydantic.Field(0, ge=0, le=1024)
  # The student's epochs when it learns from the teacher (None: the
  # section's `epochs`). Soft targets do not overfit as hard labels do, so
  # a distilled student gains from training longer where the plain one
  # loses (ml-latest-small, 8 epochs instead of 5; docs/benchmarks.md).
  epochs: Optional[pydantic.PositiveInt] = None
  # Also train the student without distillation (same seed), so the
  # validation report shows student, teacher and plain student side by side.
  compare_undistilled: bool = True


class TFJobConfig(_Strict):
  """How a Kubeflow run trains on several workers (`trainer.workers` > 1).

  On a cluster the Trainer task launches a Kubeflow Training Operator TFJob
  of `workers` replicas (the operator writes each pod's TF_CONFIG) and waits
  for it, as TFX's cloud trainers hand training to a training service. The
  workers read and write the task's artifact paths, so those paths must be
  shared storage: mount it with `volume` at `mount_path` (a PVC, or the GCS
  FUSE CSI volume behind a gs:// pipeline root's /gcs paths). Locally
  (`mtrec run`) the workers are processes on localhost and none of this is
  read.
  """

  namespace: str = "kubeflow"
  # None: the image the pipeline was compiled with (the Trainer task's).
  image: Optional[str] = None
  gpus_per_worker: int = pydantic.Field(0, ge=0)
  service_account: Optional[str] = None
  # A Kubernetes Volume (e.g. {name: artifacts, persistentVolumeClaim:
  # {claimName: mtrec}}) mounted in every worker at mount_path.
  volume: Optional[dict[str, Any]] = None
  mount_path: Optional[str] = None
  poll_seconds: float = pydantic.Field(15.0, gt=0.0)
  timeout_minutes: float = pydantic.Field(24 * 60.0, gt=0.0)

  @pydantic.model_validator(mode="after")
  def _check_volume(self) -> "TFJobConfig":
    if self.volume is not None:
      if not isinstance(self.volume.get("name"), str):
        raise ValueError("volume.name: a Kubernetes volume needs a name")
      if not (self.mount_path or "").startswith("/"):
        raise ValueError("mount_path: an absolute path is needed with volume")
    elif self.mount_path is not None:
      raise ValueError("mount_path: set volume too (the volume to mount)")
    return self


class TrainerConfig(_Strict):
  """The model (trainer/) and how it is trained.

  Towers read the features the transform produced; `tasks` say what is
  learned and how much each loss weighs (or where uncertainty weighting
  starts); `shared_layers` what the ranking tasks share. Early stopping
  watches the validation split, never eval (which decides blessing).
  """

  embedding_dim: int = pydantic.Field(32, gt=0)
  # The MLP of the shared bottom, and of each expert of MMoE and PLE.
  hidden_units: list[pydantic.PositiveInt] = [64, 32]
  epochs: int = pydantic.Field(5, gt=0)
  batch_size: int = pydantic.Field(1024, gt=0)
  learning_rate: float = pydantic.Field(0.01, gt=0.0)
  optimizer: Literal["adagrad", "adam"] = "adam"
  # The model keeps a moving average of its weights (Keras's optimizer
  # EMA) over about the last `ema_horizon` share of the run's steps, and
  # that average is what is exported: it sits nearer the middle of the
  # region the last steps wander in than any one step does. The momentum
  # follows from the run's steps (trainer/run.py: ema_momentum), so a
  # value means the same on a CI run of 20 steps as on 400; what is left
  # of the initial weights is about e^(-1/horizon), 2% at 0.25.
  # None: the last step's weights.
  ema_horizon: Optional[float] = pydantic.Field(None, gt=0.0, le=1.0)
  # The tasks; when absent: retrieval, rating and like, weighted by
  # `task_weights` (older configs), which then reads back as None.
  tasks: Optional[list[TaskConfig]] = None
  task_weights: Optional[TaskWeights] = None
  loss_weighting: Literal["static", "uncertainty"] = "static"
  shared_layers: SharedLayersConfig = SharedLayersConfig()
  # The last N items before the event feed the query tower (0: none), as a
  # masked mean or through attention with recency embeddings.
  history_length: int = pydantic.Field(20, ge=0, le=F.MAX_HISTORY_LENGTH)
  history_encoder: Literal["mean", "attention"] = "attention"
  # The share of training rows whose history is their user's served one
  # (their latest training items) instead of the items just before the
  # event, so the query also learns to answer for any point of a user's
  # timeline from the history serving gives it (trainer/served_history.py).
  served_history_fraction: float = pydantic.Field(0.0, ge=0.0, lt=1.0)
  early_stopping: Optional[EarlyStoppingConfig] = None
  # Start from the variables of the model now served (rows of id embeddings
  # matched through the vocabularies); nothing served: from scratch.
  warm_start: bool = False
  # auto: mixed_float16 when training on GPUs.
  mixed_precision: Literal["auto", "on", "off"] = "auto"
  seed: int = 42
  # How many models this section trains, with seeds seed, seed + 1, ...
  # Only a teacher trains several (distillation.teacher: {members: 3}): its
  # soft targets are then their mean (trainer/distillation.py), which
  # predicts better than any one of them where no single wider model does.
  # The first is the artifact's SavedModel, the others are exported beside
  # it (contracts/model_layout.MEMBER_MODEL_DIR).
  members: int = pydantic.Field(1, ge=1, le=16)
  # Optional cap on steps per epoch (tests, smoke runs); None = whole split.
  steps_per_epoch: Optional[pydantic.PositiveInt] = None
  # False: the candidate tower reads the item id (and the LM text, when the
  # run has it) but not categories, title tokens, tags or year (ablations).
  item_content_features: bool = True
  # Used when the TextEmbedder ran (text_embedder.enabled).
  text_adapter: TextAdapterConfig = TextAdapterConfig()
  # None: no teacher.
  distillation: Optional[DistillationConfig] = None
  # >1: MultiWorkerMirroredStrategy over that many workers, each taking its
  # share of every global batch (batch_size stays the global batch), so the
  # model trains as on one worker. `mtrec run` starts them as processes on
  # localhost; on Kubeflow the Trainer launches a TFJob (`tfjob`).
  workers: int = pydantic.Field(1, ge=1)
  tfjob: TFJobConfig = TFJobConfig()

  @pydantic.model_validator(mode="before")
  @classmethod
  def _tasks_or_task_weights(cls, values: Any) -> Any:
    if isinstance(values, dict) and values.get("tasks") is not None and (
        values.get("task_weights") is not None):
      raise ValueError("task_weights: give each task its weight in "
                       "trainer.tasks instead")
    return values

  @pydantic.model_validator(mode="after")
  def _check_tasks(self) -> "TrainerConfig":
    if self.tasks is None:  # frozen: set once, here
      object.__setattr__(self, "tasks",
                         default_tasks(self.task_weights or TaskWeights()))
      object.__setattr__(self, "task_weights", None)
    if not self.tasks:
      raise ValueError("tasks: at least one task is needed")
    names = [t.name for t in self.tasks]
    for name in names:
      if names.count(name) > 1:
        raise ValueError(f"tasks: the name {name!r} is used twice")
    if sum(t.kind == "retrieval" for t in self.tasks) > 1:
      raise ValueError("tasks: at most one retrieval task")
    monitors = {"val_loss"}
    for t in self.tasks:
      monitors.add(f"val_{t.name}_loss")
      monitors.update(f"val_{t.name}_{m}" for m in t.metrics)
    if self.early_stopping and self.early_stopping.monitor not in monitors:
      raise ValueError(
          f"early_stopping.monitor: {self.early_stopping.monitor!r} is not "
          f"logged; one of {sorted(monitors)}")
    if self.distillation is not None:
      self._check_distillation(names)
    if (self.ema_horizon and self.early_stopping and
        self.early_stopping.restore_best_weights):
      # Keras restores the best epoch after it writes the average in.
      raise ValueError(
          "ema_horizon: early_stopping.restore_best_weights would replace "
          "the averaged weights with one epoch's; set restore_best_weights: "
          "false to keep the average (early stopping then only ends the run)")
    return self

  def _check_distillation(self, names: list[str]) -> None:
    d = self.distillation
    for task in d.weights:
      if task not in names:
        raise ValueError(f"distillation.weights: {task!r} is not a task; "
                         f"one of {names}")
    if d.catalog_items_per_row and d.retrieval_candidates != "catalog":
      raise ValueError("distillation.catalog_items_per_row: it needs "
                       "retrieval_candidates: catalog (the catalog table)")
    if d.teacher_model and d.teacher:
      raise ValueError("distillation.teacher: give either teacher overrides "
                       "or teacher_model, not both")
    if d.teacher_model:
      return
    if "distillation" in d.teacher:
      raise ValueError("distillation.teacher.distillation: a teacher has no "
                       "teacher of its own")
    try:
      teacher = self.teacher_config()
    except pydantic.ValidationError as e:
      raise ValueError(f"distillation.teacher: {e}") from None
    kinds = {t.name: t.kind for t in teacher.tasks}
    for t in self.tasks:
      if self.distillation_weight(t) > 0 and kinds.get(t.name) != t.kind:
        raise ValueError(
            f"distillation.teacher.tasks: the teacher has no {t.kind} task "
            f"{t.name!r} to give its soft targets")

  def distillation_weight(self, task: Any) -> float:
    """The weight of a task's soft-target loss (0 without distillation)."""
    if self.distillation is None:
      return 0.0
    return self.distillation.weights.get(task.name, task.weight)

  def teacher_config(self) -> "TrainerConfig":
    """The teacher the Teacher step trains: this section, no
    distillation, no warm start, with distillation.teacher merged over it."""
    raw = self.model_dump(mode="json", exclude={"distillation"})
    raw.update(warm_start=False)
    overrides = self.distillation.teacher if self.distillation else {}
    for key, value in overrides.items():
      raw[key] = (dict(raw[key], **value) if isinstance(value, dict) and
                  isinstance(raw.get(key), dict) else value)
    return TrainerConfig.model_validate(raw)

  def trains_teacher(self) -> bool:
    """Does the pipeline need a Teacher step (distillation without an
    existing teacher_model)?"""
    return self.distillation is not None and not (
        self.distillation.teacher_model)

  def fit_epochs(self) -> int:
    """The epochs training runs: distillation.epochs for a student
    learning from a teacher, else `epochs`."""
    d = self.distillation
    return d.epochs if d is not None and d.epochs else self.epochs

  def without_distillation(self) -> "TrainerConfig":
    return self.model_copy(update={"distillation": None})

  def tasks_of_kind(self, *kinds: str) -> list[Any]:
    return [t for t in self.tasks if t.kind in kinds]


_RANKING_METRIC = r"^(recall|ndcg|liked_recall|graded_ndcg)_at_[1-9][0-9]*$"


class FusionSearchConfig(_Strict):
  """How the fusion weights are chosen (trainer/fusion_search.py).

  With ExampleGen's validation split (example_gen.validation_fraction), the
  search ranks a seeded share of its users (at most `max_users`) with the
  model trained on train, and there is nothing to refit. Without one, a
  validation slice is carved from the train split, never from eval: for a
  seeded share of the users (at most `max_users`), their latest
  `holdout_fraction` of training events are held out of training. After
  training, each of those users is ranked as of their first held-out event
  and coordinate ascent over `grid` (the retrieval weight fixed) picks the
  ranking tasks' weights that maximize `objective` on the held-out items.
  With `refit` (the default) the served model is then trained again on the
  whole train split, the way a tuned hyperparameter is refit: holding half
  the users' latest fifth of events out of the served model cost 6% of its
  Recall@20 on ml-latest-small (0.137 vs 0.145, 3 seeds,
  docs/design_measurements.md). Without it, the model the search used is
  served (one training instead of two).
  """

  enabled: bool = True
  # recall_at_K, ndcg_at_K, liked_recall_at_K (over liked held-out items) or
  # graded_ndcg_at_K (gain 2 liked, 1 consumed).
  objective: str = pydantic.Field("graded_ndcg_at_20", pattern=_RANKING_METRIC)
  validation_users: float = pydantic.Field(1.0, gt=0.0, le=1.0)
  holdout_fraction: float = pydantic.Field(0.2, gt=0.0, lt=1.0)
  max_users: int = pydantic.Field(1000, gt=0)
  grid: list[pydantic.NonNegativeFloat] = [0.0, 0.05, 0.1, 0.2, 0.5, 1.0,
                                           2.0]
  rounds: int = pydantic.Field(2, gt=0)
  refit: bool = True


class RankingConfig(_Strict):
  """The second stage of `recommend`: retrieve, score with every ranking
  head, fuse (trainer/fusion.py says how each output is made comparable)."""

  # Items retrieved by the retrieval score, then re-ranked by the fusion.
  # 100 kept the p99 of `recommend` at concurrency 32 within 25 ms where
  # 200 did not, at the same fused quality on MovieLens
  # (docs/design_measurements.md).
  candidates: int = pydantic.Field(100, gt=0)
  # Task name -> weight (>= 0). The retrieval task defaults to 1, the
  # ranking tasks to 0; with `search` on, these are where the search starts
  # and the ranking tasks' weights it finds replace them.
  fusion: dict[str, pydantic.NonNegativeFloat] = {}
  search: FusionSearchConfig = FusionSearchConfig()


class FreshnessConfig(_Strict):
  """A serving policy for new items, off by default (bonus 0).

  An item is new from the moment it enters a served catalog without
  interaction data (a catalog item the trainer saw no event of, or one
  `mtrec catalog refresh` added) until `max_age_days` later. `recommend`
  adds bonus * 0.5 ** (age_days / half_life_days) to a new item's retrieval
  score, before the candidates are chosen, so the fused stage sees it too.
  A policy, not a model: it trades the ranking's measured quality for
  exposure of new items (benchmarks/cold_start.py measures both).
  """

  bonus: float = pydantic.Field(0.0, ge=0.0)
  half_life_days: float = pydantic.Field(7.0, gt=0.0)
  max_age_days: float = pydantic.Field(30.0, gt=0.0)


class NewItemMatchConfig(_Strict):
  """A serving policy for new items, off by default (bonus 0)
  (trainer/new_item_match.py).

  A new item (one the model was not trained on) matches a user when the
  mean of its `neighbors` highest cosine similarities, in LM text, to the
  user's liked items is at least `threshold`; `recommend` then adds
  `bonus` standard deviations of the user's retrieval scores to it, but
  never above the user's `keep_top` best items (after the request's
  exclusions; None: no cap), which keep the head of the list. Needs the
  item text (text_embedder.enabled).

  Two neighbours, not three: a fan of a series liked two or more of its
  parts, so the mean over the two closest liked items singles out the
  series' next part and lets fewer unrelated new items through. On
  ml-latest-small (benchmarks/cold_start.py, 3 seeds) 0.755 over two
  neighbours matches about half as many (user, item) pairs as 0.71 over
  three, for as many fans' sequels.
  """

  bonus: float = pydantic.Field(0.0, ge=0.0)
  threshold: float = pydantic.Field(0.755, gt=-1.0, le=1.0)
  neighbors: pydantic.PositiveInt = 2
  keep_top: Optional[pydantic.PositiveInt] = 5


class ServingConfig(_Strict):
  top_k: int = pydantic.Field(10, gt=0)  # items the `recommend` signature returns
  # Largest k `recommend_excluding` answers (and the evaluator's largest K).
  max_k: int = pydantic.Field(100, gt=0)
  ranking: RankingConfig = RankingConfig()
  freshness: FreshnessConfig = FreshnessConfig()
  new_item_match: NewItemMatchConfig = NewItemMatchConfig()

  @pydantic.model_validator(mode="after")
  def _enough_candidates(self) -> "ServingConfig":
    if self.ranking.candidates < max(self.max_k, self.top_k):
      raise ValueError(
          f"ranking.candidates: {self.ranking.candidates} is fewer than the "
          f"largest k served (max_k {self.max_k}, top_k {self.top_k})")
    return self
