"""Protocol 2 (temporal split) and pipeline throughput, from one pipeline run.

The config is configs/movielens_latest_small.yaml as shipped (each user's
latest 20% of events are eval), with `data` replaced by the dataset given.
Its ExampleGen, Transform, Trainer and Evaluator steps run in this process
through pipeline/steps/, timed one by one: those times are the throughput
figures. Then, on that split:

- mtrec: its exported model, measured with the evaluator's protocol
  in-process (benchmarks/model_comparison.Evaluation: full-catalog
  Recall@20 / NDCG@20 through `recommend_at` as of the user's first eval
  event, with the user's training items excluded, components/metrics.py;
  RMSE and AUC through `predict_examples` on the eval split labeled by the
  transform graph);
- popularity: training counts, ranked with the same exclusions; its AUC
  scores an eval row by its item's training count (no RMSE: it predicts no
  rating);
- the TFRS tutorial's model (its two towers for retrieval, its rating head
  for RMSE, and the predicted rating as the like score for AUC), trained on
  the same train split and measured by the same functions;
- EASE and item-kNN (ranked with the same exclusions; AUC from their
  scores) and biased MF (RMSE; AUC from its predicted rating), each tuned
  on a validation split of the training events and refitted on all of them
  (benchmarks/suite/tuned_baselines.py).

Every model with randomness (mtrec's trainer.seed, the tutorial's seed,
biased MF's initialisation) is trained once per seed on the one split and
reported as the mean with its spread (common.over_seeds); the pipeline's
Trainer and Evaluator steps run with the first seed.

The Evaluator step's own figures (Beam + TFMA, AUC at 1,000 thresholds) for
mtrec and popularity are kept next to them as a cross-check.

With `end_to_end`, the whole pipeline then runs again as `mtrec run` does
(pipeline.runner.run_pipeline, one subprocess per step, cache off) for the
end-to-end wall time.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from benchmarks import signature_batches
from benchmarks.suite import common
from benchmarks.suite import tuned_baselines

K = 20
CONFIG = os.path.join(common.CONFIGS, "movielens_latest_small.yaml")


def _retrieval(rank_fn, eval_users, k: int = K) -> dict[str, float]:
  """Mean per-user metrics of components.metrics over the evaluator's users."""
  from components import metrics as M  # pylint: disable=g-import-not-at-top
  per_user = [M.per_user_retrieval(rank_fn(user, seen), relevant, [k])
              for user, seen, relevant in eval_users]
  return {m: float(np.mean([p[m] for p in per_user]))
          for m in (f"recall_at_{k}", f"ndcg_at_{k}")}


