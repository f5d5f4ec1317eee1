"""Multi-task distillation: a bigger teacher's predictions as soft targets.

Why: serving affords a small model (one `recommend` call scores the whole
catalog and a hundred candidates per request), but a bigger one (wider
embeddings, more experts, longer training) learns more from the same logs.
Distillation (Hinton et al., 2015) moves what it learned into the small
model: besides its hard labels, the student is trained to match the
teacher's prediction for every row, task by task, which carries the
teacher's knowledge of the rows' near-misses (how much a user would like
the items they did not pick, how far a 3.5 is from a 4). The student keeps
its architecture, so serving cost does not change.

Soft targets, per task (each summed over the replica's rows, as the tasks'
own losses are, so the model divides them by the global batch alike):

- retrieval: KL divergence from the teacher's to the student's softmax over
  the same in-batch candidates (every replica's, as the retrieval task
  gathers them), both logQ-corrected as that task is and divided by the
  temperature, times temperature² so gradients keep their scale (Hinton);
- regression (rating, watch time): squared error to the teacher's
  prediction;
- binary (like, click) and multilabel: KL divergence between the Bernoulli
  distributions of the temperature-softened teacher and student logits
  (cross-entropy to the teacher's probability, minus its entropy so the
  loss reads 0 when they agree), times temperature².

Soft targets cover every row, including rows without the task's label:
the teacher has an opinion on those too.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from contracts import features as F
from trainer import tasks as tasks_lib


def _bernoulli_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
                  temperature: float) -> tf.Tensor:
  """KL(teacher || student) of sigmoid(logit / T), elementwise."""
  p = tf.sigmoid(teacher_logits / temperature)
  xent = tf.nn.sigmoid_cross_entropy_with_logits
  return (xent(labels=p, logits=student_logits / temperature) -
          xent(labels=p, logits=teacher_logits / temperature))


def retrieval_kl(teacher_query: tf.Tensor, teacher_candidate: tf.Tensor,
                 student_query: tf.Tensor, student_candidate: tf.Tensor,
                 query_weight: tf.Tensor, candidate_mask: tf.Tensor,
                 log_q: tf.Tensor | None, temperature: float) -> tf.Tensor:
  """Sum over query rows of weight · T² · KL(teacher || student) in-batch.

  Args:
    *_query: [B, d] query embeddings of this replica's rows.
    *_candidate: [C, d] candidate embeddings (gathered over replicas).
    query_weight: [B] 1 for a row that is a query (a consumed item).
    candidate_mask: [C] True for a candidate (a consumed item).
    log_q: [C] log sampling probability subtracted from both logits, or None.
  """
  def log_probs(query, candidate):
    logits = tf.matmul(query, candidate, transpose_b=True)
    if log_q is not None:
      logits -= log_q[None, :]
    logits = tf.where(candidate_mask[None, :], logits / temperature,
                      tf.fill(tf.shape(logits), -1e9))
    return tf.nn.log_softmax(logits, axis=-1)

  teacher = log_probs(teacher_query, teacher_candidate)
  student = log_probs(student_query, student_candidate)
  # Masked columns have probability 0 under both: 0 · (finite) = 0.
  kl = tf.reduce_sum(tf.exp(teacher) * (teacher - student), axis=-1)
  return tf.reduce_sum(query_weight * kl) * temperature ** 2


class SoftTargets(tf.keras.layers.Layer):
  """The distillation losses of a student, from a frozen teacher.

  `call(features, student_outputs)` runs the teacher on the same batch and
  returns {task name: loss summed over the replica's rows} for every task
  with a positive weight (`weights`).
  """

  def __init__(self, teacher: tf.keras.Model, tasks: Sequence[Any],
               weights: Mapping[str, float], temperature: float, **kwargs):
    super().__init__(name="distillation", dtype="float32", **kwargs)
    teacher.trainable = False
    # Held untracked: the teacher's variables stay out of the student's
    # weights, checkpoint and export, and its metrics (named as the
    # student's: `loss`, `rating_loss`, ...) out of the student's logs.
    object.__setattr__(self, "teacher", teacher)
    self.weights_by_task = {k: float(v) for k, v in weights.items() if v > 0}
    self.temperature = float(temperature)
    self._tasks = [t for t in tasks if t.task_name in self.weights_by_task]

  def call(self, features: Mapping[str, tf.Tensor],
           student: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    if not self._tasks:  # every weight 0: plain training
      return {}
    teacher = self.teacher(features, training=False)
    teacher = {k: tf.stop_gradient(tf.cast(v, tf.float32))
               for k, v in teacher.items()}
    out = {}
    t = self.temperature
    for task in self._tasks:
      name = task.task_name
      if task.kind == "retrieval":
        out[name] = self._retrieval(task, features, teacher, student)
      elif task.kind == "regression":
        diff = tf.cast(student[name], tf.float32) - teacher[name]
        out[name] = tf.reduce_sum(tf.square(diff))
      else:  # binary, multilabel: logits
        out[name] = tf.reduce_sum(_bernoulli_kl(
            teacher[name], tf.cast(student[name], tf.float32), t)) * t ** 2
    return out

  def _retrieval(self, task: tasks_lib.RetrievalTask,
                 features: Mapping[str, tf.Tensor],
                 teacher: Mapping[str, tf.Tensor],
                 student: Mapping[str, tf.Tensor]) -> tf.Tensor:
    positive = tf.cast(features[F.RETRIEVAL_WEIGHT] > 0, tf.float32)
    teacher_candidate, student_candidate, ids, candidate_positive = (
        tasks_lib.gather_replicas(
            teacher["candidate"], tf.cast(student["candidate"], tf.float32),
            features[F.ITEM_ID], positive))
    return retrieval_kl(
        teacher["query"], teacher_candidate,
        tf.cast(student["query"], tf.float32), student_candidate, positive,
        candidate_positive > 0, task.log_sampling_probability(ids),
        self.temperature)
