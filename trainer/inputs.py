"""What the towers read, discovered from the transform's output.

The transform decides which features exist: user attributes come from the
dataset's schema, the history only when ExampleGen wrote one, tags only when
the transform made a vocabulary of them, item vectors (e.g. language-model
embeddings of an item's text) when an upstream step adds them. The trainer
reads that here, with each feature's kind and vocabulary size, so no tower
names a dataset's columns and the same model code serves MovieLens, the
synthetic source and a customer's tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import tensorflow as tf

from contracts import features as F


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """A vocabulary-indexed feature: indices 0..size-1, then one OOV index."""

  feature: str
  vocab_name: str
  size: int  # without the OOV bucket

  @property
  def rows(self) -> int:
    """Rows of an embedding table over it, the OOV row included."""
    return self.size + 1


@dataclasses.dataclass(frozen=True)
class ModelInputs:
  """The features of each tower, by kind."""

  user_id: Vocabulary
  user_attributes: tuple[Vocabulary, ...]  # one id per event
  item_id: Vocabulary
  item_sets: tuple[Vocabulary, ...]  # multi-valued, mean-pooled
  item_numeric: tuple[str, ...]  # scalar floats
  item_vectors: tuple[tuple[str, int], ...]  # (feature, width) float vectors
  has_history: bool
  # Width of the items' LM text embeddings (TextEmbedder), 0 without them.
  # Not a transformed feature: the trainer adds it (trainer/run.py).
  item_text_dim: int = 0

  def vocabularies(self) -> list[Vocabulary]:
    return [self.user_id, *self.user_attributes, self.item_id,
            *self.item_sets]

  def multilabel_size(self, label: str) -> int:
    """Number of classes of a multi-label label (its vocabulary + OOV)."""
    feature, _ = F.MULTILABEL_LABELS[label]
    for v in self.item_sets:
      if v.feature == feature:
        return v.rows
    raise ValueError(f"the transform output has no {feature!r} for the "
                     f"multi-label label {label!r}")


def discover(feature_spec: Mapping[str, Any],
             vocabulary_size: Any,
             user_features: Sequence[str]) -> ModelInputs:
  """Reads the inputs off a transformed feature spec.

  Args:
    feature_spec: tft_output.transformed_feature_spec().
    vocabulary_size: vocabulary name -> size (tft_output's
      vocabulary_size_by_name).
    user_features: the user attribute names of the raw schema.
  """

  def vocab(feature: str, name: str) -> Vocabulary:
    return Vocabulary(feature, name, int(vocabulary_size(name)))

  item_sets = [vocab(feature, name) for feature, name in (
      (F.CATEGORIES, F.CATEGORIES_VOCAB),
      (F.TITLE_TOKENS, F.TITLE_TOKENS_VOCAB),
      (F.TAGS, F.TAGS_VOCAB)) if feature in feature_spec]
  vectors = []
  for name, spec in sorted(feature_spec.items()):
    if name.startswith(F.ITEM_DENSE_PREFIX):
      if not isinstance(spec, tf.io.FixedLenFeature) or (
          spec.dtype != tf.float32) or len(spec.shape) != 1:
        raise ValueError(f"item vector feature {name!r} must be a fixed-length"
                         f" float vector, found {spec}")
      vectors.append((name, int(spec.shape[0])))
  return ModelInputs(
      user_id=vocab(F.USER_ID, F.USER_ID_VOCAB),
      user_attributes=tuple(
          vocab(F.user_attribute(n), F.user_attribute_vocab(n))
          for n in sorted(user_features)
          if F.user_attribute(n) in feature_spec),
      item_id=vocab(F.ITEM_ID, F.ITEM_ID_VOCAB),
      item_sets=tuple(item_sets),
      item_numeric=tuple(f for f in (F.YEAR_Z, F.YEAR_KNOWN)
                         if f in feature_spec),
      item_vectors=tuple(vectors),
      has_history=F.HISTORY in feature_spec,
  )


def trained_range(schema: Any, feature: str = F.YEAR_CLIPPED
                  ) -> tuple[int, int] | None:
  """[min, max] a bounded feature was clipped to in training.

  Args:
    schema: the transformed schema (tft_output.transformed_metadata.schema),
      where the transform records the range as the feature's int domain.
    feature: the bounded feature.

  Returns:
    The range; None for a graph written before features were bounded.
  """
  for f in schema.feature:
    if f.name == feature and f.HasField("int_domain"):
      return int(f.int_domain.min), int(f.int_domain.max)
  return None
