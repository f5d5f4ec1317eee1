"""What the ranking tasks share: shared-bottom, MMoE or PLE.

Every variant maps one input (the pair representation) to one representation
per task; the tasks' own towers and outputs sit on top (trainer.heads). They
differ in how much the tasks are forced to agree:

- SharedBottom: one MLP, the same representation for every task. Cheapest;
  tasks that conflict pull the shared weights in opposite directions.
- MMoE (Ma et al., KDD 2018): several expert MLPs; each task mixes them with
  its own softmax gate over the input, so tasks can use different experts
  where they conflict and the same ones where they agree.
- PLE (Tang et al., RecSys 2020): stacked CGC levels. Each level has shared
  experts and experts owned by one task; a task's gate mixes its own and the
  shared experts only, so a task's experts learn from that task's loss alone
  (no "seesaw" through them); below the last level a shared gate over all
  experts feeds the next level's shared experts.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def mlp(units: Sequence[int], name: str = None) -> tf.keras.Sequential:
  return tf.keras.Sequential(
      [tf.keras.layers.Dense(u, activation="relu") for u in units], name=name)


class _Gate(tf.keras.layers.Layer):
  """Softmax weights over n experts, from the gate's input (float32)."""

  def __init__(self, num_experts: int, **kwargs):
    super().__init__(**kwargs)
    self.logits = tf.keras.layers.Dense(num_experts, dtype="float32")

  def call(self, x: tf.Tensor) -> tf.Tensor:
    return tf.nn.softmax(self.logits(tf.cast(x, tf.float32)), axis=-1)


def _mix(gate: tf.Tensor, experts: Sequence[tf.Tensor]) -> tf.Tensor:
  stacked = tf.stack(experts, axis=1)  # [B, E, H]
  return tf.einsum("be,beh->bh", tf.cast(gate, stacked.dtype), stacked)


class SharedBottom(tf.keras.layers.Layer):
  """One MLP whose output every task reads."""

  def __init__(self, task_names: Sequence[str], units: Sequence[int],
               **kwargs):
    super().__init__(**kwargs)
    self.task_names = list(task_names)
    self.bottom = mlp(units)

  def call(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
    h = self.bottom(x)
    return {t: h for t in self.task_names}


class MMoE(tf.keras.layers.Layer):
  """Multi-gate mixture of experts: a softmax gate per task over the experts."""

  def __init__(self, task_names: Sequence[str], units: Sequence[int],
               num_experts: int, **kwargs):
    super().__init__(**kwargs)
    self.task_names = list(task_names)
    self.experts = [mlp(units) for _ in range(num_experts)]
    self.gates = {t: _Gate(num_experts) for t in self.task_names}

  def gate_weights(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
    """Each task's [B, num_experts] mixture weights (rows sum to 1)."""
    return {t: self.gates[t](x) for t in self.task_names}

  def call(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
    outputs = [e(x) for e in self.experts]
    return {t: _mix(g, outputs) for t, g in self.gate_weights(x).items()}


class _CGCLevel(tf.keras.layers.Layer):
  """One customized gate control level of PLE."""

  def __init__(self, task_names: Sequence[str], units: Sequence[int],
               shared_experts: int, task_experts: int, last: bool, **kwargs):
    super().__init__(**kwargs)
    self.task_names = list(task_names)
    self.shared_experts = [mlp(units) for _ in range(shared_experts)]
    self.task_experts = {t: [mlp(units) for _ in range(task_experts)]
                         for t in self.task_names}
    self.task_gates = {t: _Gate(task_experts + shared_experts)
                       for t in self.task_names}
    self.shared_gate = None if last else _Gate(
        shared_experts + task_experts * len(self.task_names))

  def gate_weights(self, task_inputs: dict[str, tf.Tensor]
                   ) -> dict[str, tf.Tensor]:
    return {t: self.task_gates[t](task_inputs[t]) for t in self.task_names}

  def call(self, task_inputs: dict[str, tf.Tensor], shared_input: tf.Tensor
           ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    shared = [e(shared_input) for e in self.shared_experts]
    own = {t: [e(task_inputs[t]) for e in self.task_experts[t]]
           for t in self.task_names}
    gates = self.gate_weights(task_inputs)
    outputs = {t: _mix(gates[t], own[t] + shared) for t in self.task_names}
    if self.shared_gate is None:
      return outputs, None
    everything = shared + [h for t in self.task_names for h in own[t]]
    return outputs, _mix(self.shared_gate(shared_input), everything)


class PLE(tf.keras.layers.Layer):
  """Progressive layered extraction: `levels` stacked CGC levels."""

  def __init__(self, task_names: Sequence[str], units: Sequence[int],
               shared_experts: int, task_experts: int, levels: int, **kwargs):
    super().__init__(**kwargs)
    self.task_names = list(task_names)
    self.levels = [
        _CGCLevel(task_names, units, shared_experts, task_experts,
                  last=(i == levels - 1)) for i in range(levels)]

  def _run(self, x: tf.Tensor, upto: int):
    task_inputs = {t: x for t in self.task_names}
    shared = x
    for level in self.levels[:upto]:
      task_inputs, shared = level(task_inputs, shared)
    return task_inputs, shared

  def gate_weights(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
    """The last level's task gates: [B, own + shared experts] per task."""
    task_inputs, _ = self._run(x, len(self.levels) - 1)
    return self.levels[-1].gate_weights(task_inputs)

  def call(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
    outputs, _ = self._run(x, len(self.levels))
    return outputs


def build(kind: str, task_names: Sequence[str], units: Sequence[int],
          num_experts: int = 4, task_experts: int = 1,
          levels: int = 2) -> tf.keras.layers.Layer:
  """The shared layers the config names (SharedLayersConfig.kind)."""
  if kind == "shared_bottom":
    return SharedBottom(task_names, units)
  if kind == "mmoe":
    return MMoE(task_names, units, num_experts)
  if kind == "ple":
    return PLE(task_names, units, num_experts, task_experts, levels)
  raise ValueError(f"unknown shared layers {kind!r}")
