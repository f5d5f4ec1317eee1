"""Model warmup: replaying assets.extra/tf_serving_warmup_requests at load.

The first calls of a freshly loaded SavedModel pay for lazy initialization
(function tracing, kernel selection, memory pools); a version that goes live
cold answers its first requests slowly. TF Serving therefore replays the
PredictionLog records a model ships in `assets.extra/tf_serving_warmup_requests`
before it marks the version AVAILABLE, and fails the load if a record fails.
This module reads that file with TF Serving's rules (TFRecord of
PredictionLog, at most 1000 records, each replayed
`num_request_iterations` times; predict, classify, regress and
multi_inference logs only) and hands each request to a callback that runs
it exactly as a live request would run.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import tensorflow as tf

from contracts import model_layout
from serving import apis
from serving import status

_LOG = logging.getLogger("serving.warmup")

MAX_RECORDS = 1000  # WarmupConsts::kMaxNumRecords.


def warmup_path(export_dir: str) -> str:
  return model_layout.warmup_path(export_dir)


def run_warmup(export_dir: str,
               execute: Callable[[apis.PredictionLog], None],
               num_request_iterations: int = 1) -> int:
  """Replays the warmup records of a SavedModel; returns how many it read.

  Args:
    export_dir: the version directory.
    execute: runs one logged request; raises status.ServingError on failure.
    num_request_iterations: times each record is replayed (at least 1).

  Raises:
    status.ServingError: a record failed, could not be parsed, the file is
      not TFRecord, or it holds more than MAX_RECORDS records.
  """
  path = warmup_path(export_dir)
  if not tf.io.gfile.exists(path):
    _LOG.info("No warmup data file found at %s", path)
    return 0
  iterations = max(1, num_request_iterations)
  started = time.monotonic()
  count = 0
  try:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      log = apis.PredictionLog()
      try:
        log.ParseFromString(record)
      except Exception:  # pylint: disable=broad-except
        raise status.invalid_argument(
            f"Failed to parse warmup record: {record!r} from {path}") from None
      kind = log.WhichOneof("log_type")
      if kind not in ("predict_log", "classify_log", "regress_log",
                      "multi_inference_log"):
        raise status.unimplemented(
            f"Unsupported log_type for warmup: {kind}")
      for _ in range(iterations):
        execute(log)
      count += 1
      if count > MAX_RECORDS:
        raise status.invalid_argument(
            f"Number of warmup records exceeds the maximum ({MAX_RECORDS})"
            f" at {path}")
  except tf.errors.DataLossError as e:
    raise status.ServingError(
        status.grpc_code(e.error_code),
        f"{e.message}. Please verify your warmup data is in TFRecord"
        " format.") from None
  except tf.errors.OpError as e:
    raise status.from_exception(e) from None
  elapsed_us = int((time.monotonic() - started) * 1e6)
  _LOG.info(
      "Finished reading warmup data for model at %s. Number of warmup records"
      " read: %d. Elapsed time (microseconds): %d.", path, count, elapsed_us)
  return count
