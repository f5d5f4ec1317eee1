"""trainer.callbacks: epoch log lines, TensorBoard scalars, throughput,
early stopping."""

import glob
import os
import re
import types

import numpy as np
import pytest

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from trainer import callbacks as callbacks_lib
from trainer import config as config_lib


class _Model:
  """What the callbacks read from the model."""

  def __init__(self, weights):
    self.weights = weights

  def effective_weights(self):
    return dict(self.weights)


class _Clock:
  """A clock the test sets by hand."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  c = _Clock()
  monkeypatch.setattr(callbacks_lib, "time",
                      types.SimpleNamespace(time=c, perf_counter=c))
  return c


def test_epoch_log_writes_sorted_values_weights_and_seconds(clock):
  lines = []
  log = callbacks_lib.EpochLog(lines.append)
  log.set_model(_Model({"retrieval": 1.0, "like": 0.123456}))
  clock.now = 100.0
  log.on_epoch_begin(0)
  clock.now = 102.54
  log.on_epoch_end(0, {"val_loss": 2.0, "loss": 1.23456789,
                       "like_auc": np.float32(0.5)})
  assert lines == ["epoch 1: like_auc=0.5, loss=1.235, val_loss=2; "
                   "weights retrieval=1, like=0.123 (2.5s)"]


def test_epoch_log_without_logs():
  lines = []
  log = callbacks_lib.EpochLog(lines.append)
  log.set_model(_Model({}))
  log.on_epoch_begin(4)
  log.on_epoch_end(4)
  assert lines[0].startswith("epoch 5: ; weights  (")


def test_throughput_times_training_steps_without_validation(clock):
  throughput = callbacks_lib.Throughput(examples_per_epoch=100)
  assert throughput.examples_per_second() is None
  # Epoch 1: 10 s of training, then 5 s of validation.
  throughput.on_epoch_begin(0)
  clock.now = 10.0
  throughput.on_test_begin()
  clock.now = 15.0
  throughput.on_epoch_end(0)
  assert throughput.epoch_seconds == [10.0]
  # A single epoch is all there is to measure, even when skipping the first.
  assert throughput.examples_per_second() == pytest.approx(10.0)
  # Epochs 2 and 3 have no validation: their whole length counts.
  for _ in range(2):
    throughput.on_epoch_begin(1)
    clock.now += 4.0
    throughput.on_epoch_end(1)
  assert throughput.epoch_seconds == [10.0, 4.0, 4.0]
  assert throughput.examples_per_second() == pytest.approx(200 / 8)
  assert throughput.examples_per_second(skip_first=False) == pytest.approx(
      300 / 18)


def test_throughput_of_zero_seconds_is_finite(clock):
  throughput = callbacks_lib.Throughput(examples_per_epoch=10)
  throughput.on_epoch_begin(0)
  throughput.on_epoch_end(0)
  assert throughput.epoch_seconds == [0.0]
  assert throughput.examples_per_second() == pytest.approx(10 / 1e-9)


@pytest.mark.parametrize("monitor, mode", [
    ("val_loss", "min"),
    ("val_rating_loss", "min"),
    ("val_rating_rmse", "min"),
    ("val_rating_mae", "min"),
    ("val_like_auc", "max"),
    ("val_like_accuracy", "max"),
    ("val_retrieval_batch_top_10", "max"),
])
def test_early_stopping_direction_follows_the_metric(monitor, mode):
  config = config_lib.EarlyStoppingConfig(monitor=monitor, patience=3,
                                          min_delta=0.01,
                                          restore_best_weights=False)
  stop = callbacks_lib.early_stopping(config)
  assert stop.monitor == monitor
  assert stop.patience == 3
  assert stop.restore_best_weights is False
  # Keras signs min_delta by direction: an improvement must beat it.
  assert stop.min_delta == pytest.approx(0.01 if mode == "max" else -0.01)
  assert stop.monitor_op is (np.greater if mode == "max" else np.less)


@pytest.mark.parametrize("monitor, values, stopped", [
    # Rising AUC is progress; rising loss is not.
    ("val_like_auc", [0.5, 0.6, 0.7], False),
    ("val_like_auc", [0.7, 0.6, 0.5], True),
    ("val_loss", [0.5, 0.6, 0.7], True),
    ("val_loss", [0.7, 0.6, 0.5], False),
])
def test_early_stopping_stops_when_the_metric_stops_improving(
    monitor, values, stopped):
  config = config_lib.EarlyStoppingConfig(monitor=monitor, patience=0,
                                          restore_best_weights=False)
  stop = callbacks_lib.early_stopping(config)
  model = types.SimpleNamespace(stop_training=False)
  stop.set_model(model)
  stop.on_train_begin()
  for epoch, value in enumerate(values):
    stop.on_epoch_end(epoch, {monitor: value})
    if model.stop_training:  # Keras' fit ends here
      break
  assert model.stop_training is stopped
  assert stop.stopped_epoch == (1 if stopped else 0)


def _scalars(directory):
  out = {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tensor = tf.make_ndarray(value.tensor)
        out[(value.tag, event.step)] = float(tensor)
        assert value.metadata.plugin_data.plugin_name == "scalars"
  return out


def test_task_summaries_split_train_and_validation(tmp_path):
  summaries = callbacks_lib.TaskSummaries(str(tmp_path))
  summaries.set_model(_Model({"retrieval": 1.0, "rating": 0.25}))
  summaries.on_epoch_end(0, {"loss": 3.0, "val_loss": 4.0,
                             "val_like_auc": 0.75})
  summaries.on_epoch_end(1, {"loss": 2.0, "val_loss": 3.5,
                             "val_like_auc": 0.8})
  summaries.on_train_end()
  assert sorted(os.listdir(tmp_path)) == ["train", "validation"]
  train = _scalars(tmp_path / "train")
  assert train == pytest.approx({
      ("loss", 0): 3.0, ("loss", 1): 2.0,
      ("weight/retrieval", 0): 1.0, ("weight/retrieval", 1): 1.0,
      ("weight/rating", 0): 0.25, ("weight/rating", 1): 0.25})
  validation = _scalars(tmp_path / "validation")
  assert validation == pytest.approx({
      ("loss", 0): 4.0, ("loss", 1): 3.5,
      ("like_auc", 0): 0.75, ("like_auc", 1): 0.8})


def test_progress_prints_steps_loss_and_eta_at_most_every_interval():
  lines = []
  clock = _Clock()
  progress = callbacks_lib.Progress(lines.append, epochs=5,
                                    steps_per_epoch=1200, interval=30.0,
                                    clock=clock)
  clock.now = 1000.0
  progress.on_epoch_begin(1)
  clock.now = 1020.0
  progress.on_train_batch_end(199, {"loss": 0.5})  # 20 s: too soon
  clock.now = 1030.0
  progress.on_train_batch_end(299, {"loss": np.float32(0.41)})
  clock.now = 1050.0
  progress.on_train_batch_end(399, {"loss": 0.4})  # 20 s after the last
  # 300 steps in 30 s: 0.1 s a step, 900 left.
  assert lines == ["epoch 2/5: step 300/1200, loss 0.41, ETA 0:01:30"]
  clock.now = 1060.0
  progress.on_train_batch_end(599, {})
  assert lines[-1] == "epoch 2/5: step 600/1200, ETA 0:01:00"


def test_progress_under_a_real_fit_of_a_tiny_model():
  """Keras drives it (batch logs as tensors); a clock that ticks 10 s per
  reading and a 25 s interval give a line every third step."""
  ticks = iter(range(10, 10_000, 10))
  lines = []
  progress = callbacks_lib.Progress(
      lines.append, epochs=2, steps_per_epoch=8, interval=25.0,
      clock=lambda: float(next(ticks)))
  model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
  model.compile(optimizer="sgd", loss="mse")
  x = np.ones((32, 3), np.float32)
  model.fit(x, np.zeros((32, 1), np.float32), batch_size=4, epochs=2,
            verbose=0, callbacks=[progress])
  # Per epoch: begins at t, steps end at t+10 ... t+80; lines at steps 3
  # (30 s for 3 steps: 10 s a step, 5 left) and 6 (60 s, 2 left).
  assert [re.sub(r"loss [\d.e+-]+", "loss L", line) for line in lines] == [
      "epoch 1/2: step 3/8, loss L, ETA 0:00:50",
      "epoch 1/2: step 6/8, loss L, ETA 0:00:20",
      "epoch 2/2: step 3/8, loss L, ETA 0:00:50",
      "epoch 2/2: step 6/8, loss L, ETA 0:00:20"]
