"""Tests of the data readers, on tiny files written per test and real MovieLens."""

from __future__ import annotations

import collections
import gzip
import os
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.readers import READERS
from components.readers import build_reader
from components.readers import synthetic
from components.readers import tabular
from components.readers.movielens import MovieLens100KReader
from components.readers.movielens import MovieLens1MReader
from components.readers.movielens import MovieLensLatestReader
from components.readers.synthetic import SyntheticReader
from components.readers.tabular import TableSpec
from components.readers.tabular import TabularReader
from conftest import SHARED_DATA

ML_LATEST_SMALL = os.path.join(SHARED_DATA, "ml-latest-small")


def _write(path, content, encoding="utf-8"):
  data = content if isinstance(content, bytes) else content.encode(encoding)
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


def _interactions(reader):
  return [r for u in reader.interaction_units()
          for r in reader.read_interactions(u)]


def _items(reader):
  return [r for u in reader.item_units() for r in reader.read_items(u)]


def _users(reader):
  return [r for u in reader.user_units() for r in reader.read_users(u)]


# --- MovieLens latest. ---


@pytest.fixture
def ml_latest(tmp_path):
  _write(tmp_path / "ratings.csv",
         "userId,movieId,rating,timestamp\r\n"
         "1,10,4.0,964982703\r\n"
         "\r\n"
         "1,11,3.5\r\n"
         "2,10,5.0,964982224\r\n")
  _write(tmp_path / "movies.csv",
         "movieId,title,genres\n"
         '10,"American President, The (1995)",Comedy|Drama|Romance\n'
         "11,Cosmos,(no genres listed)\n"
         "12,Heat (1995) ,Action|Crime|Thriller\n"
         "13,Death Note: Desu nôto (2006–2007),(no genres listed)\n")
  tags = ["2,10,Funny,1", "3,10,funny ,2", "4,10,politics,3",
          "5,10,Romance,4", "6,10,romance,5", "7,10,aaron sorkin,6",
          "8,12,  ,7"]
  tags += [f"9,12,tag{i:02d},{i}" for i in range(12)]
  _write(tmp_path / "tags.csv",
         "userId,movieId,tag,timestamp\n" + "\n".join(tags) + "\n")
  return tmp_path


def test_movielens_latest_interactions(ml_latest):
  reader = MovieLensLatestReader(str(ml_latest))
  rows = _interactions(reader)
  assert [r.row for r in rows] == [2, 4, 5]
  assert rows[0].fields == {"user_id": "1", "item_id": "10", "rating": "4.0",
                            "timestamp": "964982703"}
  assert rows[0].error is None
  assert rows[1].error == "expected 4 columns, found 3"
  assert rows[1].fields == {}
  assert rows[1].location.endswith("ratings.csv:4")
  assert reader.user_units() == [] and reader.user_feature_names == ()


def test_movielens_latest_items(ml_latest):
  items = {r.fields["item_id"]: r for r in _items(
      MovieLensLatestReader(str(ml_latest)))}
  president = items["10"].fields
  assert president["title"] == "American President, The (1995)"
  assert president["year"] == "1995"
  assert president["categories"] == ["Comedy", "Drama", "Romance"]
  # Counts: funny 2, romance 2, aaron sorkin 1, politics 1.
  assert president["tags"] == ["funny", "romance", "aaron sorkin", "politics"]
  assert items["11"].fields["year"] is None
  assert items["11"].fields["categories"] == []
  assert items["11"].fields["tags"] == []
  assert items["12"].fields["year"] == "1995"  # Trailing space after "(1995)".
  assert items["12"].fields["tags"] == [f"tag{i:02d}" for i in range(10)]
  assert items["13"].fields["year"] is None  # A range is not one year.
  assert items["12"].row == 4


def test_movielens_latest_without_tags_file(ml_latest):
  os.remove(ml_latest / "tags.csv")
  items = _items(MovieLensLatestReader(str(ml_latest)))
  assert len(items) == 4
  assert all(r.fields["tags"] == [] for r in items)


