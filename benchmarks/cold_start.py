"""Item cold start: id-only vs. metadata vs. LM-text models vs. popularity.

Protocol (ml-latest-small by default, the config's temporal_user split):

1. ExampleGen as in the pipeline (each user's latest 20% of events are eval).
2. Cold items: the latest-appearing `--cold-share` of the items that have
   interactions, by the time of their first interaction anywhere, plus the
   newest part of each series found in the catalog by title (find_series:
   "Toy Story", "Toy Story 2", "Toy Story 3" -> "Toy Story 3"). Every
   interaction with a cold item is removed from the train split, so cold
   items have no training interactions (no id embedding, no vocabulary
   entry, no popularity); they stay in the catalog, as new items would,
   and are indexed through their content exactly as `mtrec catalog
   refresh` indexes an added item (the same export code path).
3. Transform (on the filtered train split), the TextEmbedder (catalog text:
   title, genres, top tags), then three trainer variants with the config's
   trainer section: `id_only` (candidate tower = item id embedding),
   `metadata` (the default tower: id + genres, title tokens, tags, year; no
   LM), `lm` (metadata + the frozen LM embedding through the low-rank
   adapter, gated with the id embedding, with id dropout; user side too).
4. Each exported SavedModel is measured through its own signatures
   (`embed_user_at` for the users, as of their first eval event, the
   request time of the Evaluator's `recommend_at`; `embed_item` for every
   catalog item), with the user's (filtered) training items excluded:
   - cold: rank the cold items only; relevant = the user's interactions with
     cold items (train or eval time: none was trained on);
   - warm: rank the warm items only; relevant = the user's eval positives
     with warm items not seen in training (as the pipeline's evaluator);
   - cold_in_all / warm_in_all: rank the whole catalog, relevant as above
     (cold items then compete with the warm ones).
   Recall@K and NDCG@K as in components/metrics.py, averaged over users with
   at least one relevant item. Popularity = training interaction counts
   (cold items all 0, ties broken by a fixed random order: chance level).
   - franchise: for each user who rated two or more earlier parts of a
     series 4 or higher (train split), the held-out newest part's rank in
     the whole catalog: franchise_top_50 is the share of those (part, user)
     pairs ranked in the top 50.
5. The serving freshness policy (trainer/freshness.py) at a few bonuses,
   on the lm model's scores: what exposure of new items costs the warm
   ranking (the model itself is measured without it, above).

  .venv/bin/python benchmarks/cold_start.py \\
      [--config configs/movielens_latest_small.yaml] [--cold-share 0.1] \\
      [--work-dir /tmp/mtrec_cold_start] [--output cold_start.json]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import os
import re
import shutil
import sys
import time
from typing import Any, Mapping, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from contracts import artifacts  # noqa: E402
from components import artifact_readers  # noqa: E402
from components import metrics  # noqa: E402
from contracts import model_layout  # noqa: E402
from contracts import records as r  # noqa: E402
from pipeline import config as config_lib  # noqa: E402
from pipeline import steps  # noqa: E402
from pipeline.steps import example_gen as example_gen_step  # noqa: E402
from pipeline.steps import text_embedder as text_embedder_step  # noqa: E402
from pipeline.steps import transform as transform_step  # noqa: E402
from benchmarks import signature_batches  # noqa: E402
from trainer.config import TrainerConfig  # noqa: E402

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "movielens_latest_small.yaml")


Event = tuple[str, str, int, int, float]  # user, item, timestamp, click, rating


def _events(examples_uri: str, split: str) -> list[Event]:
  """(user, item, timestamp, click, rating; -1 without one) of one split."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = {r.USER_ID: tf.io.FixedLenFeature([], tf.string),
          r.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
          r.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
          r.CLICK: tf.io.FixedLenFeature([], tf.int64, default_value=1),
          r.RATING: tf.io.FixedLenFeature([], tf.float32,
                                          default_value=-1.0)}
  files = artifacts.split_files(examples_uri, split)
  out = []
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192)
  for b in ds.map(lambda x: tf.io.parse_example(x, spec)):
    for u, i, t, c, rating in zip(*(b[k].numpy() for k in (
        r.USER_ID, r.ITEM_ID, r.TIMESTAMP, r.CLICK, r.RATING))):
      out.append((u.decode(), i.decode(), int(t), int(c), float(rating)))
  return out


