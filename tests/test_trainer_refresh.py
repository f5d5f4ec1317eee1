"""trainer/refresh.py without a model: items in, catalog columns out.

normalize_item and read_items_file (CSV and JSON Lines), and the checks
rebuild makes before it builds anything. The rebuild itself, with a
trained model, is tests/test_catalog_refresh.py.
"""

from __future__ import annotations

import json

import pytest

from trainer import refresh
from trainer import refresh_state
from trainer.config import TrainerConfig

COLUMNS = ["item_id", "title", "categories", "year", "tags"]


# normalize_item


def test_a_full_item_becomes_catalog_columns_in_order():
  item = refresh.normalize_item({
      "item_id": " i7 ", "title": "Heat", "categories": "Crime | Drama",
      "year": "1995", "tags": "heist|la", "rating": 5})
  assert item == {"item_id": "i7", "title": "Heat",
                  "categories": ["Crime", "Drama"], "year": 1995,
                  "tags": ["heist", "la"]}
  assert list(item) == COLUMNS  # the extra "rating" is dropped


def test_only_the_item_id_is_required():
  assert refresh.normalize_item({"item_id": 12}) == {
      "item_id": "12", "title": "", "categories": [], "year": 0,
      "tags": []}


@pytest.mark.parametrize("value", [None, "", " | ", "|||"])
def test_empty_multi_valued_fields_are_empty_lists(value):
  item = refresh.normalize_item({"item_id": "a", "categories": value,
                                 "tags": value})
  assert item["categories"] == [] and item["tags"] == []


def test_separator_strings_drop_blank_entries_and_strip_spaces():
  item = refresh.normalize_item({"item_id": "a",
                                 "categories": "|Sci-Fi|| War |"})
  assert item["categories"] == ["Sci-Fi", "War"]


def test_lists_are_kept_as_given_and_stringified():
  item = refresh.normalize_item({"item_id": "a", "categories": ("x", 2),
                                 "tags": ["a|b"]})
  # A list is already split: a separator inside an entry is not split again.
  assert item["categories"] == ["x", "2"]
  assert item["tags"] == ["a|b"]


@pytest.mark.parametrize("year,expected", [
    (None, 0), ("", 0), (0, 0), ("2024", 2024), (" 1999 ", 1999),
    (1987.0, 1987)])
def test_year_is_an_int_with_zero_for_unknown(year, expected):
  assert refresh.normalize_item({"item_id": "a", "year": year})["year"] == (
      expected)


def test_a_year_that_is_not_a_number_is_an_error():
  with pytest.raises(ValueError, match="invalid literal"):
    refresh.normalize_item({"item_id": "a", "year": "nineteen"})


def test_title_none_is_empty_and_other_values_are_text():
  assert refresh.normalize_item({"item_id": "a", "title": None})[
      "title"] == ""
  assert refresh.normalize_item({"item_id": "a", "title": 1984})[
      "title"] == "1984"


@pytest.mark.parametrize("raw", [{}, {"item_id": ""}, {"item_id": "   "},
                                 {"title": "no id"}])
def test_an_item_without_an_id_is_an_error_that_shows_it(raw):
  with pytest.raises(ValueError, match="an item needs an item_id") as e:
    refresh.normalize_item(raw)
  assert str(dict(raw)) in str(e.value)


def test_a_null_item_id_is_rejected():
  with pytest.raises(ValueError, match="an item needs an item_id"):
    refresh.normalize_item({"item_id": None, "title": "Orphan"})


def test_the_input_mapping_is_not_changed():
  raw = {"item_id": " a ", "categories": ["x"], "tags": "p|q"}
  copy = json.loads(json.dumps(raw))
  item = refresh.normalize_item(raw)
  item["categories"].append("y")
  assert raw == copy


# read_items_file


def test_csv_quoting_missing_cells_and_extra_columns(tmp_path):
  path = tmp_path / "items.csv"
  path.write_text(
      "item_id,title,categories,year,tags,price\n"
      'a1,"Good, the Bad",Western|Drama,1966,classic|leone,9\n'
      "a2,Short\n"
      "a3,Élan vital,,,,\n", encoding="utf-8")
  assert refresh.read_items_file(str(path)) == [
      {"item_id": "a1", "title": "Good, the Bad",
       "categories": ["Western", "Drama"], "year": 1966,
       "tags": ["classic", "leone"]},
      {"item_id": "a2", "title": "Short", "categories": [], "year": 0,
       "tags": []},
      {"item_id": "a3", "title": "Élan vital", "categories": [], "year": 0,
       "tags": []}]


