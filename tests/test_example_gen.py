"""ExampleGen on Beam: quarantine, reconciliation, dedupe, splits, failure."""

import json
import os

import pytest
import tensorflow as tf

from contracts import artifacts
from components import example_gen
from components import parsing
from contracts import records as r
from components import schema
from components.readers import build_reader
from components import artifact_readers

RULES = parsing.ValidationRules(0.5, 5.0, 0, 1_900_000_000)

GOOD_ROWS = [
    # user, item, rating, timestamp
    ("1", "10", "4.0", "1000"), ("1", "11", "3.0", "2000"),
    ("1", "12", "5.0", "3000"), ("1", "13", "2.5", "4000"),
    ("1", "10", "1.0", "5000"), ("2", "10", "4.5", "1500"),
    ("2", "11", "2.0", "2500"), ("2", "12", "3.5", "3500"),
    ("2", "13", "4.0", "4500"), ("2", "11", "5.0", "5500"),
]
BAD_LINES = [
    ("1,10,4.0", None, "expected 4 columns, found 3"),
    ("1,11,abc,1000", "rating", "rating could not parse 'abc' as a number"),
    (",12,3.0,1000", "user_id", "user_id is required but empty"),
    ("2,13,17,1000", "rating", "rating 17 is outside the allowed range"),
    ("2,10,3.0,32503680000", "timestamp", "timestamp 32503680000 (3000-01-01"),
    ("2,99,3.0,1000", "item_id", "item_id '99' is not in the item catalog"),
]


def _write_source(tmp_path, lines):
  (tmp_path / "ratings.csv").write_text(
      "user,item,stars,ts\n" + "\n".join(lines) + "\n")
  (tmp_path / "items.csv").write_text(
      "id,name,genres\n10,Alpha,Drama\n11,Beta,Comedy|Drama\n12,Gamma,\n"
      "13,Delta,Horror\n13,Delta again,Horror\n")
  return build_reader(
      "tabular",
      interactions={"path": str(tmp_path / "ratings.csv"),
                    "columns": {"user_id": "user", "item_id": "item",
                                "rating": "stars", "timestamp": "ts"}},
      items={"path": str(tmp_path / "items.csv"),
             "columns": {"item_id": "id", "title": "name",
                         "categories": "genres"}})


def _run(tmp_path, reader, **kwargs):
  out = tmp_path / "out"
  counts = example_gen.run_example_gen(
      reader, RULES, str(out / "examples"), str(out / "catalog"),
      str(out / "quarantine"), "test-run", **kwargs)
  return counts, out


def _split(out, split):
  spec = schema.read_feature_spec(str(out / "examples"))
  rows = []
  for rec in artifact_readers.read_examples(str(out / "examples"), split):
    ex = tf.io.parse_single_example(rec, spec)
    rows.append((ex[r.USER_ID].numpy().decode(), ex[r.ITEM_ID].numpy().decode(),
                 float(ex[r.RATING].numpy()), int(ex[r.TIMESTAMP].numpy()),
                 ex[r.TITLE].numpy().decode()))
  return sorted(rows, key=lambda x: (x[0], x[3]))


def test_malformed_rows_are_quarantined_and_counts_reconcile(tmp_path):
  lines = [",".join(row) for row in GOOD_ROWS] + [b for b, _, _ in BAD_LINES]
  lines.append(lines[0])  # an exact duplicate event
  reader = _write_source(tmp_path, lines)
  counts, out = _run(tmp_path, reader, eval_fraction=0.2,
                     max_quarantine_fraction=0.5)

  assert counts["interactions_in"] == 17
  assert counts["interactions_quarantined"] == 6
  assert counts["duplicates_dropped"] == 1
  assert counts["interactions_train"] + counts["interactions_eval"] == 10
  assert counts["interactions_in"] == (
      counts["interactions_train"] + counts["interactions_eval"] +
      counts["interactions_quarantined"] + counts["duplicates_dropped"])
  # The catalog's second definition of item 13 is quarantined, not used.
  assert counts["items_in"] == 5 and counts["items_written"] == 4
  assert counts["items_quarantined"] == 1

  quarantined = list(example_gen.read_quarantine(str(out / "quarantine")))
  by_row = {q["row"]: q for q in quarantined if q["kind"] == "interaction"}
  for i, (_, field, reason) in enumerate(BAD_LINES):
    q = by_row[len(GOOD_ROWS) + 2 + i]  # header is row 1
    assert q["source"] == str(tmp_path / "ratings.csv")
    assert q["field"] == field
    assert q["reason"].startswith(reason), q
  item_q = [q for q in quarantined if q["kind"] == "item"]
  assert item_q[0]["row"] == 6 and "duplicate id '13'" in item_q[0]["reason"]

  meta = artifacts.read_metadata(str(out / "examples"))
  assert meta["summary"]["interactions_train"] == counts["interactions_train"]
  assert os.path.exists(out / "examples" / "Split-train")
  assert os.path.exists(out / "examples" / schema.SCHEMA_FILE)


