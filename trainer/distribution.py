"""Picks the tf.distribute strategy from the hardware (and TF_CONFIG) found.

- TF_CONFIG naming several workers: MultiWorkerMirroredStrategy.
- one or more GPUs: MirroredStrategy over them.
- otherwise the default strategy (one CPU device).
`num_cpu_devices > 1` splits the CPU into that many logical devices and
mirrors over them: the GPU code path, runnable on a machine without a GPU.

Mixed precision (float16 compute, float32 variables, a loss-scaling
optimizer) pays on GPUs with tensor cores and costs on CPUs, so `auto` turns
it on exactly when training runs on GPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import ContextManager

import tensorflow as tf


def _multi_worker() -> bool:
  try:
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  except json.JSONDecodeError:
    return False
  return len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1


def choose_strategy(num_cpu_devices: int = 1) -> tf.distribute.Strategy:
  if _multi_worker():
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    return tf.distribute.MirroredStrategy()
  if num_cpu_devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) < (
        num_cpu_devices):
      # Only possible before TensorFlow initializes its devices.
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
    return tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(num_cpu_devices)])
  return tf.distribute.get_strategy()


def replica_device() -> ContextManager[object]:
  """The device scope for a replica's values before a cross-replica gather.

  MultiWorkerMirroredStrategy with one device per worker runs the step
  without a device scope, so the step's inputs carry no device; an
  all-gather sends each value to its tensor's device, and TensorFlow
  rejects '' ("destinations can not be empty"). Under this scope a copy of
  such a value gets the worker's device. Elsewhere (one replica; Mirrored,
  which places each replica itself): no scope.
  """
  strategy = tf.distribute.get_strategy()
  devices = strategy.extended.worker_devices
  if (tf.distribute.in_cross_replica_context() or
      strategy.num_replicas_in_sync == 1 or len(devices) != 1):
    return contextlib.nullcontext()
  return tf.device(devices[0])


def use_mixed_precision(setting: str) -> bool:
  """Whether to train in mixed_float16: `on`, `off`, or `auto` (on GPUs)."""
  if setting == "auto":
    return bool(tf.config.list_physical_devices("GPU"))
  return setting == "on"


def describe(strategy: tf.distribute.Strategy) -> str:
  # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy.
  name = ("MultiWorkerMirroredStrategy"
          if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          else type(strategy).__name__)
  return f"{name} ({strategy.num_replicas_in_sync} replicas)"
