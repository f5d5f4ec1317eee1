"""What every config section shares: strictness and one error format.

Each section lives beside the code that reads it (components/config.py,
trainer/config.py; pipeline/config.py composes them into the file a user
writes). They all forbid unknown keys and are frozen, and a validation
failure becomes one line naming the file and the dotted key
(`configs/x.yaml: trainer.epochs: Input should be a valid integer`), however
the section reached the code: a YAML file or a KFP parameter.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic


class ConfigError(ValueError):
  """A config that cannot be used; the message names the source and key."""


class StrictConfig(pydantic.BaseModel):
  """A config section: unknown keys are errors, values never change."""

  model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def describe_errors(error: pydantic.ValidationError, prefix: str = "") -> str:
  """`key.path: message; ...` for every problem pydantic found."""
  return "; ".join(
      (f"{prefix}{'.'.join(str(p) for p in err['loc'])}: "
       if err["loc"] or prefix else "") +
      err["msg"].removeprefix("Value error, ") for err in error.errors())


Section = TypeVar("Section", bound=pydantic.BaseModel)


def parse_section(cls: type[Section], text: str, name: str,
                  source: str = "parameter") -> Section:
  """Validates one section sent as JSON (a KFP parameter), naming its keys.

  Raises:
    ConfigError: `<source> <name>: <name>.<key>: <problem>`.
  """
  try:
    raw: Any = json.loads(text)
  except json.JSONDecodeError as e:
    raise ConfigError(f"{source} {name}: invalid JSON: {e}") from None
  try:
    return cls.model_validate(raw)
  except pydantic.ValidationError as e:
    raise ConfigError(
        f"{source} {name}: {describe_errors(e, name + '.')}") from None


def encode_section(section: pydantic.BaseModel) -> str:
  """A section as the JSON a KFP parameter carries (defaults included).

  Defaults are written out so that a key's value, not whether the file set
  it, decides a step's cache key, and the compiled spec shows what ran.
  """
  return json.dumps(section.model_dump(mode="json"), sort_keys=True)
