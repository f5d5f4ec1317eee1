"""The ExampleGen step: a source reader, the row rules, and the split."""

from __future__ import annotations

import datetime
from typing import Sequence

from components import example_gen
from components import parsing
from components.config import DataConfig
from components.config import ExampleGenConfig
from components.readers import build_reader
from pipeline.steps import ArtifactUris


def validation_rules(eg: ExampleGenConfig,
                     started: datetime.datetime) -> parsing.ValidationRules:
  """Row rules; an unset timestamp_max means "not after the run started"."""

  def seconds(dt: datetime.datetime) -> int:
    if dt.tzinfo is None:
      dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp())

  return parsing.ValidationRules(
      eg.rating_min, eg.rating_max, seconds(eg.timestamp_min),
      seconds(eg.timestamp_max or started),
      parsing.InputLimits(**eg.limits.model_dump()))


def run(data: DataConfig, eg: ExampleGenConfig, beam_args: Sequence[str],
        run_id: str, uris: ArtifactUris, started: datetime.datetime) -> str:
  uris.require("ExampleGen", "examples", "catalog", "quarantine")
  c = example_gen.run_example_gen(
      build_reader(data.format, **data.options),
      validation_rules(eg, started), uris.examples, uris.catalog,
      uris.quarantine, run_id, split=eg.split,
      eval_fraction=eg.eval_fraction, seed=eg.seed,
      max_quarantine_fraction=eg.max_quarantine_fraction,
      beam_args=list(beam_args),
      parameters={"data": data.model_dump(mode="json")},
      validation_fraction=eg.validation_fraction)
  validation = (f"{c['interactions_validation']:,} validation, "
                if "interactions_validation" in c else "")
  return (f"{c['interactions_in']:,} rows in: {c['interactions_train']:,} "
          f"train, {validation}{c['interactions_eval']:,} eval, "
          f"{c['interactions_quarantined']:,} quarantined, "
          f"{c['duplicates_dropped']:,} duplicates; "
          f"{c['items_written']:,} items, {c['users_written']:,} users")