def _labeled_pairs(evaluation) -> tuple[np.ndarray, np.ndarray]:
  """(user ids, item ids) of the evaluation's labeled eval rows, in order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from contracts import records as r  # pylint: disable=g-import-not-at-top
  spec = {r.USER_ID: tf.io.FixedLenFeature([], tf.string),
          r.ITEM_ID: tf.io.FixedLenFeature([], tf.string)}
  users, items = [], []
  for rec in evaluation._examples:  # pylint: disable=protected-access
    p = tf.io.parse_example(rec, spec)
    users.extend(x.decode() for x in p[r.USER_ID].numpy())
    items.extend(x.decode() for x in p[r.ITEM_ID].numpy())
  return np.array(users, dtype=object), np.array(items, dtype=object)


def run(data: Mapping[str, Any], work_dir: str, epochs: Optional[int] = None,
        end_to_end: bool = False, config_path: str = CONFIG,
        seeds: Sequence[int] = (42,),
        log: Callable[[str], None] = print) -> dict[str, Any]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from benchmarks import model_comparison  # pylint: disable=g-import-not-at-top
  from benchmarks import tutorial_model  # pylint: disable=g-import-not-at-top
  from contracts import artifacts  # pylint: disable=g-import-not-at-top
  from components import artifact_readers
  from contracts import features as F  # pylint: disable=g-import-not-at-top
  from contracts import model_layout  # pylint: disable=g-import-not-at-top
  from components import metrics as M  # pylint: disable=g-import-not-at-top
  from contracts import records as r  # pylint: disable=g-import-not-at-top

  overrides: dict[str, Any] = {"seed": seeds[0]}
  if epochs:
    overrides["epochs"] = epochs
  config = common.load_config(config_path, data=data, trainer=overrides)
  log(f"protocol 2 + throughput: {data['format']} {data.get('options', {})}, "
      f"seeds {list(seeds)}")
  run_dir = os.path.join(work_dir, "protocol2")
  ran = common.run_steps(
      config, run_dir, ("ExampleGen", "Transform", "Trainer", "Evaluator"), log)
  uris, seconds = ran["uris"], ran["seconds"]
  counts = artifacts.read_metadata(uris.examples)["summary"]
  trainer_summary = artifacts.read_metadata(uris.model)["summary"]
  evaluator_summary = artifacts.read_metadata(uris.evaluation)["summary"]
  rows_in = counts["interactions_in"]
  eval_rows = counts["interactions_eval"]
  throughput = {
      "rows_in": rows_in, "train_rows": counts["interactions_train"],
      "eval_rows": eval_rows,
      "step_seconds": {k: round(v, 1) for k, v in seconds.items()},
      "example_gen_transform_rows_per_second": round(
          rows_in / (seconds["ExampleGen"] + seconds["Transform"]), 1),
      "trainer_examples_per_second": trainer_summary["examples_per_second"],
      "trainer_epochs": trainer_summary["epochs"],
      "evaluator_rows_per_second": round(eval_rows / seconds["Evaluator"], 1),
      "in_process_seconds": round(sum(seconds.values()), 1),
  }

  # The evaluator's protocol, in-process, for all three models.
  evaluation = model_comparison.Evaluation({
      "examples": uris.examples, "catalog": uris.catalog,
      "graph": uris.transform_graph, "work_dir": run_dir})
  labels = evaluation._labels  # pylint: disable=protected-access
  rated = labels[F.RATING_WEIGHT] > 0
  liked = labels[F.LIKE_WEIGHT] > 0
  models: dict[str, dict[str, Any]] = {}
  runs = [dict(evaluation(model_layout.saved_model_dir(uris.model), True),
               train_seconds=round(seconds["Trainer"], 1))]
  for seed in seeds[1:]:  # the pipeline's Trainer step trained seeds[0]
    model_uri = os.path.join(run_dir, f"Trainer-seed{seed}", "model")
    train_seconds = common.train_with_seed(config, uris, model_uri, seed)
    runs.append(dict(evaluation(model_layout.saved_model_dir(model_uri),
                                True),
                     train_seconds=round(train_seconds, 1)))
  models["mtrec default"] = common.over_seeds(runs)
  log(f"  mtrec: {models['mtrec default']}")

  train = common.read_split(uris.examples, "train")
  items, _ = artifact_readers.read_catalog(uris.catalog)
  catalog = list(items[r.ITEM_ID])
  consumed = train["click"] > 0
  counts_by_item = {}
  for i in train["item"][consumed]:
    counts_by_item[i] = counts_by_item.get(i, 0) + 1
  by_popularity = sorted(catalog, key=lambda i: (-counts_by_item.get(i, 0), i))

  def rank_popularity(_, seen):
    seen = set(seen)
    return [i for i in by_popularity[:K + len(seen)] if i not in seen][:K]

  eval_u, eval_i = _labeled_pairs(evaluation)
  pop_score = np.array([counts_by_item.get(i, 0) for i in eval_i], np.float64)
  models["popularity"] = dict(
      _retrieval(rank_popularity, evaluation.users),
      auc=M.auc(pop_score[liked], labels[F.LIKE][liked]))
  log(f"  popularity: {models['popularity']}")

  rated_train = train["rating"] >= 0
  user_vocab = sorted(set(train["user"]) | set(eval_u))
  user_row = {u: n for n, u in enumerate(user_vocab)}
  item_col = {i: n for n, i in enumerate(catalog)}

  def ranker(score_row: Callable[[int], np.ndarray]):
    """A rank function of `_retrieval` from a user row's catalog scores:
    the top K with the user's training items excluded."""
    def rank(user, seen):
      return [catalog[j] for j in M.top_k_excluding(
          score_row(user_row[user])[None],
          [[item_col[i] for i in seen if i in item_col]], K)[0]]
    return rank

  runs = []
  for seed in seeds:
    start = time.time()
    tm = tutorial_model.train(
        train["user"][rated_train], train["item"][rated_train],
        train["rating"][rated_train], user_vocab, catalog,
        epochs=epochs or tutorial_model.EPOCHS, seed=seed)
    train_seconds = time.time() - start
    q = tutorial_model.user_embeddings(tm, user_vocab)
    c = tutorial_model.movie_embeddings(tm, catalog)
    pred = tutorial_model.predict_ratings(tm, eval_u, eval_i)
    runs.append(dict(
        _retrieval(ranker(lambda row, q=q, c=c: q[row] @ c.T),
                   evaluation.users),
        rmse=M.rmse(pred[rated], labels[F.RATING][rated]),
        auc=M.auc(pred[liked], labels[F.LIKE][liked]),
        train_seconds=round(train_seconds, 1)))
    tf.keras.backend.clear_session()
  models["TFRS tutorial"] = common.over_seeds(runs)
  log(f"  tutorial: {models['TFRS tutorial']}")

  # EASE, item-kNN and biased MF, tuned on a validation split of the
  # training events (benchmarks/suite/tuned_baselines.py) and refitted on
  # the whole training split.
  full_train = tuned_baselines.Events.from_split(train, user_row, item_col)
  tune_train, validation = (
      tuned_baselines.Events.from_split(split, user_row, item_col)
      for split in tuned_baselines.validation_splits(config, run_dir, log))
  tuned = tuned_baselines.tune(
      tune_train, validation, full_train, len(user_vocab), len(catalog),
      tuned_baselines.recall_objective(K), log)
  pair_u = np.array([user_row[u] for u in eval_u], np.int64)
  pair_i = np.array([item_col.get(i, -1) for i in eval_i], np.int64)
  for name, t in tuned.items():
    if "scores" in t:
      scores = t["scores"](np.arange(len(user_vocab)))
      in_catalog = liked & (pair_i >= 0)
      models[name] = dict(
          _retrieval(ranker(scores.__getitem__), evaluation.users),
          auc=M.auc(scores[pair_u, pair_i][in_catalog],
                    labels[F.LIKE][in_catalog]))
      del scores
    else:  # the chosen setting, refitted once per seed
      runs = []
      for seed in seeds:
        pred = tuned_baselines.fit_rater(
            name, t["params"], full_train, len(user_vocab), len(catalog),
            seed=seed).predict(pair_u, np.maximum(pair_i, 0))
        runs.append(dict(rmse=M.rmse(pred[rated], labels[F.RATING][rated]),
                         auc=M.auc(pred[liked], labels[F.LIKE][liked])))
      models[name] = common.over_seeds(runs)
    models[name].update(params=t["params"], tune_seconds=t["tune_seconds"])
    log(f"  {name}: {models[name]}")

  cand = evaluator_summary["candidate"]
  pop = evaluator_summary["baselines"].get("popularity", {})
  evaluator_figures = {
      "mtrec default": {m: cand.get(m) for m in (
          f"recall_at_{K}", f"ndcg_at_{K}", "rmse", "auc")},
      "popularity": {m: pop.get(m) for m in (f"recall_at_{K}",
                                             f"ndcg_at_{K}")},
      "verdict": evaluator_summary["verdict"]}

  out = {"data": dict(data), "config": os.path.relpath(config_path,
                                                         common.ROOT),
         "split": config.example_gen.split, "seeds": list(seeds),
         "eval_users": len(evaluation.users), "models": models,
         "ranked_as_of": signature_batches.RANKED_AS_OF,
         "checks": checks(models),
         "baseline_tuning": tuned_baselines.summary(tuned),
         "evaluator_step": evaluator_figures, "throughput": throughput}
  if end_to_end:
    out["throughput"]["end_to_end"] = end_to_end_run(config, work_dir, log)
  return out