def test_a_csv_with_only_a_header_has_no_items(tmp_path):
  path = tmp_path / "items.csv"
  path.write_text("item_id,title,categories,year,tags\n")
  assert refresh.read_items_file(str(path)) == []


def test_a_csv_row_without_an_id_fails_the_file(tmp_path):
  path = tmp_path / "items.csv"
  path.write_text("item_id,title\nok,Fine\n,Missing\n")
  with pytest.raises(ValueError, match="'title': 'Missing'"):
    refresh.read_items_file(str(path))


def test_any_other_extension_is_read_as_csv(tmp_path):
  path = tmp_path / "items.txt"
  path.write_text("item_id,year\nz,2001\n")
  assert refresh.read_items_file(str(path)) == [
      {"item_id": "z", "title": "", "categories": [], "year": 2001,
       "tags": []}]


@pytest.mark.parametrize("name", ["items.jsonl", "items.json"])
def test_json_lines_skip_blank_lines(tmp_path, name):
  path = tmp_path / name
  path.write_text(
      '{"item_id": "j1", "title": "One", "categories": "A|B", "year": 2020}\n'
      "\n   \n"
      '{"item_id": 2, "categories": ["C"], "tags": null}\n', encoding="utf-8")
  assert refresh.read_items_file(str(path)) == [
      {"item_id": "j1", "title": "One", "categories": ["A", "B"],
       "year": 2020, "tags": []},
      {"item_id": "2", "title": "", "categories": ["C"], "year": 0,
       "tags": []}]


def test_a_malformed_json_line_is_an_error(tmp_path):
  path = tmp_path / "items.jsonl"
  path.write_text('{"item_id": "ok"}\n{"item_id": \n')
  with pytest.raises(json.JSONDecodeError):
    refresh.read_items_file(str(path))


def test_a_missing_file_is_an_os_error(tmp_path):
  with pytest.raises(FileNotFoundError):
    refresh.read_items_file(str(tmp_path / "none.csv"))


# rebuild's checks before it builds a model


def _state(export_dir, tmp_path, text):
  graph = tmp_path / "graph"
  graph.mkdir(exist_ok=True)
  refresh_state.save_state(
      str(export_dir), str(graph), TrainerConfig(), [],
      {"label_means": {}, "item_probabilities": [1.0]},
      {c: [v] for c, v in zip(COLUMNS, ["a", "A", [], 0, []])},
      {}, {}, None, text, 5, 10)


def test_rebuild_needs_a_model_exported_with_refresh_state(tmp_path):
  source = tmp_path / "old"
  source.mkdir()
  with pytest.raises(ValueError, match="exported without refresh state"):
    refresh.rebuild(str(source), [{"item_id": "n"}], None,
                    str(tmp_path / "new"), "m", log=lambda m: None)
  assert not (tmp_path / "new").exists()


def test_rebuild_of_a_text_model_needs_the_new_items_vectors(tmp_path):
  source = tmp_path / "old"
  _state(source, tmp_path, {"model": "enc", "fields": ["title"],
                            "max_tags": 3, "batch_size": 8})
  assert refresh_state.text_settings(str(source)) == {
      "model": "enc", "fields": ["title"], "max_tags": 3, "batch_size": 8}
  with pytest.raises(ValueError, match="the new items' vectors are needed"):
    refresh.rebuild(str(source), [{"item_id": "n"}], None,
                    str(tmp_path / "new"), "m", log=lambda m: None)
  assert not (tmp_path / "new").exists()


def test_rebuild_rejects_a_bad_new_item_before_building(tmp_path):
  source = tmp_path / "old"
  _state(source, tmp_path, None)
  assert refresh_state.text_settings(str(source)) is None
  with pytest.raises(ValueError, match="an item needs an item_id"):
    refresh.rebuild(str(source), [{"title": "x"}], None,
                    str(tmp_path / "new"), "m", log=lambda m: None)


def test_a_csv_written_with_a_byte_order_mark_keeps_its_item_id_column(
    tmp_path):
  path = tmp_path / "items.csv"
  path.write_bytes("\ufeffitem_id,title\nx1,Excel export\n".encode("utf-8"))
  assert [i["item_id"] for i in refresh.read_items_file(str(path))] == ["x1"]
