"""Cold items over several seeds: benchmarks/cold_start.py in the suite.

ml-latest-small with the shipped config's temporal split; the latest 10% of
items and the newest part of each series found by title are cold (no
training interactions; indexed through their content as a refresh would).
Per seed: the metadata-only and the LM model (the shipped one), measured on
cold-only, warm-only and whole-catalog rankings, the franchise check, and
the freshness policy at a few bonuses and the new-item match at a few
thresholds on the LM model's scores. Means and
standard deviations over the seeds. Needs the `text` extra (the encoder).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from benchmarks.suite import common

CONFIG = os.path.join(common.CONFIGS, "movielens_latest_small.yaml")
VARIANTS = ("metadata", "lm")
# The serving policies measured on the lm model's scores, by setting.
POLICIES = ("freshness", "new_item_match")


def _mean_sd(values: Sequence[float]) -> list[float]:
  return [float(np.mean(values)), float(np.std(values))]


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """name -> metric -> [mean, sd] over the runs (seeds); the serving
  policies' rows likewise, by setting."""
  out: dict[str, Any] = {}
  for name in runs[0]["results"]:
    rows = [run["results"][name] for run in runs]
    out[name] = {k: _mean_sd([row[k] for row in rows])
                 for k, v in rows[0].items() if isinstance(v, (int, float))}
    for policy in POLICIES:
      if policy in rows[0]:
        out[name][policy] = {
            setting: {k: _mean_sd([row[policy][setting][k] for row in rows])
                      for k, v in metrics.items()
                      if isinstance(v, (int, float))}
            for setting, metrics in rows[0][policy].items()}
  return out


def run(work_dir: str, seeds: Sequence[int], config_path: str = CONFIG,
        share: float = 0.1) -> dict[str, Any]:
  from benchmarks import cold_start  # pylint: disable=g-import-not-at-top
  runs = []
  for seed in seeds:
    # One prepared run directory: ExampleGen, the filter, Transform and the
    # text embeddings do not depend on the trainer's seed.
    runs.append(cold_start.run(config_path, work_dir, share, VARIANTS,
                               seed=seed))
  first = runs[0]
  return {"config": os.path.relpath(config_path, common.ROOT),
          "seeds": list(seeds), "cold_share": share,
          "cold_items": first["cold_items"], "series": first["series"],
          "catalog_items": first["catalog_items"],
          "summary": summarize(runs),
          "train_seconds": {name: float(np.mean([r["train_seconds"][name]
                                                 for r in runs]))
                            for name in first["train_seconds"]},
          "runs": runs}