def choose_cold_items(events: Sequence[Event], share: float) -> set[str]:
  """The latest-appearing `share` of the items, by first interaction."""
  first: dict[str, int] = {}
  for _, item, t, _, _ in events:
    first[item] = min(t, first.get(item, t))
  ordered = sorted(first, key=lambda i: (first[i], i))
  return set(ordered[len(ordered) - int(round(share * len(ordered))):])


# Series by title: "Toy Story (1995)", "Toy Story 2 (1999)", "Toy Story 3
# (2010)"; MovieLens writes leading articles last ("Matrix, The") and
# alternate titles in parentheses.
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")
_PARENTHESIS_SUFFIX = re.compile(r"\s*\([^)]*\)\s*$")
_ARTICLE_LAST = re.compile(r"^(.*), (The|A|An)$")
_NUMBERED = re.compile(
    r"^(.+?)\s+(\d{1,2}|II|III|IV|V|VI)\b\s*(?::.*)?$")
_ROMAN = {"II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}


def series_key(title: str) -> tuple[str, int]:
  """(stem, number in the series): ("toy story", 3) for "Toy Story 3
  (2010)"; a title without a number is number 1 of its own stem."""
  text = _PARENTHESIS_SUFFIX.sub("", _YEAR_SUFFIX.sub("", title)).strip()
  match = _NUMBERED.match(text)
  stem, number = (match.group(1), match.group(2)) if match else (text, "1")
  article = _ARTICLE_LAST.match(stem)
  if article:
    stem = f"{article.group(2)} {article.group(1)}"
  return (stem.lower().strip(" :-"),
          _ROMAN[number] if number in _ROMAN else int(number))


def find_series(item_ids: Sequence[str],
                titles: Sequence[str]) -> list[list[str]]:
  """Item ids of each series in the catalog, in series order: titles that
  share a stem, one of them unnumbered (part 1), numbers all distinct."""
  by_stem: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
  for item, title in zip(item_ids, titles):
    stem, number = series_key(title)
    by_stem[stem].append((number, item))
  out = []
  for stem in sorted(by_stem):
    parts = sorted(by_stem[stem])
    numbers = [n for n, _ in parts]
    if len(parts) >= 2 and numbers[0] == 1 and len(set(numbers)) == len(
        numbers):
      out.append([item for _, item in parts])
  return out


def write_filtered_examples(source_uri: str, target_uri: str,
                            cold: set[str]) -> dict[str, int]:
  """The examples artifact without any train event of a cold item."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  counts = collections.Counter()
  with artifacts.write_artifact(target_uri, "Examples", "ColdStartFilter",
                                "cold-start", {"cold_items": len(cold)},
                                {"examples": source_uri}) as w:
    for name in os.listdir(source_uri):
      if name == artifacts.METADATA_FILE or name.startswith("Split-"):
        continue
      src = os.path.join(source_uri, name)
      (shutil.copytree if os.path.isdir(src) else shutil.copy)(
          src, os.path.join(w.uri, name))
    for split in ("train", "eval"):
      out_dir = artifacts.split_dir(w.uri, split)
      os.makedirs(out_dir)
      path = os.path.join(out_dir, "examples-00000-of-00001.gz")
      with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for rec in artifact_readers.read_examples(source_uri, split):
          ex = tf.train.Example.FromString(rec)
          item = ex.features.feature[r.ITEM_ID].bytes_list.value[0].decode()
          if split == "train" and item in cold:
            counts["train_dropped"] += 1
            continue
          counts[split] += 1
          writer.write(rec)
    w.summary = dict(counts)
  return dict(counts)


def prepare(config: config_lib.PipelineConfig, work_dir: str,
            share: float, log=print) -> dict[str, Any]:
  """ExampleGen, the cold filter, Transform and the TextEmbedder, timed."""
  u = steps.output_uris(os.path.join(work_dir, "run"))
  # What Transform and the Trainer read: ExampleGen's examples less the cold
  # items' training events.
  filtered = dataclasses.replace(u, examples=os.path.join(
      work_dir, "run", "Filtered", "examples"))
  times = {}
  start = time.time()
  if not os.path.exists(u.examples):
    log(example_gen_step.run(config.data, config.example_gen,
                             config.beam_args, "cold-start", u,
                             datetime.datetime.now(datetime.timezone.utc)))
  times["ExampleGen"] = time.time() - start
  train = _events(u.examples, "train")
  evals = _events(u.examples, "eval")
  cold = choose_cold_items(train + evals, share)
  # The franchise check: the newest part of each series is new too.
  items, _ = artifact_readers.read_catalog(u.catalog)
  interacted = {e[1] for e in train + evals}
  series = [s for s in find_series(items[r.ITEM_ID], items[r.TITLE])
            if s[-1] in interacted]
  cold |= {s[-1] for s in series}
  if not os.path.exists(filtered.examples):
    log(f"cold items: {len(cold)}; filtered: " + json.dumps(
        write_filtered_examples(u.examples, filtered.examples, cold)))
  start = time.time()
  if not os.path.exists(filtered.transform_graph):
    log(transform_step.run(config.transform, config.beam_args, "cold-start",
                           filtered))
  times["Transform"] = time.time() - start
  start = time.time()
  if not os.path.exists(u.item_features):
    # The text-hash cache: the config's, else <work_dir>/.cache/...
    cache_dir = config.model_copy(update={
        "pipeline_root": os.path.abspath(work_dir)}).text_embedding_cache_dir()
    log(text_embedder_step.run(config.text_embedder, cache_dir,
                               config.beam_args, "cold-start", u))
  times["TextEmbedder"] = time.time() - start
  return {"uris": filtered, "cold": cold, "train": train, "eval": evals,
          "series": series, "times": times}


# What the serving policies' rows report.
POLICY_METRICS = ("cold_in_all_recall_at_20", "warm_in_all_recall_at_20",
                  "cold_at_request_recall_at_20",
                  "warm_at_request_recall_at_20",
                  "warm_at_request_ndcg_at_20", "franchise_top_50",
                  "franchise_median_rank")


class Judge:
  """Cold / warm Recall@K and NDCG@K of a SavedModel's embeddings."""

  def __init__(self, prepared: Mapping[str, Any], ks: Sequence[int]):
    items, _ = artifact_readers.read_catalog(prepared["uris"].catalog)
    self.ids = list(items[r.ITEM_ID])
    self.row = {i: n for n, i in enumerate(self.ids)}
    self.ks = list(ks)
    cold = prepared["cold"]
    self.cold_mask = np.array([i in cold for i in self.ids])
    seen = collections.defaultdict(set)
    # The catalog as of each user's request (their first eval event, as
    # the Evaluator's recommend_at asks): a cold item enters the catalog
    # with its first interaction anywhere, so it is not yet there for a
    # user asked earlier. Warm items are the trained catalog.
    added: dict[str, int] = {}
    request: dict[str, int] = {}
    for _, item, t, _, _ in prepared["train"] + prepared["eval"]:
      added[item] = min(t, added.get(item, t))
    for user, _, t, _, _ in prepared["eval"]:
      request[user] = min(t, request.get(user, t))
    self.added_at = np.array([added.get(i, 0) if c else 0
                              for i, c in zip(self.ids, self.cold_mask)],
                             np.int64)
    self.request_at = request
    cold_pos = collections.defaultdict(set)
    warm_pos = collections.defaultdict(set)
    counts = np.zeros(len(self.ids))
    for user, item, _, click, _ in prepared["train"]:
      if item not in self.row or click <= 0:
        continue
      if item in cold:
        cold_pos[user].add(self.row[item])
      else:
        seen[user].add(self.row[item])
        counts[self.row[item]] += 1
    for user, item, _, click, _ in prepared["eval"]:
      if item not in self.row or click <= 0:
        continue
      if item in cold:
        cold_pos[user].add(self.row[item])
      elif self.row[item] not in seen[user]:
        warm_pos[user].add(self.row[item])
    self.seen, self.cold_pos, self.warm_pos = seen, cold_pos, warm_pos
    self.fans = franchise_fans(prepared["series"], prepared["train"])
    self.users = sorted(set(cold_pos) | set(warm_pos) |
                        {u for _, u in self.fans})
    # When each user is embedded (the query's hour and weekday): at their
    # request, else at the data's last event; never the benchmark's clock.
    last = max(t for _, _, t, _, _ in prepared["train"] + prepared["eval"])
    self.embedded_at = np.array([request.get(u, last) for u in self.users],
                                np.int64)
    rng = np.random.default_rng(0)
    self.popularity = counts + rng.random(len(counts)) * 1e-3

  def _measure(self, scores: np.ndarray) -> dict[str, float]:
    """scores: [len(self.users), items]."""
    out = collections.defaultdict(list)
    k_max = max(self.ks)
    for n, user in enumerate(self.users):
      s = scores[n].astype(np.float64).copy()
      s[list(self.seen[user])] = -np.inf
      for segment, relevant, mask in (
          ("cold", self.cold_pos[user], self.cold_mask),
          ("warm", self.warm_pos[user], ~self.cold_mask)):
        if not relevant:
          continue
        for scope, candidates in (
            ("", mask), ("_in_all", None),
            ("_at_request", ~self.not_yet_added(user))):
          masked = s if candidates is None else np.where(candidates, s,
                                                         -np.inf)
          top = np.argpartition(-masked, k_max)[:k_max]
          top = top[np.argsort(-masked[top])].tolist()
          for k in self.ks:
            out[f"{segment}{scope}_recall_at_{k}"].append(
                metrics.recall_at_k(top, relevant, k))
            out[f"{segment}{scope}_ndcg_at_{k}"].append(
                metrics.ndcg_at_k(top, relevant, k))
    summary = {k: float(np.mean(v)) for k, v in sorted(out.items())}
    summary["cold_users"] = sum(1 for u in self.users if self.cold_pos[u])
    summary["warm_users"] = sum(1 for u in self.users if self.warm_pos[u])
    summary.update(self._franchise(scores))
    return summary

  def not_yet_added(self, user: str) -> np.ndarray:
    """[items]: the cold items not yet in the catalog at the user's
    request (none for a user without eval events)."""
    at = self.request_at.get(user)
    if at is None:
      return np.zeros(len(self.ids), bool)
    return self.cold_mask & (self.added_at > at)

  def _franchise(self, scores: np.ndarray) -> dict[str, float]:
    """Where each series' newest part ranks, in the whole catalog, for the
    users who rated two or more earlier parts 4 or higher."""
    index = {u: n for n, u in enumerate(self.users)}
    ranks = []
    for item, user in self.fans:
      s = scores[index[user]].astype(np.float64).copy()
      s[list(self.seen[user])] = -np.inf
      ranks.append(int((s > s[self.row[item]]).sum()) + 1)
    if not ranks:
      return {"franchise_pairs": 0}
    return {"franchise_pairs": len(ranks),
            "franchise_series": len({i for i, _ in self.fans}),
            "franchise_top_50": float(np.mean(np.array(ranks) <= 50)),
            "franchise_median_rank": float(np.median(ranks))}

  def popularity_metrics(self) -> dict[str, float]:
    return self._measure(np.tile(self.popularity, (len(self.users), 1)))

  def freshness_metrics(self, scores: np.ndarray,
                        bonuses: Sequence[float]) -> dict[str, Any]:
    """The serving freshness policy (trainer/freshness.py) on top of a
    model's scores: every cold item is new (outside the item vocabulary,
    so dated at export) and gets the full bonus at age 0."""
    out = {}
    for bonus in bonuses:
      m = self._measure(scores + np.where(self.cold_mask, bonus, 0.0)[None])
      out[f"{bonus:g}"] = {k: m[k] for k in POLICY_METRICS if k in m}
    return out

  def new_item_match_metrics(
      self, scores: np.ndarray, liked: Mapping[str, Sequence[str]],
      item_text: Mapping[str, Any],
      settings: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The serving new-item match (trainer/new_item_match.py) on a model's
    scores, with each of `settings` ({threshold, bonus, neighbors,
    keep_top}): the cold items are the new ones; `liked` as the export
    reads it."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from trainer import export  # pylint: disable=g-import-not-at-top
    from trainer import new_item_match  # pylint: disable=g-import-not-at-top
    vectors, has_text = export.align_item_text(self.ids, item_text)
    # As the Evaluator asks: the seen items are excluded before the bonus,
    # its spread is taken over the whole catalog.
    spread = new_item_match.spread(scores.astype(np.float32))
    unseen = scores.astype(np.float32)
    for n, user in enumerate(self.users):
      unseen[n, list(self.seen[user])] = -np.inf
    out = {}
    for setting in settings:
      matched = new_item_match.match_catalog(
          self.users, liked, self.ids, vectors, has_text, self.cold_mask,
          setting["threshold"], int(setting["neighbors"]))
      values, splits = new_item_match.ragged(matched)
      boosted = new_item_match.add_bonus(
          unseen, tf.RaggedTensor.from_row_splits(values, splits),
          setting["bonus"], spread, setting.get("keep_top")).numpy()
      m = self._measure(boosted)
      out[policy_setting_name(setting)] = dict(
          {k: m[k] for k in POLICY_METRICS if k in m},
          matched_pairs=int(len(values)), **setting)
    return out

  def model_metrics(self, model_dir: str,
                    freshness_bonuses: Sequence[float] = (),
                    match: Optional[Mapping[str, Any]] = None
                    ) -> dict[str, Any]:
    """match: {"liked", "item_text", "settings"} for the new-item match
    rows (new_item_match_metrics)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    model = tf.saved_model.load(model_dir)
    users = signature_batches.embed_all(
        model.signatures["embed_user_at"], "user_id", self.users, 512,
        timestamp=self.embedded_at)
    items = signature_batches.embed_all(
        model.signatures["embed_item"], "item_id", self.ids)
    scores = users @ items.T
    out: dict[str, Any] = self._measure(scores)
    if freshness_bonuses:
      out["freshness"] = self.freshness_metrics(scores, freshness_bonuses)
    if match:
      out["new_item_match"] = self.new_item_match_metrics(
          scores, match["liked"], match["item_text"], match["settings"])
    return out


def franchise_fans(series: Sequence[Sequence[str]],
                   train: Sequence[Event]) -> list[tuple[str, str]]:
  """(newest part, user) for each user who rated two or more of the earlier
  parts 4 or higher in the train split."""
  liked = collections.defaultdict(set)
  for user, item, _, _, rating in train:
    if rating >= 4:
      liked[user].add(item)
  pairs = []
  for parts in series:
    earlier = set(parts[:-1])
    pairs += [(parts[-1], user) for user in sorted(liked)
              if len(liked[user] & earlier) >= 2]
  return pairs


def variants(base: TrainerConfig,
             adapter: Mapping[str, Any] = ()) -> dict[str, tuple[Any, bool]]:
  """name -> (trainer config, with LM item text)."""
  lm = base
  if adapter:
    lm = base.model_copy(update={"text_adapter": base.text_adapter.model_copy(
        update=dict(adapter))})
  return {
      "id_only": (base.model_copy(update={"item_content_features": False}),
                  False),
      "metadata": (base, False),
      "lm": (lm, True),
  }


FRESHNESS_BONUSES = (0.5, 1.0, 2.0)
# The new-item match (trainer/new_item_match.py, off by default) as
# (threshold, bonus in the user's score sds, keep_top, neighbors): the
# config's suggested setting (0.755/3/5/2) and either side of its
# threshold, that setting without its cap, and the earlier suggestion
# (0.71/2/5 over 3 neighbours), for comparison.
NEW_ITEM_MATCH = ((0.755, 3.0, None, 2), (0.75, 3.0, 5, 2),
                  (0.755, 3.0, 5, 2), (0.76, 3.0, 5, 2), (0.71, 2.0, 5, 3))


def policy_setting_name(setting: Mapping[str, Any]) -> str:
  """A new-item match row's name: threshold/bonus/keep_top/neighbors."""
  return "{:g}/{:g}/{}/{}".format(setting["threshold"], setting["bonus"],
                                  setting.get("keep_top") or "none",
                                  setting["neighbors"])


def run(config_path: str, work_dir: str, share: float,
        only: Sequence[str] = (),
        adapter: Mapping[str, Any] = (),
        seed: Any = None) -> dict[str, Any]:
  from trainer import run as trainer_run  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(config_path)
  config = config.model_copy(update={"text_embedder": config.text_embedder.
                                     model_copy(update={"enabled": True})})
  if seed is not None:
    config = config.model_copy(update={"trainer": config.trainer.model_copy(
        update={"seed": seed})})
  os.makedirs(work_dir, exist_ok=True)
  prepared = prepare(config, work_dir, share)
  u = prepared["uris"]
  judge = Judge(prepared, [20])
  results = {"popularity": judge.popularity_metrics()}
  match = None
  if not only or "lm" in only:
    import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
    from trainer import new_item_match  # pylint: disable=g-import-not-at-top
    ids, vectors, has_text = artifact_readers.read_item_features(
        u.item_features)
    match = {"liked": new_item_match.liked_items(
                 u.transformed_examples,
                 tft.TFTransformOutput(u.transform_graph)),
             "item_text": {"item_ids": ids, "vectors": vectors,
                           "has_text": has_text},
             "settings": [{"threshold": t, "bonus": b, "neighbors": n,
                           "keep_top": keep}
                          for t, b, keep, n in NEW_ITEM_MATCH]}
  seconds = {}
  for name, (trainer_config, text) in variants(config.trainer,
                                               adapter).items():
    if only and name not in only:
      continue
    model_uri = os.path.join(work_dir, "models", name)
    shutil.rmtree(model_uri, ignore_errors=True)
    start = time.time()
    trainer_run.run_trainer(
        u.transform_graph, u.transformed_examples, u.examples, u.catalog,
        model_uri, "cold-start", trainer_config, config.model_name,
        config.serving.top_k, log=lambda m: None,
        item_features_uri=u.item_features if text else None)
    seconds[name] = time.time() - start
    results[name] = judge.model_metrics(
        model_layout.saved_model_dir(model_uri),
        FRESHNESS_BONUSES if text else (), match if text else None)
    print(f"{name}: trained and exported in {seconds[name]:.0f}s: " +
          json.dumps({k: round(v, 4) for k, v in results[name].items()
                      if "_20" in k or "franchise" in k}), flush=True)
  embedder = artifacts.read_metadata(u.item_features)
  return {"config": config_path, "cold_share": share,
          "seed": config.trainer.seed,
          "lm_text_adapter": variants(config.trainer, adapter)["lm"][0]
          .text_adapter.model_dump(),
          "cold_items": len(prepared["cold"]),
          "series": len(prepared["series"]),
          "catalog_items": len(judge.ids), "results": results,
          "train_seconds": seconds, "prepare_seconds": prepared["times"],
          "text_embedder": embedder["summary"]}


def table(report: Mapping[str, Any]) -> str:
  cols = ["cold_recall_at_20", "cold_ndcg_at_20", "warm_recall_at_20",
          "warm_ndcg_at_20", "cold_in_all_recall_at_20",
          "warm_in_all_recall_at_20", "warm_in_all_ndcg_at_20",
          "franchise_top_50", "franchise_median_rank"]
  lines = ["| model | " + " | ".join(cols) + " |",
           "|---|" + "---|" * len(cols)]
  for name, m in report["results"].items():
    lines.append(f"| {name} | " + " | ".join(
        f"{m.get(c, float('nan')):.4f}" for c in cols) + " |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=DEFAULT_CONFIG)
  parser.add_argument("--cold-share", type=float, default=0.1)
  parser.add_argument("--work-dir", default="/tmp/mtrec_cold_start")
  parser.add_argument("--output", default=None, help="Write the JSON here.")
  parser.add_argument("--only", nargs="*", default=[],
                      help="Variants to train (default: all).")
  parser.add_argument("--lm-adapter", default="{}",
                      help='JSON overrides of trainer.text_adapter for the lm '
                      'variant, e.g. \'{"id_dropout": 0.5}\'.')
  parser.add_argument("--seed", type=int, default=None,
                      help="trainer.seed (default: the config's).")
  args = parser.parse_args(argv)
  report = run(args.config, args.work_dir, args.cold_share, args.only,
               json.loads(args.lm_adapter), args.seed)
  print(table(report))
  print(json.dumps({k: v for k, v in report.items() if k != "results"},
                   indent=1, default=str))
  if args.output:
    with open(args.output, "w") as f:
      json.dump(report, f, indent=1, default=str)
  return 0


if __name__ == "__main__":
  sys.exit(main())
