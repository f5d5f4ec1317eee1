"""What a data reader is: units of parallel reading, and rows from each unit.

ExampleGen runs on Beam: it asks a reader for its *units* (files, or shards of
a generator), distributes them across workers, and calls `read_*` on each unit
on the worker. A reader therefore must be picklable and cheap to construct; it
opens files only inside `read_*`. Files are opened through Beam's FileSystems
(components.readers.tabular) so that gs:// and s3:// paths work on a
distributed runner unchanged.
"""

from __future__ import annotations

import abc
from typing import Iterator, Sequence

from contracts.records import RawRow


class Reader(abc.ABC):
  """A source of interactions, item catalog rows and user profile rows."""

  #: Names of the user attributes this reader yields in user rows (besides
  #: user_id). Empty when the source has no user profiles.
  user_feature_names: Sequence[str] = ()

  @abc.abstractmethod
  def interaction_units(self) -> list[str]:
    """Units (file paths or shard names) that together hold every interaction."""

  @abc.abstractmethod
  def read_interactions(self, unit: str) -> Iterator[RawRow]:
    """Yields the interaction rows of one unit."""

  def item_units(self) -> list[str]:
    """Units holding the item catalog; empty if the source has none."""
    return []

  def read_items(self, unit: str) -> Iterator[RawRow]:
    del unit
    return iter(())

  def user_units(self) -> list[str]:
    """Units holding user profiles; empty if the source has none."""
    return []

  def read_users(self, unit: str) -> Iterator[RawRow]:
    del unit
    return iter(())
