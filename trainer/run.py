"""Trainer entry point (TFX's `run_fn`): build, fit, export.

Reads the transform graph (vocabulary sizes, feature spec), streams the
transformed train split, fits the multi-task model under the strategy the
hardware allows, and exports the serving SavedModel with the catalog and user
profiles from ExampleGen's catalog artifact.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping, Optional

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import artifacts
from components import example_gen
from components import features as F
from components import records as r
from components import schema
from pipeline.config import TrainerConfig
from pipeline.steps import SERVING_MODEL_DIR
from trainer import data
from trainer import distribution
from trainer import export
from trainer import model as model_lib
from trainer import towers

HISTORY_FILE = "training_history.json"


def build_model(tft_output: tft.TFTransformOutput, user_features,
                config: TrainerConfig, stats: Mapping[str, Any]
                ) -> model_lib.MultiTaskModel:
  dim = config.embedding_dim
  query = towers.QueryTower(
      tft_output.vocabulary_size_by_name(F.USER_ID_VOCAB),
      {name: tft_output.vocabulary_size_by_name(F.user_attribute_vocab(name))
       for name in user_features}, dim)
  candidate = towers.CandidateTower(
      tft_output.vocabulary_size_by_name(F.ITEM_ID_VOCAB),
      tft_output.vocabulary_size_by_name(F.CATEGORIES_VOCAB),
      tft_output.vocabulary_size_by_name(F.TITLE_TOKENS_VOCAB), dim)
  heads = towers.RankingHeads(config.hidden_units, dim,
                              rating_bias=stats["mean_rating"])
  return model_lib.MultiTaskModel(query, candidate, heads,
                                  stats["item_probabilities"],
                                  config.task_weights.model_dump())


def _optimizer(config: TrainerConfig):
  if config.optimizer == "adam":
    return tf.keras.optimizers.Adam(config.learning_rate)
  return tf.keras.optimizers.Adagrad(config.learning_rate)


class _EpochLog(tf.keras.callbacks.Callback):

  def __init__(self, log):
    super().__init__()
    self._log = log
    self._start = 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    logs = {k: round(float(v), 5) for k, v in (logs or {}).items()}
    self._log(f"epoch {epoch + 1}: " + ", ".join(
        f"{k}={v:g}" for k, v in sorted(logs.items())
        if k.endswith(("_loss", "rmse", "auc"))) +
              f" ({time.time() - self._start:.1f}s)")


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
) -> dict[str, Any]:
  """Trains and publishes the Model artifact; returns its summary."""
  tf.keras.utils.set_random_seed(config.seed)
  strategy = distribution.choose_strategy(num_cpu_devices)
  log(f"strategy: {distribution.describe(strategy)}")
  tft_output = tft.TFTransformOutput(transform_graph_uri)
  feature_spec = tft_output.transformed_feature_spec()
  user_features = schema.user_features_of(schema.read_feature_spec(examples_uri))

  stats = data.training_statistics(
      data.make_dataset(transformed_examples_uri, "train", feature_spec, 8192,
                        shuffle=False),
      tft_output.vocabulary_size_by_name(F.ITEM_ID_VOCAB))
  log(f"train rows: {stats['rows']}, rated: {stats['rated_rows']}, "
      f"mean rating: {stats['mean_rating']:.3f}")
  train = data.make_dataset(transformed_examples_uri, "train", feature_spec,
                            config.batch_size, shuffle=True, seed=config.seed)
  if config.steps_per_epoch:
    train = train.repeat()
  with strategy.scope():
    model = build_model(tft_output, user_features, config, stats)
    model.compile(optimizer=_optimizer(config))
  start = time.time()
  history = model.fit(
      strategy.experimental_distribute_dataset(train)
      if strategy.num_replicas_in_sync > 1 else train,
      epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
      verbose=0, callbacks=[_EpochLog(log)])
  train_seconds = time.time() - start
  examples_per_second = (
      stats["rows"] * config.epochs if not config.steps_per_epoch else
      config.steps_per_epoch * config.batch_size * config.epochs
  ) / max(train_seconds, 1e-9)

  items, users = example_gen.read_catalog(catalog_uri, user_features)
  params = dict(parameters or {}, **config.model_dump(mode="json"))
  inputs = {"transform_graph": transform_graph_uri,
            "transformed_examples": transformed_examples_uri,
            "examples": examples_uri, "catalog": catalog_uri}
  with artifacts.write_artifact(model_uri, "Model", "Trainer", run_id, params,
                                inputs) as w:
    export_dir = os.path.join(w.uri, SERVING_MODEL_DIR)
    module = export.ServingModule(model, tft_output, items, users,
                                  user_features, top_k, max_k)
    export.save(module, export_dir)
    top_user = tft_output.vocabulary_by_name(F.USER_ID_VOCAB)[0].decode()
    export.write_warmup_requests(
        export_dir, model_name, user_ids=[top_user, "__unknown_user__"],
        item_ids=[items[r.ITEM_ID][0], "__unknown_item__"])
    per_epoch = {k: [float(x) for x in v] for k, v in history.history.items()}
    with open(os.path.join(w.uri, HISTORY_FILE), "w") as f:
      json.dump(per_epoch, f, indent=2)
    w.summary = {
        "strategy": distribution.describe(strategy),
        "train_rows": stats["rows"],
        "epochs": config.epochs,
        "train_seconds": round(train_seconds, 2),
        "examples_per_second": round(examples_per_second, 1),
        "catalog_items": len(items[r.ITEM_ID]),
        "final_task_losses": {
            t: per_epoch[f"{t}_loss"][-1] for t in model_lib.TASKS},
        "signatures": list(export.SIGNATURES),
    }
  return w.summary
