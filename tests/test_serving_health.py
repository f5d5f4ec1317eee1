"""The gRPC health service, graceful shutdown and the message-size limit.

Health is checked with a client that knows only the official wire format
(grpc.health.v1, built from its descriptor), as grpc_health_probe and
Kubernetes' gRPC probes do.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import grpc
import numpy as np
import pytest

from serving import apis
from serving import batching
from serving import health
from serving import model_server
from serving import testing

_MODEL = "toy"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
  return testing.export_toy(str(tmp_path_factory.mktemp("health") / "v1"), 1)


def _check(port, service=""):
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    return health.check(channel, service)


def test_check_follows_model_availability(export, tmp_path):
  base = tmp_path / _MODEL
  base.mkdir()
  server = model_server.ModelServer(_MODEL, str(base), port=0,
                                    host="127.0.0.1",
                                    poll_wait_seconds=0.1).start()
  try:
    assert _check(server.port) == health.NOT_SERVING  # No version yet.
    assert _check(server.port, _MODEL) == health.NOT_SERVING
    assert _check(server.port, apis.MODEL_SERVICE) == health.SERVING
    testing.publish(export, str(base), 1)
    assert testing.wait_for(lambda: _check(server.port) == health.SERVING)
    assert _check(server.port, _MODEL) == health.SERVING
    assert _check(server.port, apis.PREDICTION_SERVICE) == health.SERVING
    with pytest.raises(grpc.RpcError) as info:
      _check(server.port, "nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
  finally:
    server.stop()


def test_watch_streams_changes_until_shutdown(export, tmp_path):
  base = tmp_path / _MODEL
  testing.publish(export, str(base), 1)
  server = model_server.ModelServer(_MODEL, str(base), port=0,
                                    host="127.0.0.1",
                                    poll_wait_seconds=0).start()
  seen = []
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    watch = channel.unary_stream(
        f"/{health.SERVICE_NAME}/Watch",
        request_serializer=health.HealthCheckRequest.SerializeToString,
        response_deserializer=health.HealthCheckResponse.FromString)
    unknown = watch(health.HealthCheckRequest(service="nope"), timeout=10)
    assert next(unknown).status == health.SERVICE_UNKNOWN
    unknown.cancel()
    stream = watch(health.HealthCheckRequest(service=""), timeout=10)

    def read():
      try:
        for response in stream:
          seen.append(response.status)
      except grpc.RpcError:
        pass  # The server went away.

    reader = threading.Thread(target=read)
    reader.start()
    assert testing.wait_for(lambda: seen == [health.SERVING])
    server.stop(grace=1.0)
    reader.join(timeout=10)
  assert seen == [health.SERVING, health.NOT_SERVING]


def test_graceful_shutdown_finishes_calls_in_flight(export, tmp_path):
  base = tmp_path / _MODEL
  testing.publish(export, str(base), 1)
  # A request waits 0.8 s in an open batch: it is in flight during stop().
  server = model_server.ModelServer(
      _MODEL, str(base), port=0, host="127.0.0.1", poll_wait_seconds=0,
      enable_batching=True,
      batching_parameters=batching.BatchingParameters(
          max_batch_size=8, batch_timeout_micros=800_000,
          num_batch_threads=1)).start()
  result = {}
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    stub = apis.PredictionServiceStub(channel)
    request = testing.predict_request(_MODEL, {"user_id": [b"u"],
                                               "item_id": [b"i"]})

    def call():
      try:
        result["score"] = stub.Predict(request, timeout=10).outputs[
            "score"].float_val[0]
      except grpc.RpcError as e:
        result["error"] = e.code()

    in_flight = threading.Thread(target=call)
    in_flight.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop(grace=5.0)
    in_flight.join()
    assert time.monotonic() - started < 5.0
    assert result == {"score": 102.0}
    with pytest.raises(grpc.RpcError) as info:
      stub.Predict(request, timeout=2)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_message_size_limit(export, tmp_path):
  base = tmp_path / _MODEL
  testing.publish(export, str(base), 1)
  server = model_server.ModelServer(
      _MODEL, str(base), port=0, host="127.0.0.1", poll_wait_seconds=0,
      grpc_channel_arguments="grpc.max_receive_message_length=4096").start()
  try:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
      stub = apis.PredictionServiceStub(channel)
      small = testing.predict_request(_MODEL, {"x": np.ones(16, np.float32)},
                                      signature_name="strict")
      assert len(stub.Predict(small, timeout=10).outputs["y"].float_val) == 16
      big = testing.predict_request(_MODEL, {"x": np.ones(4096, np.float32)},
                                    signature_name="strict")
      with pytest.raises(grpc.RpcError) as info:
        stub.Predict(big, timeout=10)
      assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
  finally:
    server.stop()
  # TF Serving's own limit is 2^31 - 1 bytes: far beyond gRPC's 4 MiB.
  server = model_server.ModelServer(_MODEL, str(base), port=0,
                                    host="127.0.0.1",
                                    poll_wait_seconds=0).start()
  try:
    options = [("grpc.max_send_message_length", -1),
               ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}",
                               options=options) as channel:
      big = testing.predict_request(
          _MODEL, {"x": np.ones(2_000_000, np.float32)},
          signature_name="strict")
      response = apis.PredictionServiceStub(channel).Predict(big, timeout=30)
      assert len(response.outputs["y"].float_val) == 2_000_000
  finally:
    server.stop()


def test_startup_errors_use_tf_servings_words(tmp_path):
  with pytest.raises(RuntimeError) as info:
    model_server.ModelServer(port=0, host="127.0.0.1").start()
  assert str(info.value) == (
      "Failed to start server. Error: INVALID_ARGUMENT: Both"
      " server_options.model_base_path and server_options.model_config_file"
      " are empty!")
  with pytest.raises(RuntimeError) as info:
    model_server.ModelServer(_MODEL, str(tmp_path), port=0, host="127.0.0.1",
                             batching_parameters_file="b.config").start()
  assert "batching_parameters_file is set without setting" in str(info.value)
  config = tmp_path / "models.config"
  config.write_text("model_config_list { config { name: 'a' base_path: 'a' "
                    "model_platform: 'tensorflow' } }")
  with pytest.raises(RuntimeError) as info:
    model_server.ModelServer(port=0, host="127.0.0.1",
                             model_config_file=str(config)).start()
  assert str(info.value) == (
      "Failed to start server. Error: INVALID_ARGUMENT: Expected model a to"
      " have an absolute path or URI; got base_path()=a")


def test_string_input_limits(export, tmp_path):
  base = tmp_path / _MODEL
  testing.publish(export, str(base), 1)
  server = model_server.ModelServer(
      _MODEL, str(base), port=0, host="127.0.0.1", poll_wait_seconds=0,
      max_request_string_bytes=100, max_string_element_bytes=16,
      rest_api_port=0).start()

  def recommend(user_ids):
    request = testing.predict_request(
        _MODEL, {"user_id": np.array(user_ids, dtype=object)},
        signature_name="recommend")
    return stub.Predict(request, timeout=10)

  try:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
      stub = apis.PredictionServiceStub(channel)
      # At both limits exactly: 16-byte ids, 96 bytes in all.
      assert recommend([b"u" * 16] * 6).outputs["user_length"].int_val == (
          [16] * 6)
      with pytest.raises(grpc.RpcError) as info:
        recommend([b"alice", b"u" * 17])
      assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
      assert info.value.details() == (
          'input "user_id" holds a string of 17 bytes, over'
          " --max_string_element_bytes=16")
      with pytest.raises(grpc.RpcError) as info:
        recommend([b"u" * 16] * 7)
      assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
      assert "hold 112 bytes, over --max_request_string_bytes=100" in (
          info.value.details())
      # The server answers the next request as before.
      assert recommend([b"bob"]).outputs["user_length"].int_val == [3]

    # REST goes through the same service: the same codes, as HTTP statuses.
    def rest(user_ids):
      connection = http.client.HTTPConnection("127.0.0.1", server.rest_port,
                                              timeout=10)
      try:
        connection.request(
            "POST", f"/v1/models/{_MODEL}/versions/1:predict",
            body=json.dumps({"signature_name": "recommend",
                             "instances": [{"user_id": u} for u in user_ids]}))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
      finally:
        connection.close()

    assert rest(["u" * 17]) == (400, {"error": (
        'input "user_id" holds a string of 17 bytes, over'
        " --max_string_element_bytes=16")})
    status, body = rest(["u" * 16] * 7)
    assert status == 429 and "over --max_request_string_bytes=100" in (
        body["error"])
    assert rest(["bob"])[0] == 200
  finally:
    server.stop()