def checks(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """Issue 16's bar: mtrec's Recall@20 and NDCG@20 at least 1.10x the best
  baseline's, and its RMSE below tuned biased MF's."""
  mt = models["mtrec default"]
  out: dict[str, Any] = {}
  for m in (f"recall_at_{K}", f"ndcg_at_{K}"):
    best = max((n for n, v in models.items()
                if n != "mtrec default" and v.get(m) is not None),
               key=lambda n: models[n][m])
    out[f"best_baseline_{m}"] = best
    out[f"mtrec_over_best_baseline_{m}"] = mt[m] / models[best][m]
    # A win counts only where it exceeds the seeds' spread.
    out[f"mtrec_beats_best_baseline_{m}_beyond_spread"] = (
        common.beyond_spread(mt, models[best], m))
  if "biased MF" in models:
    out["mtrec_over_biased_mf_rmse"] = mt["rmse"] / models["biased MF"]["rmse"]
    out["mtrec_beats_biased_mf_rmse_beyond_spread"] = common.beyond_spread(
        mt, models["biased MF"], "rmse", lower_is_better=True)
  return out


def end_to_end_run(config, work_dir: str,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
  """The whole DAG as `mtrec run --no-cache` runs it: wall and step times."""
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  shutil.rmtree(os.path.join(work_dir, "e2e"), ignore_errors=True)
  start = time.time()
  result = runner.run_pipeline(
      config, output_dir=os.path.join(work_dir, "e2e", "runs"),
      serving_root=os.path.join(work_dir, "e2e", "serving"),
      log=lambda m: None, use_cache=False)
  wall = time.time() - start
  steps = {s["name"]: s["seconds"] for s in result.steps}
  log(f"  end to end: {wall:.0f}s {steps}")
  return {"wall_seconds": round(wall, 1), "status": result.status,
          "step_seconds": steps}
