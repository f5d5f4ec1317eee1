"""The pipeline's steps: each wires one component to its config sections.

One module per step (`pipeline.steps.trainer`, ...). A step's `run` takes
the config sections that component reads, the run id and the URIs of its
inputs and outputs (an `ArtifactUris`), calls the component, and returns a
one-paragraph summary for people. Any orchestrator (the local runner, a KFP
component, the benchmarks) calls these same functions, so the DAG's
behaviour is defined once; and because a step module imports only its own
component, a step's code version (pipeline/step_deps.py) is the import
closure of its module: editing a source reader leaves a trained model's
cache entry valid.

This package module imports nothing from the project, so importing one
step never pulls in another.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional

# (component, output) of every artifact the pipeline produces, in DAG order.
# The output names are ArtifactUris' fields; the pairs lay out a run's
# directory (<run_dir>/<Component>/<output>) and key the runner's URIs.
OUTPUTS = (
    ("ExampleGen", "examples"), ("ExampleGen", "catalog"),
    ("ExampleGen", "quarantine"), ("StatisticsGen", "statistics"),
    ("ExampleValidator", "anomalies"), ("TextEmbedder", "item_features"),
    ("Transform", "transform_graph"),
    ("Transform", "transformed_examples"), ("Teacher", "teacher_model"),
    ("Trainer", "model"),
    ("Evaluator", "evaluation"), ("Evaluator", "blessing"),
    ("Pusher", "pushed_model"),
)
# The TextEmbedder runs only when the config enables it (text_embedder), the
# Teacher only when the trainer distills from a teacher it trains.
STEP_NAMES = ("ExampleGen", "StatisticsGen", "ExampleValidator", "Transform",
              "Trainer", "Evaluator", "Pusher")


@dataclasses.dataclass(frozen=True)
class ArtifactUris:
  """Where each of the pipeline's artifacts lives, for the steps' `run`.

  Fields rather than `"Component/output"` string keys: a misspelt name
  fails where it is written (a TypeError building one, an AttributeError
  reading one, and a type checker flags both), not as a KeyError deep
  inside a step after minutes of Beam; and each step reads named fields,
  so its code says which artifacts it consumes. A caller sets only what
  the steps it calls read (a KFP component: its own inputs and outputs);
  a step missing one fails at its start with `require`'s ValueError
  naming the step and the field.
  """
  examples: Optional[str] = None
  catalog: Optional[str] = None
  quarantine: Optional[str] = None
  statistics: Optional[str] = None
  anomalies: Optional[str] = None
  item_features: Optional[str] = None
  transform_graph: Optional[str] = None
  transformed_examples: Optional[str] = None
  teacher_model: Optional[str] = None
  model: Optional[str] = None
  evaluation: Optional[str] = None
  blessing: Optional[str] = None
  pushed_model: Optional[str] = None

  @classmethod
  def from_keys(cls, uris: Mapping[str, str]) -> ArtifactUris:
    """From the runner's `"Component/output"` -> URI mapping.

    The local runner keys its URIs by the compiled spec's task outputs,
    which include outputs no step reads (the Evaluator's report, ...):
    those are left out, as is any artifact the mapping lacks.
    """
    return cls(**{o: uris[f"{c}/{o}"] for c, o in OUTPUTS
                  if f"{c}/{o}" in uris})

  def require(self, step: str, *fields: str) -> None:
    """Raises ValueError naming `step` and each of `fields` left unset.

    Called at the top of a step's `run`, so a caller that forgot a URI
    learns which one before any work starts, not from a None path
    somewhere inside a component. A misspelt field is an AttributeError.
    """
    missing = [f for f in fields if getattr(self, f) is None]
    if missing:
      raise ValueError(
          f"the {step} step needs ArtifactUris."
          + ", ArtifactUris.".join(missing) + ", which the caller left unset")


def output_uris(run_dir: str) -> ArtifactUris:
  """Every output at `<run_dir>/<Component>/<output>` (the run layout)."""
  return ArtifactUris(**{o: os.path.join(run_dir, c, o) for c, o in OUTPUTS})
