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
              ids: Sequence[str], chunk: int = 2048,
              **columns: Sequence[Any]) -> np.ndarray:
  """[len(ids), dim]: signature(input_name=ids, **columns)["embedding"], in
  order, at most `chunk` ids per call; columns: other inputs, one value per
  id (e.g. embed_user_at's timestamp)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not ids:
    raise ValueError(f"embed_all: no {input_name} to embed")
  for name, values in columns.items():
    if len(values) != len(ids):
      raise ValueError(f"embed_all: {len(values)} {name} for {len(ids)} "
                       f"{input_name}")

  def call(i: int) -> np.ndarray:
    inputs = {name: tf.constant(np.asarray(values[i:i + chunk]))
              for name, values in columns.items()}
    inputs[input_name] = tf.constant(list(ids[i:i + chunk]))
    return signature(**inputs)["embedding"].numpy()

  return np.concatenate([call(i) for i in range(0, len(ids), chunk)])
