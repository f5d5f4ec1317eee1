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

- retrieval: KL divergence from the teacher's to the student's softmax,
  divided by the temperature, times temperature² so gradients keep their
  scale (Hinton). Over the whole catalog of trained items
  (`retrieval_candidates: catalog`, trainer/catalog.py): the teacher's
  knowledge of which of all items a user would pick, the list serving
  ranks. Or over the batch's candidates (`in_batch`: every replica's, as
  the retrieval task gathers them, both logQ-corrected as that task is):
  popular items only, since the batch samples by popularity, and on
  ml-latest-small that carried none of a better teacher's retrieval
  (docs/benchmarks.md);
- regression (rating, watch time): squared error to the teacher's
  prediction;
- binary (like, click) and multilabel: KL divergence between the Bernoulli
  distributions of the temperature-softened teacher and student logits
  (cross-entropy to the teacher's probability, minus its entropy so the
  loss reads 0 when they agree), times temperature².

Soft targets cover every row, including rows without the task's label:
the teacher has an opinion on those too.

The teacher may be several models (a teacher section with `members: N`):
their mean (`Ensemble`) is the teacher.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

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
                 query_weight: tf.Tensor, candidate_mask: tf.Tensor | None,
                 log_q: tf.Tensor | None, temperature: float) -> tf.Tensor:
  """Sum over query rows of weight · T² · KL(teacher || student) over the
  same candidates.

  Args:
    *_query: [B, d] query embeddings of this replica's rows.
    *_candidate: [C, d] candidate embeddings (gathered over replicas).
    query_weight: [B] 1 for a row that is a query (a consumed item).
    candidate_mask: [C] True for a candidate (a consumed item), or None:
      every column is one.
    log_q: [C] log sampling probability subtracted from both logits, or None.
  """
  def log_probs(query, candidate):
    logits = tf.matmul(query, candidate, transpose_b=True)
    if log_q is not None:
      logits -= log_q[None, :]
    logits /= temperature
    if candidate_mask is not None:
      logits = tf.where(candidate_mask[None, :], logits,
                        tf.fill(tf.shape(logits), -1e9))
    return tf.nn.log_softmax(logits, axis=-1)

  teacher = log_probs(teacher_query, teacher_candidate)
  student = log_probs(student_query, student_candidate)
  # Masked columns have probability 0 under both: 0 · (finite) = 0.
  kl = tf.reduce_sum(tf.exp(teacher) * (teacher - student), axis=-1)
  return tf.reduce_sum(query_weight * kl) * temperature ** 2


def catalog_kl(teacher_query: tf.Tensor, teacher_catalog: tf.Tensor,
               student_query: tf.Tensor, student_catalog: tf.Tensor,
               query_weight: tf.Tensor, temperature: float) -> tf.Tensor:
  """retrieval_kl over the whole catalog: every column is a candidate,
  and nothing was sampled, so no logQ."""
  return retrieval_kl(teacher_query, teacher_catalog, student_query,
                      student_catalog, query_weight, None, None, temperature)