def test_movielens_latest_rejects_other_header(tmp_path):
  _write(tmp_path / "ratings.csv", "user,item,rating,ts\n1,2,3,4\n")
  with pytest.raises(ValueError, match="ratings.csv"):
    _interactions(MovieLensLatestReader(str(tmp_path)))


# --- MovieLens 100K and 1M. ---


def _flags(*on):
  return "|".join("1" if i in on else "0" for i in range(19))


@pytest.fixture
def ml_100k(tmp_path):
  _write(tmp_path / "u.data",
         "196\t242\t3\t881250949\n186\t302\t3\n\n22\t377\t1\t878887116\n")
  _write(tmp_path / "u.item",
         f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}\n"
         "2|\xc1 k\xf6ldum klaka (Cold Fever) (1994)|01-Jan-1994||"
         f"http://y|{_flags(8)}\n"
         f"3|Untitled|14-Mar-1997||http://z|{_flags(0)}\n"
         f"4|No Date|||http://w|{_flags()}\n"
         "5|Too Short|01-Jan-1995\n", encoding="latin-1")
  _write(tmp_path / "u.user",
         "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M\n")
  return tmp_path


def test_movielens_100k(ml_100k):
  reader = MovieLens100KReader(str(ml_100k))
  assert reader.user_feature_names == ("age", "gender", "occupation")
  rows = _interactions(reader)
  assert [r.row for r in rows] == [1, 2, 4]
  assert rows[0].fields == {"user_id": "196", "item_id": "242",
                            "rating": "3", "timestamp": "881250949"}
  assert rows[1].error == "expected 4 columns, found 3"

  items = _items(reader)
  assert items[0].fields == {"item_id": "1", "title": "Toy Story (1995)",
                             "year": "1995", "categories": [
                                 "Animation", "Children's", "Comedy"]}
  assert items[1].fields["title"] == "Á köldum klaka (Cold Fever) (1994)"
  assert items[1].fields["categories"] == ["Drama"]
  assert items[2].fields["year"] == "1997"  # From the release date.
  assert items[2].fields["categories"] == ["unknown"]
  assert items[3].fields["year"] is None and items[3].fields["categories"] == []
  assert (items[4].row, items[4].error) == (5, "expected 24 columns, found 3")

  users = _users(reader)
  assert users[1].fields == {"user_id": "2", "age": "53", "gender": "F",
                             "occupation": "other"}
  assert (users[2].row, users[2].error) == (3, "expected 5 columns, found 3")


def test_movielens_100k_genre_names_from_u_genre(ml_100k):
  _write(ml_100k / "u.genre", "".join(
      f"G{i}|{i}\n" for i in range(19)) + "\n")
  items = _items(MovieLens100KReader(str(ml_100k)))
  assert items[0].fields["categories"] == ["G3", "G4", "G5"]


def test_movielens_1m(tmp_path):
  _write(tmp_path / "ratings.dat",
         "1::1193::5::978300760\n1::661::3\n2::1357::5::978298709\n")
  _write(tmp_path / "movies.dat",
         "1::Toy Story (1995)::Animation|Children's|Comedy\n"
         "3::Cit\xe9 des enfants perdus, La (1995)::Adventure|Sci-Fi\n",
         encoding="latin-1")
  _write(tmp_path / "users.dat",
         "1::F::1::10::48067\n2::M::56::16::70072\n",
         encoding="latin-1")
  reader = MovieLens1MReader(str(tmp_path))
  assert reader.user_feature_names == ("gender", "age", "occupation")
  rows = _interactions(reader)
  assert rows[0].fields["item_id"] == "1193"
  assert (rows[1].row, rows[1].error) == (2, "expected 4 columns, found 3")
  assert rows[2].fields["timestamp"] == "978298709"
  items = _items(reader)
  assert items[1].fields == {
      "item_id": "3", "title": "Cité des enfants perdus, La (1995)",
      "year": "1995", "categories": ["Adventure", "Sci-Fi"]}
  assert _users(reader)[1].fields == {"user_id": "2", "gender": "M",
                                      "age": "56", "occupation": "16"}


