"""Trainer entry point (TFX's `run_fn`): build, fit, export.

Reads the transform graph (vocabularies, feature spec), streams the
transformed train split, builds the model the config describes (tasks, shared
layers, loss weighting) from the features the transform produced, optionally
starts from the model now served, fits it under the strategy the hardware
allows (mixed precision on GPUs), stops early on a validation metric when
asked, and exports the serving SavedModel with the catalog, the user profiles
and the users' latest histories. TensorBoard logs (per-task losses and
effective weights per epoch) go to the Model artifact's `logs/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import artifact_readers
from components import schema
from contracts import artifacts
from contracts import features as F
from contracts import model_layout
from contracts import records as r
from trainer.config import FreshnessConfig
from trainer.config import NewItemMatchConfig
from trainer.config import RankingConfig
from trainer.config import TrainerConfig

from trainer import callbacks as callbacks_lib
from trainer import catalog as catalog_lib
from trainer import data
from trainer import distillation
from trainer import distribution
from trainer import export
from trainer import freshness as freshness_lib
from trainer import new_item_match as new_item_match_lib
from trainer import fusion as fusion_lib
from trainer import fusion_search
from trainer import heads as heads_lib
from trainer import inputs as inputs_lib
from trainer import loss_weighting
from trainer import model as model_lib
from trainer import refresh_state
from trainer import served_history
from trainer import shared_layers
from trainer import tasks as tasks_lib
from trainer import towers
from trainer import validation_slice as validation_lib
from trainer import warm_start as warm_start_lib

HISTORY_FILE = "training_history.json"
LOG_DIR = "logs"


def _initial_bias(task: Any, stats: Mapping[str, Any]) -> float:
  mean = stats["label_means"].get(task.name, 0.0)
  if task.kind == "binary":
    p = min(max(mean, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))
  return mean


def build_model(inputs: inputs_lib.ModelInputs, config: TrainerConfig,
                stats: Mapping[str, Any],
                text_table: Optional[np.ndarray] = None,
                teacher: Optional[tf.keras.Model] = None,
                catalog: Optional[Mapping[str, tf.Tensor]] = None,
                history_modes: Optional[bool] = None
                ) -> model_lib.MultiTaskModel:
  """The model the config describes, over the features the transform made.

  Args:
    text_table: LM vectors by item vocabulary index (OOV row last), when the
      run has item text (inputs.item_text_dim > 0).
    teacher: a trained model whose predictions become soft targets, weighted
      by config.distillation (trainer/distillation.py).
    catalog: the candidate features of every trained item
      (trainer/catalog.py), for a retrieval task with catalog negatives or
      a catalog-wide retrieval soft target.
    history_modes: whether the query has history modes
      (towers.QueryTower); None: when served histories train it. An export
      rebuilt from its state says (refresh_state.history_modes).
  """
  dim = config.embedding_dim
  adapter = config.text_adapter
  item_embedding = towers.IdEmbedding(inputs.item_id, dim,
                                      name="item_embedding")
  query = towers.QueryTower(
      inputs, dim, item_embedding, config.history_length,
      config.history_encoder,
      text_table=text_table if adapter.user_history else None,
      text_rank=adapter.rank,
      history_modes=(config.served_history_fraction > 0
                     if history_modes is None else history_modes))
  candidate = towers.CandidateTower(
      inputs, dim, item_embedding,
      content_features=config.item_content_features,
      text_rank=adapter.rank, id_dropout=adapter.id_dropout)
  ranking_heads = None
  ranking = config.tasks_of_kind("regression", "binary")
  if ranking:
    sl = config.shared_layers
    biases = {t.name: _initial_bias(t, stats) for t in ranking}
    ranking_heads = heads_lib.RankingHeads(
        shared_layers.build(sl.kind, list(biases), config.hidden_units,
                            sl.num_experts, sl.task_experts, sl.levels),
        biases, sl.tower_units)
  num_labels = {t.name: inputs.multilabel_size(t.label)
                for t in config.tasks_of_kind("multilabel")}
  query_heads = heads_lib.QueryHeads(num_labels) if num_labels else None
  catalog_rows = (None if catalog is None else
                  catalog_lib.rows_by_item(catalog, inputs.item_id.size))
  tasks = [tasks_lib.build(t, stats["item_probabilities"], num_labels,
                           catalog_rows)
           for t in config.tasks]
  weighting = loss_weighting.build(
      config.loss_weighting, {t.name: t.weight for t in config.tasks},
      {t.name: t.kind for t in config.tasks})
  soft_targets = None
  if teacher is not None:
    soft_targets = distillation.SoftTargets(
        teacher, tasks,
        {t.name: config.distillation_weight(t) for t in config.tasks},
        config.distillation.temperature,
        catalog if config.distillation.retrieval_candidates == "catalog"
        else None, config.distillation.catalog_items_per_row)
  return model_lib.MultiTaskModel(query, candidate, ranking_heads,
                                  query_heads, tasks, weighting, soft_targets,
                                  catalog)


def load_teacher(export_dir: str, inputs: inputs_lib.ModelInputs,
                 stats: Mapping[str, Any], text_table: Optional[np.ndarray],
                 vocabulary_files: Mapping[str, str],
                 sample: Mapping[str, tf.Tensor]) -> tf.keras.Model:
  """A trained mtrec export, rebuilt as a Keras model over this run's
  features: its own trainer section says what to build, its warm-start
  state holds the weights (id rows matched through the vocabularies, so the
  model served now can teach a model of newer data). A teacher of several
  members (model_layout.member_dirs) comes back as their mean
  (distillation.Ensemble)."""
  members = [_load_member(d, inputs, stats, text_table, vocabulary_files,
                          sample)
             for d in model_layout.member_dirs(export_dir)]
  return members[0] if len(members) == 1 else distillation.Ensemble(members)


def _load_member(export_dir: str, inputs: inputs_lib.ModelInputs,
                 stats: Mapping[str, Any], text_table: Optional[np.ndarray],
                 vocabulary_files: Mapping[str, str],
                 sample: Mapping[str, tf.Tensor]
                 ) -> model_lib.MultiTaskModel:
  config = TrainerConfig.model_validate(
      refresh_state.trainer_section(export_dir))
  teacher = build_model(inputs, config, stats, text_table,
                        history_modes=refresh_state.history_modes(export_dir))
  teacher(sample)
  restored = warm_start_lib.restore(teacher, export_dir, vocabulary_files)
  if restored["fresh"]:
    raise ValueError(
        f"teacher {export_dir}: {len(restored['fresh'])} of its variables do "
        f"not fit this run's features (e.g. {restored['fresh'][:3]}); a "
        "teacher must read the features its student reads")
  return teacher


def ema_momentum(horizon: float, steps: int) -> float:
  """The momentum of a moving average over about the last `horizon` share
  of `steps` optimizer steps: 1 - 1 / (horizon * steps), so what is left
  of the weights the average starts from is about e^(-1 / horizon) on a
  run of any length (0 when the horizon is under one step)."""
  return max(0.0, 1.0 - 1.0 / (horizon * steps))


def _optimizer(config: TrainerConfig, steps: int):
  """config's optimizer; with config.ema_horizon, Keras's moving average of
  the weights, which fit() writes into the model when it ends."""
  ema = {}
  if config.ema_horizon:
    ema = {"use_ema": True,
           "ema_momentum": ema_momentum(config.ema_horizon, steps)}
  if config.optimizer == "adam":
    return tf.keras.optimizers.Adam(config.learning_rate, **ema)
  return tf.keras.optimizers.Adagrad(config.learning_rate, **ema)


def _vocabulary_files(tft_output: tft.TFTransformOutput,
                      inputs: inputs_lib.ModelInputs) -> dict[str, str]:
  return {v.vocab_name: tft_output.vocabulary_file_by_name(v.vocab_name)
          for v in inputs.vocabularies()}


def _vocabulary(tft_output: tft.TFTransformOutput, name: str) -> list[str]:
  return [t.decode() for t in tft_output.vocabulary_by_name(name)]


def text_by_vocabulary(tft_output: tft.TFTransformOutput,
                       item_text: Mapping[str, Any]
                       ) -> tuple[np.ndarray, np.ndarray]:
  """LM vectors and has-text flags by item vocabulary index, OOV row last.

  Args:
    item_text: {"item_ids", "vectors", "has_text"} (an ItemFeatures artifact
      read back, or the catalog held by an export).
  """
  row = {i: n for n, i in enumerate(item_text["item_ids"])}
  vocab = _vocabulary(tft_output, F.ITEM_ID_VOCAB)
  dim = item_text["vectors"].shape[1]
  vectors = np.zeros((len(vocab) + 1, dim), np.float32)
  has_text = np.zeros(len(vocab) + 1, np.int64)
  for index, item in enumerate(vocab):
    if item in row:
      vectors[index] = item_text["vectors"][row[item]]
      has_text[index] = item_text["has_text"][row[item]]
  return vectors, has_text


def read_item_text(item_features_uri: str) -> dict[str, Any]:
  ids, vectors, has_text = artifact_readers.read_item_features(
      item_features_uri)
  return {"item_ids": ids, "vectors": vectors, "has_text": has_text}


def _with_item_text(ds: tf.data.Dataset, vectors: np.ndarray,
                    has_text: np.ndarray) -> tf.data.Dataset:
  """Adds each row's item text features, looked up by item vocab index."""
  table = tf.constant(vectors)
  flags = tf.constant(has_text)

  def add(batch):
    batch = dict(batch)
    batch[F.ITEM_TEXT_EMBEDDING] = tf.gather(table, batch[F.ITEM_ID])
    batch[F.ITEM_HAS_TEXT] = tf.gather(flags, batch[F.ITEM_ID])
    return batch

  return ds.map(add, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def fit(transform_graph_uri: str, transformed_examples_uri: str,
        examples_uri: str, config: TrainerConfig, log_dir: str,
        strategy: tf.distribute.Strategy,
        warm_start_from: Optional[str] = None,
        log: Callable[[str], None] = print,
        item_features_uri: Optional[str] = None,
        held_out: Optional[validation_lib.ValidationSlice] = None,
        teacher_dir: Optional[str] = None
        ) -> dict[str, Any]:
  """Builds and trains the model; returns it with what training measured.

  Args:
    held_out: a validation slice whose (user, item) rows are left out of
      training (trainer/validation_slice.py).
    teacher_dir: an exported model to distill from, as config.distillation
      says (None: hard labels only).
  """
  tf.keras.utils.set_random_seed(config.seed)  # weights, shuffles, dropout
  tft_output = tft.TFTransformOutput(transform_graph_uri)
  feature_spec = tft_output.transformed_feature_spec()
  user_features = schema.user_features_of(
      schema.read_feature_spec(examples_uri))
  inputs = inputs_lib.discover(feature_spec, tft_output.vocabulary_size_by_name,
                               user_features)
  item_text = text_table = text_flags = None
  if item_features_uri:
    item_text = read_item_text(item_features_uri)
    text_table, text_flags = text_by_vocabulary(tft_output, item_text)
    inputs = dataclasses.replace(inputs, item_text_dim=text_table.shape[1])
    log(f"item text: {len(item_text['item_ids'])} items, "
        f"{int(text_flags[:-1].sum())} of {len(text_flags) - 1} vocabulary "
        f"items with text, LM width {text_table.shape[1]}")

  drop_pairs = None
  if held_out is not None:
    keys = validation_lib.pair_keys(held_out.held_out_pairs, tft_output)
    if keys is not None:
      drop_pairs = (keys, tft_output.vocabulary_size_by_name(
          F.ITEM_ID_VOCAB) + 1)

  def dataset(*args, **kwargs) -> tf.data.Dataset:
    ds = data.make_dataset(*args, **kwargs)
    return (_with_item_text(ds, text_table, text_flags)
            if text_table is not None else ds)

  stats = data.training_statistics(
      data.make_dataset(transformed_examples_uri, "train", feature_spec, 8192,
                        shuffle=False, drop_pairs=drop_pairs),
      inputs.item_id.size, data.scalar_labels(config.tasks))
  log(f"train rows: {stats['rows']}; label means: " + ", ".join(
      f"{k} {v:.3f}" for k, v in stats["label_means"].items()))
  # Equal batches: in-batch negatives do not depend on where an epoch ends,
  # and replicas split every batch evenly.
  drop_remainder = stats["rows"] >= config.batch_size * 2
  train = dataset(
      transformed_examples_uri, "train", feature_spec, config.batch_size,
      shuffle=True, seed=config.seed, repeat=bool(config.steps_per_epoch),
      drop_remainder=drop_remainder, drop_pairs=drop_pairs)
  if config.served_history_fraction > 0 and inputs.has_history and (
      config.history_length > 0):
    # Training rows only, and the train split's histories only: the
    # validation split's items stay out of every training feature.
    served = served_history.by_vocabulary(
        data.latest_histories(examples_uri, config.history_length,
                              splits=(artifacts.TRAIN,)),
        _vocabulary(tft_output, inputs.user_id.vocab_name),
        _vocabulary(tft_output, F.ITEM_ID_VOCAB))
    train = served_history.with_served_histories(
        train, served, config.served_history_fraction, config.seed)
  validation = None
  if config.early_stopping:
    # Never the eval split: the split that decides blessing must not also
    # choose the epoch.
    if artifacts.VALIDATION not in artifacts.split_names(
        transformed_examples_uri):
      raise ValueError(
          "trainer.early_stopping watches the validation split, and "
          f"{transformed_examples_uri} has none: set "
          "example_gen.validation_fraction > 0")
    validation = dataset(transformed_examples_uri, artifacts.VALIDATION,
                         feature_spec, config.batch_size, shuffle=False)

  catalog = None
  if any(t.kind == "retrieval" and t.negatives == "catalog"
         for t in config.tasks) or (
             teacher_dir and config.distillation.retrieval_candidates ==
             "catalog"):
    catalog = catalog_lib.item_table(
        dataset(transformed_examples_uri, "train", feature_spec, 8192,
                shuffle=False, drop_pairs=drop_pairs),
        catalog_lib.candidate_features(inputs), inputs.item_id.size)
    log(f"catalog table: {int(catalog[F.ITEM_ID].shape[0])} items, embedded "
        "at every step")

  batches = config.steps_per_epoch or (
      stats["rows"] // config.batch_size if drop_remainder else
      math.ceil(stats["rows"] / config.batch_size))
  epochs = config.fit_epochs() if teacher_dir else config.epochs

  with strategy.scope():
    sample = next(iter(dataset(
        transformed_examples_uri, "train", feature_spec, 8, shuffle=False)))
    teacher = None
    if teacher_dir:
      teacher = load_teacher(teacher_dir, inputs, stats, text_table,
                             _vocabulary_files(tft_output, inputs), sample)
      log(f"distilling from {teacher_dir} at temperature "
          f"{config.distillation.temperature}")
    # The student starts from the same initial weights with or without a
    # teacher (building one drew from the seeded generator).
    tf.keras.utils.set_random_seed(config.seed)
    model = build_model(inputs, config, stats, text_table, teacher, catalog)
    model(sample)
    warm = None
    if warm_start_from and warm_start_lib.has_state(warm_start_from):
      warm = warm_start_lib.restore(model, warm_start_from,
                                    _vocabulary_files(tft_output, inputs))
      log(f"warm start from {warm_start_from}: {warm['copied']} variables "
          f"copied, rows kept per vocabulary {warm['remapped']}, "
          f"{len(warm['fresh'])} fresh")
    elif warm_start_from:
      log(f"warm start: {warm_start_from} has no warm-start state; "
          "training from scratch")
    model.compile(optimizer=_optimizer(config, batches * epochs))

  throughput = callbacks_lib.Throughput(batches * config.batch_size)
  callbacks = [callbacks_lib.Progress(log, epochs, batches),
               callbacks_lib.EpochLog(log),
               callbacks_lib.TaskSummaries(log_dir), throughput]
  if config.early_stopping:
    callbacks.append(callbacks_lib.early_stopping(config.early_stopping))
  start = time.time()
  history = model.fit(train, validation_data=validation, epochs=epochs,
                      steps_per_epoch=config.steps_per_epoch, verbose=0,
                      callbacks=callbacks)
  return {
      "model": model, "tft_output": tft_output, "inputs": inputs,
      "user_features": user_features, "stats": stats,
      "history": {k: [float(x) for x in v] for k, v in
                  history.history.items()},
      "train_seconds": time.time() - start,
      "epochs_run": len(throughput.epoch_seconds),
      "examples_per_second": throughput.examples_per_second() or 0.0,
      "warm_start": warm,
      "item_text": item_text,
  }


def run_trainer(
    transform_graph_uri: str,
    transformed_examples_uri: str,
    examples_uri: str,
    catalog_uri: str,
    model_uri: str,
    run_id: str,
    config: TrainerConfig,
    model_name: str,
    top_k: int,
    max_k: int = 100,
    num_cpu_devices: int = 1,
    log=print,
    parameters: Optional[Mapping[str, Any]] = None,
    warm_start_from: Optional[str] = None,
    item_features_uri: Optional[str] = None,
    ranking: Optional[RankingConfig] = None,
    freshness: Optional[FreshnessConfig] = None,
    teacher_model_dir: Optional[str] = None,
    new_item_match: Optional[NewItemMatchConfig] = None,
) -> dict[str, Any]:
  """Trains and publishes the Model artifact; returns its summary.

  Args:
    warm_start_from: a SavedModel directory written by an earlier run (the
      model now served) to start from; None trains from scratch.
    item_features_uri: the TextEmbedder's ItemFeatures artifact: the
      candidate tower then adapts and gates the items' LM text embeddings.
    ranking: serving.ranking: the fused second stage of `recommend` and the
      search of its weights (None: the defaults).
    freshness: serving.freshness: the new-item policy of `recommend`
      (None: off).
    new_item_match: serving.new_item_match: the policy that matches new
      items to users by their liked items' text (None: off).
    teacher_model_dir: with config.distillation, the teacher's export (the
      Teacher step's, or distillation.teacher_model); with
      compare_undistilled the artifact also holds the student trained
      without it (model_layout.undistilled_model_dir).
  """
  ranking = ranking or RankingConfig()
  freshness = freshness or FreshnessConfig()
  strategy = distribution.choose_strategy(num_cpu_devices)
  mixed = distribution.use_mixed_precision(config.mixed_precision)
  log(f"strategy: {distribution.describe(strategy)}"
      f"{', mixed precision' if mixed else ''}")
  with artifacts.scratch_dir(model_uri) as scratch:
    distilling = config.distillation is not None and bool(teacher_model_dir)

    def train(held_out=None, log_dir=LOG_DIR, distill=distilling,
              member=0):
      previous_policy = tf.keras.mixed_precision.global_policy()
      if mixed:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
      cfg = config if distill else config.without_distillation()
      if member:
        cfg = cfg.model_copy(update={"seed": config.seed + member})
      try:
        return fit(transform_graph_uri, transformed_examples_uri,
                   examples_uri, cfg,
                   os.path.join(scratch, log_dir), strategy, warm_start_from,
                   log, item_features_uri, held_out,
                   teacher_model_dir if distill else None)
      finally:
        # The layers keep the policy they were built with; what is built
        # outside training (the TFT layer of the validation slice, of the
        # search's module and of the export) must not cast its inputs to
        # float16.
        tf.keras.mixed_precision.set_global_policy(previous_policy)

    search = ranking.search
    choice = None
    # Something to weigh against retrieval: a retrieval task and a head.
    if search.enabled and config.tasks_of_kind("retrieval") and (
        config.tasks_of_kind(*fusion_lib.FUSED_KINDS[1:])):
      tft_output = tft.TFTransformOutput(transform_graph_uri)
      has_split = artifacts.VALIDATION in artifacts.split_names(examples_uri)
      if has_split:
        # Held out by ExampleGen: the served model is the one searched with.
        vslice = validation_lib.from_validation_split(
            examples_uri, tft_output, search.validation_users,
            search.max_users, config.seed, config.history_length)
        log(f"fusion search: the validation split's {vslice.summary()}")
      else:
        vslice = validation_lib.carve(
            examples_uri, tft_output, search.validation_users,
            search.holdout_fraction, search.max_users, config.seed,
            config.history_length)
        log(f"fusion search: validation slice {vslice.summary()}, "
            f"{len(vslice.held_out_pairs)} (user, item) pairs held out of "
            "training")
      refit = search.refit and not has_split
      trained = train(vslice, "validation_model_logs" if refit
                      else LOG_DIR)
      choice = _search_fusion(trained, vslice, search, ranking,
                              catalog_uri, examples_uri, config, top_k,
                              max_k, log)
      choice[1]["source"] = ("validation split" if has_split else
                             "carved from train")
      choice[1]["refit"] = refit
      if refit:
        log("refit on the whole train split with the chosen weights")
        choice[1]["validation_model_seconds"] = round(
            trained["train_seconds"], 2)
        trained = train()
    else:
      trained = train()
    undistilled = None
    if distilling and config.distillation.compare_undistilled:
      log("the same student without distillation, for the report")
      undistilled = train(log_dir="undistilled_logs", distill=False)
    members = []
    for member in range(1, config.members):
      log(f"member {member + 1} of {config.members} (seed "
          f"{config.seed + member})")
      members.append(train(log_dir=f"member_{member}_logs", member=member))
    return _publish(trained, transform_graph_uri, transformed_examples_uri,
                    examples_uri, catalog_uri, model_uri, run_id, config,
                    model_name, top_k, max_k, strategy, mixed, parameters,
                    scratch, item_features_uri, ranking, choice,
                    freshness, teacher_model_dir if distilling else None,
                    undistilled, members, new_item_match)


def _serving_module(trained: Mapping[str, Any], catalog_uri: str,
                    examples_uri: str, config: TrainerConfig, top_k: int,
                    max_k: int, ranking: RankingConfig,
                    freshness: Optional[FreshnessConfig] = None,
                    new_item_match: Optional[NewItemMatchConfig] = None,
                    liked: Optional[Mapping[str, Sequence[str]]] = None
                    ) -> tuple[export.ServingModule, dict, dict, dict, dict]:
  """(module, items, users, histories, history_ends): the export's module
  for a trained model, fused as the config says, and the tables it holds.
  liked: what new_item_match matches new items against (`_liked_items`)."""
  items, users = artifact_readers.read_catalog(catalog_uri,
                                               trained["user_features"])
  histories, history_ends = data.latest_histories_with_ends(
      examples_uri, config.history_length if trained["inputs"].has_history
      else 0)
  spec = fusion_lib.build_spec(config.tasks, ranking.fusion,
                               trained["stats"], ranking.candidates)
  return export.ServingModule(
      trained["model"], trained["tft_output"], items, users,
      trained["user_features"], top_k, max_k, histories,
      trained["item_text"], spec,
      freshness.model_dump() if freshness else None,
      new_item_match.model_dump() if new_item_match else None,
      liked, history_ends), items, users, histories, history_ends


def _liked_items(new_item_match: Optional[NewItemMatchConfig],
                 transformed_examples_uri: str,
                 tft_output: tft.TFTransformOutput) -> dict[str, list[str]]:
  """Each user's liked items when new_item_match is on (else none): read
  once per export, for every model the artifact holds."""
  if not new_item_match or not new_item_match_lib.settings_enabled(
      new_item_match.model_dump()):
    return {}
  return new_item_match_lib.liked_items(transformed_examples_uri,
                                        tft_output)


def _search_fusion(trained: Mapping[str, Any],
                   vslice: validation_lib.ValidationSlice, search: Any,
                   ranking: RankingConfig, catalog_uri: str,
                   examples_uri: str, config: TrainerConfig, top_k: int,
                   max_k: int, log: Callable[[str], None]
                   ) -> tuple[list[float], dict[str, Any]]:
  """(weights, what the search did) on the model trained without vslice."""
  module = _serving_module(trained, catalog_uri, examples_uri, config, top_k,
                           max_k, ranking)[0]
  spec = module.fusion_spec
  values, ids = fusion_search.candidate_table(module, vslice)
  weights, info = fusion_search.search(
      values, ids, vslice.gains, spec.tasks, spec.kinds, spec.weights,
      search.objective, search.grid, search.rounds)
  info.update(vslice.summary())
  log(f"fusion search on {len(vslice)} validation users: "
      f"{search.objective} {info['retrieval_only_objective']:.4f} "
      f"(retrieval order) -> {info['chosen_objective']:.4f} with "
      f"{info['chosen_weights']}")
  return weights, info


def _publish(trained, transform_graph_uri, transformed_examples_uri,
             examples_uri, catalog_uri, model_uri, run_id, config, model_name,
             top_k, max_k, strategy, mixed, parameters, scratch,
             item_features_uri=None, ranking=None, fusion_choice=None,
             freshness=None, teacher_dir=None, undistilled=None,
             members=(), new_item_match=None):
  """Exports the SavedModel and writes the Model artifact.

  Args:
    fusion_choice: (weights, search info) the fusion search chose, or None
      for the config's weights.
    teacher_dir: the export the model was distilled from (an input).
    undistilled: the same model trained without the teacher (fit's
      result), exported beside it with the same fusion weights.
    members: the other members of a config with members > 1 (fit's
      results), each a complete export of its own beside the SavedModel
      (model_layout.member_model_dir), as a teacher is read.
  """
  ranking = ranking or RankingConfig()
  model = trained["model"]
  tft_output = trained["tft_output"]
  params = dict(parameters or {}, **config.model_dump(mode="json"))
  inputs = {"transform_graph": transform_graph_uri,
            "transformed_examples": transformed_examples_uri,
            "examples": examples_uri, "catalog": catalog_uri}
  text_settings = None
  if item_features_uri:
    inputs["item_features"] = item_features_uri
    text_settings = artifacts.read_metadata(item_features_uri)["parameters"]
  if teacher_dir:
    inputs["teacher_model"] = teacher_dir
  with artifacts.write_artifact(model_uri, "Model", "Trainer", run_id, params,
                                inputs) as w:
    export_dir = model_layout.saved_model_dir(w.uri)
    liked = _liked_items(new_item_match, transformed_examples_uri, tft_output)

    def export_model(fit_result, directory, member=0, with_state=True):
      """The SavedModel, with the fusion weights chosen; with_state: also
      the state refresh and warm start read (a comparison model has none)."""
      module, items, users, histories, history_ends = _serving_module(
          fit_result, catalog_uri, examples_uri, config, top_k, max_k,
          ranking, freshness, new_item_match, liked)
      if fusion_choice is not None:
        module.set_fusion_weights(*fusion_choice)
      export.save(module, directory)
      if not with_state:
        return module, items
      member_config = config.model_copy(update={"seed": config.seed + member})
      refresh_state.save_state(
          directory, transform_graph_uri, member_config,
          fit_result["user_features"], fit_result["stats"], dict(items, **{
              freshness_lib.ADDED_AT: module.items_added_at.tolist()}),
          users, histories, fit_result["item_text"], text_settings, top_k,
          max_k, module.fusion_spec, module.freshness, module.new_item_match,
          liked, history_ends, module.history_modes)
      warm_start_lib.save_state(
          fit_result["model"],
          _vocabulary_files(tft_output, fit_result["inputs"]), directory)
      return module, items

    module, items = export_model(trained, export_dir)
    if undistilled is not None:
      export_model(undistilled, model_layout.undistilled_model_dir(w.uri),
                   with_state=False)
    for member, fit_result in enumerate(members, start=1):
      export_model(fit_result, model_layout.member_model_dir(w.uri, member),
                   member)
    top_user = tft_output.vocabulary_by_name(F.USER_ID_VOCAB)[0].decode()
    export.write_warmup_requests(
        export_dir, model_name, user_ids=[top_user, "__unknown_user__"],
        item_ids=[items[r.ITEM_ID][0], "__unknown_item__"])
    per_epoch = trained["history"]
    with open(os.path.join(w.uri, HISTORY_FILE), "w") as f:
      json.dump(per_epoch, f, indent=2)
    shutil.move(os.path.join(scratch, LOG_DIR), os.path.join(w.uri, LOG_DIR))
    eps = trained["examples_per_second"]
    w.summary = {
        "strategy": distribution.describe(strategy),
        "mixed_precision": mixed,
        "train_rows": trained["stats"]["rows"],
        "epochs": trained["epochs_run"],
        "train_seconds": round(trained["train_seconds"], 2),
        "examples_per_second": round(eps, 1) if eps else None,
        "catalog_items": len(items[r.ITEM_ID]),
        "final_task_losses": {
            t.name: per_epoch[f"{t.name}_loss"][-1] for t in config.tasks},
        "task_weights": model.effective_weights(),
        "warm_start": (None if trained["warm_start"] is None else {
            k: v for k, v in trained["warm_start"].items() if k != "fresh"}),
        "signatures": list(export.SIGNATURES),
        "fusion_weights": module.fusion_spec.weight_of(),
        "fusion_search": ({k: v for k, v in module.fusion_spec.search.items()
                           if k != "curve"} if module.fusion_spec.search
                          else None),
        "item_text": bool(item_features_uri),
        "new_item_match": module.new_item_match_summary(),
        "members": 1 + len(members),
        "distillation": None if teacher_dir is None else {
            "teacher": teacher_dir,
            "final_losses": {
                k[:-len("_distillation_loss")]: v[-1]
                for k, v in per_epoch.items()
                if k.endswith("_distillation_loss") and
                not k.startswith("val_")},
            "undistilled": undistilled is not None,
            # The plain student's (the section's `epochs`); the distilled
            # one's are `epochs` above (distillation.epochs when set).
            "undistilled_epochs": (undistilled["epochs_run"]
                                   if undistilled else None)},
    }
  return w.summary
