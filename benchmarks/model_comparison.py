"""Single-task specialists against the multi-task variants, on one dataset.

Runs ExampleGen and Transform once (the temporal_user split of the config:
each user's latest 20% of events are eval), then trains and exports each
variant with the pipeline's own trainer and measures the exported SavedModel
as the evaluator does, only in-process (no TFMA, no Beam) so the table takes
minutes:

- Recall@20, NDCG@20: full catalog, ranked by `recommend_at` as of the
  user's first eval event (as the Evaluator asks; `recommend_excluding`
  reads the machine's clock) with the user's training items excluded;
  relevant = the user's eval positives
  in the catalog not seen in training; averaged over users with one
  (components.metrics.per_user_retrieval, as components.retrieval_eval).
- RMSE: `predict_examples` on the eval split, rows with a rating.
- AUC: `predict_examples` on the eval split, rows with a like label.
Labels and weights come from the transform graph
(components.ranking_eval.write_labeled_eval_examples), as for TFMA.

Variants: retrieval only, rating only, like only; then the multi-task model
with shared-bottom / MMoE / PLE and static / uncertainty weights. `default`
is the config's trainer section as it is. A specialist is the config's model
with one task and none of the others. Metrics a variant has no head for are
left blank. Each variant is trained with each seed; the table shows means
(and the spread across seeds when there are several).

  .venv/bin/python benchmarks/model_comparison.py \\
      --config configs/movielens_latest_small.yaml --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trainer  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

from components import example_gen  # noqa: E402
from components import ranking_eval  # noqa: E402
from components import retrieval_eval  # noqa: E402
from contracts import records as r  # noqa: E402
from components import transform  # noqa: E402
from contracts import features as F  # noqa: E402
from components.readers import build_reader  # noqa: E402
from pipeline import config as config_lib  # noqa: E402
from pipeline.steps import example_gen as example_gen_step  # noqa: E402
from trainer import fusion_search  # noqa: E402
from trainer import run as trainer_run  # noqa: E402
from trainer.config import RankingConfig  # noqa: E402
from trainer.config import TrainerConfig  # noqa: E402
from components import artifact_readers  # noqa: E402
from contracts import artifacts  # noqa: E402
from benchmarks import signature_batches  # noqa: E402
from contracts import model_layout  # noqa: E402

K = 20
RETRIEVAL_METRICS = ("recall_at_20", "ndcg_at_20", "liked_recall_at_20",
                     "graded_ndcg_at_20")
# The same metrics of the model's retrieval order (recommend_weighted with
# every ranking weight 0); the unprefixed ones are the fused order served.
RETRIEVAL_ORDER = "retrieval_order_"
METRICS = RETRIEVAL_METRICS + ("rmse", "auc")
ALL_METRICS = METRICS + tuple(RETRIEVAL_ORDER + m for m in RETRIEVAL_METRICS)
_NOT_METRICS = ("train_seconds", "epochs", "examples_per_second")
# The metric each specialist is judged on.
SPECIALIST_METRIC = {"retrieval only": ("recall_at_20", "ndcg_at_20"),
                     "rating only": ("rmse",), "like only": ("auc",),
                     "click only": ("click_auc",),
                     "watch_fraction only": ("watch_fraction_rmse",)}
LOWER_IS_BETTER = ("rmse", "watch_fraction_rmse")


def prepare(config: config_lib.PipelineConfig, work_dir: str) -> dict:
  """ExampleGen + Transform once; reused when work_dir already has them."""
  uris = {n: os.path.join(work_dir, n) for n in (
      "examples", "catalog", "quarantine", "graph", "transformed")}
  if not os.path.exists(os.path.join(uris["transformed"], "metadata.json")):
    for uri in uris.values():
      shutil.rmtree(uri, ignore_errors=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    eg = config.example_gen
    example_gen.run_example_gen(
        build_reader(config.data.format, **config.data.options),
        example_gen_step.validation_rules(eg, started), uris["examples"],
        uris["catalog"], uris["quarantine"], "benchmark", split=eg.split,
        eval_fraction=eg.eval_fraction, seed=eg.seed,
        max_quarantine_fraction=eg.max_quarantine_fraction,
        beam_args=config.beam_args)
    transform.run_transform(
        uris["examples"], uris["graph"], uris["transformed"], "benchmark",
        like_threshold=config.transform.like_threshold,
        max_title_tokens=config.transform.max_title_tokens_vocab,
        beam_args=config.beam_args)
  return uris


def _positives(examples_uri: str, split: str
               ) -> tuple[dict[str, set], dict[str, int]]:
  """Each user's consumed items in a split, and the time of their first
  consumed event there (the time the Evaluator ranks them at)."""
  spec = {r.USER_ID: tf.io.FixedLenFeature([], tf.string),
          r.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
          r.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
          r.CLICK: tf.io.FixedLenFeature([], tf.int64, default_value=1)}
  out = collections.defaultdict(set)
  first: dict[str, int] = {}
  files = artifacts.split_files(examples_uri, split)
  for b in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(
      8192).map(lambda x: tf.io.parse_example(x, spec)):
    keep = b[r.CLICK].numpy() > 0
    for u, i, t in zip(b[r.USER_ID].numpy()[keep], b[r.ITEM_ID].numpy()[keep],
                       b[r.TIMESTAMP].numpy()[keep]):
      user = u.decode()
      out[user].add(i.decode())
      first[user] = min(int(t), first.get(user, int(t)))
  return out, first


class Evaluation:
  """The evaluator's protocol, in-process, for any exported model."""

  def __init__(self, uris: Mapping[str, str],
               tasks: Sequence[ranking_eval.EvalTask] = (
                   ranking_eval.LEGACY_TASKS)):
    """tasks: every ranking task a variant may have (their labels are
    written into the labeled eval examples)."""
    items, _ = artifact_readers.read_catalog(uris["catalog"])
    catalog = set(items[r.ITEM_ID])
    seen, _ = _positives(uris["examples"], "train")
    # Each user is ranked as of their first eval event, as the Evaluator.
    evals, first_eval_at = _positives(uris["examples"], "eval")
    self._labeled = os.path.join(
        uris["work_dir"], "eval_labeled-" + "-".join(
            t.name for t in tasks) + ".tfrecord")
    if not os.path.exists(self._labeled):
      users, item_counts = ranking_eval.train_counts(uris["examples"])
      ranking_eval.write_labeled_eval_examples(
          uris["examples"], tft.TFTransformOutput(uris["graph"]),
          self._labeled, users, item_counts, [5, 20, 100], list(tasks))
    spec = {k: tf.io.FixedLenFeature([], tf.float32) for k in (
        F.RATING, F.RATING_WEIGHT, F.LIKE, F.LIKE_WEIGHT)}
    ids = {k: tf.io.FixedLenFeature([], tf.string)
           for k in (r.USER_ID, r.ITEM_ID)}
    self._examples, labels = [], collections.defaultdict(list)
    liked = set()
    for rec in tf.data.TFRecordDataset(self._labeled).batch(4096):
      self._examples.append(rec)
      parsed = tf.io.parse_example(rec, dict(spec, **ids))
      for k in spec:
        labels[k].append(parsed[k].numpy())
      for u, i, like, weight in zip(
          parsed[r.USER_ID].numpy(), parsed[r.ITEM_ID].numpy(),
          parsed[F.LIKE].numpy(), parsed[F.LIKE_WEIGHT].numpy()):
        if like > 0.5 and weight > 0:
          liked.add((u.decode(), i.decode()))
    self._labels = {k: np.concatenate(v) for k, v in labels.items()}
    # (user, training items, relevant eval items); and the graded
    # relevance of those items, as the Evaluator's: liked 2, consumed 1.
    self.users, self.gains = [], {}
    for user in sorted(evals):
      relevant = (evals[user] & catalog) - seen.get(user, set())
      if relevant:
        self.users.append((user, sorted(seen.get(user, ())), relevant))
        self.gains[user] = {i: 2.0 if (user, i) in liked else 1.0
                            for i in relevant}
    self.request_at = {u: first_eval_at[u] for u, _, _ in self.users}

  @property
  def labeled_path(self) -> str:
    """The eval split's examples labeled by the transform graph."""
    return self._labeled

  def retrieval(self, recommend, batch: int = 128) -> dict:
    """Retrieval metrics of `recommend`(user_id, exclude_item_ids, k,
    timestamp): signature_batches.recommend_at over an export, or any
    ranker with that call, asked as of each user's first eval event."""
    per_user = collections.defaultdict(list)
    metric_of = {m: fusion_search.objective_fn(m) for m in RETRIEVAL_METRICS}
    for start in range(0, len(self.users), batch):
      chunk = self.users[start:start + batch]
      width = max(1, max(len(s) for _, s, _ in chunk))
      exclude = np.array([list(s) + [""] * (width - len(s))
                          for _, s, _ in chunk], dtype=object)
      inputs = dict(
          user_id=tf.constant([u for u, _, _ in chunk]),
          exclude_item_ids=tf.constant(exclude), k=tf.constant(K, tf.int32),
          timestamp=tf.constant([self.request_at[u] for u, _, _ in chunk],
                                tf.int64))
      out = recommend(**inputs)
      for (user, _, _), row in zip(chunk, out["item_ids"].numpy()):
        ranked = [x.decode() for x in row]
        gains = self.gains[user]
        for m, metric in metric_of.items():
          if m.startswith("liked_") and 2.0 not in gains.values():
            continue  # defined over users with a liked eval item
          per_user[m].append(metric(ranked, gains))
    return {m: float(np.mean(v)) for m, v in per_user.items()}

  def ranking(self, model_dir: str) -> dict:
    """Every ranking task's metrics, as the Evaluator's slice_metrics
    computes them (`rmse`/`auc` for the rating and like tasks as well)."""
    metrics = ranking_eval.slice_metrics({"m": model_dir}, self._labeled)
    return {k: v for k, v in metrics["m"][retrieval_eval.ALL]
            .items() if not k.endswith("_example_count")}

  def __call__(self, model_dir: str, has_retrieval: bool) -> dict:
    model = tf.saved_model.load(model_dir)
    out = self.ranking(model_dir)
    if has_retrieval:
      out.update(self.retrieval(signature_batches.recommend_at(model)))
      card_path = model_layout.model_card_path(model_dir)
      if os.path.exists(card_path):
        with open(card_path) as f:
          ranking = json.load(f)["ranking"]
        out["fusion_weights"] = dict(zip(ranking["fusion_tasks"],
                                         ranking["fusion_weights"]))
        if len(ranking["fusion_tasks"]) > 1:
          retrieval_only = [float(i == 0) for i in range(
              len(ranking["fusion_tasks"]))]
          out.update({RETRIEVAL_ORDER + k: v for k, v in self.retrieval(
              signature_batches.recommend_at(model, retrieval_only)).items()})
    return out


