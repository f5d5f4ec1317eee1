"""The benchmark suite runs end to end at a small size, so it cannot rot.

The CI-sized run checks the machinery (every section runs, the JSON and the
markdown hold every table), not the claims: those need the full-size run
that docs/benchmarks.md records. Protocol 1 must accept every MovieLens
format the readers support, so the small run reads a generated MovieLens
100K-format directory and a faster test pushes the other formats through
the protocol's split.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import requires_text_extra

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_movielens(path, fmt, num_users=60, num_items=80, per_user=30,
                    seed=0):
  """A tiny MovieLens directory in one of the readers' formats.

  Ratings follow a low-rank taste model so the models have something to
  learn; every user rates `per_user` distinct items at increasing times.
  """
  rng = np.random.default_rng(seed)
  u_vec = rng.normal(size=(num_users, 4))
  i_vec = rng.normal(size=(num_items, 4))
  pop = 1.0 / np.arange(1, num_items + 1) ** 0.8
  rows = []
  for u in range(num_users):
    p = pop * np.exp(u_vec[u] @ i_vec.T * 0.5)
    items = rng.choice(num_items, size=per_user, replace=False, p=p / p.sum())
    for n, i in enumerate(items):
      rating = int(np.clip(np.round(3 + u_vec[u] @ i_vec[i] * 0.7), 1, 5))
      rows.append((u + 1, i + 1, rating, 900_000_000 + u * 1000 + n))
  genres = ["Action", "Comedy", "Drama", "Sci-Fi"]
  os.makedirs(path, exist_ok=True)

  def write(name, lines, encoding="utf-8"):
    with open(os.path.join(path, name), "w", encoding=encoding) as f:
      f.write("".join(line + "\n" for line in lines))

  if fmt == "movielens_latest":
    write("ratings.csv", ["userId,movieId,rating,timestamp"] +
          [f"{u},{i},{r}.0,{t}" for u, i, r, t in rows])
    write("movies.csv", ["movieId,title,genres"] +
          [f"{i},Movie {i} ({1980 + i % 30}),{genres[i % 4]}"
           for i in range(1, num_items + 1)])
  elif fmt == "movielens_100k":
    write("u.data", [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows])
    flags = lambda i: "|".join("1" if g == i % 19 else "0" for g in range(19))
    write("u.item", [f"{i}|Movie {i} ({1980 + i % 30})|01-Jan-{1980 + i % 30}"
                     f"||http://x|{flags(i)}"
                     for i in range(1, num_items + 1)], "latin-1")
    write("u.user", [f"{u}|{20 + u % 40}|{'MF'[u % 2]}|other|0000{u % 9}"
                     for u in range(1, num_users + 1)])
  elif fmt == "movielens_1m":
    write("ratings.dat", [f"{u}::{i}::{r}::{t}" for u, i, r, t in rows])
    write("movies.dat", [f"{i}::Movie {i} ({1980 + i % 30})::{genres[i % 4]}"
                         for i in range(1, num_items + 1)], "latin-1")
    write("users.dat", [f"{u}::{'MF'[u % 2]}::25::{u % 20}::0000{u % 9}"
                        for u in range(1, num_users + 1)], "latin-1")
  else:
    raise ValueError(fmt)
  return str(path)


@pytest.mark.slow
def test_suite_small_run_writes_json_and_markdown(tmp_path):
  data = write_movielens(tmp_path / "ml-100k", "movielens_100k")
  out = tmp_path / "bench"
  markdown = tmp_path / "benchmarks.md"
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.suite", "--size", "small",
       "--data-format", "movielens_100k", "--data-path", data,
       "--output-dir", str(out), "--markdown", str(markdown),
       "--work-dir", str(tmp_path / "work"),
       "--scale-sizes", "1500"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

  with open(out / "suite.json") as f:
    results = json.load(f)
  assert results["machine"]["cpus"] >= 1
  p1 = results["protocol1"]
  assert p1["data"]["format"] == "movielens_100k"
  assert p1["rows"]["train"] + p1["rows"]["eval"] == 60 * 30
  # The ablations are a full-size extra (each costs more fits).
  mtrec = ("mtrec default",)
  assert p1["config"] == "configs/movielens_latest_small.yaml"
  assert not any(name.startswith("mtrec,") for name in p1["models"])
  for name in mtrec + ("TFRS tutorial joint", "popularity", "EASE",
                       "item-kNN"):
    assert 0.0 <= p1["models"][name]["top100_accuracy"] <= 1.0, name
  for name in mtrec + ("TFRS tutorial joint", "biased MF", "global mean"):
    assert 0.0 < p1["models"][name]["rmse"] < 5.0, name
  # 80 items: a top-100 list holds the whole catalog, every model hits.
  assert p1["models"]["popularity"]["top100_accuracy"] == 1.0
  assert set(p1["checks"]) == {"mtrec_beats_tutorial_top100",
                               "mtrec_beats_tutorial_rmse",
                               "mtrec_beats_popularity_top100",
                               "best_baseline_top100",
                               "mtrec_over_best_baseline_top100",
                               "mtrec_over_biased_mf_rmse",
                               "mtrec_beats_best_baseline_top100_beyond_spread",
                               "mtrec_beats_biased_mf_rmse_beyond_spread"}
  # A small run trains every model with randomness with two seeds; its
  # row is their mean, with the spread.
  for p, trained in ((p1, ("mtrec default", "TFRS tutorial joint",
                           "biased MF")),
                     (results["protocol2"], ("mtrec default", "TFRS tutorial",
                                             "biased MF"))):
    assert p["seeds"] == [1, 2]
    for name in trained:
      m = p["models"][name]
      assert len(m["per_seed"]) == 2, name
      assert m["rmse"] == pytest.approx(
          np.mean([run["rmse"] for run in m["per_seed"]]))
      assert m["sd"]["rmse"] == pytest.approx(
          abs(m["per_seed"][0]["rmse"] - m["per_seed"][1]["rmse"]) / 2)
    assert "per_seed" not in p["models"]["popularity"]  # deterministic
  # The tuned baselines: each chose a setting of its grid on validation.
  for p in (p1, results["protocol2"]):
    tuning = p["baseline_tuning"]
    assert set(tuning) == {"EASE", "item-kNN", "biased MF"}
    for name, t in tuning.items():
      assert p["models"][name]["params"] == t["params"]
      assert t["params"] in [trial["params"] for trial in t["trials"]]

  p2 = results["protocol2"]
  assert p2["split"] == "temporal_user"
  for name in ("mtrec default", "TFRS tutorial", "popularity", "EASE",
               "item-kNN"):
    m = p2["models"][name]
    assert 0.0 <= m["recall_at_20"] <= 1.0 and 0.0 <= m["ndcg_at_20"] <= 1.0
    assert 0.0 <= m["auc"] <= 1.0
  assert 0.0 < p2["models"]["biased MF"]["rmse"] < 5.0
  assert p2["checks"]["mtrec_over_biased_mf_rmse"] == pytest.approx(
      p2["models"]["mtrec default"]["rmse"] / p2["models"]["biased MF"]["rmse"])
  t = p2["throughput"]
  assert t["example_gen_transform_rows_per_second"] > 0
  assert t["trainer_examples_per_second"] > 0
  assert t["evaluator_rows_per_second"] > 0

  (row,) = results["scale"]["rows"]
  assert row["interactions"] == 1500 and row["train_rows"] > 0
  assert row["peak_tree_rss_mib"] >= row["peak_process_rss_mib"] > 0

  text = markdown.read_text()
  for heading in ("## Protocol 1", "## Protocol 2", "## Throughput",
                  "## Scale", "## Reproduce"):
    assert heading in text
  assert "| mtrec default |" in text
  ease = p1["models"]["EASE"]["params"]["l2"]
  assert f"| EASE (l2 {ease:g}) |" in text
  assert "Baselines tuned on a validation split" in text
  mf = p1["models"]["biased MF"]
  assert f"{mf['rmse']:,.4f} ± {mf['sd']['rmse']:.4f}" in text
  assert "trained with seeds 1, 2 on the one split" in text
  assert results["machine"]["cpu_model"] in text if (
      "cpu_model" in results["machine"]) else True


@requires_text_extra  # the shipped config enables the TextEmbedder
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["movielens_latest", "movielens_1m"])
def test_protocol1_split_accepts_every_movielens_format(tmp_path, fmt):
  from benchmarks.suite import common
  from benchmarks.suite import protocol1
  path = write_movielens(tmp_path / fmt, fmt, num_users=20, per_user=10)
  config = protocol1.load_config({"format": fmt, "options": {"path": path}})
  # The shipped config, with the tutorial's split.
  assert config.example_gen.split == "random"
  assert config.example_gen.seed == 42
  assert config.example_gen.eval_fraction == 0.2
  shipped = common.load_config(protocol1.CONFIG)
  assert config.trainer == shipped.trainer
  assert config.example_gen.rating_max == shipped.example_gen.rating_max
  ran = common.run_steps(config, str(tmp_path / "run"), ("ExampleGen",))
  train = common.read_split(ran["uris"].examples, "train")
  test = common.read_split(ran["uris"].examples, "eval")
  assert len(train["user"]) + len(test["user"]) == 200
  assert 0 < len(test["user"]) < len(train["user"])
  assert set(np.unique(np.concatenate([train["rating"], test["rating"]]))
             ) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_over_seeds_is_mean_and_population_spread():
  from benchmarks.suite import common
  row = common.over_seeds([
      {"recall": 0.1, "rmse": 0.9, "params": {"l2": 5}},
      {"recall": 0.2, "rmse": 0.8, "params": {"l2": 5}},
      {"recall": 0.3, "rmse": 1.0, "params": {"l2": 5}}])
  assert row["recall"] == pytest.approx(0.2)
  assert row["rmse"] == pytest.approx(0.9)
  # Population sd: sqrt(((-0.1)^2 + 0 + 0.1^2) / 3).
  assert row["sd"]["recall"] == pytest.approx(np.sqrt(0.02 / 3))
  assert row["params"] == {"l2": 5}
  assert [r["recall"] for r in row["per_seed"]] == [0.1, 0.2, 0.3]


def test_a_win_counts_only_beyond_both_spreads():
  from benchmarks.suite import common
  a = {"recall": 0.15, "rmse": 0.85, "sd": {"recall": 0.01, "rmse": 0.01}}
  b = {"recall": 0.13, "rmse": 0.87}  # deterministic: no spread
  assert common.beyond_spread(a, b, "recall")  # 0.02 > 0.01
  assert not common.beyond_spread(b, a, "recall")
  assert common.beyond_spread(a, b, "rmse", lower_is_better=True)
  b_noisy = dict(b, sd={"recall": 0.015, "rmse": 0.02})
  assert not common.beyond_spread(a, b_noisy, "recall")  # 0.02 < 0.025
  assert not common.beyond_spread(a, b_noisy, "rmse", lower_is_better=True)


def test_the_report_says_when_mtrec_was_ranked():
  """Results record the time mtrec's rankings were asked as of; older
  results, ranked at the machine's clock, say so on the page."""
  from benchmarks import signature_batches
  from benchmarks.suite import report
  timed = report._ranked_as_of(
      {"ranked_as_of": signature_batches.RANKED_AS_OF})
  assert "as of their first eval event" in timed
  assert "machine's clock" in report._ranked_as_of({})


def test_first_times_is_each_users_earliest_event_or_the_default():
  from benchmarks import signature_batches
  got = signature_batches.first_times(
      ["u1", "u2", "u3"], ["u2", "u1", "u2", "u1"], [50, 30, 20, 40], 99)
  assert got.tolist() == [30, 20, 99] and got.dtype == np.int64
