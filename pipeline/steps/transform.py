"""The Transform step: TFT vocabularies and labels on Beam."""

from __future__ import annotations

from typing import Mapping, Sequence

from components import transform
from components.config import TransformConfig
from contracts import artifacts


def run(config: TransformConfig, beam_args: Sequence[str], run_id: str,
        u: Mapping[str, str]) -> str:
  transform.run_transform(
      u["ExampleGen/examples"], u["Transform/transform_graph"],
      u["Transform/transformed_examples"], run_id,
      like_threshold=config.like_threshold,
      max_title_tokens=config.max_title_tokens_vocab,
      beam_args=list(beam_args))
  sizes = artifacts.read_metadata(
      u["Transform/transform_graph"])["summary"]["vocabulary_sizes"]
  return "vocabularies: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
