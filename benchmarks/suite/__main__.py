"""The benchmark suite: every quality and speed claim, from one command.

  .venv/bin/python -m benchmarks.suite --size full    # docs/benchmarks.md
  .venv/bin/python -m benchmarks.suite --size small   # CI-sized smoke run

Sections (all by default):
  protocol1   the TFRS multitask tutorial's protocol (random 80/20, seed 42,
              top-100 accuracy over all items and RMSE): the tutorial's
              joint model, mtrec's default, popularity, and EASE, item-kNN
              and biased MF tuned on a validation split.
  protocol2   temporal split: Recall@20, NDCG@20, RMSE, AUC for popularity,
              the tutorial's model, the tuned EASE, item-kNN and biased MF,
              and mtrec; its pipeline run gives the
              throughput figures (and, with --end-to-end, the `mtrec run`
              wall time).
  scale       synthetic 100k / 1M / 5M / 10M interactions through ExampleGen +
              Transform on Beam's multi-process runner: time and memory.
  multitask   single-task specialists against shared-bottom / MMoE / PLE
              under static / uncertainty weights, and the retrieval-only
              against the fused order, on ml-latest-small and synthetic
              impressions, over --seeds (benchmarks/suite/multitask.py).
  cold_start  cold items in the whole catalog, the franchise check and the
              freshness policy, over --seeds (benchmarks/suite/
              cold_items.py; needs the `text` extra; --size full only
              unless named in --sections).

--size full: ml-latest-small (../shared/data) for the protocols, scale
sizes 100k, 1M, 5M, end-to-end run on. --size small: synthetic data small
enough for CI, one training epoch, tiny scale sizes; it checks the machinery,
not the claims. Either way every figure is printed, written to
<output-dir>/suite.json and rendered to the markdown file (docs/benchmarks.md
for full, <output-dir>/benchmarks.md for small unless --markdown says).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.suite import common  # noqa: E402

SECTIONS = ("protocol1", "protocol2", "scale", "multitask", "cold_start")
SIZES = {
    "full": {
        "data": {"format": "movielens_latest",
                 "options": {"path": common.ML_LATEST_SMALL}},
        "epochs": None,
        "scale_sizes": [100_000, 1_000_000, 5_000_000, 10_000_000],
        "end_to_end": True, "ablations": True,
        "output_dir": os.path.join(common.ROOT, "benchmarks", "suite",
                                   "results"),
        "markdown": os.path.join(common.ROOT, "docs", "benchmarks.md"),
    },
    "small": {
        "data": {"format": "synthetic",
                 "options": {"num_interactions": 6000, "seed": 3,
                             "num_users": 200, "num_items": 300}},
        "epochs": 1, "scale_sizes": [2000], "end_to_end": False,
        "ablations": False,
        "output_dir": os.path.join(tempfile.gettempdir(), "mtrec_bench_small"),
        "markdown": None,
    },
}


# Sections measured by a script of their own, merged from its --output JSON
# (--merge-<section>): section -> the script.
SCRIPT_SECTIONS = {
    "serving_soak": "benchmarks/serving_soak.py",
    "distillation": "benchmarks/distillation.py",
    "multi_worker": "benchmarks/train_throughput.py --workers 2",
    "tuning": "mtrec tune",
}


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def _merged_section(path: str, section: str) -> dict:
  """`section` of another suite.json, noting where it was measured."""
  with open(path) as f:
    merged = json.load(f)
  flag = "--merge-" + section.replace("_", "-")
  return dict(merged[section], note=(
      f"Measured in a separate run of `--sections {section}` on the same "
      f"machine ({merged['started_at']} → {merged['finished_at']}), "
      f"merged with `{flag}`."))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.suite", description=__doc__.split("\n")[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="full")
  parser.add_argument("--sections", nargs="+", choices=SECTIONS,
                      default=None, help="default: all (all but cold_start "
                      "for --size small)")
  parser.add_argument("--data-format", default=None,
                      help="reader format for the protocols (any MovieLens "
                           "format the readers support, or synthetic)")
  parser.add_argument("--data-path", default=None,
                      help="the dataset's directory (MovieLens formats)")
  parser.add_argument("--scale-sizes", type=int, nargs="+", default=None)
  parser.add_argument("--epochs", type=int, default=None,
                      help="override mtrec's trainer.epochs (smoke runs)")
  parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction,
                      default=None, help="also time `mtrec run --no-cache`")
  parser.add_argument("--output-dir", default=None,
                      help="suite.json and the work directories go here")
  parser.add_argument("--markdown", default=None,
                      help="where to write the report (default: "
                           "docs/benchmarks.md for --size full)")
  parser.add_argument("--work-dir", default=None,
                      help="pipeline artifacts (default: a directory under "
                           "the system's temporary directory)")
  parser.add_argument("--render", default=None,
                      help="run nothing: re-render this suite.json (with "
                           "--merge-scale, after adding a scale section)")
  parser.add_argument("--merge-scale", default=None,
                      help="take the scale section from this suite.json "
                           "(a separately run --sections scale) instead of "
                           "measuring it")
  parser.add_argument("--merge-multitask", default=None,
                      help="take the multitask section from this suite.json "
                           "(a separately run --sections multitask)")
  parser.add_argument("--merge-cold-start", default=None,
                      help="take the cold_start section from this suite.json "
                           "(a separately run --sections cold_start)")
  parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                      help="the seeds every trained model runs with; its "
                           "row is the mean with the spread (--size small: "
                           "the first two for the protocols, the first for "
                           "multitask)")
  for section, script in SCRIPT_SECTIONS.items():
    parser.add_argument(f"--merge-{section.replace('_', '-')}", default=None,
                        help=f"the --output JSON of `{script}`, as the "
                             f"{section} section")
  parser.add_argument("--note", action="append", default=[],
                      help="a remark about the run for the report's Notes "
                           "(e.g. what else the machine was doing)")
  args = parser.parse_args(argv)
  size = SIZES[args.size]
  if args.sections is None:
    args.sections = [s for s in SECTIONS
                     if args.size == "full" or s != "cold_start"]
  data = dict(size["data"])
  if args.data_format:
    data = {"format": args.data_format,
            "options": {"path": os.path.abspath(args.data_path)}
                       if args.data_path else {}}
  epochs = args.epochs if args.epochs is not None else size["epochs"]
  end_to_end = (args.end_to_end if args.end_to_end is not None
                else size["end_to_end"])
  output_dir = os.path.abspath(args.output_dir or size["output_dir"])
  markdown_path = args.markdown or size["markdown"] or os.path.join(
      output_dir, "benchmarks.md")
  work_dir = os.path.abspath(args.work_dir or os.path.join(
      tempfile.gettempdir(), f"mtrec_bench_work_{args.size}"))
  os.makedirs(work_dir, exist_ok=True)
  os.makedirs(output_dir, exist_ok=True)

  if args.render:
    with open(args.render) as f:
      results = json.load(f)
    sections = []
  else:
    results = {"size": args.size, "started_at": _now(),
               "machine": common.machine(), "sections": list(args.sections),
               "notes": []}
    sections = args.sections
  start = time.time()
  # A small run checks the machinery: two seeds show the spread is computed.
  protocol_seeds = args.seeds if args.size == "full" else args.seeds[:2]
  if "protocol1" in sections:
    from benchmarks.suite import protocol1  # pylint: disable=g-import-not-at-top
    results["protocol1"] = protocol1.run(
        data, work_dir, epochs,
        ablations=protocol1.ABLATIONS if size["ablations"] else {},
        seeds=protocol_seeds)
    results["protocol1"]["mtrec_epochs_overridden"] = epochs is not None
  if "protocol2" in sections:
    from benchmarks.suite import protocol2  # pylint: disable=g-import-not-at-top
    results["protocol2"] = protocol2.run(data, work_dir, epochs, end_to_end,
                                         seeds=protocol_seeds)
  if args.merge_scale:
    with open(args.merge_scale) as f:
      merged = json.load(f)
    results["scale"] = dict(merged["scale"], note=merged["scale"].get(
        "note") or (
            f"Measured in a separate run of `--sections scale` on the same "
            f"machine ({merged['started_at']} → {merged['finished_at']}), "
            f"merged with `--merge-scale`."))
  elif "scale" in sections:
    from benchmarks.suite import scale  # pylint: disable=g-import-not-at-top
    results["scale"] = scale.run(args.scale_sizes or size["scale_sizes"],
                                 os.path.join(work_dir, "scale"))
  if args.merge_multitask:
    results["multitask"] = _merged_section(args.merge_multitask, "multitask")
  elif "multitask" in sections:
    from benchmarks.suite import multitask  # pylint: disable=g-import-not-at-top
    datasets, seeds, only = multitask.DATASETS, args.seeds, ()
    if args.size == "small":  # the machinery, not the claims
      datasets = [("synthetic impressions (small)",
                   common.small_multitask_config(work_dir))]
      seeds, only = args.seeds[:1], ("click only", "default")
    results["multitask"] = multitask.run(
        os.path.join(work_dir, "multitask"), seeds, epochs, datasets, only)
  if args.merge_cold_start:
    results["cold_start"] = _merged_section(args.merge_cold_start,
                                            "cold_start")
  elif "cold_start" in sections:
    from benchmarks.suite import cold_items  # pylint: disable=g-import-not-at-top
    results["cold_start"] = cold_items.run(
        os.path.join(work_dir, "cold_start"), args.seeds)
  for section in SCRIPT_SECTIONS:
    path = getattr(args, f"merge_{section}")
    if path:
      with open(path) as f:
        results[section] = json.load(f)
  results.setdefault("notes", [])
  results["notes"] += [n for n in args.note if n not in results["notes"]]
  if not args.render:
    results["finished_at"] = _now()
    results["seconds"] = round(time.time() - start, 1)

  from benchmarks.suite import report  # pylint: disable=g-import-not-at-top
  json_path = os.path.abspath(args.render or os.path.join(output_dir,
                                                         "suite.json"))
  results["json_path"] = os.path.relpath(json_path, common.ROOT)
  with open(json_path, "w") as f:
    json.dump(results, f, indent=2, default=str)
  os.makedirs(os.path.dirname(os.path.abspath(markdown_path)), exist_ok=True)
  with open(markdown_path, "w") as f:
    f.write(report.markdown(results))
  print()
  for line in report.summary_lines(results):
    print(line)
  print(f"\nwrote {json_path} and {markdown_path} "
        f"({results.get('seconds', 0):.0f}s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
