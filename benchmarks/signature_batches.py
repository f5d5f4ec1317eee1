"""Embeddings of many users or items through an export's `embed_user` /
`embed_item` signature, a chunk of ids per call.

The benchmarks that rank the whole catalog themselves (cold start, the
distillation teacher's ensemble) need every item's embedding; one call with
every id would make the signature run one batch the size of the catalog.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def embed_all(signature: Callable[..., Any], input_name: str,
              ids: Sequence[str], chunk: int = 2048) -> np.ndarray:
  """[len(ids), dim]: signature(input_name=ids)["embedding"], in order, at
  most `chunk` ids per call."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not ids:
    raise ValueError(f"embed_all: no {input_name} to embed")
  return np.concatenate([
      signature(**{input_name: tf.constant(list(ids[i:i + chunk]))})[
          "embedding"].numpy()
      for i in range(0, len(ids), chunk)])
