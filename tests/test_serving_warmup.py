"""serving.warmup: replaying a model's warmup records with TF Serving's rules.
"""

import os

import grpc
import pytest

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from contracts import model_layout
from serving import apis
from serving import status
from serving import warmup


def _predict_log(user):
  log = apis.PredictionLog()
  log.predict_log.request.model_spec.name = "mtrec"
  log.predict_log.request.inputs["user_id"].dtype = 7  # DT_STRING
  log.predict_log.request.inputs["user_id"].string_val.append(user.encode())
  return log


def _write(export_dir, records):
  path = warmup.warmup_path(str(export_dir))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record if isinstance(record, bytes)
                   else record.SerializeToString())
  return path


def _users(logs):
  return [log.predict_log.request.inputs["user_id"].string_val[0].decode()
          for log in logs]


def test_the_warmup_file_is_the_layout_path(tmp_path):
  assert warmup.warmup_path(str(tmp_path)) == model_layout.warmup_path(
      str(tmp_path))
  assert warmup.warmup_path("/m/1").endswith("tf_serving_warmup_requests")


def test_no_file_is_no_warmup(tmp_path):
  seen = []
  assert warmup.run_warmup(str(tmp_path), seen.append) == 0
  assert seen == []


def test_every_record_is_replayed_in_order(tmp_path):
  _write(tmp_path, [_predict_log(u) for u in ("a", "b", "c")])
  seen = []
  assert warmup.run_warmup(str(tmp_path), seen.append) == 3
  assert _users(seen) == ["a", "b", "c"]


@pytest.mark.parametrize("iterations, calls", [(2, 6), (1, 3), (0, 3),
                                               (-5, 3)])
def test_each_record_is_replayed_num_request_iterations_times(
    tmp_path, iterations, calls):
  _write(tmp_path, [_predict_log(u) for u in ("a", "b", "c")])
  seen = []
  assert warmup.run_warmup(str(tmp_path), seen.append, iterations) == 3
  assert len(seen) == calls
  per_record = calls // 3
  assert _users(seen) == [u for u in "abc" for _ in range(per_record)]


@pytest.mark.parametrize("kind", ["classify_log", "regress_log",
                                  "multi_inference_log"])
def test_other_inference_logs_are_replayed_too(tmp_path, kind):
  log = apis.PredictionLog()
  # Any set field selects the log type; an empty request is enough.
  getattr(log, kind).request.SetInParent()
  _write(tmp_path, [log])
  seen = []
  assert warmup.run_warmup(str(tmp_path), seen.append) == 1
  assert seen[0].WhichOneof("log_type") == kind


def _error(tmp_path, execute=lambda log: None):
  with pytest.raises(status.ServingError) as e:
    warmup.run_warmup(str(tmp_path), execute)
  return e.value


def test_a_session_run_log_is_unimplemented(tmp_path):
  log = apis.PredictionLog()
  log.session_run_log.request.feed.add()
  _write(tmp_path, [_predict_log("a"), log])
  error = _error(tmp_path)
  assert error.code == grpc.StatusCode.UNIMPLEMENTED
  assert error.message == "Unsupported log_type for warmup: session_run_log"


def test_a_record_without_a_log_is_unimplemented(tmp_path):
  _write(tmp_path, [apis.PredictionLog()])
  error = _error(tmp_path)
  assert error.code == grpc.StatusCode.UNIMPLEMENTED
  assert error.message == "Unsupported log_type for warmup: None"


def test_a_record_that_does_not_parse_is_invalid(tmp_path):
  _write(tmp_path, [b"\xff\xff\xff"])
  error = _error(tmp_path)
  assert error.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.message.startswith("Failed to parse warmup record: ")


def test_a_file_that_is_not_tfrecord_is_data_loss(tmp_path):
  path = warmup.warmup_path(str(tmp_path))
  os.makedirs(os.path.dirname(path))
  with open(path, "wb") as f:
    f.write(b"this is not a TFRecord file, not even close")
  error = _error(tmp_path)
  assert error.code == grpc.StatusCode.DATA_LOSS
  assert error.message.endswith(
      ". Please verify your warmup data is in TFRecord format.")


def test_at_most_max_records(tmp_path):
  assert warmup.MAX_RECORDS == 1000
  record = _predict_log("a").SerializeToString()
  _write(tmp_path, [record] * 1000)
  assert warmup.run_warmup(str(tmp_path), lambda log: None) == 1000
  _write(tmp_path, [record] * 1001)
  error = _error(tmp_path)
  assert error.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.message.startswith(
      "Number of warmup records exceeds the maximum (1000)")


def test_a_failing_request_fails_the_warmup_with_its_status(tmp_path):
  _write(tmp_path, [_predict_log(u) for u in ("a", "b", "c")])
  seen = []

  def execute(log):
    seen.append(log)
    if len(seen) == 2:
      raise status.failed_precondition("no such signature")

  error = _error(tmp_path, execute)
  assert error.code == grpc.StatusCode.FAILED_PRECONDITION
  assert error.message == "no such signature"
  assert _users(seen) == ["a", "b"]  # nothing after the failure ran
