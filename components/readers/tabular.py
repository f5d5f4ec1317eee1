"""A reader for the user's own data: CSV, Parquet or JSON Lines, mapped by config.

Real data rarely arrives as MovieLens. Rather than asking users to write a
reader, the config names the files and maps canonical fields to their columns:

  interactions: {path: "data/events/*.parquet",
                 columns: {user_id: uid, item_id: sku, timestamp: ts}}

Each matched file is one unit of parallel reading. A configured column that a
file's header (or Parquet schema) lacks is a configuration mistake, so it
raises at once instead of turning every row into an error. Values are passed on
unparsed: strings from CSV, native values from Parquet and JSONL. An empty CSV
cell becomes None, because CSV has no other way to say "no value".

The line-level helpers here (`iter_csv`, `iter_lines`) are shared with the
MovieLens readers, so undecodable bytes and row numbering are handled the same
way for every text source.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import posixpath
import re
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from contracts import records
from contracts.records import RawRow
from components.readers.base import Reader

FORMATS = ("csv", "parquet", "jsonl")

_EXTENSION_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# FileSystems.open decompresses these transparently, so "x.csv.gz" is a CSV.
_COMPRESSION_EXTENSIONS = (".gz", ".bz2", ".zst", ".deflate")
_GLOB_CHARS = re.compile(r"[*?\[]")
# surrogateescape maps each undecodable byte to one of these code points.
_SURROGATE = re.compile("[\udc80-\udcff]")
_MULTI_VALUED = (records.CATEGORIES, records.TAGS)
_BATCH_ROWS = 65536


# --- Line-level helpers, shared with the MovieLens readers. ---


def _decoded_lines(f: Any, encoding: str) -> Iterator[str]:
  # Decoding line by line rather than through io.TextIOWrapper: it works on
  # Beam's CompressedFile (not a full io object), and surrogateescape turns
  # a bad byte into a flagged row instead of a crash of the whole unit.
  for raw in iter(f.readline, b""):
    yield raw.decode(encoding, errors="surrogateescape")


def iter_csv(path: str, encoding: str = "utf-8", delimiter: str = ","
            ) -> Iterator[tuple[int, Optional[list[str]], Optional[str]]]:
  """Yields (row number, fields, error) for each non-empty CSV record.

  The row number is the line on which the record starts, so a quoted field
  spanning lines does not shift the numbers of later records. `fields` is None
  exactly when `error` is set (undecodable bytes, malformed quoting).
  """
  with FileSystems.open(path) as f:
    reader = csv.reader(_decoded_lines(f, encoding), delimiter=delimiter)
    lines_done = 0
    while True:
      try:
        fields = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        yield lines_done + 1, None, f"malformed CSV: {e}"
        lines_done = reader.line_num
        continue
      row, lines_done = lines_done + 1, reader.line_num
      if not fields:
        continue
      if _SURROGATE.search("".join(fields)):
        yield row, None, f"undecodable bytes (not valid {encoding})"
        continue
      yield row, fields, None


def iter_lines(path: str, encoding: str = "utf-8"
              ) -> Iterator[tuple[int, Optional[str], Optional[str]]]:
  """Yields (line number, text without line ending, error) per non-empty line."""
  with FileSystems.open(path) as f:
    for number, raw in enumerate(iter(f.readline, b""), start=1):
      raw = raw.rstrip(b"\r\n")
      if not raw:
        continue
      try:
        yield number, raw.decode(encoding), None
      except UnicodeDecodeError as e:
        yield number, None, (
            f"undecodable bytes (not valid {encoding}): byte {e.start}")


def strip_bom(header: Sequence[str]) -> list[str]:
  """Removes a UTF-8 byte order mark that spreadsheet tools put before a header."""
  header = list(header)
  if header and header[0].startswith("\ufeff"):
    header[0] = header[0][1:]
  return header


def error_row(source: str, row: int, error: str) -> RawRow:
  return RawRow(source=source, row=row, fields={}, error=error)


def column_count_error(expected: int, found: int) -> str:
  return f"expected {expected} columns, found {found}"


# --- Table specs. ---


@dataclasses.dataclass
class TableSpec:
  """One table of a tabular source.

  Attributes:
    path: a file, a glob ("events/part-*.csv") or a directory (every file in
      it, except hidden and "_"-prefixed ones such as _SUCCESS).
    format: "csv", "parquet" or "jsonl"; None infers it from each file's
      extension (.csv, .parquet/.pq, .jsonl/.ndjson, optionally + .gz).
    columns: canonical field name -> source column name.
    delimiter: CSV field delimiter.
    encoding: text encoding of CSV and JSONL files.
    category_separator: separator of the multi-valued categories/tags columns
      when they hold one string; lists (Parquet, JSONL) are kept as lists.
  """

  path: str
  format: Optional[str] = None
  columns: Mapping[str, str] = dataclasses.field(default_factory=dict)
  delimiter: str = ","
  encoding: str = "utf-8"
  category_separator: str = records.CATEGORY_SEPARATOR

  def __post_init__(self):
    if not isinstance(self.path, str) or not self.path:
      raise ValueError(f"TableSpec.path must be a non-empty string, got "
                       f"{self.path!r}")
    if self.format is not None and self.format not in FORMATS:
      raise ValueError(f"TableSpec.format must be one of {FORMATS} or None, "
                       f"got {self.format!r}")
    if not isinstance(self.columns, Mapping):
      raise ValueError(f"TableSpec.columns must be a mapping of canonical "
                       f"name -> source column, got {self.columns!r}")
    self.columns = dict(self.columns)
    for name, column in self.columns.items():
      if not isinstance(column, str) or not column:
        raise ValueError(f"TableSpec.columns[{name!r}] must be a column name, "
                         f"got {column!r}")
    if len(self.delimiter) != 1:
      raise ValueError(f"TableSpec.delimiter must be one character, got "
                       f"{self.delimiter!r}")
    if not self.category_separator:
      raise ValueError("TableSpec.category_separator must not be empty")

  def file_format(self, path: str) -> str:
    """The format of one matched file: the configured one, or by extension."""
    if self.format is not None:
      return self.format
    name = path.lower()
    for ext in _COMPRESSION_EXTENSIONS:
      if name.endswith(ext):
        name = name[:-len(ext)]
        break
    fmt = _EXTENSION_FORMATS.get(posixpath.splitext(name)[1])
    if fmt is None:
      raise ValueError(
          f"cannot infer the format of {path} from its extension; set "
          f"format to one of {FORMATS}")
    return fmt

  def files(self) -> list[str]:
    """The files this spec names, sorted; raises if there are none."""
    path = self.path
    if _GLOB_CHARS.search(path):
      paths = _match(path)
    else:
      directory = path.rstrip("/\\")
      paths = [p for p in _match(directory + "/*")
               if not posixpath.basename(p).startswith((".", "_"))]
      if not paths and not path.endswith(("/", "\\")):
        paths = _match(path)
        if paths and "://" not in path and os.path.isdir(path):
          paths = []
    if not paths:
      raise FileNotFoundError(f"no files match {self.path!r}")
    for p in paths:
      self.file_format(p)
    return sorted(paths)


def _match(pattern: str) -> list[str]:
  return [m.path for m in FileSystems.match([pattern])[0].metadata_list]


def _as_spec(spec: Union[TableSpec, Mapping[str, Any]], role: str,
             allowed: Optional[Sequence[str]],
             required: Sequence[str]) -> TableSpec:
  if isinstance(spec, Mapping):
    try:
      spec = TableSpec(**spec)
    except TypeError as e:
      raise ValueError(f"{role}: {e}") from None
  elif not isinstance(spec, TableSpec):
    raise ValueError(f"{role} must be a TableSpec or a mapping, got "
                     f"{type(spec).__name__}")
  missing = [name for name in required if name not in spec.columns]
  if missing:
    raise ValueError(f"{role}.columns must map {missing} to source columns")
  if allowed is not None:
    unknown = sorted(set(spec.columns) - set(allowed))
    if unknown:
      raise ValueError(f"{role}.columns has unknown fields {unknown}; known "
                       f"fields: {list(allowed)}")
  return spec


# --- Per-format row readers. ---


def _multi(value: Any, separator: str) -> Any:
  if isinstance(value, str):
    return [v.strip() for v in value.split(separator) if v.strip()]
  if isinstance(value, tuple):
    return list(value)
  return value


def _missing_column(path: str, column: str, field: str,
                    available: Sequence[str]) -> ValueError:
  return ValueError(f"{path}: column {column!r} (configured for {field!r}) "
                    f"not found; the file has columns {list(available)}")


def _read_csv(spec: TableSpec, path: str) -> Iterator[RawRow]:
  rows = iter_csv(path, spec.encoding, spec.delimiter)
  for number, header, error in rows:  # noqa: B007 (read after the break)
    if error is not None:
      raise ValueError(f"{path}:{number}: cannot read the header: {error}")
    break
  else:
    return  # An empty file has no header and no rows.
  header = strip_bom(header)
  index = {}
  for field, column in spec.columns.items():
    if column not in header:
      raise _missing_column(path, column, field, header)
    index[field] = header.index(column)
  multi = [f for f in _MULTI_VALUED if f in index]
  width = len(header)
  for number, values, error in rows:
    if error is not None:
      yield error_row(path, number, error)
    elif len(values) != width:
      yield error_row(path, number, column_count_error(width, len(values)))
    else:
      fields = {f: values[i] or None for f, i in index.items()}
      for f in multi:
        if fields[f] is None:
          fields[f] = []
        else:
          fields[f] = _multi(fields[f], spec.category_separator)
      yield RawRow(source=path, row=number, fields=fields)


def _read_jsonl(spec: TableSpec, path: str) -> Iterator[RawRow]:
  multi = [f for f in _MULTI_VALUED if f in spec.columns]
  for number, line, error in iter_lines(path, spec.encoding):
    if error is None and number == 1:
      line = line.lstrip("\ufeff")
    if error is None:
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        error = f"invalid JSON: {e.msg} at column {e.colno}"
      else:
        if not isinstance(record, dict):
          error = (f"expected a JSON object, found "
                   f"{type(record).__name__}")
    if error is not None:
      yield error_row(path, number, error)
      continue
    fields = {f: record.get(c) for f, c in spec.columns.items()}
    for f in multi:
      fields[f] = _multi(fields[f], spec.category_separator)
    yield RawRow(source=path, row=number, fields=fields)


def _read_parquet(spec: TableSpec, path: str) -> Iterator[RawRow]:
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  multi = [f for f in _MULTI_VALUED if f in spec.columns]
  with FileSystems.open(path, mime_type="application/octet-stream",
                        compression_type=CompressionTypes.UNCOMPRESSED) as f:
    parquet = pq.ParquetFile(f)
    names = parquet.schema_arrow.names
    for field, column in spec.columns.items():
      if column not in names:
        raise _missing_column(path, column, field, names)
    sources = list(dict.fromkeys(spec.columns.values()))
    number = 0
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=sources):
      data = {c: batch.column(c).to_pylist() for c in sources}
      for i in range(batch.num_rows):
        number += 1
        fields = {f: data[c][i] for f, c in spec.columns.items()}
        for f in multi:
          fields[f] = _multi(fields[f], spec.category_separator)
        yield RawRow(source=path, row=number, fields=fields)


_FORMAT_READERS = {"csv": _read_csv, "jsonl": _read_jsonl,
                   "parquet": _read_parquet}


def read_table(spec: TableSpec, path: str) -> Iterator[RawRow]:
  """Yields the rows of one file of `spec`, mapped to canonical names."""
  return _FORMAT_READERS[spec.file_format(path)](spec, path)


class TabularReader(Reader):
  """Interactions, and optionally items and users, from configured tables.

  Each argument is a TableSpec or a plain mapping of its fields (as parsed
  from YAML). Users' columns hold user_id plus any attributes; every
  attribute becomes a user feature, named by its canonical key.
  """

  def __init__(self,
               interactions: Union[TableSpec, Mapping[str, Any]],
               items: Union[TableSpec, Mapping[str, Any], None] = None,
               users: Union[TableSpec, Mapping[str, Any], None] = None):
    self.interactions = _as_spec(
        interactions, "interactions", allowed=records.INTERACTION_FIELDS,
        required=(records.USER_ID, records.ITEM_ID))
    self.items = None if items is None else _as_spec(
        items, "items", allowed=records.ITEM_FIELDS,
        required=(records.ITEM_ID,))
    self.users = None if users is None else _as_spec(
        users, "users", allowed=None, required=(records.USER_ID,))
    self.user_feature_names = tuple(
        name for name in (self.users.columns if self.users else ())
        if name != records.USER_ID)

  def interaction_units(self) -> list[str]:
    return self.interactions.files()

  def read_interactions(self, unit: str) -> Iterator[RawRow]:
    return read_table(self.interactions, unit)

  def item_units(self) -> list[str]:
    return self.items.files() if self.items else []

  def read_items(self, unit: str) -> Iterator[RawRow]:
    return read_table(self.items, unit)

  def user_units(self) -> list[str]:
    return self.users.files() if self.users else []

  def read_users(self, unit: str) -> Iterator[RawRow]:
    return read_table(self.users, unit)