def test_temporal_user_split_holds_out_each_users_latest(tmp_path):
  reader = _write_source(tmp_path, [",".join(row) for row in GOOD_ROWS])
  _, out = _run(tmp_path, reader, split="temporal_user", eval_fraction=0.2)
  evals = _split(out, "eval")
  # 5 events per user, 20% -> the latest one of each user.
  assert [(u, i, ts) for u, i, _, ts, _ in evals] == [
      ("1", "10", 5000), ("2", "11", 5500)]
  train = _split(out, "train")
  assert len(train) == 8
  assert max(ts for u, _, _, ts, _ in train if u == "1") < 5000
  # Item side features are joined onto the examples.
  assert {(i, title) for _, i, _, _, title in train} >= {("11", "Beta")}


def test_temporal_global_and_random_splits(tmp_path):
  reader = _write_source(tmp_path, [",".join(row) for row in GOOD_ROWS])
  _, out = _run(tmp_path, reader, split="temporal_global", eval_fraction=0.2)
  evals = _split(out, "eval")
  train = _split(out, "train")
  assert min(ts for *_, ts, _ in evals) > max(ts for *_, ts, _ in train)
  assert len(evals) == 2

  a = tmp_path / "a"
  b = tmp_path / "b"
  for d in (a, b):
    d.mkdir()
    _run(d, reader, split="random", eval_fraction=0.3, seed=5)
  assert _split(a / "out", "eval") == _split(b / "out", "eval")


def test_all_bad_file_fails_with_a_clear_message(tmp_path):
  reader = _write_source(tmp_path, [b for b, _, _ in BAD_LINES])
  with pytest.raises(example_gen.ExampleGenError) as e:
    _run(tmp_path, reader)
  message = str(e.value)
  assert "no usable interactions: 6 rows read, 6 quarantined" in message
  assert f"{tmp_path / 'ratings.csv'}, row 2: expected 4 columns" in message
  # The quarantine is published for inspection; no examples are.
  assert os.path.exists(tmp_path / "out" / "quarantine" / "metadata.json")
  assert not os.path.exists(tmp_path / "out" / "examples")
  assert not [p for p in os.listdir(tmp_path / "out") if p.startswith(".")]


def test_too_many_bad_rows_fail_the_run(tmp_path):
  lines = [",".join(row) for row in GOOD_ROWS] + [b for b, _, _ in BAD_LINES]
  reader = _write_source(tmp_path, lines)
  with pytest.raises(example_gen.ExampleGenError,
                     match=r"6 of 16 interaction rows \(37.5%\) were "
                           r"quarantined, more than "
                           r"example_gen.max_quarantine_fraction=0.25"):
    _run(tmp_path, reader, max_quarantine_fraction=0.25)


def test_synthetic_source_with_user_profiles(tmp_path):
  reader = build_reader("synthetic", num_interactions=3000, seed=1)
  counts, out = _run(tmp_path, reader)
  assert counts["interactions_in"] == 3000
  assert counts["users_written"] > 0
  spec = schema.read_feature_spec(str(out / "examples"))
  assert schema.user_features_of(spec) == sorted(reader.user_feature_names)
  meta = json.loads((out / "catalog" / "metadata.json").read_text())
  assert meta["artifact_type"] == "Catalog"


def test_each_event_carries_the_items_consumed_before_it(tmp_path):
  reader = _write_source(tmp_path, [",".join(row) for row in GOOD_ROWS])
  _, out = _run(tmp_path, reader, split="temporal_user", eval_fraction=0.2)
  spec = schema.read_feature_spec(str(out / "examples"))
  assert isinstance(spec[schema.HISTORY], tf.io.VarLenFeature)
  history = {}
  for split in ("train", "eval"):
    for rec in artifact_readers.read_examples(str(out / "examples"), split):
      ex = tf.io.parse_single_example(rec, spec)
      key = (ex[r.USER_ID].numpy().decode(), int(ex[r.TIMESTAMP].numpy()))
      history[key] = [x.decode() for x in ex[schema.HISTORY].values.numpy()]
  # User 1 in time order: 10, 11, 12, 13, then 10 again (its eval event).
  assert [history[("1", t)] for t in (1000, 2000, 3000, 4000, 5000)] == [
      [], ["10"], ["10", "11"], ["10", "11", "12"],
      ["10", "11", "12", "13"]]
  assert history[("2", 5500)] == ["10", "11", "12", "13"]