# --- Tabular. ---


def test_tabular_csv(tmp_path):
  path = _write(tmp_path / "events.csv",
                "\ufeffuid;sku;ts;stars;extra\n"
                "u1;i1;100;4;x\n"
                "u2;i2;200;;y\n"
                "\n"
                "u3;i3;300\n"
                'u4;"i;4";400;5;z\n'
                'u5;"i\n5";500;3;w\n'
                "u6;i6;600;2;v\n")
  reader = TabularReader(TableSpec(
      path=path, delimiter=";",
      columns={"user_id": "uid", "item_id": "sku", "timestamp": "ts",
               "rating": "stars"}))
  assert reader.interaction_units() == [path]
  rows = _interactions(reader)
  # A record spanning lines is numbered by its first line.
  assert [r.row for r in rows] == [2, 3, 5, 6, 7, 9]
  assert rows[0].fields == {"user_id": "u1", "item_id": "i1",
                            "timestamp": "100", "rating": "4"}
  assert rows[1].fields["rating"] is None
  assert rows[2].error == "expected 5 columns, found 3"
  assert rows[3].fields["item_id"] == "i;4"
  assert rows[4].fields["item_id"] == "i\n5"


def test_tabular_csv_missing_column_names_file_and_column(tmp_path):
  path = _write(tmp_path / "events.csv", "uid,sku\nu1,i1\n")
  reader = TabularReader({"path": path, "columns": {
      "user_id": "uid", "item_id": "sku", "timestamp": "when"}})
  with pytest.raises(ValueError, match=r"events\.csv.*'when'"):
    _interactions(reader)


def test_tabular_csv_undecodable_row(tmp_path):
  path = _write(tmp_path / "events.csv",
                b"u,i\nu1,i1\nu\xff2,i2\nu3,i3\n")
  rows = _interactions(TabularReader(
      {"path": path, "columns": {"user_id": "u", "item_id": "i"}}))
  assert [(r.row, r.error is None) for r in rows] == [
      (2, True), (3, False), (4, True)]
  assert "utf-8" in rows[1].error and rows[1].fields == {}


def test_tabular_glob_and_directory_units(tmp_path):
  data = tmp_path / "events"
  data.mkdir()
  for name in ("part-1.csv", "part-0.csv"):
    _write(data / name, f"u,i\n{name},x\n")
  _write(data / "_SUCCESS", "")
  _write(data / "notes.txt", "")
  columns = {"user_id": "u", "item_id": "i"}
  by_glob = TabularReader({"path": str(data / "part-*.csv"),
                           "columns": columns})
  expected = [str(data / "part-0.csv"), str(data / "part-1.csv")]
  assert by_glob.interaction_units() == expected
  assert [r.fields["user_id"] for r in _interactions(by_glob)] == [
      "part-0.csv", "part-1.csv"]
  os.remove(data / "notes.txt")
  by_dir = TabularReader({"path": str(data), "columns": columns})
  assert by_dir.interaction_units() == expected
  with pytest.raises(FileNotFoundError):
    TabularReader({"path": str(tmp_path / "nope-*.csv"),
                   "columns": columns}).interaction_units()


def test_tabular_reads_gzipped_files(tmp_path):
  with gzip.open(tmp_path / "events.csv.gz", "wt", encoding="utf-8") as f:
    f.write("u,i\nu1,i1\n\nu2,i2\n")
  reader = TabularReader({"path": str(tmp_path / "events.csv.gz"),
                          "columns": {"user_id": "u", "item_id": "i"}})
  rows = _interactions(reader)
  assert [(r.row, r.fields["user_id"]) for r in rows] == [(2, "u1"), (4, "u2")]


