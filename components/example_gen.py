"""ExampleGen: raw rows in, validated and split tf.Examples out, on Beam.

Steps: read every unit of the source in parallel; parse and validate each row
(components.parsing), sending bad rows with their reason to quarantine; join
item and user side features; drop exact duplicate events; add to each event
the user's earlier consumed items (its history); split train / validation /
eval (validation only when `validation_fraction` > 0); write gzip TFRecords
of tf.Example per split, in TFX's `Split-<name>` layout.

The validation split is what training-time choices read (early stopping,
tuning), so the eval split is read once, by the Evaluator. Its events sit
between train and eval: just before each user's eval events
(temporal_user), between two time cut-offs (temporal_global), or a seeded
hash band (random).

Nothing is lost silently: every input row ends in exactly one of train,
validation, eval, quarantine or duplicates, and the counts written to
metadata.json reconcile (`rows_in == train + validation + eval +
quarantined + duplicates_dropped`). A run whose
interactions are all bad, or more bad than the configured share, fails with
the first reasons in the message, after the quarantine artifact is published
so the bad rows can be inspected.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import shutil
from typing import Any, Iterator, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.filesystem import CompressionTypes
from tfx_bsl.coders import example_coder

from components import beam_runtime
from components import parsing
from components import schema
from components.readers.base import Reader
from contracts import artifacts
from contracts import records as r
from contracts.artifacts import EVAL, ITEMS, TRAIN, USERS, VALIDATION  # split names
QUARANTINE_FILE_PREFIX = "quarantined"
# Exact duplicate events: not bad rows (the event is kept once), but each
# dropped copy is listed beside the quarantine with the row it repeats.
DUPLICATES_FILE_PREFIX = "duplicates"
_ORIGIN = "_origin"  # (source, row) of a parsed interaction


class ExampleGenError(RuntimeError):
  """The input cannot produce a usable dataset; the message says why."""


# ---------------------------------------------------------------------------
# Per-row functions (pure; run on Beam workers).


def _parse_interactions(raw: r.RawRow, rules: parsing.ValidationRules,
                        catalog_ids: Optional[Mapping[str, Any]]):
  parsed = parsing.parse_interaction(raw, rules)
  if isinstance(parsed, parsing.Quarantined):
    yield beam.pvalue.TaggedOutput("bad", parsed)
  elif catalog_ids is not None and parsed[r.ITEM_ID] not in catalog_ids:
    yield beam.pvalue.TaggedOutput("bad", parsing.Quarantined(
        "interaction", raw.source, raw.row, r.ITEM_ID,
        f"item_id {parsed[r.ITEM_ID]!r} is not in the item catalog",
        dict(raw.fields)))
  else:
    # Where the row came from, until dedupe has named any duplicate's
    # original (_DedupeAndSplit drops it before encoding).
    yield dict(parsed, **{_ORIGIN: (raw.source, raw.row)})


def _parse_entity(raw: r.RawRow, kind: str, user_features: Sequence[str],
                  limits: parsing.InputLimits):
  parsed = (parsing.parse_item(raw, limits) if kind == ITEMS else
            parsing.parse_user(raw, user_features, limits))
  if isinstance(parsed, parsing.Quarantined):
    yield beam.pvalue.TaggedOutput("bad", parsed)
  else:
    yield (parsed[r.ITEM_ID if kind == ITEMS else r.USER_ID],
           (raw.source, raw.row, parsed))


def _first_definition_wins(element, kind: str):
  """Keeps the first row defining an id; later rows with that id are bad."""
  entity_id, defs = element
  defs = sorted(defs, key=lambda d: (d[0], d[1]))
  source, row, parsed = defs[0]
  yield parsed
  for dup_source, dup_row, dup in defs[1:]:
    yield beam.pvalue.TaggedOutput("bad", parsing.Quarantined(
        kind[:-1], dup_source, dup_row,
        r.ITEM_ID if kind == ITEMS else r.USER_ID,
        f"duplicate id {entity_id!r} (first defined at {source}, row {row})",
        {k: v for k, v in dup.items()}))


def _event_key(row: Mapping[str, Any]) -> tuple:
  return tuple(row[f] for f in r.INTERACTION_FIELDS)


class EventPacker:
  """A parsed interaction as compact bytes, for the group by user.

  Why bytes: Beam's local runner (FnApiRunner) holds a GroupByKey's whole
  input in its controller process as *decoded* Python values
  (fn_api_runner.execution.GroupingBuffer), then encodes each worker's share
  into one message. A parsed event as a dict costs about 1.2 KB there; this
  encoding is about 40 bytes (Beam's own coders; the user id is the group's
  key and the origin's source an index into the source's units), so the
  local runner's peak memory per row drops by an order of magnitude. On a
  distributed runner the smaller record is less to shuffle.
  """

  _CODER = coders.TupleCoder([
      coders.StrUtf8Coder(),  # item_id
      coders.VarIntCoder(),  # timestamp
      coders.FloatCoder(),  # rating
      coders.VarIntCoder(),  # click
      coders.VarIntCoder(),  # like
      coders.FloatCoder(),  # watch_fraction
      coders.VarIntCoder(),  # origin: index of its unit, -1 if not a unit
      coders.StrUtf8Coder(),  # origin: its source when not a unit, else ""
      coders.VarIntCoder(),  # origin: row
  ])

  def __init__(self, units: Sequence[str] = ()):
    self._units = tuple(units)
    self._index = {u: i for i, u in enumerate(self._units)}

  def pack(self, row: Mapping[str, Any]) -> bytes:
    source, line = row.get(_ORIGIN, ("", 0))
    index = self._index.get(source, -1)
    return self._CODER.encode((
        row[r.ITEM_ID], row[r.TIMESTAMP], row[r.RATING], row[r.CLICK],
        row[r.LIKE], row[r.WATCH_FRACTION], index,
        source if index < 0 else "", line))

  def unpack(self, user_id: str, packed: bytes) -> dict[str, Any]:
    (item_id, timestamp, rating, click, like, watch, index, source,
     line) = self._CODER.decode(packed)
    return {r.USER_ID: user_id, r.ITEM_ID: item_id, r.TIMESTAMP: timestamp,
            r.RATING: rating, r.CLICK: click, r.LIKE: like,
            r.WATCH_FRACTION: watch,
            _ORIGIN: (self._units[index] if index >= 0 else source, line)}


def _hash_fraction(seed: int, row: Mapping[str, Any]) -> float:
  digest = hashlib.sha256(
      json.dumps([seed, *_event_key(row)]).encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def _with_history(events: Sequence[Mapping[str, Any]],
                  counted: Optional[Sequence[bool]] = None) -> Iterator[dict]:
  """Adds to each of a user's time-sorted events the items consumed before it.

  Only consumed items (click > 0) count: an impression the user skipped says
  little about their taste. `counted[i]` False leaves event i out of the
  later events' histories (a held-out event under a random split).
  """
  consumed: list[str] = []
  for i, row in enumerate(events):
    yield dict(row, **{schema.HISTORY: consumed[-schema.MAX_HISTORY_LENGTH:]})
    if row.get(r.CLICK, 1) > 0 and (counted is None or counted[i]):
      consumed.append(row[r.ITEM_ID])


class _DedupeAndSplit(beam.DoFn):
  """Per user: drop exact duplicates, add the history, assign a split."""

  def __init__(self, split: str, eval_fraction: float, seed: int,
               validation_fraction: float = 0.0,
               packer: Optional[EventPacker] = None):
    self._packer = packer or EventPacker()
    self._split = split
    self._eval_fraction = eval_fraction
    self._validation_fraction = validation_fraction
    self._seed = seed

  def _assign(self, events: Sequence[Mapping[str, Any]],
              cutoffs: Optional[tuple[int, int]]) -> list[str]:
    n = len(events)
    if self._split == "temporal_user":
      n_eval = max(1, int(n * self._eval_fraction)) if n >= 2 else 0
      # At least one train event stays, as without validation.
      n_val = (max(1, int(n * self._validation_fraction))
               if self._validation_fraction > 0 and n - n_eval >= 2 else 0)
      return [EVAL if i >= n - n_eval else
              VALIDATION if i >= n - n_eval - n_val else TRAIN
              for i in range(n)]
    if self._split == "temporal_global":
      validation_ts, eval_ts = cutoffs
      return [EVAL if row[r.TIMESTAMP] > eval_ts else
              VALIDATION if row[r.TIMESTAMP] > validation_ts else TRAIN
              for row in events]
    out = []
    for row in events:
      h = _hash_fraction(self._seed, row)
      out.append(EVAL if h < self._eval_fraction else VALIDATION if h < (
          self._eval_fraction + self._validation_fraction) else TRAIN)
    return out

  def process(self, element, cutoff_ts=None) -> Iterator[Any]:
    user_id, packed = element  # EventPacker's bytes
    unique, first = [], {}
    # The earliest row (by file, then row) of identical events is the one kept.
    for row in sorted((self._packer.unpack(user_id, p) for p in packed),
                      key=lambda x: (_event_key(x), x[_ORIGIN])):
      key = _event_key(row)
      source, line = row.pop(_ORIGIN)
      if key in first:
        kept_source, kept_row = first[key]
        yield beam.pvalue.TaggedOutput("duplicates", {
            "kind": "interaction", "source": source, "row": line,
            "duplicate_of": {"source": kept_source, "row": kept_row},
            "reason": f"exact duplicate of {kept_source}, row {kept_row} "
                      "(same user, item, timestamp and labels); dropped"})
        continue
      first[key] = (source, line)
      unique.append(row)
    unique.sort(key=lambda x: (x[r.TIMESTAMP], x[r.ITEM_ID]))
    splits = self._assign(unique, cutoff_ts)
    # Under a temporal split every train event precedes the user's eval
    # events, so a history holds what was consumed before, as at serving
    # time. Under a random split an eval event can precede train events:
    # only train events enter histories, or held-out interactions (eval's
    # or validation's) would be learned from (the training rows' histories)
    # and served from.
    counted = ([s == TRAIN for s in splits] if self._split == "random"
               else None)
    for split, row in zip(splits, _with_history(unique, counted)):
      yield (split, row)


def _example_values(row: Mapping[str, Any], items: Mapping[str, Any],
                    users: Mapping[str, Any],
                    user_features: Sequence[str]) -> dict[str, Any]:
  """An event with its item's and user's side features joined in."""
  values = dict(row)
  item = items.get(row[r.ITEM_ID]) or {}
  values[r.TITLE] = item.get(r.TITLE, "")
  values[r.YEAR] = item.get(r.YEAR, 0)
  values[r.CATEGORIES] = item.get(r.CATEGORIES, [])
  values[r.TAGS] = item.get(r.TAGS, [])
  user = users.get(row[r.USER_ID]) or {}
  for name in user_features:
    values[schema.user_feature_key(name)] = user.get(name, "")
  return values


class _EncodeExamples(beam.DoFn):
  """Batches of (split, event) -> serialized tf.Examples, output per split.

  Why through Arrow: building each tf.Example from Python protobuf objects
  cost about 60 us a row, most of ExampleGen's time at millions of rows;
  tfx_bsl's C++ RecordBatchToExamplesEncoder (what TFX's components and
  this project's Transform encode with) takes a RecordBatch at about 12 us a
  row, the batch's construction included.
  """

  def __init__(self, user_features: Sequence[str]):
    self._user_features = tuple(user_features)
    self._spec = schema.raw_feature_spec(self._user_features)
    self._encoder = None

  def setup(self):
    self._encoder = example_coder.RecordBatchToExamplesEncoder(
        schema.schema_of(self._spec))

  def process(self, batch, items: Mapping[str, Any], users: Mapping[str, Any]):
    by_split = collections.defaultdict(list)
    for split, row in batch:
      by_split[split].append(
          _example_values(row, items, users, self._user_features))
    for split, rows in by_split.items():
      for example in self._encoder.encode(
          schema.to_record_batch(rows, self._spec)):
        yield beam.pvalue.TaggedOutput(split, example)


def _item_example(item: Mapping[str, Any]) -> bytes:
  return schema.to_example({k: item[k] for k in r.ITEM_FIELDS})


def _user_example(user: Mapping[str, Any], user_features: Sequence[str]) -> bytes:
  values = {r.USER_ID: user[r.USER_ID]}
  for name in user_features:
    values[schema.user_feature_key(name)] = user[name]
  return schema.to_example(values)


def _bare_item(item_id: str) -> dict[str, Any]:
  return {r.ITEM_ID: item_id, r.TITLE: "", r.YEAR: 0, r.CATEGORIES: [],
          r.TAGS: []}


# ---------------------------------------------------------------------------
# Pipeline.


def _count(pcoll, name: str):
  return (pcoll
          | f"Count{name}" >> beam.combiners.Count.Globally()
          | f"Name{name}" >> beam.Map(lambda n, k=name: (k, n)))


def _write_tfrecords(pcoll, directory: str, label: str):
  return pcoll | label >> beam.io.WriteToTFRecord(
      os.path.join(directory, "data_tfrecord"),
      file_name_suffix=".gz",
      compression_type=CompressionTypes.GZIP)


# A source of at least this many units (files, shards) is spread over the
# workers by its units: beam.Create reshuffles them, and each is read where it
# lands. A source of fewer (one big CSV) has its rows reshuffled instead, so
# that parsing does not run on one worker.
MIN_UNITS_SPREAD_BY_UNIT = 16


def _read(p, label: str, units: list[str], read_fn):
  rows = (p
          | f"{label}Units" >> beam.Create(units)
          | f"{label}Read" >> beam.FlatMap(read_fn))
  if len(units) >= MIN_UNITS_SPREAD_BY_UNIT:
    return rows
  # Pickled across the reshuffle, for the reason EventPacker gives.
  return (rows
          | f"{label}Pack" >> beam.Map(pickle.dumps,
                                       protocol=pickle.HIGHEST_PROTOCOL)
          | f"{label}Spread" >> beam.Reshuffle()
          | f"{label}Unpack" >> beam.Map(pickle.loads))


def build_pipeline(p: beam.Pipeline, reader: Reader,
                   rules: parsing.ValidationRules, split: str,
                   eval_fraction: float, seed: int, out_dir: str,
                   validation_fraction: float = 0.0) -> None:
  """Adds ExampleGen's transforms to `p`, writing under `out_dir`."""
  user_features = tuple(reader.user_feature_names)
  has_catalog = bool(reader.item_units())
  counts = []
  bad_collections = []

  # Catalog and profiles: small tables, used as side inputs.
  entity_tables = {}
  for kind, units, read_fn in ((ITEMS, reader.item_units(), reader.read_items),
                               (USERS, reader.user_units(), reader.read_users)):
    label = kind.capitalize()
    raw = _read(p, label, units, read_fn)
    counts.append(_count(raw, f"{kind}_in"))
    parsed = raw | f"{label}Parse" >> beam.FlatMap(
        _parse_entity, kind, user_features,
        rules.limits).with_outputs("bad", main="ok")
    unique = (parsed.ok
              | f"{label}GroupById" >> beam.GroupByKey()
              | f"{label}FirstWins" >> beam.FlatMap(
                  _first_definition_wins, kind).with_outputs("bad", main="ok"))
    bad_collections += [parsed.bad, unique.bad]
    entity_tables[kind] = unique.ok
    counts.append(_count(
        (parsed.bad, unique.bad) | f"{label}AllBad" >> beam.Flatten(),
        f"{kind}_quarantined"))

  items_by_id = entity_tables[ITEMS] | "ItemsKeyed" >> beam.Map(
      lambda it: (it[r.ITEM_ID], it))
  users_by_id = entity_tables[USERS] | "UsersKeyed" >> beam.Map(
      lambda u: (u[r.USER_ID], u))

  raw = _read(p, "Interactions", reader.interaction_units(),
              reader.read_interactions)
  counts.append(_count(raw, "interactions_in"))
  parsed = raw | "InteractionsParse" >> beam.FlatMap(
      _parse_interactions, rules,
      beam.pvalue.AsDict(items_by_id) if has_catalog else None
  ).with_outputs("bad", main="ok")
  bad_collections.append(parsed.bad)
  counts.append(_count(parsed.bad, "interactions_quarantined"))

  if not has_catalog:
    # No catalog file: the items are whatever the interactions name.
    items_by_id = (parsed.ok
                   | "ItemIds" >> beam.Map(lambda x: x[r.ITEM_ID])
                   | "DistinctItemIds" >> beam.Distinct()
                   | "BareItems" >> beam.Map(lambda i: (i, _bare_item(i))))
    entity_tables[ITEMS] = items_by_id | "ItemValues" >> beam.Values()

  cutoff = None
  if split == "temporal_global":
    cutoff = beam.pvalue.AsSingleton(
        parsed.ok
        | "Timestamps" >> beam.Map(lambda x: x[r.TIMESTAMP])
        | "Quantiles" >> beam.transforms.stats.ApproximateQuantiles.Globally(
            101)
        | "Cutoff" >> beam.Map(lambda q: tuple(  # (validation, eval)
            q[min(100, int(round((1 - f) * 100)))] for f in (
                eval_fraction + validation_fraction, eval_fraction))))

  packer = EventPacker(reader.interaction_units())
  split_rows = (parsed.ok
                | "KeyByUser" >> beam.Map(
                    lambda x: (x[r.USER_ID], packer.pack(x)))
                | "GroupByUser" >> beam.GroupByKey()
                | "DedupeAndSplit" >> beam.ParDo(
                    _DedupeAndSplit(split, eval_fraction, seed,
                                    validation_fraction, packer),
                    cutoff).with_outputs("duplicates", main="rows"))
  counts.append(_count(split_rows.duplicates, "duplicates_dropped"))
  _ = (split_rows.duplicates
       | "DuplicatesToJson" >> beam.Map(json.dumps, sort_keys=True)
       | "WriteDuplicates" >> beam.io.WriteToText(
           os.path.join(out_dir, "quarantine", DUPLICATES_FILE_PREFIX),
           file_name_suffix=".jsonl"))

  # One encoding step for every split, so each worker materializes the item
  # and user tables (side inputs) once, not once per split.
  splits = example_splits(validation_fraction)
  encoded = (split_rows.rows
             | "Batch" >> beam.BatchElements(min_batch_size=64,
                                             max_batch_size=1024)
             | "Encode" >> beam.ParDo(
                 _EncodeExamples(user_features),
                 beam.pvalue.AsDict(items_by_id),
                 beam.pvalue.AsDict(users_by_id)).with_outputs(*splits))
  for name in splits:
    counts.append(_count(encoded[name], f"interactions_{name}"))
    _write_tfrecords(encoded[name],
                     os.path.join(out_dir, "examples", f"Split-{name}"),
                     f"Write{name}")

  _write_tfrecords(
      entity_tables[ITEMS] | "EncodeItems" >> beam.Map(_item_example),
      os.path.join(out_dir, "catalog", f"Split-{ITEMS}"), "WriteItems")
  counts.append(_count(entity_tables[ITEMS], "items_written"))
  _write_tfrecords(
      entity_tables[USERS] | "EncodeUsers" >> beam.Map(
          _user_example, user_features),
      os.path.join(out_dir, "catalog", f"Split-{USERS}"), "WriteUsers")
  counts.append(_count(entity_tables[USERS], "users_written"))

  _ = (tuple(bad_collections)
       | "AllBad" >> beam.Flatten()
       | "BadToJson" >> beam.Map(
           lambda q: json.dumps(q.to_json_dict(), sort_keys=True))
       | "WriteQuarantine" >> beam.io.WriteToText(
           os.path.join(out_dir, "quarantine", QUARANTINE_FILE_PREFIX),
           file_name_suffix=".jsonl"))

  _ = (tuple(counts)
       | "AllCounts" >> beam.Flatten()
       | "CountsToDict" >> beam.combiners.ToDict()
       | "CountsToJson" >> beam.Map(json.dumps, sort_keys=True)
       | "WriteCounts" >> beam.io.WriteToText(
           os.path.join(out_dir, "counts"), file_name_suffix=".json",
           shard_name_template=""))