def test_history_counts_consumed_items_only_and_is_capped():
  events = [{r.USER_ID: "u", r.ITEM_ID: f"i{n}", r.TIMESTAMP: n,
             r.CLICK: 0 if n == 1 else 1}
            for n in range(schema.MAX_HISTORY_LENGTH + 5)]
  # pylint: disable-next=protected-access
  out = list(example_gen._with_history(events))
  assert out[2][schema.HISTORY] == ["i0"]  # i1 was shown, not consumed
  last = out[-1][schema.HISTORY]
  assert len(last) == schema.MAX_HISTORY_LENGTH
  assert last[-1] == f"i{len(events) - 2}"
  assert schema.HISTORY not in events[0]  # inputs are not mutated


def test_random_split_keeps_held_out_events_out_of_histories():
  events = [{f: 1 for f in r.INTERACTION_FIELDS} | {
      r.USER_ID: "u", r.ITEM_ID: f"i{n}", r.TIMESTAMP: n} for n in range(40)]
  # pylint: disable-next=protected-access
  split = example_gen._DedupeAndSplit("random", eval_fraction=0.3, seed=7)
  packed = [example_gen.EventPacker().pack(e) for e in events]
  out = [x for x in split.process(("u", packed)) if isinstance(x, tuple)]
  held_out = {row[r.ITEM_ID] for s, row in out if s == example_gen.EVAL}
  assert 0 < len(held_out) < 40
  for s, row in out:
    assert not held_out & set(row[schema.HISTORY]), (s, row[r.ITEM_ID])
  # The train events before it, in time order.
  last = out[-1][1]
  trained_before = [f"i{n}" for n in range(39) if f"i{n}" not in held_out]
  assert last[schema.HISTORY] == trained_before[-schema.MAX_HISTORY_LENGTH:]
  # A temporal split keeps every earlier event (train precede eval anyway).
  temporal = example_gen._DedupeAndSplit("temporal_user", 0.3, 7)  # pylint: disable=protected-access
  rows = [row for _, row in temporal.process(("u", packed))]
  assert rows[-1][schema.HISTORY][-1] == "i38"


HOSTILE_LINES = [
    # (line, field, reason prefix); the file is written with a BOM and CRLF.
    (",12,3.0,1000", "user_id", "user_id is required but empty"),
    ("1,11,abc,1000", "rating", "rating could not parse 'abc' as a number"),
    ("1,11,NaN,1000", "rating", "rating 'NaN' is not a finite number"),
    ("2,13,17,1000", "rating", "rating 17 is outside the allowed range"),
    ("2,13,-1,1000", "rating", "rating -1 is outside the allowed range"),
    ("2,10,3.0,-86400", "timestamp",
     "timestamp -86400 (1969-12-31 00:00:00 UTC) is outside"),
    ("2,10,3.0,32503680000", "timestamp", "timestamp 32503680000 (3000-01-01"),
    ("1,10,4.0", None, "expected 4 columns, found 3"),
    ("1,10,4.0,1000,extra", None, "expected 4 columns, found 5"),
    ("u" * 10_000 + ",10,4.0,1000", "user_id",
     "user_id is 10,000 bytes long, over example_gen.limits.max_id_bytes=256"),
    ("2,99,3.0,1000", "item_id", "item_id '99' is not in the item catalog"),
]


def test_hostile_ratings_file_reconciles_and_every_bad_row_says_why(
    tmp_path):
  good = [",".join(row) for row in GOOD_ROWS]
  lines = good + [good[0]] + [line for line, _, _ in HOSTILE_LINES]
  reader = _write_source(tmp_path, [])
  (tmp_path / "ratings.csv").write_bytes(
      b"\xef\xbb\xbf" + "\r\n".join(["user,item,stars,ts"] + lines).encode()
      + b"\r\n")
  rules = parsing.ValidationRules(0.5, 5.0, 0, 1_900_000_000)
  out = tmp_path / "out"
  counts = example_gen.run_example_gen(
      reader, rules, str(out / "examples"), str(out / "catalog"),
      str(out / "quarantine"), "test-run", max_quarantine_fraction=0.6)

  assert counts["interactions_in"] == len(lines) == 22
  assert counts["interactions_quarantined"] == len(HOSTILE_LINES) == 11
  assert counts["duplicates_dropped"] == 1
  assert counts["interactions_train"] + counts["interactions_eval"] == 10
  (duplicate,) = example_gen.read_quarantine(
      str(out / "quarantine"), example_gen.DUPLICATES_FILE_PREFIX)
  source = str(tmp_path / "ratings.csv")
  assert duplicate == {
      "kind": "interaction", "source": source, "row": len(good) + 2,
      "duplicate_of": {"source": source, "row": 2},
      "reason": f"exact duplicate of {source}, row 2 (same user, item, "
                "timestamp and labels); dropped"}
  quarantined = {q["row"]: q for q in example_gen.read_quarantine(
      str(out / "quarantine")) if q["kind"] == "interaction"}
  first_bad_row = len(good) + 3  # header is row 1, then good rows, duplicate
  assert sorted(quarantined) == list(
      range(first_bad_row, first_bad_row + len(HOSTILE_LINES)))
  for i, (_, field, reason) in enumerate(HOSTILE_LINES):
    q = quarantined[first_bad_row + i]
    assert (q["field"], q["reason"][:len(reason)]) == (field, reason), q
  # The good rows survive the BOM and CRLF intact: ids without "\ufeff" or
  # "\r", ratings as written.
  rows = _split(out, "train") + _split(out, "eval")
  assert sorted((u, i, s, ts) for u, i, s, ts, _ in rows) == sorted(
      (u, i, float(s), int(ts)) for u, i, s, ts in GOOD_ROWS)


