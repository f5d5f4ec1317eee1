"""Readers for the three MovieLens layouts people actually download.

GroupLens has published the same kind of data in three file layouts over the
years: "latest" (CSV with a header, UTF-8, plus free-text tags), 100K
(tab- and '|'-separated, latin-1, genres as 19 flag columns) and 1M
('::'-separated, latin-1). Each reader maps its layout onto the canonical
fields so nothing downstream knows which one it came from.

Item rows also carry what the catalog only implies: the release year, taken
from the "(1995)" that ends most titles, and for "latest" the movie's most
frequent tags. Values otherwise stay the strings found in the files; parsing
and range checks happen in ExampleGen.
"""

from __future__ import annotations

import collections
import re
from typing import Iterator, Optional, Sequence

from apache_beam.io.filesystems import FileSystems

from contracts import records
from contracts.records import RawRow
from components.readers import tabular
from components.readers.base import Reader

_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_DATE_YEAR = re.compile(r"(\d{4})\s*$")
_NO_GENRES = "(no genres listed)"
_MAX_TAGS = 10

# The genres of u.item's flag columns, in order, for when u.genre is absent.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def title_year(title: str) -> Optional[str]:
  """The year of a MovieLens title such as "Heat (1995)", or None."""
  match = _TITLE_YEAR.search(title)
  return match.group(1) if match else None


def _genres(text: str) -> list[str]:
  if text == _NO_GENRES:
    return []
  return [g for g in text.split("|") if g]


class _Layout:
  """Splits the lines of one headerless delimited file into checked rows."""

  def __init__(self, separator: str, width: int, encoding: str):
    self.separator = separator
    self.width = width
    self.encoding = encoding

  def rows(self, path: str, width: Optional[int] = None
          ) -> Iterator[tuple[int, Optional[list[str]], Optional[RawRow]]]:
    """Yields (row number, fields, None) or (row number, None, error row)."""
    width = width or self.width
    for number, line, error in tabular.iter_lines(path, self.encoding):
      if error is None:
        fields = line.split(self.separator)
        if len(fields) != width:
          error = tabular.column_count_error(width, len(fields))
      if error is not None:
        yield number, None, tabular.error_row(path, number, error)
      else:
        yield number, fields, None


def _check_header(path: str, found: Sequence[str],
                  expected: Sequence[str]) -> None:
  if list(found) != list(expected):
    raise ValueError(f"{path}: expected the header {','.join(expected)}, "
                     f"found {','.join(found)}; is this a MovieLens "
                     f"latest-format directory?")


def _csv_records(path: str, header: Sequence[str]
                ) -> Iterator[tuple[int, Optional[list[str]], Optional[RawRow]]]:
  """Like _Layout.rows, for the CSV files of the "latest" layout."""
  rows = tabular.iter_csv(path)
  for number, fields, error in rows:
    if error is not None:
      raise ValueError(f"{path}:{number}: cannot read the header: {error}")
    _check_header(path, tabular.strip_bom(fields), header)
    break
  else:
    return
  for number, fields, error in rows:
    if error is None and len(fields) != len(header):
      error = tabular.column_count_error(len(header), len(fields))
    if error is not None:
      yield number, None, tabular.error_row(path, number, error)
    else:
      yield number, fields, None


class MovieLensLatestReader(Reader):
  """ml-latest and ml-latest-small: ratings.csv, movies.csv, tags.csv."""

  _RATINGS_HEADER = ("userId", "movieId", "rating", "timestamp")
  _MOVIES_HEADER = ("movieId", "title", "genres")
  _TAGS_HEADER = ("userId", "movieId", "tag", "timestamp")

  def __init__(self, path: str):
    self.path = path

  def _file(self, name: str) -> str:
    return FileSystems.join(self.path, name)

  def interaction_units(self) -> list[str]:
    return [self._file("ratings.csv")]

  def read_interactions(self, unit: str) -> Iterator[RawRow]:
    for number, fields, error in _csv_records(unit, self._RATINGS_HEADER):
      if error is not None:
        yield error
        continue
      user, item, rating, timestamp = fields
      yield RawRow(source=unit, row=number, fields={
          records.USER_ID: user, records.ITEM_ID: item,
          records.RATING: rating, records.TIMESTAMP: timestamp})

  def item_units(self) -> list[str]:
    return [self._file("movies.csv")]

  def read_items(self, unit: str) -> Iterator[RawRow]:
    tags_path = self._file("tags.csv")
    counts = collections.defaultdict(collections.Counter)
    if FileSystems.exists(tags_path):
      for _number, fields, error in _csv_records(tags_path, self._TAGS_HEADER):
        if error is not None:
          # A broken tag line is a row problem of the catalog it annotates.
          yield error
          continue
        tag = fields[2].strip().lower()
        if tag:
          counts[fields[1]][tag] += 1
    for number, fields, error in _csv_records(unit, self._MOVIES_HEADER):
      if error is not None:
        yield error
        continue
      item, title, genres = fields
      movie_tags = sorted(counts.get(item, {}).items(),
                          key=lambda kv: (-kv[1], kv[0]))[:_MAX_TAGS]
      yield RawRow(source=unit, row=number, fields={
          records.ITEM_ID: item,
          records.TITLE: title,
          records.YEAR: title_year(title),
          records.CATEGORIES: _genres(genres),
          records.TAGS: [tag for tag, _ in movie_tags]})