def eval_tasks(tasks: Sequence[Any]) -> list[ranking_eval.EvalTask]:
  """The config's ranking tasks as the Evaluator reads them from a card."""
  out = []
  for t in tasks:
    if t.kind in ("regression", "binary", "multilabel"):
      output = t.name if t.kind == "regression" else f"p_{t.name}"
      out.append(ranking_eval.EvalTask(t.name, t.kind, t.label, output))
  return out


def variants(base: TrainerConfig) -> dict[str, Any]:
  """Name -> TrainerConfig of every row of the table."""
  tasks = {t.kind if t.kind == "retrieval" else t.label: t
           for t in base.tasks if t.kind != "multilabel"}

  def with_tasks(chosen):
    return base.model_copy(update={"tasks": list(chosen)})

  out = {}
  for key in ("retrieval", "click", "like", "rating", "watch_fraction"):
    if key in tasks:
      out[f"{key} only"] = with_tasks(
          [tasks[key].model_copy(update={"weight": 1.0})])
  out["default"] = base
  for kind in ("shared_bottom", "mmoe", "ple"):
    for weighting in ("static", "uncertainty"):
      cfg = base.model_copy(update={
          "shared_layers": base.shared_layers.model_copy(
              update={"kind": kind}),
          "loss_weighting": weighting})
      if cfg != base:  # the shipped one is the "default" row
        out[f"{kind} + {weighting}"] = cfg
  # No hand tuning: every task at the default weight 1.
  untuned = [t.model_copy(update={"weight": 1.0}) for t in base.tasks]
  out["static, weights 1"] = base.model_copy(update={"tasks": untuned})
  return out


