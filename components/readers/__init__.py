"""Data readers by name, so a config's `data.format` selects one.

The pipeline config names a format and passes its options straight to the
reader's constructor; this registry is the only place that maps the two.
"""

from __future__ import annotations

from typing import Any

import pydantic

from components.config import READER_OPTIONS
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
  """Constructs the reader registered as `format` with `options`.

  The options are checked against the format's model (components/config.py:
  READER_OPTIONS, the one `data.options` is checked against at config load),
  so a caller that skips the config still gets the offending key named.
  """
  try:
    reader_class = READERS[format]
  except (KeyError, TypeError):
    raise ValueError(f"unknown data format {format!r}; known formats: "
                     f"{', '.join(sorted(READERS))}") from None
  try:
    READER_OPTIONS[format].model_validate(options)
  except pydantic.ValidationError as e:
    problems = "; ".join(
        f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
    raise ValueError(
        f"bad options for data format {format!r}: {problems}") from None
  return reader_class(**options)


__all__ = [
    "READERS", "Reader", "build_reader", "MovieLensLatestReader",
    "MovieLens100KReader", "MovieLens1MReader", "TableSpec", "TabularReader",
    "SyntheticReader",
]