def read_quarantine(quarantine_uri: str,
                    prefix: str = QUARANTINE_FILE_PREFIX
                    ) -> Iterator[dict[str, Any]]:
  """Yields every quarantined row record of a quarantine artifact.

  With prefix=DUPLICATES_FILE_PREFIX: the dropped duplicate events instead.
  """
  for name in sorted(os.listdir(quarantine_uri)):
    if name.startswith(prefix):
      with open(os.path.join(quarantine_uri, name)) as f:
        for line in f:
          if line.strip():
            yield json.loads(line)


def example_splits(validation_fraction: float) -> tuple[str, ...]:
  """The Examples artifact's splits: a validation split only when asked."""
  return ((TRAIN, VALIDATION, EVAL) if validation_fraction > 0 else
          (TRAIN, EVAL))


def _reconcile(counts: dict[str, int]) -> dict[str, Any]:
  """Fills in zero counts and checks that every row is accounted for."""
  keys = ("interactions_in", "interactions_train", "interactions_eval",
          "interactions_quarantined", "duplicates_dropped", "items_in",
          "items_written", "items_quarantined", "users_in", "users_written",
          "users_quarantined")
  c = {k: int(counts.get(k, 0)) for k in keys}
  if "interactions_validation" in counts:
    c["interactions_validation"] = int(counts["interactions_validation"])
  out_rows = (c["interactions_train"] + c.get("interactions_validation", 0) +
              c["interactions_eval"] +
              c["interactions_quarantined"] + c["duplicates_dropped"])
  if out_rows != c["interactions_in"]:
    raise AssertionError(f"ExampleGen lost rows: {c}")  # a bug, not bad data
  return c


