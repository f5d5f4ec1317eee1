"""The Transform step: TFT vocabularies and labels on Beam."""

from __future__ import annotations

from typing import Sequence

from components import transform
from components.config import TransformConfig
from contracts import artifacts
from pipeline.steps import ArtifactUris


def run(config: TransformConfig, beam_args: Sequence[str], run_id: str,
        uris: ArtifactUris) -> str:
  uris.require("Transform", "examples", "transform_graph",
               "transformed_examples")
  transform.run_transform(
      uris.examples, uris.transform_graph, uris.transformed_examples, run_id,
      like_threshold=config.like_threshold,
      max_title_tokens=config.max_title_tokens_vocab,
      beam_args=list(beam_args))
  sizes = artifacts.read_metadata(
      uris.transform_graph)["summary"]["vocabulary_sizes"]
  return "vocabularies: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