class _DelimitedMovieLensReader(Reader):
  """What ml-100k and ml-1m share: a headerless user/item/rating/time file."""

  _RATINGS: _Layout
  _RATINGS_FILE: str

  def __init__(self, path: str):
    self.path = path

  def _file(self, name: str) -> str:
    return FileSystems.join(self.path, name)

  def interaction_units(self) -> list[str]:
    return [self._file(self._RATINGS_FILE)]

  def read_interactions(self, unit: str) -> Iterator[RawRow]:
    for number, fields, error in self._RATINGS.rows(unit):
      if error is not None:
        yield error
        continue
      user, item, rating, timestamp = fields
      yield RawRow(source=unit, row=number, fields={
          records.USER_ID: user, records.ITEM_ID: item,
          records.RATING: rating, records.TIMESTAMP: timestamp})


class MovieLens100KReader(_DelimitedMovieLensReader):
  """ml-100k: u.data, u.item, u.user (and u.genre for the genre names)."""

  user_feature_names = ("age", "gender", "occupation")

  _RATINGS = _Layout("\t", 4, "latin-1")
  _RATINGS_FILE = "u.data"
  _ITEM = _Layout("|", 5 + len(ML100K_GENRES), "latin-1")
  _USER = _Layout("|", 5, "latin-1")

  def _genre_names(self) -> Sequence[str]:
    path = self._file("u.genre")
    if not FileSystems.exists(path):
      return ML100K_GENRES
    by_index = {}
    for number, line, error in tabular.iter_lines(path, "latin-1"):
      if error is not None:
        raise ValueError(f"{path}:{number}: {error}")
      name, _, index = line.rpartition("|")
      if not name or not index.strip().isdigit():
        raise ValueError(f"{path}:{number}: expected 'genre|index', found "
                         f"{line!r}")
      by_index[int(index)] = name
    if sorted(by_index) != list(range(len(by_index))):
      raise ValueError(f"{path}: genre indices are not 0..{len(by_index) - 1}")
    return tuple(by_index[i] for i in range(len(by_index)))

  def item_units(self) -> list[str]:
    return [self._file("u.item")]

  def read_items(self, unit: str) -> Iterator[RawRow]:
    genres = self._genre_names()
    for number, fields, error in self._ITEM.rows(unit, 5 + len(genres)):
      if error is not None:
        yield error
        continue
      item, title, release_date = fields[:3]
      year = title_year(title)
      if year is None:
        match = _DATE_YEAR.search(release_date)
        year = match.group(1) if match else None
      yield RawRow(source=unit, row=number, fields={
          records.ITEM_ID: item,
          records.TITLE: title,
          records.YEAR: year,
          records.CATEGORIES: [
              g for g, flag in zip(genres, fields[5:]) if flag.strip() == "1"],
      })

  def user_units(self) -> list[str]:
    return [self._file("u.user")]

  def read_users(self, unit: str) -> Iterator[RawRow]:
    for number, fields, error in self._USER.rows(unit):
      if error is not None:
        yield error
        continue
      user, age, gender, occupation, _ = fields
      yield RawRow(source=unit, row=number, fields={
          records.USER_ID: user, "age": age, "gender": gender,
          "occupation": occupation})


class MovieLens1MReader(_DelimitedMovieLensReader):
  """ml-1m: ratings.dat, movies.dat, users.dat, all '::'-separated."""

  user_feature_names = ("gender", "age", "occupation")

  _RATINGS = _Layout("::", 4, "latin-1")
  _RATINGS_FILE = "ratings.dat"
  _MOVIES = _Layout("::", 3, "latin-1")
  _USERS = _Layout("::", 5, "latin-1")

  def item_units(self) -> list[str]:
    return [self._file("movies.dat")]

  def read_items(self, unit: str) -> Iterator[RawRow]:
    for number, fields, error in self._MOVIES.rows(unit):
      if error is not None:
        yield error
        continue
      item, title, genres = fields
      yield RawRow(source=unit, row=number, fields={
          records.ITEM_ID: item,
          records.TITLE: title,
          records.YEAR: title_year(title),
          records.CATEGORIES: _genres(genres)})

  def user_units(self) -> list[str]:
    return [self._file("users.dat")]

  def read_users(self, unit: str) -> Iterator[RawRow]:
    for number, fields, error in self._USERS.rows(unit):
      if error is not None:
        yield error
        continue
      user, gender, age, occupation, _ = fields
      yield RawRow(source=unit, row=number, fields={
          records.USER_ID: user, "gender": gender, "age": age,
          "occupation": occupation})