def run_example_gen(
    reader: Reader,
    rules: parsing.ValidationRules,
    examples_uri: str,
    catalog_uri: str,
    quarantine_uri: str,
    run_id: str,
    split: str = "temporal_user",
    eval_fraction: float = 0.2,
    seed: int = 42,
    max_quarantine_fraction: float = 0.25,
    beam_args: Sequence[str] = (),
    parameters: Optional[Mapping[str, Any]] = None,
    validation_fraction: float = 0.0,
) -> dict[str, Any]:
  """Runs ExampleGen and publishes the examples, catalog and quarantine.

  Returns:
    The reconciled row counts.

  Raises:
    ExampleGenError: no valid interaction survived, or more than
      `max_quarantine_fraction` of them were bad. The quarantine artifact is
      published before the error, so the rows can be inspected.
  """
  params = dict(parameters or {}, split=split, eval_fraction=eval_fraction,
                seed=seed)
  if validation_fraction:
    params["validation_fraction"] = validation_fraction
  with artifacts.scratch_dir(examples_uri) as scratch:
    with beam.Pipeline(options=beam_runtime.pipeline_options(beam_args)) as p:
      build_pipeline(p, reader, rules, split, eval_fraction, seed, scratch,
                     validation_fraction)
    with open(os.path.join(scratch, "counts.json")) as f:
      counts = _reconcile(json.loads(f.read() or "{}"))

    with artifacts.write_artifact(quarantine_uri, "Quarantine", "ExampleGen",
                                  run_id, params) as w:
      for name in os.listdir(os.path.join(scratch, "quarantine")):
        shutil.move(os.path.join(scratch, "quarantine", name), w.uri)
      w.summary = {k: counts[k] for k in counts if k.endswith("quarantined")}

    bad = counts["interactions_quarantined"]
    total = counts["interactions_in"]
    if total == 0 or counts["interactions_train"] == 0:
      first = [q for _, q in zip(range(5), read_quarantine(quarantine_uri))]
      reasons = "; ".join(
          parsing.Quarantined(**{k: q[k] for k in (
              "kind", "source", "row", "field", "reason", "raw")}).describe()
          for q in first)
      raise ExampleGenError(
          f"ExampleGen: no usable interactions: {total} rows read, {bad} "
          f"quarantined, {counts['interactions_train']} left for training. "
          + (f"First problems: {reasons}. " if reasons else "") +
          f"All quarantined rows are in {quarantine_uri}")
    if bad / total > max_quarantine_fraction:
      raise ExampleGenError(
          f"ExampleGen: {bad} of {total} interaction rows "
          f"({bad / total:.1%}) were quarantined, more than "
          f"example_gen.max_quarantine_fraction={max_quarantine_fraction:g}; "
          f"see {quarantine_uri}")

    spec = schema.raw_feature_spec(reader.user_feature_names)
    with artifacts.write_artifact(examples_uri, "Examples", "ExampleGen",
                                  run_id, params) as w:
      splits = example_splits(validation_fraction)
      for s in splits:
        shutil.move(os.path.join(scratch, "examples", f"Split-{s}"), w.uri)
      schema.write_schema(w.uri, spec)
      w.summary = dict(counts, splits=list(splits),
                       user_features=list(reader.user_feature_names))
    with artifacts.write_artifact(catalog_uri, "Catalog", "ExampleGen",
                                  run_id, params) as w:
      for s in (ITEMS, USERS):
        shutil.move(os.path.join(scratch, "catalog", f"Split-{s}"), w.uri)
      w.summary = {k: counts[k] for k in ("items_written", "users_written")}
      w.summary["user_features"] = list(reader.user_feature_names)
    return counts