def test_tabular_uninferable_format(tmp_path):
  path = _write(tmp_path / "events.txt", "u,i\n")
  reader = TabularReader({"path": path,
                          "columns": {"user_id": "u", "item_id": "i"}})
  with pytest.raises(ValueError, match="format"):
    reader.interaction_units()
  explicit = TabularReader({"path": path, "format": "csv",
                            "columns": {"user_id": "u", "item_id": "i"}})
  assert explicit.interaction_units() == [path]


def test_tabular_parquet_items_and_jsonl_users(tmp_path, monkeypatch):
  monkeypatch.setattr(tabular, "_BATCH_ROWS", 2)  # Rows span record batches.
  items_path = str(tmp_path / "items.parquet")
  pq.write_table(pa.table({
      "id": [1, 2, 3],
      "name": ["A", "B, the", None],
      "genres": [["x", "y"], [], None],
      "labels": ["p|q", "", "r"],
  }), items_path)
  users_path = _write(tmp_path / "users.jsonl",
                      '{"id": "u1", "age": 31, "geo": "DE"}\n'
                      "\n"
                      '{"id": "u2", "age": \n'
                      "[1, 2]\n"
                      '{"id": "u3", "geo": "FR"}\n')
  events_path = _write(tmp_path / "events.jsonl",
                       '{"u": "u1", "i": 1, "t": 5, "c": 1}\n')
  reader = TabularReader(
      interactions={"path": events_path,
                    "columns": {"user_id": "u", "item_id": "i",
                                "timestamp": "t", "click": "c"}},
      items=TableSpec(path=items_path, columns={
          "item_id": "id", "title": "name", "categories": "genres",
          "tags": "labels"}),
      users={"path": users_path,
             "columns": {"user_id": "id", "age": "age", "country": "geo"}})
  assert reader.user_feature_names == ("age", "country")

  assert _interactions(reader)[0].fields == {
      "user_id": "u1", "item_id": 1, "timestamp": 5, "click": 1}

  items = _items(reader)
  assert [r.row for r in items] == [1, 2, 3]
  assert items[0].fields == {"item_id": 1, "title": "A",
                             "categories": ["x", "y"], "tags": ["p", "q"]}
  assert items[1].fields["categories"] == [] and items[1].fields["tags"] == []
  assert items[2].fields["title"] is None
  assert items[2].fields["categories"] is None

  users = _users(reader)
  assert [r.row for r in users] == [1, 3, 4, 5]
  assert users[0].fields == {"user_id": "u1", "age": 31, "country": "DE"}
  assert users[1].error.startswith("invalid JSON")
  assert users[2].error == "expected a JSON object, found list"
  assert users[3].fields == {"user_id": "u3", "age": None, "country": "FR"}


def test_tabular_parquet_missing_column(tmp_path):
  path = str(tmp_path / "events.parquet")
  pq.write_table(pa.table({"u": ["a"], "i": ["b"]}), path)
  reader = TabularReader({"path": path, "columns": {
      "user_id": "u", "item_id": "item"}})
  with pytest.raises(ValueError, match=r"events\.parquet.*'item'"):
    _interactions(reader)


def test_tabular_config_errors():
  with pytest.raises(ValueError, match="item_id"):
    TabularReader({"path": "x.csv", "columns": {"user_id": "u"}})
  with pytest.raises(ValueError, match="unknown fields"):
    TabularReader({"path": "x.csv", "columns": {
        "user_id": "u", "item_id": "i", "colour": "c"}})
  with pytest.raises(ValueError, match="format"):
    TableSpec(path="x.csv", format="xlsx")
  with pytest.raises(ValueError, match="interactions"):
    TabularReader({"path": "x.csv", "colums": {}})


# --- Registry and pickling. ---