def run(config_path: str, work_dir: str, seeds: Sequence[int],
        only: Sequence[str] = (), epochs: int = 0,
        ranking: Mapping[str, Any] = ()) -> dict:
  config = config_lib.load_config(config_path)
  if ranking:  # serving.ranking overrides, e.g. {"search": {"refit": false}}
    raw = config.serving.ranking.model_dump()
    for key, value in dict(ranking).items():
      raw[key] = (dict(raw[key], **value) if isinstance(value, dict)
                  else value)
    config = config.model_copy(update={"serving": config.serving.model_copy(
        update={"ranking": RankingConfig.model_validate(raw)})})
  os.makedirs(work_dir, exist_ok=True)
  t0 = time.time()
  uris = dict(prepare(config, work_dir), work_dir=work_dir)
  print(f"ExampleGen + Transform ready in {time.time() - t0:.0f}s", flush=True)
  evaluation = Evaluation(uris, eval_tasks(config.trainer.tasks))
  print(f"{len(evaluation.users)} eval users with relevant items", flush=True)
  base = config.trainer
  if epochs:
    base = base.model_copy(update={"epochs": epochs})
  results = {}
  for name, cfg in variants(base).items():
    if only and name not in only:
      continue
    runs = []
    for seed in seeds:
      cfg_seed = cfg.model_copy(update={"seed": seed})
      model_uri = tempfile.mkdtemp(dir=work_dir, prefix="model-")
      shutil.rmtree(model_uri)
      start = time.time()
      summary = trainer_run.run_trainer(
          uris["graph"], uris["transformed"], uris["examples"],
          uris["catalog"], model_uri, "benchmark", cfg_seed, config.model_name,
          config.serving.top_k, max_k=max(K, config.serving.max_k),
          log=lambda m: None, ranking=config.serving.ranking)
      seconds = time.time() - start
      metrics = evaluation(
          model_layout.saved_model_dir(model_uri),
          any(t.kind == "retrieval" for t in cfg_seed.tasks))
      metrics.update(train_seconds=summary["train_seconds"],
                     epochs=summary["epochs"],
                     examples_per_second=summary["examples_per_second"],
                     task_weights=summary["task_weights"])
      runs.append(metrics)
      print(f"{name} seed {seed}: " + ", ".join(
          f"{m} {v:.4f}" for m, v in metrics.items()
          if isinstance(v, float) and m not in _NOT_METRICS) +
            f"; fusion {metrics.get('fusion_weights')}"
            f" ({summary['epochs']} epochs, {seconds:.0f}s with export)",
            flush=True)
      shutil.rmtree(model_uri, ignore_errors=True)
      tf.keras.backend.clear_session()
    results[name] = runs
  return {"config": os.path.abspath(config_path), "seeds": list(seeds),
          "trainer": base.model_dump(mode="json"),
          "ranking": config.serving.ranking.model_dump(mode="json"),
          "results": results}


