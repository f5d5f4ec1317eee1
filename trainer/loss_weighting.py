"""How the task losses add up to the one loss that is minimized.

- static: Σ w_i L_i with the config's weights.
- uncertainty (Kendall, Gal and Cipolla, CVPR 2018): each task has a learned
  log-variance s_i = log σ_i² and the loss is Σ c_i exp(-s_i) L_i + s_i / 2,
  the negative log-likelihood of the task under homoscedastic noise: c_i is
  1/2 for a regression (Gaussian) and 1 for a classification (softmax or
  Bernoulli) task. A task whose loss is large or noisy gets a larger σ and
  so a smaller effective weight c_i exp(-s_i), learned instead of tuned; the
  s_i / 2 term keeps σ from growing without bound. Each s_i starts at
  log(c_i / w_i), so training starts from the static weights; a task with
  weight 0 stays off.

Why uncertainty weighting costs retrieval (docs/design_measurements.md):
at the optimum of c·e^{-s}·L + s/2 the effective weight is 1/(2L), inversely
proportional to the loss's level. An in-batch softmax sits near 5-6 nats
however well it ranks (its floor is the entropy of the next item), a BCE
near 0.5 and a rating MSE below 1 and falling as the heads fit the training
ratings, so the ranking tasks end up weighing several times retrieval and
pull the towers towards memorizing training ratings. A loss's level
measures the noise of its likelihood only for a Gaussian; for a softmax or a
Bernoulli it is mostly the task's entropy, so any scheme that normalizes
losses by their level inverts the tuned weights the same way. Balancing the
tasks' gradients on the shared towers (GradNorm-like) does not find the
tuned point either, and nor did scaling each auxiliary task by its gradient
similarity with retrieval (Du et al. 2018): the tuned 0.1 is a trade-off
that shows only on held-out data. Static weights stay the default.

Under a tf.distribute strategy each replica adds its share of the loss and
the gradients are summed, so a term that does not depend on the batch (the
s_i / 2) is divided by the number of replicas.
"""

from __future__ import annotations

import math
from typing import Mapping

import tensorflow as tf

# c_i: the likelihood's factor in front of the loss, per task kind.
_LIKELIHOOD_FACTOR = {"regression": 0.5, "retrieval": 1.0, "binary": 1.0,
                      "multilabel": 1.0}


class StaticWeighting(tf.keras.layers.Layer):
  """Σ w_i L_i with fixed weights."""

  def __init__(self, weights: Mapping[str, float], **kwargs):
    super().__init__(dtype="float32", **kwargs)
    self.static_weights = {t: float(w) for t, w in weights.items()}

  def effective_weights(self) -> dict[str, tf.Tensor]:
    return {t: tf.constant(w) for t, w in self.static_weights.items()}

  def call(self, losses: Mapping[str, tf.Tensor]) -> tf.Tensor:
    return tf.add_n([self.static_weights[t] * tf.cast(loss, tf.float32)
                     for t, loss in losses.items()])


class UncertaintyWeighting(tf.keras.layers.Layer):
  """Σ c_i exp(-s_i) L_i + s_i / 2 with learned log-variances s_i."""

  def __init__(self, weights: Mapping[str, float], kinds: Mapping[str, str],
               **kwargs):
    super().__init__(dtype="float32", **kwargs)
    self.factors = {t: _LIKELIHOOD_FACTOR[kinds[t]] for t in weights}
    self.initial_weights = {t: float(w) for t, w in weights.items()}
    self.log_variances = {
        t: self.add_weight(
            name=f"{t}_log_variance", shape=(),
            initializer=tf.keras.initializers.Constant(
                math.log(self.factors[t] / w)))
        for t, w in self.initial_weights.items() if w > 0}

  def effective_weights(self) -> dict[str, tf.Tensor]:
    """c_i exp(-s_i): what each task's loss is multiplied by now."""
    return {t: (self.factors[t] * tf.exp(-tf.convert_to_tensor(
        self.log_variances[t])) if t in self.log_variances else
                tf.constant(0.0)) for t in self.initial_weights}

  def call(self, losses: Mapping[str, tf.Tensor]) -> tf.Tensor:
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    total = []
    for t, loss in losses.items():
      if t not in self.log_variances:
        continue
      s = tf.convert_to_tensor(self.log_variances[t])
      total.append(self.factors[t] * tf.exp(-s) * tf.cast(loss, tf.float32) +
                   0.5 * s / replicas)
    return tf.add_n(total) if total else tf.constant(0.0)


def build(kind: str, weights: Mapping[str, float],
          kinds: Mapping[str, str]) -> tf.keras.layers.Layer:
  """The weighting the config names (TrainerConfig.loss_weighting)."""
  if kind == "static":
    return StaticWeighting(weights)
  if kind == "uncertainty":
    return UncertaintyWeighting(weights, kinds)
  raise ValueError(f"unknown loss weighting {kind!r}")
