"""The TextEmbedder step: item text through a frozen sentence encoder."""

from __future__ import annotations

from typing import Sequence

from components import text_embedder
from components.config import TextEmbedderConfig
from pipeline.steps import ArtifactUris


def run(config: TextEmbedderConfig, cache_dir: str, beam_args: Sequence[str],
        run_id: str, uris: ArtifactUris) -> str:
  """`cache_dir`: the text-hash cache, resolved by the pipeline config
  (PipelineConfig.text_embedding_cache_dir), never guessed from a URI."""
  uris.require("TextEmbedder", "catalog", "item_features")
  s = text_embedder.run_text_embedder(
      uris.catalog, uris.item_features, run_id,
      model=config.model, fields=config.fields, max_tags=config.max_tags,
      batch_size=config.batch_size, cache_dir=cache_dir,
      beam_args=list(beam_args))
  rate = (f", {s['items_per_second']:,.0f} items/s"
          if s["items_per_second"] else "")
  return (f"{s['items']:,} items: {s['embedded']:,} embedded{rate}, "
          f"{s['cached']:,} from the cache, {s['no_text']:,} without text "
          f"(zero vector); width {s['dimension']}")
