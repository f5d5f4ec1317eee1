"""The event time as the model sees it: hour of day and day of week (UTC).

One home for the formula: the TFT preprocessing_fn applies it to every
training event, and the exported `recommend` applies it to the request time
directly, without running the whole transform graph for one timestamp.
"""

from __future__ import annotations

import tensorflow as tf

from contracts import features as F


def hour_and_weekday(timestamp: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(F.HOUR, F.WEEKDAY) of int64 Unix seconds; Monday is weekday 0."""
  hour = tf.math.floormod(timestamp // 3600, F.HOURS_PER_DAY)
  # 1970-01-01 was a Thursday; +3 makes Monday 0.
  weekday = tf.math.floormod(timestamp // 86400 + 3, F.DAYS_PER_WEEK)
  return hour, weekday