class Ensemble(tf.keras.Model):
  """A teacher of several trained members, read as their mean.

  Why: on ml-latest-small no single wider or longer-trained model
  retrieves better than the tuned student, but the mean of a few students
  trained with different seeds does (benchmarks/distillation.py). The
  members' query and candidate embeddings are concatenated and divided by
  sqrt(n), so every retrieval logit (a dot product) is the mean of the
  members' logits; the heads' outputs (ratings, logits) are averaged. The
  members come from one teacher section (trainer.members), so they share
  an embedding width and each owns an equal part of the concatenation.
  """

  def __init__(self, members: Sequence[tf.keras.Model]):
    super().__init__(name="ensemble_teacher")
    if not members:
      raise ValueError("an ensemble needs at least one member")
    # Untracked, as the teacher itself: frozen, never saved with a student.
    object.__setattr__(self, "members", list(members))
    for member in self.members:
      member.trainable = False
    self._scale = 1.0 / float(len(members)) ** 0.5

  def call(self, features: Mapping[str, tf.Tensor],
           training: bool = False) -> dict[str, tf.Tensor]:
    outputs = [m(features, training=False) for m in self.members]
    out = {}
    for key in outputs[0]:
      values = [tf.cast(o[key], tf.float32) for o in outputs]
      if key in ("query", "candidate"):
        out[key] = tf.concat(values, axis=-1) * self._scale
      else:
        out[key] = tf.add_n(values) / len(values)
    return out

  def candidate_tower(self, features: Mapping[str, tf.Tensor],
                      training: bool = False) -> tf.Tensor:
    """The members' candidate embeddings, as `call` concatenates them."""
    return tf.concat([tf.cast(m.candidate_tower(features, training=False),
                              tf.float32) for m in self.members],
                     axis=-1) * self._scale

  def score(self, query: tf.Tensor, candidate: tf.Tensor,
            features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The members' mean head outputs for embeddings as `call` and
    `candidate_tower` concatenate them (each member reads its own part)."""
    n = len(self.members)
    outputs = [member.score(q / self._scale, c / self._scale, features)
               for member, q, c in zip(self.members,
                                       tf.split(query, n, axis=-1),
                                       tf.split(candidate, n, axis=-1))]
    return {key: tf.add_n([tf.cast(o[key], tf.float32) for o in outputs]) /
            len(outputs) for key in outputs[0]}


class SoftTargets(tf.keras.layers.Layer):
  """The distillation losses of a student, from a frozen teacher.

  `call(features, student_outputs)` runs the teacher on the same batch and
  returns {task name: loss summed over the replica's rows} for every task
  with a positive weight (`weights`).
  """

  def __init__(self, teacher: tf.keras.Model, tasks: Sequence[Any],
               weights: Mapping[str, float], temperature: float,
               catalog: Mapping[str, tf.Tensor] | None = None,
               catalog_items_per_row: int = 0, **kwargs):
    """catalog: the candidate features of every trained item: the
    retrieval soft target then spans the catalog, not the batch, and with
    catalog_items_per_row > 0 the heads' soft targets also cover that many
    catalog items per row, drawn at random (pairs no one rated)."""
    super().__init__(name="distillation", dtype="float32", **kwargs)
    self.items_per_row = catalog_items_per_row if catalog is not None else 0
    # The teacher is frozen: its embeddings of the catalog are the same at
    # every step, so they are computed once, here.
    object.__setattr__(self, "teacher_catalog", None if catalog is None else
                       tf.constant(tf.cast(teacher.candidate_tower(
                           catalog, training=False), tf.float32)))
    teacher.trainable = False
    # Held untracked: the teacher's variables stay out of the student's
    # weights, checkpoint and export, and its metrics (named as the
    # student's: `loss`, `rating_loss`, ...) out of the student's logs.
    object.__setattr__(self, "teacher", teacher)
    self.weights_by_task = {k: float(v) for k, v in weights.items() if v > 0}
    self.temperature = float(temperature)
    self._tasks = [t for t in tasks if t.task_name in self.weights_by_task]

  def call(self, features: Mapping[str, tf.Tensor],
           student: Mapping[str, tf.Tensor],
           student_score: Callable[..., Mapping[str, tf.Tensor]] | None = None
           ) -> dict[str, tf.Tensor]:
    """student_score: the student's `score(query, candidate, features)`,
    for the heads' soft targets on catalog items (items_per_row)."""
    if not self._tasks:  # every weight 0: plain training
      return {}
    teacher = self.teacher(features, training=False)
    teacher = {k: tf.stop_gradient(tf.cast(v, tf.float32))
               for k, v in teacher.items()}
    if self.teacher_catalog is not None:
      teacher["catalog"] = self.teacher_catalog
    pairs = self._catalog_pairs(features, teacher, student, student_score)
    out = {}
    for task in self._tasks:
      name = task.task_name
      if task.kind == "retrieval":
        out[name] = self._retrieval(task, features, teacher, student)
        continue
      out[name] = self._head(task.kind, teacher[name], student[name])
      if name in pairs:
        # Each row's items weigh as much as the row itself.
        out[name] += self._head(task.kind, *pairs[name]) / self.items_per_row
    return out

  def _head(self, kind: str, teacher: tf.Tensor,
            student: tf.Tensor) -> tf.Tensor:
    """A head's soft-target loss, summed over rows."""
    student = tf.cast(student, tf.float32)
    if kind == "regression":
      return tf.reduce_sum(tf.square(student - teacher))
    t = self.temperature  # binary, multilabel: logits
    return tf.reduce_sum(_bernoulli_kl(teacher, student, t)) * t ** 2

  def _catalog_pairs(self, features: Mapping[str, tf.Tensor],
                     teacher: Mapping[str, tf.Tensor],
                     student: Mapping[str, tf.Tensor],
                     student_score: Any) -> dict[str, tuple]:
    """{head task: (teacher, student) outputs} for items_per_row catalog
    items per row, drawn uniformly: the pairs the ranking stage scores at
    serving, which the labeled rows (items the user chose) never show."""
    heads = [t.task_name for t in self._tasks
             if t.kind in ("regression", "binary")]
    if not (self.items_per_row and heads and student_score is not None):
      return {}
    k = self.items_per_row
    rows = tf.shape(teacher["query"])[0]
    drawn = tf.reshape(tf.random.uniform(
        [rows, k], maxval=tf.shape(teacher["catalog"])[0], dtype=tf.int32),
        [-1])
    context = {key: tf.repeat(features[key], k, axis=0)
               for key in (F.HOUR, F.WEEKDAY)}
    teacher_out = self.teacher.score(
        tf.repeat(teacher["query"], k, axis=0),
        tf.gather(teacher["catalog"], drawn), context)
    student_out = student_score(
        tf.repeat(student["query"], k, axis=0),
        tf.gather(student[tasks_lib.CATALOG_CANDIDATES], drawn), context)
    return {name: (tf.stop_gradient(tf.cast(teacher_out[name], tf.float32)),
                   student_out[name]) for name in heads}

  def _retrieval(self, task: tasks_lib.RetrievalTask,
                 features: Mapping[str, tf.Tensor],
                 teacher: Mapping[str, tf.Tensor],
                 student: Mapping[str, tf.Tensor]) -> tf.Tensor:
    positive = tf.cast(features[F.RETRIEVAL_WEIGHT] > 0, tf.float32)
    if self.teacher_catalog is not None:
      return catalog_kl(
          teacher["query"], teacher["catalog"],
          tf.cast(student["query"], tf.float32),
          tf.cast(student[tasks_lib.CATALOG_CANDIDATES], tf.float32),
          positive, self.temperature)
    teacher_candidate, student_candidate, ids, candidate_positive = (
        tasks_lib.gather_replicas(
            teacher["candidate"], tf.cast(student["candidate"], tf.float32),
            features[F.ITEM_ID], positive))
    return retrieval_kl(
        teacher["query"], teacher_candidate,
        tf.cast(student["query"], tf.float32), student_candidate, positive,
        candidate_positive > 0, task.log_sampling_probability(ids),
        self.temperature)
