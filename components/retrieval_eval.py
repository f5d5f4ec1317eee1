"""Full-catalog retrieval metrics, on Beam, through the served signature.

For every eval user, each model is asked for its top max(K) items through the
SavedModel's `recommend_excluding` signature (the items the user consumed in
training excluded), i.e. exactly what serving would return. The popularity
baseline ranks the same catalog by training-interaction counts with the same
exclusions. Per-user metrics are averaged per slice in Beam, so the step
scales with the runner like ExampleGen does.

Slices: all users; user activity bucket (training interactions); new users
(no training history); cold and warm items (relevant items with and without
training interactions); and each item category (relevant items of that
category).
Only users with at least one relevant item in a slice count for it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
import numpy as np

from contracts import artifacts
from components import beam_runtime
from components import metrics as M
from contracts import records as r

POPULARITY = "popularity"
ALL = "all"
SIGNATURE = "recommend_excluding"


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


def _parse_event(record: bytes):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  f = tf.train.Example.FromString(record).features.feature
  user = f[r.USER_ID].bytes_list.value[0].decode()
  item = f[r.ITEM_ID].bytes_list.value[0].decode()
  click = f[r.CLICK].int64_list.value[0] if r.CLICK in f else 1
  if click > 0:
    yield user, item


def _read_positives(p, label: str, pattern: str):
  return (p
          | f"Read{label}" >> beam.io.ReadFromTFRecord(
              pattern, compression_type=CompressionTypes.GZIP)
          | f"Parse{label}" >> beam.FlatMap(_parse_event))


def _keep(user: str, seed: int, fraction: float) -> bool:
  h = hashlib.sha256(f"{seed}:{user}".encode()).digest()
  return int.from_bytes(h[:8], "big") / 2.0**64 < fraction


class _ScoreUsers(beam.DoFn):
  """Ranks the catalog for a batch of users with every model and popularity."""

  def __init__(self, model_dirs: Mapping[str, str], catalog: Sequence[str],
               categories: Sequence[Sequence[str]], ks: Sequence[int],
               activity_boundaries: Sequence[int]):
    self._model_dirs = dict(model_dirs)
    self._catalog = list(catalog)
    self._categories = [list(c) for c in categories]
    self._ks = list(ks)
    self._boundaries = list(activity_boundaries)

  def setup(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self._models = {
        name: tf.saved_model.load(d).signatures[SIGNATURE]
        for name, d in self._model_dirs.items()
    }
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
    users = [u for u, _, _ in batch]
    seen = [sorted(s) for _, s, _ in batch]
    width = max(1, max(len(s) for s in seen))
    exclude = np.array([s + [""] * (width - len(s)) for s in seen], dtype=object)
    ranked = {}
    for name, fn in self._models.items():
      out = fn(user_id=tf.constant(users), exclude_item_ids=tf.constant(exclude),
               k=tf.constant(kmax, tf.int32))
      ranked[name] = [[x.decode() for x in row]
                      for row in out["item_ids"].numpy()]
    counts, order = popularity["counts"], popularity["order"]
    ranked[POPULARITY] = [self._rank_popularity(order, set(s), kmax)
                          for s in seen]
    for i, (_user, seen_items, relevant) in enumerate(batch):
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
      for name, lists in ranked.items():
        top = lists[i]
        for slice_name, rel in slices:
          values = M.per_user_retrieval(top, rel, self._ks)
          values["mean_popularity_at_10"] = float(np.mean(
              [counts.get(x, 0) for x in top[:10]])) if top else 0.0
          yield (name, slice_name), values
        for item in top[:10]:
          yield beam.pvalue.TaggedOutput("top10", (name, item))


class _MeanOfDicts(beam.CombineFn):
  """Averages dicts of floats key by key; also counts them."""

  def create_accumulator(self):
    return {}, 0

  def add_input(self, acc, values):
    sums, n = acc
    sums = dict(sums)
    for k, v in values.items():
      sums[k] = sums.get(k, 0.0) + v
    return sums, n + 1

  def merge_accumulators(self, accs):
    sums, n = {}, 0
    for s, c in accs:
      for k, v in s.items():
        sums[k] = sums.get(k, 0.0) + v
      n += c
    return sums, n

  def extract_output(self, acc):
    sums, n = acc
    out = {k: v / n for k, v in sums.items()} if n else {}
    out["users"] = n
    return out


def _join_user(element, fraction: float, seed: int):
  user, groups = element
  seen = set(groups["seen"])
  relevant = set(groups["relevant"]) - seen
  if relevant and (fraction >= 1.0 or _keep(user, seed, fraction)):
    yield user, seen, relevant


def evaluate_retrieval(model_dirs: Mapping[str, str], examples_uri: str,
                       catalog: Sequence[str],
                       categories: Sequence[Sequence[str]],
                       ks: Sequence[int], activity_boundaries: Sequence[int],
                       scratch_dir: str, max_users: Optional[int] = None,
                       seed: int = 42,
                       beam_args: Sequence[str] = ()) -> dict[str, Any]:
  """Runs the Beam evaluation; returns {model: {slice: {metric: value}}}."""
  catalog_set = set(catalog)
  with beam.Pipeline(options=beam_runtime.pipeline_options(beam_args)) as p:
    train = _read_positives(p, "Train",
                            artifacts.split_pattern(examples_uri, "train"))
    evals = _read_positives(p, "Eval",
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
    users = ({"seen": train, "relevant": evals
              | "InCatalog" >> beam.Filter(lambda ui: ui[1] in catalog_set)}
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
                  _ScoreUsers(model_dirs, catalog, categories, ks,
                              activity_boundaries),
                  beam.pvalue.AsSingleton(popularity)).with_outputs(
                      "top10", main="metrics"))
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

  results: dict[str, Any] = {name: {} for name in [*model_dirs, POPULARITY]}
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
