"""The training catalog: every trained item's candidate-tower features.

Why: the retrieval task's in-batch softmax (trainer/tasks.py) contrasts a
positive only with the items consumed in the same batch. Those negatives
are drawn by popularity, and the logQ correction undoes the bias only on
average; the rarely bought items a user would never pick are almost never
shown as negatives at all. With a catalog of thousands of items an exact
softmax is affordable: the candidate tower embeds every item at every step
and each positive competes with the whole catalog, the list serving ranks
(`negatives: catalog` in the retrieval task's config).

An item's features do not change from row to row (the transform derives
them from the catalog), so the table keeps the first training row of each
item. The rows keep the item's own vocabulary index: the table is the
same input the candidate tower reads in a batch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from contracts import features as F
from trainer import inputs as inputs_lib


def candidate_features(inputs: inputs_lib.ModelInputs) -> list[str]:
  """The features the candidate tower reads (trainer/towers.py)."""
  names = [F.ITEM_ID] + [v.feature for v in inputs.item_sets]
  names += list(inputs.item_numeric)
  names += [name for name, _ in inputs.item_vectors]
  if inputs.item_text_dim:
    names += [F.ITEM_TEXT_EMBEDDING, F.ITEM_HAS_TEXT]
  return names


def item_table(batches: tf.data.Dataset, names: Sequence[str],
               item_vocab_size: int) -> dict[str, tf.Tensor]:
  """{feature: [items, ...]}: the first row of each item in `batches`, by
  ascending item index (sparse features stay sparse)."""
  seen = np.zeros(item_vocab_size + 1, bool)
  parts: dict[str, list] = {name: [] for name in names}
  for batch in batches:
    ids = batch[F.ITEM_ID].numpy()
    _, first = np.unique(ids, return_index=True)
    new = first[~seen[ids[first]]]
    if not len(new):
      continue
    seen[ids[new]] = True
    for name in names:
      value = batch[name]
      if isinstance(value, tf.SparseTensor):
        value = tf.RaggedTensor.from_sparse(value)
      parts[name].append(tf.gather(value, new))
  if not parts[F.ITEM_ID]:
    raise ValueError("the catalog table needs at least one training row")
  table = {name: tf.concat(p, axis=0) for name, p in parts.items()}
  order = tf.argsort(table[F.ITEM_ID])
  out = {}
  for name, value in table.items():
    value = tf.gather(value, order)
    out[name] = (value.to_sparse() if isinstance(value, tf.RaggedTensor)
                 else value)
  return out


def rows_by_item(table: Mapping[str, tf.Tensor],
                 item_vocab_size: int) -> np.ndarray:
  """[vocabulary + OOV]: each item index's row in the table, -1 if none."""
  rows = np.full(item_vocab_size + 1, -1, np.int64)
  ids = table[F.ITEM_ID].numpy()
  rows[ids] = np.arange(len(ids))
  return rows
