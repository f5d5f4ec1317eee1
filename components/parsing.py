"""Turns raw rows into typed canonical records, or says exactly why not.

Every type and range rule of the pipeline lives here, whatever the source
format, so a bad row is reported the same way from CSV, Parquet or a
generator: file, row, field and reason. Functions here are pure and run inside
Beam workers; they return a `Quarantined` value instead of raising, because
one bad row must never stop a run over millions of good ones.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
from typing import Any, Mapping, Optional, Sequence, Union

from contracts import records as r


@dataclasses.dataclass(frozen=True)
class Quarantined:
  """A row that failed validation, with enough context to find and fix it."""

  kind: str  # "interaction", "item" or "user"
  source: str
  row: int
  field: Optional[str]  # None when the row as a whole is malformed
  reason: str
  raw: Mapping[str, Any]

  def to_json_dict(self) -> dict[str, Any]:
    return {
        "kind": self.kind,
        "source": self.source,
        "row": self.row,
        "field": self.field,
        "reason": self.reason,
        "raw": {k: _jsonable(v) for k, v in self.raw.items()},
    }

  def describe(self) -> str:
    where = f"{self.source}, row {self.row}"
    return f"{where}, field {self.field!r}: {self.reason}" if self.field else (
        f"{where}: {self.reason}")


@dataclasses.dataclass(frozen=True)
class InputLimits:
  """Size bounds on raw fields, far above what real catalogs hold.

  Without them a 10,000-character user id is a valid user: it becomes a
  vocabulary entry, a serving input and a row in every report. The defaults
  (example_gen.limits) are chosen so that no real log hits them; a row over
  one is quarantined with the limit's config key in its reason.
  """

  max_id_bytes: int = 256  # user_id, item_id (UTF-8 bytes)
  max_text_bytes: int = 4096  # a title, a tag, a category, a user attribute
  max_list_items: int = 10_000  # tags or categories of one item


# The config keys the reasons name (components/config.py: InputLimitsConfig).
LIMITS_CONFIG_KEY = "example_gen.limits"


@dataclasses.dataclass(frozen=True)
class ValidationRules:
  rating_min: float
  rating_max: float
  timestamp_min: int  # epoch seconds, inclusive
  timestamp_max: int  # epoch seconds, inclusive
  limits: InputLimits = InputLimits()


class _BadValue(ValueError):
  pass


def _jsonable(v: Any) -> Any:
  if isinstance(v, (str, int, float, bool)) or v is None:
    return v
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  return str(v)


def _is_missing(v: Any) -> bool:
  if v is None:
    return True
  if isinstance(v, str) and not v.strip():
    return True
  return isinstance(v, float) and math.isnan(v)


def _within(s: str, limit: int, key: str) -> str:
  size = len(s.encode("utf-8", "surrogatepass"))
  if size > limit:
    raise _BadValue(f"is {size:,} bytes long, over "
                    f"{LIMITS_CONFIG_KEY}.{key}={limit:,}")
  return s


def _as_id(v: Any, limits: InputLimits = InputLimits()) -> str:
  if isinstance(v, float) and v.is_integer():
    v = int(v)  # Parquet/JSONL numeric ids: 31.0 and 31 are the same item.
  s = str(v).strip()
  if not s:
    raise _BadValue("is empty")
  return _within(s, limits.max_id_bytes, "max_id_bytes")


def _as_text(v: Any, limits: InputLimits) -> str:
  return _within(str(v).strip(), limits.max_text_bytes, "max_text_bytes")


def _as_float(v: Any) -> float:
  if isinstance(v, bool):
    raise _BadValue(f"expected a number, got {v!r}")
  try:
    x = float(v.strip() if isinstance(v, str) else v)
  except (TypeError, ValueError):
    raise _BadValue(f"could not parse {v!r} as a number") from None
  if not math.isfinite(x):
    raise _BadValue(f"{v!r} is not a finite number")
  return x


def _as_int(v: Any) -> int:
  x = _as_float(v)
  if not x.is_integer():
    raise _BadValue(f"expected a whole number, got {v!r}")
  return int(x)


def _as_binary(v: Any) -> int:
  if isinstance(v, bool):
    return int(v)
  if isinstance(v, str) and v.strip().lower() in ("true", "false"):
    return int(v.strip().lower() == "true")
  x = _as_int(v)
  if x not in (0, 1):
    raise _BadValue(f"expected 0 or 1, got {v!r}")
  return x


def _as_timestamp(v: Any) -> int:
  """Epoch seconds from a number, or from an ISO-8601 string."""
  if isinstance(v, datetime.datetime):
    dt = v
  elif isinstance(v, str) and not v.strip().lstrip("-").replace(
      ".", "", 1).isdigit():
    try:
      dt = datetime.datetime.fromisoformat(v.strip())
    except ValueError:
      raise _BadValue(f"could not parse {v!r} as a timestamp") from None
  else:
    return _as_int(v)
  if dt.tzinfo is None:
    dt = dt.replace(tzinfo=datetime.timezone.utc)
  return int(dt.timestamp())


def _as_list(v: Any, limits: InputLimits = InputLimits()) -> list[str]:
  if _is_missing(v):
    return []
  if isinstance(v, str):
    parts = v.split(r.CATEGORY_SEPARATOR)
  elif isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
    parts = list(v.tolist() if hasattr(v, "tolist") else v)
  else:
    raise _BadValue(f"expected a list or a '|'-joined string, got {v!r}")
  values = [str(p).strip() for p in parts if str(p).strip()]
  if len(values) > limits.max_list_items:
    raise _BadValue(f"has {len(values):,} values, over "
                    f"{LIMITS_CONFIG_KEY}.max_list_items="
                    f"{limits.max_list_items:,}")
  for value in values:
    _within(value, limits.max_text_bytes, "max_text_bytes")
  return values


def _format_ts(ts: int) -> str:
  try:
    return datetime.datetime.fromtimestamp(
        ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
  except (OverflowError, OSError, ValueError):
    return "out of range"


ParsedOr = Union[dict[str, Any], Quarantined]


def _required(fields: Mapping[str, Any], name: str, parse) -> Any:
  if _is_missing(fields.get(name)):
    raise _BadValue("is required but empty")
  return parse(fields[name])


def _optional(fields: Mapping[str, Any], name: str, parse, default) -> Any:
  return default if _is_missing(fields.get(name)) else parse(fields[name])


def _quarantine(kind: str, raw: r.RawRow, field: Optional[str],
                reason: str) -> Quarantined:
  return Quarantined(kind, raw.source, raw.row, field, reason, dict(raw.fields))


def parse_interaction(raw: r.RawRow, rules: ValidationRules) -> ParsedOr:
  """Parses one interaction row into canonical typed values.

  Required: user_id, item_id, timestamp. Optional labels default to
  `records.MISSING_LABEL`, except click, which defaults to 1 (a logged rating
  or view is a consumed item).
  """
  if raw.error:
    return _quarantine("interaction", raw, None, raw.error)
  f = raw.fields
  field = None
  try:
    as_id = functools.partial(_as_id, limits=rules.limits)
    field = r.USER_ID
    user_id = _required(f, field, as_id)
    field = r.ITEM_ID
    item_id = _required(f, field, as_id)
    field = r.TIMESTAMP
    ts = _required(f, field, _as_timestamp)
    if not rules.timestamp_min <= ts <= rules.timestamp_max:
      raise _BadValue(
          f"{ts} ({_format_ts(ts)}) is outside the allowed range "
          f"[{_format_ts(rules.timestamp_min)}, "
          f"{_format_ts(rules.timestamp_max)}]")
    field = r.RATING
    rating = _optional(f, field, _as_float, None)
    if rating is None:
      rating = float(r.MISSING_LABEL)
    elif not rules.rating_min <= rating <= rules.rating_max:
      raise _BadValue(f"{rating:g} is outside the allowed range "
                      f"[{rules.rating_min:g}, {rules.rating_max:g}]")
    field = r.CLICK
    click = _optional(f, field, _as_binary, 1)
    field = r.LIKE
    like = _optional(f, field, _as_binary, r.MISSING_LABEL)
    field = r.WATCH_FRACTION
    watch = _optional(f, field, _as_float, None)
    if watch is None:
      watch = float(r.MISSING_LABEL)
    elif not 0.0 <= watch <= 1.0:
      raise _BadValue(f"{watch:g} is outside [0, 1]")
  except _BadValue as e:
    return _quarantine("interaction", raw, field, f"{field} {e}")
  return {
      r.USER_ID: user_id,
      r.ITEM_ID: item_id,
      r.TIMESTAMP: ts,
      r.RATING: rating,
      r.CLICK: click,
      r.LIKE: like,
      r.WATCH_FRACTION: watch,
  }


def parse_item(raw: r.RawRow,
               limits: InputLimits = InputLimits()) -> ParsedOr:
  """Parses one catalog row: item_id required, everything else optional."""
  if raw.error:
    return _quarantine("item", raw, None, raw.error)
  f = raw.fields
  field = None
  try:
    field = r.ITEM_ID
    item_id = _required(f, field, functools.partial(_as_id, limits=limits))
    field = r.TITLE
    title = _optional(f, field, functools.partial(_as_text, limits=limits),
                      "")
    field = r.YEAR
    year = _optional(f, field, _as_int, 0)
    if year and not 1800 <= year <= 2200:
      raise _BadValue(f"{year} is not a plausible year")
    field = r.CATEGORIES
    categories = _as_list(f.get(field), limits)
    field = r.TAGS
    tags = _as_list(f.get(field), limits)
  except _BadValue as e:
    return _quarantine("item", raw, field, f"{field} {e}")
  return {
      r.ITEM_ID: item_id,
      r.TITLE: title,
      r.YEAR: year,
      r.CATEGORIES: categories,
      r.TAGS: tags,
  }


def parse_user(raw: r.RawRow, feature_names: Sequence[str],
               limits: InputLimits = InputLimits()) -> ParsedOr:
  """Parses one user profile row; attributes are kept as strings."""
  if raw.error:
    return _quarantine("user", raw, None, raw.error)
  f = raw.fields
  if _is_missing(f.get(r.USER_ID)):
    return _quarantine("user", raw, r.USER_ID, "user_id is required but empty")
  field = r.USER_ID
  try:
    user_id = _as_id(f[r.USER_ID], limits)
    out = {r.USER_ID: user_id}
    for field in feature_names:
      v = f.get(field)
      if isinstance(v, float) and v.is_integer():
        v = int(v)
      out[field] = "" if _is_missing(v) else _as_text(v, limits)
  except _BadValue as e:
    return _quarantine("user", raw, field, f"{field} {e}")
  return out