def test_a_packed_event_round_trips_with_its_origin():
  row = {r.USER_ID: "u7", r.ITEM_ID: "i3", r.TIMESTAMP: 1_600_000_000,
         r.RATING: 3.5, r.CLICK: 1, r.LIKE: -1, r.WATCH_FRACTION: -1.0,
         "_origin": ("b.csv", 42)}
  packer = example_gen.EventPacker(["a.csv", "b.csv"])
  packed = packer.pack(row)
  assert isinstance(packed, bytes) and len(packed) < 40
  assert packer.unpack("u7", packed) == row
  # A source that is not one of the units travels by name.
  elsewhere = dict(row, _origin=("c.csv", 7))
  assert packer.unpack("u7", packer.pack(elsewhere)) == elsewhere


def test_batch_encoded_examples_parse_as_the_per_row_encoder_does():
  # ExampleGen encodes batches through Arrow and tfx_bsl's C++ encoder; the
  # examples must read back exactly as schema.to_example's would: empty
  # lists (a first event's history, an item without tags), non-ASCII text,
  # an integer-valued rating, an item and a user missing from the tables.
  user_features = ("country",)
  spec = schema.raw_feature_spec(user_features)
  items = {"i1": {r.ITEM_ID: "i1", r.TITLE: "Amélie (2001)", r.YEAR: 2001,
                  r.CATEGORIES: ["Comedy", "Romance"], r.TAGS: []}}
  users = {"u1": {r.USER_ID: "u1", "country": "FR"}}
  events = [
      {r.USER_ID: "u1", r.ITEM_ID: "i1", r.TIMESTAMP: 1000, r.RATING: 4,
       r.CLICK: 1, r.LIKE: -1, r.WATCH_FRACTION: -1.0, schema.HISTORY: []},
      {r.USER_ID: "u2", r.ITEM_ID: "i2", r.TIMESTAMP: 2000, r.RATING: 2.5,
       r.CLICK: 0, r.LIKE: 0, r.WATCH_FRACTION: 0.25,
       schema.HISTORY: ["i1", "i0"]},
  ]
  encoder = example_gen._EncodeExamples(user_features)  # pylint: disable=protected-access
  encoder.setup()
  outputs = list(encoder.process(
      [(example_gen.EVAL, events[0]), (example_gen.TRAIN, events[1]),
       (example_gen.TRAIN, events[0])], items, users))
  # Each example comes out tagged with its split.
  assert [o.tag for o in outputs] == [example_gen.EVAL, example_gen.TRAIN,
                                      example_gen.TRAIN]
  batched = [outputs[0].value, outputs[1].value]
  # The same event is the same example whatever batch it was encoded in
  # (up to the encoder's feature order, which protobuf maps do not fix).
  def canonical(record):
    return tf.train.Example.FromString(record).SerializeToString(
        deterministic=True)
  assert canonical(outputs[2].value) == canonical(outputs[0].value)
  # (to_example types a value by its Python type, so the reference gets the
  # rating as a float; the batch is typed by the schema, whatever it gets.)
  per_row = [schema.to_example(example_gen._example_values(  # pylint: disable=protected-access
      dict(e, rating=float(e[r.RATING])), items, users, user_features))
             for e in events]

  def parsed(records):
    out = tf.io.parse_example(tf.constant(records), spec)
    return {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor)
                else v).numpy().tolist() for k, v in out.items()}

  assert parsed(batched) == parsed(per_row)
  assert parsed(batched)[r.TITLE] == ["Amélie (2001)".encode(), b""]
  assert parsed(batched)[schema.HISTORY] == [[b"", b""], [b"i1", b"i0"]]
  assert parsed(batched)[r.RATING] == [4.0, 2.5]
