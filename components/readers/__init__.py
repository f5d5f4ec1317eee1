"""Data readers by name, so a config's `data.format` selects one.

The pipeline config names a format and passes its options straight to the
reader's constructor; this registry is the only place that maps the two.
"""

from __future__ import annotations

import inspect
from typing import Any

from components.readers.base import Reader
from components.readers.movielens import MovieLens100KReader
from components.readers.movielens import MovieLens1MReader
from components.readers.movielens import MovieLensLatestReader
from components.readers.synthetic import SyntheticReader
from components.readers.tabular import TableSpec
from components.readers.tabular import TabularReader

READERS = {
    "movielens_latest": MovieLensLatestReader,
    "movielens_100k": MovieLens100KReader,
    "movielens_1m": MovieLens1MReader,
    "tabular": TabularReader,
    "synthetic": SyntheticReader,
}


def build_reader(format: str, **options: Any) -> Reader:  # pylint: disable=redefined-builtin
  """Constructs the reader registered as `format` with `options`."""
  try:
    reader_class = READERS[format]
  except (KeyError, TypeError):
    raise ValueError(f"unknown data format {format!r}; known formats: "
                     f"{', '.join(sorted(READERS))}") from None
  try:
    inspect.signature(reader_class).bind(**options)
  except TypeError as e:
    raise ValueError(f"bad options for data format {format!r}: {e}") from None
  return reader_class(**options)


__all__ = [
    "READERS", "Reader", "build_reader", "MovieLensLatestReader",
    "MovieLens100KReader", "MovieLens1MReader", "TableSpec", "TabularReader",
    "SyntheticReader",
]
