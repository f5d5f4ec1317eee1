"""The pipeline's steps: each wires one component to its config sections.

One module per step (`pipeline.steps.trainer`, ...). A step's `run` takes
the config sections that component reads, the run id and the URIs of its
inputs and outputs, calls the component, and returns a one-paragraph
summary for people. Any orchestrator (the local runner, a KFP component,
the benchmarks) calls these same functions, so the DAG's behaviour is
defined once; and because a step module imports only its own component, a
step's code version (pipeline/step_deps.py) is the import closure of its
module: editing a source reader leaves a trained model's cache entry valid.

This package module imports nothing from the project, so importing one
step never pulls in another.
"""

from __future__ import annotations

import os

# (component, output) of every artifact the pipeline produces, in DAG order.
OUTPUTS = (
    ("ExampleGen", "examples"), ("ExampleGen", "catalog"),
    ("ExampleGen", "quarantine"), ("TextEmbedder", "item_features"),
    ("Transform", "transform_graph"),
    ("Transform", "transformed_examples"), ("Trainer", "model"),
    ("Evaluator", "evaluation"), ("Evaluator", "blessing"),
    ("Pusher", "pushed_model"),
)
# The TextEmbedder runs only when the config enables it (text_embedder).
STEP_NAMES = ("ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher")


def output_uris(run_dir: str) -> dict[str, str]:
  """`Component/output` -> `<run_dir>/<Component>/<output>` for every output."""
  return {f"{c}/{o}": os.path.join(run_dir, c, o) for c, o in OUTPUTS}
