"""The canonical record every reader produces and every later step consumes.

Readers differ in file formats and column names; everything after ExampleGen's
parse step speaks one vocabulary, defined here and nowhere else. A reader maps
its source columns onto these canonical field names and yields `RawRow`s whose
values are still unparsed (strings from text formats, native values from
Parquet/JSONL); ExampleGen parses and validates them, so type and range rules
live in one place whatever the source.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

# Interaction fields.
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"  # seconds since the Unix epoch
RATING = "rating"  # explicit rating, optional
CLICK = "click"  # 1 = the impression was clicked/consumed, 0 = shown only
LIKE = "like"  # explicit binary feedback, optional (else derived from rating)
WATCH_FRACTION = "watch_fraction"  # share of the item consumed, optional

# Item (catalog) fields. ITEM_ID is shared.
TITLE = "title"
CATEGORIES = "categories"  # multi-valued: a list, or one string joined by '|'
YEAR = "year"
TAGS = "tags"  # multi-valued free-text tags, most frequent first

# User profile fields: USER_ID plus reader-declared attribute names.

INTERACTION_FIELDS = (USER_ID, ITEM_ID, TIMESTAMP, RATING, CLICK, LIKE, WATCH_FRACTION)
ITEM_FIELDS = (ITEM_ID, TITLE, CATEGORIES, YEAR, TAGS)

# Value written to tf.Examples for a label the source does not have. Labels are
# non-negative by validation, so a negative value is unambiguous; the transform
# turns it into a zero sample weight for that task.
MISSING_LABEL = -1

CATEGORY_SEPARATOR = "|"


@dataclasses.dataclass(frozen=True)
class RawRow:
  """One row as read from a source, before parsing.

  Attributes:
    source: where it came from: a file path, or e.g. "synthetic:shard-00003".
    row: 1-based row number within `source` as a person would count it in a
      text editor (for CSV the header is row 1, so the first record is row 2).
    fields: canonical field name -> raw value. Absent keys and None mean the
      source has no value for that field.
    error: set when the row could not even be split into fields (wrong column
      count, undecodable bytes, invalid JSON); `fields` is then empty.
  """

  source: str
  row: int
  fields: Mapping[str, Any]
  error: Optional[str] = None

  @property
  def location(self) -> str:
    return f"{self.source}:{self.row}"


# The ItemFeatures artifact (TextEmbedder): one tf.Example per catalog item in
# Split-items, keyed by ITEM_ID.
TEXT_HASH = "text_hash"  # sha256 of (encoder, text): the cache key
HAS_TEXT = "has_text"  # 0: the item had no text (zero vector)
EMBEDDING = "embedding"  # float list, L2-normalized
