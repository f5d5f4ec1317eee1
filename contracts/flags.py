"""The spelling rule for mtrec's command-line flags: `--a_b` and `--a-b` both.

mtrec's commands mix two traditions: TF Serving's flags are written with
underscores (`--model_name`, `--model_base_path`) and the pipeline's with
dashes (`--serving-root`, `--output-dir`). A user cannot be expected to
remember which command follows which, so every multi-word flag of every
command answers to both spellings; `FlagParser` adds the other one.

argparse has no option for this and neither click nor typer offers it, so it
is written here; it lives in contracts (stdlib only) because both the
pipeline's CLI and the serving commands use it, and a command's `--help`
must not import TensorFlow.
"""

from __future__ import annotations

import argparse
from typing import Any


def spellings(flag: str) -> list[str]:
  """`--model_name` -> [`--model_name`, `--model-name`]; others unchanged."""
  if not flag.startswith("--"):
    return [flag]
  words = flag[2:]
  return list(dict.fromkeys([flag, "--" + words.replace("_", "-"),
                             "--" + words.replace("-", "_")]))


class FlagParser(argparse.ArgumentParser):
  """An ArgumentParser whose long flags accept `_` and `-` alike.

  The spelling given first stays first, so argparse derives the same `dest`
  (`--model-name` and `--model_name` both give `args.model_name`) and help
  shows it first. Abbreviated flags are off: `--model` would otherwise be
  "ambiguous" between the two spellings of one flag.
  """

  def __init__(self, *args: Any, **kwargs: Any):
    kwargs.setdefault("allow_abbrev", False)
    super().__init__(*args, **kwargs)

  def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
    both = list(dict.fromkeys(s for name in names for s in spellings(name)))
    return super().add_argument(*both, **kwargs)
