"""Item text: what the encoder reads about an item, built from catalog fields.

Plain Python (no encoder, no Beam): the same text must come out of the
TextEmbedder step and `mtrec catalog refresh`, since its hash is the cache key.
"""

from __future__ import annotations

from components import item_text

ROCKET = {"item_id": "a", "title": "Rocket to Mars (2001)",
          "categories": ["Sci-Fi"], "tags": ["space", "astronauts"]}
NO_TEXT = {"item_id": "c", "title": "", "categories": ["(no genres listed)"],
           "tags": []}


def test_item_text_uses_the_named_fields_and_skips_empty_values():
  assert item_text.item_text(ROCKET) == (
      "Rocket to Mars (2001). Genres: Sci-Fi. Tags: space, astronauts.")
  assert item_text.item_text(ROCKET, fields=["title"]) == (
      "Rocket to Mars (2001).")
  assert item_text.item_text(ROCKET, max_tags=1).endswith("Tags: space.")
  # MovieLens's "(no genres listed)" is not text about the item.
  assert item_text.item_text(NO_TEXT) == ""


def test_no_genre_marker_and_tags_beyond_max_tags_are_left_out():
  tags = [f"tag{n}" for n in range(12)]
  item = {"item_id": "z", "title": " Quiet Harbor. ",
          "categories": ["(no genres listed)", " "], "tags": tags, "year": 0}
  # No "Genres:" part at all, the title's own full stop is not doubled, and
  # only the first (most frequent) max_tags tags are kept, in order.
  assert item_text.item_text(item, max_tags=3) == (
      "Quiet Harbor. Tags: tag0, tag1, tag2.")
  # A year of 0 means "unknown", not text; a real year is written as text.
  fields = ["title", "year"]
  assert item_text.item_text(item, fields=fields) == "Quiet Harbor."
  assert item_text.item_text(dict(item, year=1995), fields=fields) == (
      "Quiet Harbor. 1995.")
  # Fields are written in the order asked for; missing fields are skipped.
  assert item_text.item_text(item, fields=["tags", "title", "absent"],
                             max_tags=1) == "Tags: tag0. Quiet Harbor."
