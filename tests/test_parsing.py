"""Row validation: every rule rejects what it should, with file/row/field."""

import pytest

from components import parsing
from contracts import records as r

RULES = parsing.ValidationRules(rating_min=0.5, rating_max=5.0,
                                timestamp_min=0, timestamp_max=2_000_000_000)


def _row(**fields):
  base = {r.USER_ID: "7", r.ITEM_ID: "31", r.TIMESTAMP: "964982703",
          r.RATING: "4.5"}
  base.update(fields)
  return r.RawRow("ratings.csv", 12, base)


def test_good_row_is_typed_and_missing_labels_get_defaults():
  out = parsing.parse_interaction(_row(), RULES)
  assert out == {r.USER_ID: "7", r.ITEM_ID: "31", r.TIMESTAMP: 964982703,
                 r.RATING: 4.5, r.CLICK: 1, r.LIKE: r.MISSING_LABEL,
                 r.WATCH_FRACTION: float(r.MISSING_LABEL)}


@pytest.mark.parametrize("fields, field, reason", [
    ({r.USER_ID: "  "}, r.USER_ID, "user_id is required but empty"),
    ({r.ITEM_ID: None}, r.ITEM_ID, "item_id is required but empty"),
    ({r.RATING: "abc"}, r.RATING, "rating could not parse 'abc' as a number"),
    ({r.RATING: "17"}, r.RATING,
     "rating 17 is outside the allowed range [0.5, 5]"),
    ({r.RATING: "nan"}, r.RATING, "rating 'nan' is not a finite number"),
    # -1 is the internal "missing" marker; from a source it is just invalid.
    ({r.RATING: "-1"}, r.RATING,
     "rating -1 is outside the allowed range [0.5, 5]"),
    ({r.WATCH_FRACTION: "-1"}, r.WATCH_FRACTION,
     "watch_fraction -1 is outside [0, 1]"),
    ({r.TIMESTAMP: "32503680000"}, r.TIMESTAMP,
     "timestamp 32503680000 (3000-01-01 00:00:00 UTC) is outside the allowed "
     "range [1970-01-01 00:00:00 UTC, 2033-05-18 03:33:20 UTC]"),
    ({r.TIMESTAMP: "12.5"}, r.TIMESTAMP,
     "timestamp expected a whole number, got '12.5'"),
    ({r.CLICK: "2"}, r.CLICK, "click expected 0 or 1, got '2'"),
    ({r.WATCH_FRACTION: "1.5"}, r.WATCH_FRACTION,
     "watch_fraction 1.5 is outside [0, 1]"),
])
def test_bad_fields_are_quarantined_with_field_and_reason(fields, field,
                                                          reason):
  out = parsing.parse_interaction(_row(**fields), RULES)
  assert isinstance(out, parsing.Quarantined)
  assert (out.source, out.row, out.field, out.reason) == (
      "ratings.csv", 12, field, reason)
  assert out.describe().startswith("ratings.csv, row 12, field")


def test_structural_error_is_kept_as_the_reason():
  out = parsing.parse_interaction(
      r.RawRow("x.csv", 3, {}, error="expected 4 columns, found 3"), RULES)
  assert isinstance(out, parsing.Quarantined)
  assert out.field is None and out.reason == "expected 4 columns, found 3"


def test_iso_timestamps_and_numeric_ids_are_accepted():
  out = parsing.parse_interaction(
      _row(**{r.TIMESTAMP: "2020-01-02T03:04:05+00:00", r.ITEM_ID: 31.0,
              r.LIKE: "true"}), RULES)
  assert out[r.TIMESTAMP] == 1577934245
  assert out[r.ITEM_ID] == "31" and out[r.LIKE] == 1


def test_item_parsing():
  ok = parsing.parse_item(r.RawRow("movies.csv", 2, {
      r.ITEM_ID: "1", r.TITLE: "Toy Story (1995) ", r.YEAR: "1995",
      r.CATEGORIES: "Animation|Comedy", r.TAGS: ["pixar"]}))
  assert ok == {r.ITEM_ID: "1", r.TITLE: "Toy Story (1995)", r.YEAR: 1995,
                r.CATEGORIES: ["Animation", "Comedy"], r.TAGS: ["pixar"]}
  bad = parsing.parse_item(r.RawRow("movies.csv", 3, {
      r.ITEM_ID: "2", r.YEAR: "12345"}))
  assert isinstance(bad, parsing.Quarantined) and bad.field == r.YEAR


def test_user_parsing_keeps_attributes_as_strings():
  out = parsing.parse_user(r.RawRow("u.user", 1, {
      r.USER_ID: "1", "age": 24.0, "gender": "M", "occupation": None}),
      ["age", "gender", "occupation"])
  assert out == {r.USER_ID: "1", "age": "24", "gender": "M", "occupation": ""}


SMALL = parsing.InputLimits(max_id_bytes=8, max_text_bytes=12,
                            max_list_items=2)


@pytest.mark.parametrize("fields, field, reason", [
    ({r.USER_ID: "u" * 9}, r.USER_ID,
     "user_id is 9 bytes long, over example_gen.limits.max_id_bytes=8"),
    # Bytes, not characters: four 2-byte characters are 8 bytes, five are 10.
    ({r.ITEM_ID: "é" * 5}, r.ITEM_ID,
     "item_id is 10 bytes long, over example_gen.limits.max_id_bytes=8"),
])
def test_ids_over_the_limit_are_quarantined_naming_it(fields, field, reason):
  rules = parsing.ValidationRules(0.5, 5.0, 0, 2_000_000_000, SMALL)
  out = parsing.parse_interaction(_row(**fields), rules)
  assert isinstance(out, parsing.Quarantined)
  assert (out.field, out.reason) == (field, reason)
  at_limit = {k: v[:4] if k == r.ITEM_ID else v[:8] for k, v in fields.items()}
  assert parsing.parse_interaction(_row(**at_limit), rules)[field] == (
      next(iter(at_limit.values())))


def test_item_text_and_list_limits():
  def item(**fields):
    return parsing.parse_item(r.RawRow("movies.csv", 4, dict(
        {r.ITEM_ID: "1"}, **fields)), SMALL)

  assert item(**{r.TITLE: "x" * 12, r.TAGS: ["a", "b"]})[r.TAGS] == ["a", "b"]
  long_title = item(**{r.TITLE: "x" * 13})
  assert (long_title.field, long_title.reason) == (
      r.TITLE,
      "title is 13 bytes long, over example_gen.limits.max_text_bytes=12")
  many = item(**{r.CATEGORIES: "a|b|c"})
  assert (many.field, many.reason) == (
      r.CATEGORIES,
      "categories has 3 values, over example_gen.limits.max_list_items=2")
  long_tag = item(**{r.TAGS: ["ok", "t" * 13]})
  assert long_tag.field == r.TAGS and "max_text_bytes=12" in long_tag.reason
  user = parsing.parse_user(r.RawRow("u.user", 3, {
      r.USER_ID: "1", "occupation": "o" * 13}), ["occupation"], SMALL)
  assert (user.field, user.reason) == (
      "occupation",
      "occupation is 13 bytes long, over example_gen.limits.max_text_bytes=12")
