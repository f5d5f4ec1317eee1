"""The trainer section of the config: tasks, shared layers, weighting."""

import json

import pytest

from pipeline import config as C

# A valid data section for tests about other sections.
_DATA = {"format": "synthetic", "options": {"num_interactions": 100}}


def _parse(trainer):
  # A validation split, which trainer.early_stopping needs.
  return C.parse_config({"data": _DATA, "trainer": trainer, "example_gen": {
      "validation_fraction": 0.1}}, source="x.yaml")


def test_tasks_are_declared_with_kind_label_weight_and_metrics():
  cfg = _parse({
      "tasks": [
          {"name": "retrieval", "kind": "retrieval", "temperature": 0.1},
          {"name": "rating", "kind": "regression", "label": "rating",
           "loss": "huber", "metrics": ["rmse", "mae"]},
          {"name": "like", "kind": "binary", "label": "like", "weight": 0.3},
          {"name": "interest", "kind": "multilabel", "label": "categories"},
      ],
      "shared_layers": {"kind": "ple", "levels": 1},
      "loss_weighting": "uncertainty",
      "early_stopping": {"monitor": "val_rating_mae"},
  }).trainer
  assert [t.kind for t in cfg.tasks] == ["retrieval", "regression", "binary",
                                         "multilabel"]
  assert cfg.tasks[0].temperature == 0.1 and cfg.tasks[1].loss == "huber"
  assert cfg.tasks[2].weight == 0.3 and cfg.tasks[3].metrics == ["auc"]
  assert [t.name for t in cfg.tasks_of_kind("regression", "binary")] == [
      "rating", "like"]


def test_older_configs_keep_working_through_task_weights():
  cfg = _parse({"task_weights": {"retrieval": 1.0, "rating": 0.5,
                                 "like": 2.0}}).trainer
  assert [(t.name, t.kind, t.weight) for t in cfg.tasks] == [
      ("retrieval", "retrieval", 1.0), ("rating", "regression", 0.5),
      ("like", "binary", 2.0)]
  assert cfg.task_weights is None  # read back as tasks only


def test_config_round_trips_through_json():
  cfg = C.parse_config({"data": _DATA,
                        "trainer": {"task_weights": {"like": 0.2}}})
  again = C.parse_config(json.loads(json.dumps(cfg.model_dump(mode="json"))))
  assert again == cfg


@pytest.mark.parametrize("trainer, message", [
    ({"tasks": [{"name": "r", "kind": "regression", "label": "clicks"}]},
     "trainer.tasks.0.regression.label: Input should be 'rating' or "
     "'watch_fraction'"),
    ({"tasks": [{"name": "r", "kind": "ranking", "label": "rating"}]},
     "trainer.tasks.0: Input tag 'ranking' found using 'kind'"),
    ({"tasks": [{"name": "r", "kind": "binary", "label": "like",
                 "weight": -1}]},
     "trainer.tasks.0.binary.weight: Input should be greater than or equal"),
    ({"tasks": [{"name": "a", "kind": "retrieval"},
                {"name": "a", "kind": "binary", "label": "like"}]},
     "trainer: tasks: the name 'a' is used twice"),
    ({"tasks": [{"name": "a", "kind": "retrieval"},
                {"name": "b", "kind": "retrieval"}]},
     "trainer: tasks: at most one retrieval task"),
    ({"tasks": [{"name": "a", "kind": "retrieval"}],
      "task_weights": {"rating": 1.0}},
     "trainer: task_weights: give each task its weight in trainer.tasks"),
    ({"shared_layers": {"kind": "moe"}},
     "trainer.shared_layers.kind: Input should be 'shared_bottom', 'mmoe'"),
    ({"loss_weighting": "gradnorm"},
     "trainer.loss_weighting: Input should be 'static' or 'uncertainty'"),
    ({"early_stopping": {"monitor": "val_rating_auc"}},
     "trainer: early_stopping.monitor: 'val_rating_auc' is not logged"),
    ({"history_length": 51},
     "trainer.history_length: Input should be less than or equal to 50"),
    ({"ema_horizon": 0},
     "trainer.ema_horizon: Input should be greater than 0"),
    ({"ema_horizon": 1.5},
     "trainer.ema_horizon: Input should be less than or equal to 1"),
    ({"ema_horizon": 0.25, "early_stopping": {"monitor": "val_loss"}},
     "trainer: ema_horizon: early_stopping.restore_best_weights would "
     "replace the averaged weights"),
])
def test_bad_trainer_values_name_the_key(trainer, message):
  with pytest.raises(C.ConfigError) as e:
    _parse(trainer)
  assert str(e.value).startswith("x.yaml: ")
  assert message in str(e.value), str(e.value)


def test_ema_horizon_keeps_early_stopping_that_only_ends_the_run():
  trainer = _parse({"ema_horizon": 0.25, "early_stopping": {
      "monitor": "val_loss", "restore_best_weights": False}}).trainer
  assert trainer.ema_horizon == 0.25
  assert trainer.early_stopping.restore_best_weights is False


@pytest.mark.parametrize("horizon,steps,momentum", [
    (0.25, 400, 0.99),   # an average over about the last 100 steps
    (0.5, 40, 0.95),     # the last 20
    (0.25, 2, 0.0),      # under one step: the last step's weights
])
def test_ema_momentum_follows_the_runs_steps(horizon, steps, momentum):
  from trainer import run  # pylint: disable=g-import-not-at-top
  assert run.ema_momentum(horizon, steps) == pytest.approx(momentum)
