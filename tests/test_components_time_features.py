"""components.time_features: hour of day and weekday (UTC) of Unix seconds."""

import datetime

import numpy as np
import pytest

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from components import time_features

MONDAY_2024 = 1704067200  # 2024-01-01 00:00:00 UTC, a Monday


@pytest.mark.parametrize("timestamp, hour, weekday", [
    (0, 0, 3),  # 1970-01-01 was a Thursday
    (4 * 86400, 0, 0),  # 1970-01-05, the first Monday
    (MONDAY_2024, 0, 0),
    (MONDAY_2024 + 13 * 3600 + 3599, 13, 0),
    (MONDAY_2024 + 6 * 86400 + 23 * 3600, 23, 6),  # Sunday 23:00
    (MONDAY_2024 + 7 * 86400, 0, 0),
    (-1, 23, 2),  # 1969-12-31 23:59:59, a Wednesday
])
def test_hour_and_weekday_by_hand(timestamp, hour, weekday):
  h, w = time_features.hour_and_weekday(tf.constant([timestamp], tf.int64))
  assert (int(h[0]), int(w[0])) == (hour, weekday)


def test_hour_and_weekday_agree_with_the_calendar():
  rng = np.random.default_rng(0)
  stamps = rng.integers(-10**9, 3 * 10**9, size=200)
  h, w = time_features.hour_and_weekday(tf.constant(stamps, tf.int64))
  expected = [datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc)
              for t in stamps]
  assert h.numpy().tolist() == [d.hour for d in expected]
  assert w.numpy().tolist() == [d.weekday() for d in expected]
  assert h.dtype == tf.int64 and w.dtype == tf.int64


def test_hour_and_weekday_keep_the_shape():
  h, w = time_features.hour_and_weekday(
      tf.constant([[0, 3600], [86400, 90000]], tf.int64))
  assert h.numpy().tolist() == [[0, 1], [0, 1]]
  assert w.numpy().tolist() == [[3, 3], [4, 4]]