def test_build_reader(tmp_path):
  assert set(READERS) == {"movielens_latest", "movielens_100k",
                          "movielens_1m", "tabular", "synthetic"}
  reader = build_reader("movielens_1m", path=str(tmp_path / "absent"))
  assert isinstance(reader, MovieLens1MReader)  # Construction opens nothing.
  with pytest.raises(ValueError, match="movielens_latest.*synthetic"):
    build_reader("movielens_25m", path="x")
  # Checked against the same model as data.options at config load.
  with pytest.raises(ValueError) as e:
    build_reader("synthetic", path="x")
  assert str(e.value) == (
      "bad options for data format 'synthetic': num_interactions: Field "
      "required; path: Extra inputs are not permitted")


def test_readers_pickle(ml_latest):
  readers = [
      MovieLensLatestReader(str(ml_latest)),
      MovieLens100KReader("/nowhere"),
      TabularReader({"path": "x.csv", "columns": {
          "user_id": "u", "item_id": "i"}}),
      SyntheticReader(1000, seed=3),
  ]
  for reader in readers:
    clone = pickle.loads(pickle.dumps(reader))
    assert type(clone) is type(reader)
  latest = pickle.loads(pickle.dumps(readers[0]))
  assert _items(latest) == _items(readers[0])


# --- Synthetic. ---


def _synthetic_rows(reader):
  return [(r.source, r.row, tuple(sorted(r.fields.items())))
          for r in _interactions(reader)]


def test_synthetic_is_deterministic():
  a = _synthetic_rows(SyntheticReader(3000, seed=7, rows_per_shard=1000))
  b = _synthetic_rows(pickle.loads(pickle.dumps(
      SyntheticReader(3000, seed=7, rows_per_shard=1000))))
  c = _synthetic_rows(SyntheticReader(3000, seed=8, rows_per_shard=1000))
  assert a == b
  assert a != c
  assert _items(SyntheticReader(10, seed=7)) == _items(
      SyntheticReader(10, seed=7))


def test_synthetic_shards_sum_exactly_and_are_independent():
  common = dict(seed=1, num_users=300, num_items=400, rows_per_shard=1000)
  reader = SyntheticReader(2501, **common)
  units = reader.interaction_units()
  assert units == ["synthetic:shard-00000", "synthetic:shard-00001",
                   "synthetic:shard-00002"]
  sizes = [len(list(reader.read_interactions(u))) for u in units]
  assert sizes == [1000, 1000, 501]
  # A shard depends on (seed, shard index), not on how many shards follow.
  longer = SyntheticReader(9000, **common)
  assert (list(longer.read_interactions(units[1]))
          == list(reader.read_interactions(units[1])))
  assert SyntheticReader(0).interaction_units() == []
  with pytest.raises(ValueError):
    list(reader.read_interactions("synthetic:shard-00003"))


@pytest.fixture(scope="module")
def synthetic_data():
  reader = SyntheticReader(60_000, seed=0, rows_per_shard=20_000)
  return (reader, [r.fields for r in _interactions(reader)],
          {r.fields["item_id"]: r.fields for r in _items(reader)},
          {r.fields["user_id"]: r.fields for r in _users(reader)})


def test_synthetic_rows_are_well_formed(synthetic_data):
  reader, rows, items, users = synthetic_data
  assert reader.num_users == 1500 and reader.num_items == 1000
  assert len(items) == 1000 and len(users) == 1500
  start, end = 1704067200, 1704067200 + 365 * 86400  # 2024-01-01 UTC.
  for row in rows:
    assert row["user_id"] in users and row["item_id"] in items
    assert start <= row["timestamp"] < end
    assert row["click"] in (0, 1)
    if row["click"]:
      assert row["like"] in (0, 1)
      assert row["rating"] in (1.0, 2.0, 3.0, 4.0, 5.0)
      assert 0.0 <= row["watch_fraction"] <= 1.0
    else:
      assert row["like"] is row["rating"] is row["watch_fraction"] is None
  assert 0.1 < sum(r["click"] for r in rows) / len(rows) < 0.6
  assert set(next(iter(users.values()))) == {
      "user_id", *reader.user_feature_names}
  for item in items.values():
    assert 1 <= len(item["categories"]) <= 3
    main_topic = item["tags"][0]
    assert any(word in item["title"]
               for word in synthetic._TOPIC_WORDS[main_topic])


