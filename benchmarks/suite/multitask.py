"""The multi-task ablation and the fused order, over several seeds.

benchmarks/model_comparison.py on two datasets, every variant trained with
every seed in one run:

- ml-latest-small, temporal split (configs/movielens_latest_small.yaml:
  retrieval, rating, like);
- synthetic impressions (configs/demo.yaml: retrieval, click (CTR over every
  impression), like, rating, watch fraction and the interest head), where a
  click task is meaningful.

Rows: the single-task specialists, then the multi-task model with a shared
bottom, MMoE or PLE under static or uncertainty weights (the shipped model
is MMoE + static). For each multi-task row the retrieval-only order and the
fused order of the same model are measured on the same users. Means and
standard deviations over the seeds.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from benchmarks import signature_batches
from benchmarks.suite import common

DATASETS = (
    ("ml-latest-small, temporal split",
     os.path.join(common.CONFIGS, "movielens_latest_small.yaml")),
    ("synthetic impressions", os.path.join(common.CONFIGS, "demo.yaml")),
)


def run(work_dir: str, seeds: Sequence[int], epochs: Optional[int] = None,
        datasets: Sequence[tuple[str, str]] = DATASETS,
        only: Sequence[str] = ()) -> dict[str, Any]:
  from benchmarks import model_comparison  # pylint: disable=g-import-not-at-top
  out = []
  for name, config_path in datasets:
    result = model_comparison.run(
        config_path, os.path.join(work_dir, os.path.basename(config_path)),
        seeds, only, epochs or 0)
    out.append({"name": name, "config": os.path.relpath(config_path,
                                                        common.ROOT),
                "seeds": list(seeds), "ranking": result["ranking"],
                "summary": model_comparison.summarize(result["results"]),
                "runs": result["results"]})
  return {"datasets": out,
          "ranked_as_of": signature_batches.RANKED_AS_OF}
