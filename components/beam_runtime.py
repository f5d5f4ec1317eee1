"""Beam pipeline options shared by every Beam step.

Components never choose a runner: they take the pipeline's `beam_args` and
pass them through, so the same code runs in-process (the default), on several
local processes (`--direct_running_mode=multi_processing
--direct_num_workers=2`), or on Flink, Spark or Dataflow by adding that
runner's flags to the config.

The local default is Beam's FnApiRunner, the engine DirectRunner itself falls
back to: Beam 2.77's DirectRunner first tries PrismRunner, which downloads a
binary from GitHub at run time (and fails here, with no network).
"""

from __future__ import annotations

from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
  args = list(beam_args)
  if not any(a.startswith("--runner") for a in args):
    args.append("--runner=FnApiRunner")
  return PipelineOptions(args)