def test_synthetic_cold_start_items_appear_only_late(synthetic_data):
  reader, rows, items, _ = synthetic_data
  cold = reader.cold_start_items()
  assert len(cold) == 100
  late = 1704067200 + 0.8 * 365 * 86400
  assert all(late <= release for release in cold.values())
  first_seen = {}
  for row in rows:
    item = row["item_id"]
    first_seen[item] = min(first_seen.get(item, row["timestamp"]),
                           row["timestamp"])
  assert all(first_seen[i] >= cold[i] for i in cold if i in first_seen)
  assert sum(i in first_seen for i in cold) > 50  # They do get shown.
  assert all(items[i]["year"] == 2024 for i in cold)


def test_synthetic_popularity_is_skewed(synthetic_data):
  reader, rows, _, _ = synthetic_data
  clicks = collections.Counter(r["item_id"] for r in rows if r["click"])
  top = sum(n for _, n in clicks.most_common(reader.num_items // 10))
  assert top / sum(clicks.values()) > 0.3


def test_synthetic_attributes_predict_taste(synthetic_data):
  _, rows, items, users = synthetic_data
  # Topics the generator ties to each age bucket get a larger share of that
  # bucket's clicks than of everyone's.
  shares = collections.defaultdict(collections.Counter)
  for row in rows:
    if row["click"]:
      topic = items[row["item_id"]]["tags"][0]
      shares[users[row["user_id"]]["age_bucket"]][topic] += 1
      shares["all"][topic] += 1
  for bucket, (_, topics) in synthetic._AGE_BUCKETS.items():
    for topic in topics:
      bucket_share = shares[bucket][topic] / sum(shares[bucket].values())
      overall = shares["all"][topic] / sum(shares["all"].values())
      assert bucket_share > overall, (bucket, topic)


def test_synthetic_click_rate_rises_with_affinity():
  reader = SyntheticReader(20_000, seed=2)
  world = reader._world
  rows = _interactions(reader)
  user = [int(r.fields["user_id"][1:]) for r in rows]
  item = [int(r.fields["item_id"][1:]) for r in rows]
  affinity = [world.pref_early[u, world.item_topic[i]] + world.pref_late[
      u, world.item_topic[i]] for u, i in zip(user, item)]
  ranked = sorted(zip(affinity, (r.fields["click"] for r in rows)))
  low, high = ranked[:len(ranked) // 4], ranked[-len(ranked) // 4:]
  assert (sum(c for _, c in high) / len(high)
          > 1.5 * sum(c for _, c in low) / len(low))


# --- Real data. ---


@pytest.mark.skipif(not os.path.isdir(ML_LATEST_SMALL),
                    reason="shared MovieLens latest-small is not present")
def test_movielens_latest_small_real_data():
  reader = MovieLensLatestReader(ML_LATEST_SMALL)
  rows = _interactions(reader)
  assert len(rows) == 100_836
  assert not [r for r in rows if r.error]
  assert rows[0].row == 2 and rows[-1].row == 100_837
  items = _items(reader)
  assert len(items) == 9742
  assert not [r for r in items if r.error]
  toy_story = next(r for r in items if r.fields["item_id"] == "1")
  assert toy_story.row == 2
  assert toy_story.fields["title"] == "Toy Story (1995)"
  assert toy_story.fields["year"] == "1995"
  assert toy_story.fields["categories"] == [
      "Adventure", "Animation", "Children", "Comedy", "Fantasy"]
  assert toy_story.fields["tags"][0] == "pixar"
  assert all(len(r.fields["tags"]) <= 10 for r in items)
  assert sum(r.fields["categories"] == [] for r in items) == 34