def summarize(results: Mapping[str, list]) -> dict[str, dict]:
  out = {}
  for name, runs in results.items():
    row = {}
    # Every metric measured (the ranking tasks' differ between configs).
    names = [m for m in ALL_METRICS if any(m in x for x in runs)] + sorted(
        {m for x in runs for m, v in x.items()
         if m not in ALL_METRICS and m not in _NOT_METRICS and
         isinstance(v, float)})
    for m in names:
      values = [x[m] for x in runs if m in x]
      row[m] = (float(np.mean(values)), float(np.std(values)))
    row["train_seconds"] = float(np.mean([x["train_seconds"] for x in runs]))
    out[name] = row
  return out


def table(summary: Mapping[str, dict], seeds: int) -> str:
  lines = ["| model | Recall@20 | NDCG@20 | liked Recall@20 | "
           "graded NDCG@20 | RMSE | AUC | train s |",
           "|---|---|---|---|---|---|---|---|"]
  for name, row in summary.items():
    cells = []
    for m in METRICS:
      if m in row:
        mean, std = row[m]
        cells.append(f"{mean:.4f}" + (f" ± {std:.4f}" if seeds > 1 else ""))
      else:
        cells.append("—")
    lines.append(f"| {name} | " + " | ".join(cells) +
                 f" | {row['train_seconds']:.0f} |")
  return "\n".join(lines)


