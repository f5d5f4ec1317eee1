"""Item text: what the sentence encoder reads about one catalog item.

Why: an item nobody has interacted with yet has no useful id embedding, but
its title, genres and tags already say what it is about. This module turns
config-named catalog fields into one short text, e.g. "Toy Story (1995).
Genres: Adventure, Animation. Tags: pixar, fun.", which the frozen encoder
(components/text_encoder.py) embeds.

It is plain Python on purpose (no Beam, no TensorFlow, no torch): the
TextEmbedder step, `mtrec catalog refresh` and the benchmarks must build
byte-identical texts, because a text's hash is its cache key; a text that
differed by a space would be embedded again.

An item with no value in any field gets "" (MovieLens's "(no genres listed)"
and a year of 0 are not values): it is never embedded, and the step gives it
a zero vector and `has_text = 0` instead.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from contracts import records as r

DEFAULT_FIELDS = (r.TITLE, r.CATEGORIES, r.TAGS)
# MovieLens writes this where a movie has no genre: not text about the item.
_NO_VALUE = {"(no genres listed)", ""}
_FIELD_LABELS = {r.CATEGORIES: "Genres", r.TAGS: "Tags"}


def item_text(item: Mapping[str, Any], fields: Sequence[str] = DEFAULT_FIELDS,
              max_tags: int = 10) -> str:
  """The text the encoder sees for one item; "" when it has none.

  Args:
    item: catalog columns of one item (title: str, categories/tags: lists).
    fields: which fields, in order; a list field is written "Label: a, b.".
    max_tags: keep the first (most frequent) tags only: a long tail of rare
      tags adds noise and tokens, not meaning.
  """
  parts = []
  for field in fields:
    value = item.get(field)
    if value is None:
      continue
    if isinstance(value, (list, tuple)):
      values = [str(v).strip() for v in value if str(v).strip() not in
                _NO_VALUE]
      if field == r.TAGS:
        values = values[:max_tags]
      if values:
        label = _FIELD_LABELS.get(field, field.capitalize())
        parts.append(f"{label}: {', '.join(values)}.")
    else:
      text = str(value).strip()
      if text and text not in _NO_VALUE and text != "0":
        parts.append(text if text.endswith(".") else f"{text}.")
  return " ".join(parts)
