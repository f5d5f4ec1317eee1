"""Full-catalog retrieval metrics, on Beam, through the served signature.

For every eval user, each model is asked for its top max(K) items through the
SavedModel's `recommend_excluding` signature (the items the user consumed in
training excluded), i.e. exactly what serving would return: for a model with
a fused second stage, the fused order. The same model's retrieval order
(`recommend_weighted` with weight 1 on the retrieval term and 0 on every
ranking task) can be measured beside it as a model of its own
(`Ranker.fusion_weights`), on the same users. The popularity baseline ranks
the same catalog by training-interaction counts with the same exclusions.
Per-user metrics are averaged per slice in Beam, so the step scales with the
runner like ExampleGen does.

Relevance: the user's consumed eval items, in the catalog, not consumed in
training. Each carries a graded gain (components.metrics: liked 2, else 1)
for liked_recall_at_K and graded_ndcg_at_K. "Liked" is the like label of the
transform graph, the definition training uses, so the events are read from
the Evaluator's labeled eval examples
(components.ranking_eval.write_labeled_eval_examples) when it has them;
from the raw eval split otherwise, without the graded metrics.

Slices: all users; user activity bucket (training interactions); new users
(no training history); cold and warm items (relevant items with and without
training interactions); and each item category (relevant items of that
category).
Only users with at least one relevant item in a slice count for it, and a
metric defined over fewer users (liked recall: users with a liked item) is
averaged over those it is defined for.

Each user's overall metrics under every model are also written, one line
per user (`read_per_user`): the bootstrap over users
(components.confidence) resamples them, the same users for every model,
so a difference against a baseline is a paired one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
import numpy as np

from contracts import artifacts
from components import beam_runtime
from components import metrics as M
from contracts import features as F
from contracts import records as r

POPULARITY = "popularity"
ALL = "all"
SIGNATURE = "recommend_excluding"
WEIGHTED_SIGNATURE = "recommend_weighted"
# As of a given time: a user is ranked with the hour and weekday of their
# first eval event, so metrics do not depend on when the evaluation runs
# (exports without it are ranked as of now, as before).
AT_SIGNATURE = "recommend_at"
# The row of the candidate's retrieval order (the fused one is `candidate`).
RETRIEVAL_ORDER_SUFFIX = "_retrieval_order"
# Scratch files of each user's overall metrics under every model.
PER_USER = "retrieval_per_user"


@dataclasses.dataclass(frozen=True)
class Ranker:
  """A SavedModel's ranking: its served (fused) order, or with
  `fusion_weights` (the model card's fusion_tasks order) the order
  `recommend_weighted` gives with those weights."""

  model_dir: str
  fusion_weights: Optional[tuple[float, ...]] = None


def retrieval_order_weights(card: Mapping[str, Any]
                            ) -> Optional[tuple[float, ...]]:
  """The fusion weights that give a model's retrieval order, or None when
  its served order is already that (no fused ranking tasks) or it cannot
  be asked for it (no recommend_weighted).

  The fusion's first term is the retrieval score (trainer/fusion.py); it is
  named after the retrieval task, or "retrieval" when the model has none.
  """
  ranking = card.get("ranking") or {}
  fused = list(ranking.get("fusion_tasks") or ())
  if len(fused) < 2 or WEIGHTED_SIGNATURE not in (card.get("signatures")
                                                  or ()):
    return None
  kinds = {t.get("name"): t.get("kind") for t in card.get("tasks") or ()}
  if kinds.get(fused[0], "retrieval") != "retrieval":
    return None
  return tuple(1.0 if i == 0 else 0.0 for i in range(len(fused)))


def activity_bucket(n: int, boundaries: Sequence[int]) -> str:
  """'0' for new users, else the [lo, hi) bucket of training interactions."""
  if n == 0:
    return "0"
  lo = 1
  for b in boundaries:
    if n < b:
      return f"{lo}-{b - 1}"
    lo = b
  return f"{lo}+"


def _features(record: bytes):
  """The feature map of a serialized tf.Example."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Example.FromString(record).features.feature


def _consumed(f) -> Optional[tuple[str, str]]:
  """(user, item) of a consumed event's features; None for a skipped one."""
  click = f[r.CLICK].int64_list.value[0] if r.CLICK in f else 1
  if click <= 0:
    return None
  return (f[r.USER_ID].bytes_list.value[0].decode(),
          f[r.ITEM_ID].bytes_list.value[0].decode())


def _parse_event(record: bytes):
  """(user, item) of a consumed event of the raw split."""
  consumed = _consumed(_features(record))
  if consumed:
    yield consumed


def _timestamp(feature) -> int:
  """An event's timestamp (0 when the record has none)."""
  values = feature[r.TIMESTAMP].int64_list.value if r.TIMESTAMP in feature \
      else ()
  return int(values[0]) if values else 0


def _parse_eval_event(record: bytes):
  """(user, (item, None, timestamp)) of a consumed eval event."""
  f = _features(record)
  consumed = _consumed(f)
  if consumed:
    user, item = consumed
    yield user, (item, None, _timestamp(f))


def _parse_labeled_event(record: bytes):
  """(user, (item, gain, timestamp)) of a consumed event of the labeled
  eval file.

  Consumed and liked as the transform graph labels them: the retrieval
  weight (click > 0) and like_label where like_weight says it is known.
  """
  f = _features(record)

  def value(key: str) -> float:
    return f[key].float_list.value[0] if key in f else 0.0

  if value(F.RETRIEVAL_WEIGHT) > 0:
    liked = value(F.LIKE) > 0.5 and value(F.LIKE_WEIGHT) > 0
    yield (f[r.USER_ID].bytes_list.value[0].decode(),
           (f[r.ITEM_ID].bytes_list.value[0].decode(),
            M.LIKED_GAIN if liked else M.CONSUMED_GAIN, _timestamp(f)))


def _read_positives(p, label: str, pattern: str):
  return (p
          | f"Read{label}" >> beam.io.ReadFromTFRecord(
              pattern, compression_type=CompressionTypes.GZIP)
          | f"Parse{label}" >> beam.FlatMap(_parse_event))


def _read_graded(p, labeled_path: Optional[str], pattern: str):
  """(user, (item, gain, timestamp)) of the eval events; gain None when
  ungraded."""
  if labeled_path is None:
    return (p
            | "ReadEval" >> beam.io.ReadFromTFRecord(
                pattern, compression_type=CompressionTypes.GZIP)
            | "ParseEval" >> beam.FlatMap(_parse_eval_event))
  return (p
          | "ReadEval" >> beam.io.ReadFromTFRecord(
              labeled_path, compression_type=CompressionTypes.UNCOMPRESSED)
          | "ParseEval" >> beam.FlatMap(_parse_labeled_event))


def _keep(user: str, seed: int, fraction: float) -> bool:
  h = hashlib.sha256(f"{seed}:{user}".encode()).digest()
  return int.from_bytes(h[:8], "big") / 2.0**64 < fraction


class _ScoreUsers(beam.DoFn):
  """Ranks the catalog for a batch of users with every model and popularity."""

  def __init__(self, rankers: Mapping[str, Ranker], catalog: Sequence[str],
               categories: Sequence[Sequence[str]], ks: Sequence[int],
               activity_boundaries: Sequence[int]):
    self._rankers = dict(rankers)
    self._catalog = list(catalog)
    self._categories = [list(c) for c in categories]
    self._ks = list(ks)
    self._boundaries = list(activity_boundaries)

  def setup(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    loaded = {}  # a model's fused and retrieval orders share one load
    for ranker in self._rankers.values():
      if ranker.model_dir not in loaded:
        loaded[ranker.model_dir] = tf.saved_model.load(ranker.model_dir)
    self._models = {}
    for name, ranker in self._rankers.items():
      model = loaded[ranker.model_dir]
      if AT_SIGNATURE in model.signatures:
        weights = ranker.fusion_weights or tuple(
            float(w) for w in model.fusion_weights.numpy())
        self._models[name] = (model.signatures[AT_SIGNATURE], weights, True)
      else:
        self._models[name] = (model.signatures[
            SIGNATURE if ranker.fusion_weights is None
            else WEIGHTED_SIGNATURE], ranker.fusion_weights, False)
    self._category_of = dict(zip(self._catalog, self._categories))

  def _rank_popularity(self, order: Sequence[str], seen: set,
                       k: int) -> list[str]:
    out = []
    for item in order:
      if item not in seen:
        out.append(item)
        if len(out) == k:
          break
    return out

  def process(self, batch, popularity):
    tf = self._tf
    kmax = max(self._ks)
    users = [u for u, _, _, _ in batch]
    seen = [sorted(s) for _, s, _, _ in batch]
    timestamps = tf.constant([t for _, _, _, t in batch], tf.int64)
    width = max(1, max(len(s) for s in seen))
    exclude = np.array([s + [""] * (width - len(s)) for s in seen], dtype=object)
    ranked = {}
    for name, (fn, weights, timed) in self._models.items():
      inputs = dict(user_id=tf.constant(users),
                    exclude_item_ids=tf.constant(exclude),
                    k=tf.constant(kmax, tf.int32))
      if weights is not None:
        inputs["fusion_weights"] = tf.constant([weights] * len(users),
                                               tf.float32)
      if timed:
        inputs["timestamp"] = timestamps
      out = fn(**inputs)
      ranked[name] = [[x.decode() for x in row]
                      for row in out["item_ids"].numpy()]
    counts, order = popularity["counts"], popularity["order"]
    ranked[POPULARITY] = [self._rank_popularity(order, set(s), kmax)
                          for s in seen]
    for i, (user, seen_items, gains, _) in enumerate(batch):
      relevant = set(gains)
      graded = all(g is not None for g in gains.values())
      # Slice names match the TFMA slices of the ranking evaluation.
      bucket = activity_bucket(len(seen_items), self._boundaries)
      slices = [(ALL, relevant), (f"user_activity:{bucket}", relevant),
                (f"new_user:{str(not seen_items).lower()}", relevant)]
      cold = {x for x in relevant if counts.get(x, 0) == 0}
      for is_cold, rel in (("true", cold), ("false", relevant - cold)):
        if rel:
          slices.append((f"cold_item:{is_cold}", rel))
      by_category = {}
      for item in relevant:
        for c in self._category_of.get(item, ()):
          by_category.setdefault(c, set()).add(item)
      slices += [(f"category:{c}", items) for c, items in by_category.items()]
      overall = {}
      for name, lists in ranked.items():
        top = lists[i]
        for slice_name, rel in slices:
          values = M.per_user_retrieval(top, rel, self._ks)
          if graded:
            values.update(M.per_user_graded(
                top, {x: gains[x] for x in rel}, self._ks))
          values["mean_popularity_at_10"] = float(np.mean(
              [counts.get(x, 0) for x in top[:10]])) if top else 0.0
          if slice_name == ALL:
            overall[name] = values
          yield (name, slice_name), values
        for item in top[:10]:
          yield beam.pvalue.TaggedOutput("top10", (name, item))
      # Every model's values for this user, together: the bootstrap over
      # users resamples them as pairs (components.confidence).
      yield beam.pvalue.TaggedOutput(
          PER_USER, json.dumps({"user": user, "models": overall},
                               sort_keys=True))


class _MeanOfDicts(beam.CombineFn):
  """Averages dicts of floats key by key, each over the dicts that have it.

  `users` counts every dict; `liked_users` the dicts with liked recall (the
  users with a liked relevant item), its own denominator.
  """

  def create_accumulator(self):
    return {}, {}, 0

  def add_input(self, acc, values):
    sums, counts, n = acc
    for k, v in values.items():
      sums[k] = sums.get(k, 0.0) + v
      counts[k] = counts.get(k, 0) + 1
    return sums, counts, n + 1

  def merge_accumulators(self, accs):
    sums, counts, n = {}, {}, 0
    for s, c, m in accs:
      for k, v in s.items():
        sums[k] = sums.get(k, 0.0) + v
        counts[k] = counts.get(k, 0) + c[k]
      n += m
    return sums, counts, n

  def extract_output(self, acc):
    sums, counts, n = acc
    out = {k: v / counts[k] for k, v in sums.items()}
    out["users"] = n
    liked = [c for k, c in counts.items() if k.startswith("liked_recall_at_")]
    if liked:
      out["liked_users"] = max(liked)
    return out


def _join_user(element, fraction: float, seed: int):
  """(user, training items, {relevant item: gain}, time of their first
  eval event) of a kept eval user."""
  user, groups = element
  seen = set(groups["seen"])
  gains: dict[str, Optional[float]] = {}
  relevant = list(groups["relevant"])
  at = min((t for _, _, t in relevant), default=0)
  for item, gain, _ in relevant:
    if item in seen:
      continue
    # An item consumed twice counts once, liked if either event was.
    gains[item] = None if gain is None else max(gains.get(item) or 0.0, gain)
  if gains and (fraction >= 1.0 or _keep(user, seed, fraction)):
    yield user, seen, gains, at


def evaluate_retrieval(model_dirs: Mapping[str, Union[str, Ranker]],
                       examples_uri: str,
                       catalog: Sequence[str],
                       categories: Sequence[Sequence[str]],
                       ks: Sequence[int], activity_boundaries: Sequence[int],
                       scratch_dir: str, max_users: Optional[int] = None,
                       seed: int = 42,
                       beam_args: Sequence[str] = (),
                       labeled_path: Optional[str] = None) -> dict[str, Any]:
  """Runs the Beam evaluation; returns {model: {slice: {metric: value}}}.

  Args:
    model_dirs: model name -> SavedModel directory (its served order) or
      Ranker (e.g. its retrieval order).
    labeled_path: the labeled eval examples (ranking_eval); None: the raw
      eval split, without liked_recall_at_K and graded_ndcg_at_K.
  """
  rankers = {name: d if isinstance(d, Ranker) else Ranker(d)
             for name, d in model_dirs.items()}
  catalog_set = set(catalog)
  with beam.Pipeline(options=beam_runtime.pipeline_options(beam_args)) as p:
    train = _read_positives(p, "Train",
                            artifacts.split_pattern(examples_uri, "train"))
    evals = _read_graded(p, labeled_path,
                         artifacts.split_pattern(examples_uri, "eval"))
    # Popularity is one count per item, needed whole by every worker: a
    # side input computed in the same pipeline.
    popularity = (train
                  | "Items" >> beam.Map(lambda ui: ui[1])
                  | "CountItems" >> beam.combiners.Count.PerElement()
                  | "CountsDict" >> beam.combiners.ToDict()
                  | "Order" >> beam.Map(lambda c: {
                      "counts": c,
                      "order": sorted(catalog, key=lambda x: (-c.get(x, 0), x)),
                  }))
    # What a user consumed before eval is excluded from their list: the
    # validation split's events too (the served histories hold them).
    seen = train
    if artifacts.VALIDATION in artifacts.split_names(examples_uri):
      seen = (train, _read_positives(
          p, "Validation", artifacts.split_pattern(
              examples_uri, artifacts.VALIDATION))) | "Seen" >> beam.Flatten()
    users = ({"seen": seen, "relevant": evals
              | "InCatalog" >> beam.Filter(
                  lambda ug: ug[1][0] in catalog_set)}
             | "ByUser" >> beam.CoGroupByKey())
    n_users = users | "NUsers" >> beam.combiners.Count.Globally()
    fraction = n_users | "Fraction" >> beam.Map(
        lambda n: 1.0 if not max_users or n <= max_users else max_users / n)
    scored = (users
              | "Relevant" >> beam.FlatMap(
                  _join_user, beam.pvalue.AsSingleton(fraction), seed)
              | "Batch" >> beam.BatchElements(min_batch_size=32,
                                              max_batch_size=256)
              | "Score" >> beam.ParDo(
                  _ScoreUsers(rankers, catalog, categories, ks,
                              activity_boundaries),
                  beam.pvalue.AsSingleton(popularity)).with_outputs(
                      "top10", PER_USER, main="metrics"))
    _ = (scored.metrics
         | "MeanPerSlice" >> beam.CombinePerKey(_MeanOfDicts())
         | "SliceJson" >> beam.Map(lambda kv: json.dumps(
             {"model": kv[0][0], "slice": kv[0][1], "metrics": kv[1]}))
         | "WriteSlices" >> beam.io.WriteToText(
             os.path.join(scratch_dir, "retrieval_slices"),
             file_name_suffix=".jsonl"))
    _ = (scored.top10
         | "DistinctTop10" >> beam.Distinct()
         | "ModelOfItem" >> beam.Keys()
         | "Coverage" >> beam.combiners.Count.PerElement()
         | "CoverageJson" >> beam.Map(lambda kv: json.dumps(
             {"model": kv[0], "distinct_items_at_10": kv[1]}))
         | "WriteCoverage" >> beam.io.WriteToText(
             os.path.join(scratch_dir, "retrieval_coverage"),
             file_name_suffix=".jsonl"))
    _ = (scored[PER_USER]
         | "WritePerUser" >> beam.io.WriteToText(
             os.path.join(scratch_dir, PER_USER), file_name_suffix=".jsonl"))

  results: dict[str, Any] = {name: {} for name in [*rankers, POPULARITY]}
  for line in _read_lines(scratch_dir, "retrieval_slices"):
    rec = json.loads(line)
    results[rec["model"]][rec["slice"]] = rec["metrics"]
  for line in _read_lines(scratch_dir, "retrieval_coverage"):
    rec = json.loads(line)
    if ALL in results[rec["model"]]:
      results[rec["model"]][ALL]["catalog_coverage_at_10"] = (
          rec["distinct_items_at_10"] / max(1, len(catalog)))
  return results


def _read_lines(directory: str, prefix: str) -> Iterable[str]:
  for name in sorted(os.listdir(directory)):
    if name.startswith(prefix):
      with open(os.path.join(directory, name)) as f:
        yield from (line for line in f if line.strip())


def read_per_user(scratch_dir: str) -> dict[str, dict[str, np.ndarray]]:
  """Each model's overall metrics per user, from evaluate_retrieval's
  scratch files: {model: {metric: [users] values}}, users sorted by id (so
  a seeded bootstrap draws the same users whatever order Beam wrote them
  in), NaN where a user has no value (liked recall without a liked item)."""
  rows = sorted((json.loads(line) for line in _read_lines(scratch_dir,
                                                          PER_USER)),
                key=lambda rec: rec["user"])
  models = sorted({m for rec in rows for m in rec["models"]})
  out: dict[str, dict[str, np.ndarray]] = {}
  for model in models:
    metrics = sorted({k for rec in rows
                      for k in rec["models"].get(model, {})})
    out[model] = {k: np.array([rec["models"].get(model, {}).get(k, np.nan)
                               for rec in rows], np.float64)
                  for k in metrics}
  return out
