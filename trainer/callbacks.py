"""Keras callbacks of the trainer: progress, TensorBoard, speed, stopping.

- EpochLog: one line per epoch for people (losses, metrics, task weights).
- Progress: within an epoch, a line at most every `interval` seconds: steps
  done of the epoch's, the loss so far and the epoch's ETA (Keras' own
  progress bar is off: verbose=0 keeps step logs readable).
- TaskSummaries: per-task losses, metrics and effective loss weights as
  TensorBoard scalars, every epoch (`tensorboard --logdir <model>/logs`);
  with uncertainty weighting the weights are what the model learned.
- Throughput: examples per second per epoch, and over the epochs after the
  first (which also pays for tracing the graph).
- early_stopping: Keras' EarlyStopping on the configured validation metric.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalar plugin reads float32 scalars tagged with this metadata.
# Written with the core summary op: the tensorboard package is not needed to
# write (only to look).
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def _scalar(tag: str, value: float, step: int) -> None:
  tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                   metadata=_SCALAR)


class EpochLog(tf.keras.callbacks.Callback):
  """Logs losses, metrics and effective task weights after each epoch."""

  def __init__(self, log: Callable[[str], None]):
    super().__init__()
    self._log = log
    self._start = 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    values = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(
        (logs or {}).items()))
    weights = ", ".join(f"{t}={w:.3g}" for t, w in
                        self.model.effective_weights().items())
    self._log(f"epoch {epoch + 1}: {values}; weights {weights} "
              f"({time.time() - self._start:.1f}s)")


def _clock_text(seconds: float) -> str:
  seconds = int(round(max(0.0, seconds)))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress(tf.keras.callbacks.Callback):
  """`epoch 2/5: step 300/1200, loss 0.41, ETA 0:01:10`, every ~interval s.

  Why: an epoch on real data takes minutes, and fit runs with verbose=0
  (Keras' progress bar rewrites one line, which a log file or the local
  runner's console turns into thousands). The ETA is the epoch's, from its
  pace so far. The epoch's end has EpochLog's line.
  """

  def __init__(self, log: Callable[[str], None], epochs: int,
               steps_per_epoch: int, interval: float = 30.0,
               clock: Callable[[], float] = time.monotonic):
    super().__init__()
    # Keras hands batch logs over as tensors, not synced to numpy after
    # every step (which would stall the device); the loss is read only when
    # a line is printed.
    self._supports_tf_logs = True
    self._log = log
    self._epochs = epochs
    self._steps = steps_per_epoch
    self._interval = interval
    self._clock = clock
    self._epoch = 0
    self._started = self._last = 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._started = self._last = self._clock()

  def on_train_batch_end(self, batch, logs=None):
    now = self._clock()
    if now - self._last < self._interval:
      return
    self._last = now
    done = batch + 1
    rate = (now - self._started) / done
    loss = (logs or {}).get("loss")
    self._log(f"epoch {self._epoch + 1}/{self._epochs}: step {done}/"
              f"{self._steps}" + (f", loss {float(loss):.4g}" if loss is not None
                                  else "") +
              f", ETA {_clock_text(rate * max(0, self._steps - done))}")


class TaskSummaries(tf.keras.callbacks.Callback):
  """Writes every logged value and each task's effective weight per epoch."""

  def __init__(self, log_dir: str):
    super().__init__()
    self._log_dir = log_dir
    self._writers = {}

  def _writer(self, name: str):
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(
          f"{self._log_dir}/{name}")
    return self._writers[name]

  def on_epoch_end(self, epoch, logs=None):
    for key, value in (logs or {}).items():
      split = "validation" if key.startswith("val_") else "train"
      with self._writer(split).as_default():
        _scalar(key.removeprefix("val_"), value, epoch)
    with self._writer("train").as_default():
      for task, weight in self.model.effective_weights().items():
        _scalar(f"weight/{task}", weight, epoch)
    for writer in self._writers.values():
      writer.flush()

  def on_train_end(self, logs=None):
    for writer in self._writers.values():
      writer.close()


class Throughput(tf.keras.callbacks.Callback):
  """Examples per second of each epoch's training steps."""

  def __init__(self, examples_per_epoch: int):
    super().__init__()
    self.examples_per_epoch = examples_per_epoch
    self.epoch_seconds: list[float] = []
    self._start = 0.0
    self._end = None

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()
    self._end = None

  def on_test_begin(self, logs=None):  # the epoch's validation starts
    self._end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.epoch_seconds.append((self._end or time.perf_counter()) -
                              self._start)

  def examples_per_second(self, skip_first: bool = True) -> Optional[float]:
    seconds = self.epoch_seconds[1:] if skip_first and len(
        self.epoch_seconds) > 1 else self.epoch_seconds
    if not seconds:
      return None
    return self.examples_per_epoch * len(seconds) / max(sum(seconds), 1e-9)


def early_stopping(config: Any) -> tf.keras.callbacks.EarlyStopping:
  """EarlyStopping for a trainer.config.EarlyStoppingConfig."""
  higher = config.monitor.endswith(("auc", "accuracy", "batch_top_10"))
  return tf.keras.callbacks.EarlyStopping(
      monitor=config.monitor, mode="max" if higher else "min",
      patience=config.patience, min_delta=config.min_delta,
      restore_best_weights=config.restore_best_weights, verbose=0)