def fusion_table(summary: Mapping[str, dict], seeds: int) -> str:
  """The fused order against the same model's retrieval order."""
  lines = ["| model | metric | retrieval order | fused order | change |",
           "|---|---|---|---|---|"]
  for name, row in summary.items():
    for m in RETRIEVAL_METRICS:
      if m not in row or RETRIEVAL_ORDER + m not in row:
        continue
      (f, fs), (b, bs) = row[m], row[RETRIEVAL_ORDER + m]
      spread = (lambda x: f" ± {x:.4f}") if seeds > 1 else (lambda x: "")
      lines.append(f"| {name} | {m} | {b:.4f}{spread(bs)} | "
                   f"{f:.4f}{spread(fs)} | {(f - b) / b:+.1%} |")
  return "\n".join(lines)


def verdict(summary: Mapping[str, dict], candidate: str = "default") -> str:
  """Is the candidate within 2% of each specialist, and better on one?"""
  lines, better = [], []
  ok = True
  for specialist, metrics in SPECIALIST_METRIC.items():
    if specialist not in summary or candidate not in summary:
      continue
    for m in metrics:
      s, c = summary[specialist][m][0], summary[candidate][m][0]
      lower = m in LOWER_IS_BETTER
      change = (s - c) / s if lower else (c - s) / s  # > 0: candidate better
      within = change >= -0.02
      ok &= within
      if change > 0:
        better.append(m)
      lines.append(f"{m}: {candidate} {c:.4f} vs {specialist} {s:.4f} "
                   f"({change:+.1%}, "
                   f"{'within 2%' if within else 'NOT within 2%'})")
  lines.append(f"better than the specialist on: {better or 'none'}")
  lines.append("DONE-WHEN HOLDS" if ok and better else "DONE-WHEN FAILS")
  return "\n".join(lines)


def add_run_arguments(parser: argparse.ArgumentParser,
                      work_dir_name: str) -> None:
  """--config (ml-latest-small's), --work-dir (reused: ExampleGen and
  Transform run once there) and --seeds (1 2 3)."""
  parser.add_argument("--config", default=os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      "configs", "movielens_latest_small.yaml"))
  parser.add_argument("--work-dir", default=os.path.join(
      tempfile.gettempdir(), work_dir_name))
  parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_run_arguments(parser, "mtrec_model_comparison")
  parser.add_argument("--only", nargs="*", default=[],
                      help="variant names to run (default: all)")
  parser.add_argument("--epochs", type=int, default=0,
                      help="override trainer.epochs (0: the config's)")
  parser.add_argument("--ranking", default="{}",
                      help="JSON overrides of serving.ranking, e.g. "
                      '\'{"search": {"refit": false}}\'')
  parser.add_argument("--output", default="",
                      help="also write the raw results as JSON here")
  args = parser.parse_args(argv)
  out = run(args.config, args.work_dir, args.seeds, args.only, args.epochs,
            json.loads(args.ranking))
  summary = summarize(out["results"])
  print()
  print(table(summary, len(args.seeds)))
  print()
  print(fusion_table(summary, len(args.seeds)))
  print()
  print(verdict(summary))
  if args.output:
    with open(args.output, "w") as f:
      json.dump(dict(out, summary=summary), f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
