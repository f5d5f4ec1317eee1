"""TextEmbedder: encoder items/s on this machine and its share of a run.

1. Encoder throughput: the catalog's item texts (title, genres, top tags, as
   the component builds them) through all-MiniLM-L6-v2 in this process, at a
   few batch sizes, after one warm-up batch (model load timed separately).
2. The whole pipeline (`mtrec run` path: the compiled KFP DAG, each step a
   subprocess) on the config with text_embedder enabled and a fresh text
   cache: each step's wall time and the TextEmbedder's share.
3. The TextEmbedder again on the same catalog with the cache now warm
   (step cache off): what "unchanged items are never embedded twice" saves.

  .venv/bin/python benchmarks/text_embedder_benchmark.py \\
      [--config configs/movielens_latest_small.yaml] [--skip-pipeline] \\
      [--work-dir /tmp/mtrec_text_bench] [--output text_embedder.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components import item_text  # noqa: E402
from components import text_encoder  # noqa: E402
from pipeline import config as config_lib  # noqa: E402

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "movielens_latest_small.yaml")


def encoder_throughput(texts, batch_sizes=(16, 64, 256)) -> dict:
  start = time.time()
  encoder = text_encoder.load_encoder(text_encoder.model_path())
  out = {"load_seconds": round(time.time() - start, 2), "texts": len(texts),
         "mean_chars": round(sum(map(len, texts)) / max(len(texts), 1), 1)}
  encoder.encode(texts[:32], batch_size=32, show_progress_bar=False)
  for batch in batch_sizes:
    start = time.time()
    encoder.encode(texts, batch_size=batch, normalize_embeddings=True,
                   show_progress_bar=False)
    seconds = time.time() - start
    out[f"batch_{batch}"] = {"seconds": round(seconds, 2),
                             "items_per_second": round(len(texts) / seconds,
                                                       1)}
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=DEFAULT_CONFIG)
  parser.add_argument("--work-dir", default="/tmp/mtrec_text_bench")
  parser.add_argument("--skip-pipeline", action="store_true",
                      help="Only the encoder throughput.")
  parser.add_argument("--max-texts", type=int, default=2000,
                      help="Texts for the throughput measurement.")
  parser.add_argument("--output", default=None)
  args = parser.parse_args(argv)
  from components import artifact_readers
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  from pipeline import steps  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from pipeline.steps import text_embedder as text_embedder_step
  config = config_lib.load_config(args.config)
  shutil.rmtree(args.work_dir, ignore_errors=True)
  cache = os.path.join(args.work_dir, "text_cache")
  config = config.model_copy(update={
      "pipeline_root": os.path.join(args.work_dir, "runs"),
      "serving_root": os.path.join(args.work_dir, "serving"),
      "text_embedder": config.text_embedder.model_copy(
          update={"enabled": True, "cache_dir": cache})})
  report = {"config": args.config, "cpus": os.cpu_count()}
  if not args.skip_pipeline:
    result = runner.run_pipeline(config, log=print)
    steps_seconds = {s["name"]: s["seconds"] for s in result.steps}
    total = sum(steps_seconds.values())
    summary = json.load(open(os.path.join(
        result.artifacts.item_features, "metadata.json")))["summary"]
    report["pipeline"] = {
        "step_seconds": steps_seconds, "total_seconds": round(total, 1),
        "text_embedder_share": round(
            steps_seconds["TextEmbedder"] / total, 3),
        "text_embedder_summary": summary}
    items, _ = artifact_readers.read_catalog(result.artifacts.catalog)
    rows = [dict(zip(items, values)) for values in zip(*items.values())]
    again = os.path.join(args.work_dir, "again", "TextEmbedder",
                         "item_features")
    start = time.time()
    text_embedder_step.run(
        config.text_embedder, config.text_embedding_cache_dir(),
        config.beam_args, "again",
        steps.ArtifactUris(catalog=result.artifacts.catalog,
                           item_features=again))
    report["warm_cache_seconds"] = round(time.time() - start, 2)
    report["warm_cache_summary"] = json.load(open(os.path.join(
        again, "metadata.json")))["summary"]
  else:
    from components.readers import build_reader  # pylint: disable=g-import-not-at-top
    from trainer import refresh  # pylint: disable=g-import-not-at-top
    reader = build_reader(config.data.format, **config.data.options)
    rows = [refresh.normalize_item(raw.fields)
            for unit in reader.item_units()
            for raw in reader.read_items(unit) if not raw.error]
  rows.sort(key=lambda row: row["item_id"])  # the same texts every run
  texts = [t for t in (item_text.item_text(row,
                                           config.text_embedder.fields,
                                           config.text_embedder.max_tags)
                       for row in rows) if t][:args.max_texts]
  report["encoder"] = encoder_throughput(texts)
  print(json.dumps(report, indent=1))
  if args.output:
    with open(args.output, "w") as f:
      json.dump(report, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
