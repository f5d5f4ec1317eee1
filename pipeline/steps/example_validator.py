"""The ExampleValidator step: anomalies against the schema, drift, skew."""

from __future__ import annotations

from typing import Optional

from components import example_validator
from components.config import DataValidationConfig
from pipeline.steps import ArtifactUris


def run(config: DataValidationConfig, run_id: str, uris: ArtifactUris,
        pipeline_root: Optional[str] = None) -> str:
  """Validates this run's statistics.

  Args:
    config: the data_validation section.
    run_id: the pipeline run.
    uris: reads the statistics and examples (the schema), writes anomalies.
    pipeline_root: where earlier runs' records live, for drift; None
      measures drift only against config.baseline_statistics.
  """
  uris.require("ExampleValidator", "statistics", "examples", "anomalies")
  r = example_validator.run_example_validator(
      uris.statistics, uris.examples, uris.anomalies, run_id, config,
      pipeline_root)
  baseline = r["baseline"]
  against = (f"drift against {baseline['run_id'] or baseline['uri']}"
             if baseline else "no earlier statistics (no drift measured)")
  lines = [f"{len(r['anomalies'])} anomalies, {r['blocking']} blocking; "
           f"{against}"]
  lines += [f"{'BLOCKS' if a['blocking'] else 'warn  '} {a['kind']}: "
            f"{a['description']}" for a in r["anomalies"]]
  return "\n      ".join(lines)
