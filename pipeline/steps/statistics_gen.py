"""The StatisticsGen step: per-feature statistics of each split, on Beam."""

from __future__ import annotations

from typing import Sequence

from components import statistics_gen
from pipeline.steps import ArtifactUris


def run(beam_args: Sequence[str], run_id: str, uris: ArtifactUris) -> str:
  uris.require("StatisticsGen", "examples", "statistics")
  s = statistics_gen.run_statistics_gen(uris.examples, uris.statistics,
                                        run_id, list(beam_args))
  return "; ".join(f"{split}: {v['examples']:,} examples, "
                   f"{v['features']} features" for split, v in s.items())
