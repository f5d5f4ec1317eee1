"""Tests for the serving layer: a real gRPC server, real stubs, a toy model.

The toy SavedModel (serving/testing.py) is built with tf.Module + tf.function
signatures like the trainer's export, and each version adds `100 * version`
to its scores, so a response shows which version computed it, not only which
version it claims. test_serving_conformance.py holds the full table of TF
Serving's codes and messages; this file covers the server's life cycle and
the client library.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import apis
from serving import client as client_lib
from serving import client_cli
from serving import model_server
from serving import testing

_MODEL = "toy"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
  """export(version) -> directory of a toy SavedModel for that version."""
  root = tmp_path_factory.mktemp("exports")
  cache = {}

  def _export(version: int) -> str:
    if version not in cache:
      cache[version] = testing.export_toy(str(root / f"v{version}"), version)
    return cache[version]

  return _export


def _publish(export_dir: str, base_path: str, version: int) -> None:
  testing.publish(export_dir, base_path, version)


def _start_server(base_path, **kwargs) -> model_server.ModelServer:
  kwargs.setdefault("poll_wait_seconds", 0.1)
  return model_server.ModelServer(
      _MODEL, str(base_path), port=0, host="127.0.0.1", **kwargs).start()


@pytest.fixture(scope="module")
def server(export, tmp_path_factory):
  base_path = tmp_path_factory.mktemp("models") / _MODEL
  base_path.mkdir()
  _publish(export(1), str(base_path), 1)
  server = _start_server(base_path)
  yield server
  server.stop()


@pytest.fixture(scope="module")
def client(server):
  with client_lib.PredictionClient(f"127.0.0.1:{server.port}") as client:
    yield client


def _predict_request(inputs=None, signature_name="", name=_MODEL):
  request = apis.PredictRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature_name
  if inputs is None:
    inputs = {"user_id": np.array([b"u1"]), "item_id": np.array([b"item9"])}
  for alias, value in inputs.items():
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
  return request


def _status_request(name=_MODEL):
  request = apis.GetModelStatusRequest()
  request.model_spec.name = name
  return request


def _states(model_stub) -> dict[int, str]:
  response = model_stub.GetModelStatus(_status_request(), timeout=5)
  return {s.version: apis.ModelVersionStatus.State.Name(s.state)
          for s in response.model_version_status}


def _rpc_error(call, *args) -> grpc.RpcError:
  with pytest.raises(grpc.RpcError) as info:
    call(*args, timeout=5)
  return info.value


def _wait_for(condition, timeout=10.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.05)
  return False


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# Predict.


def test_predict_with_official_stub(stub):
  response = stub.Predict(_predict_request(), timeout=5)
  assert sorted(response.outputs) == ["batch", "score"]
  # Typed fields, as TF Serving's AsProtoField writes them.
  assert list(response.outputs["score"].float_val) == [107.0]
  assert not response.outputs["score"].tensor_content
  score = tf.make_ndarray(response.outputs["score"])
  assert score.dtype == np.float32
  np.testing.assert_allclose(score, [2 + 5 + 100.0])
  # The response names what answered, as TF Serving does, including the
  # default signature the request left empty.
  assert response.model_spec.name == _MODEL
  assert response.model_spec.HasField("version")
  assert response.model_spec.version.value == 1
  assert response.model_spec.signature_name == "serving_default"


def test_client_predict_batch_and_specific_version(client):
  outputs = client.predict(
      _MODEL, {"user_id": ["u1", "user22"], "item_id": ["i", "item"]},
      version=1)
  assert set(outputs) == {"score", "batch"}
  np.testing.assert_allclose(outputs["score"], [103.0, 110.0])


def test_output_filter(stub):
  request = _predict_request({"user_id": np.array([b"u1"])}, "recommend")
  request.output_filter.append("titles")
  response = stub.Predict(request, timeout=5)
  assert list(response.outputs) == ["titles"]

  request.output_filter.append("nope")
  error = _rpc_error(stub.Predict, request)
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "output tensor alias not found in signature: nope" in error.details()


def test_unknown_model_is_not_found(stub):
  error = _rpc_error(stub.Predict, _predict_request(name="nope"))
  assert error.code() == grpc.StatusCode.NOT_FOUND
  assert error.details() == "Servable not found for request: Latest(nope)"


def test_unloaded_version_is_not_found(stub):
  request = _predict_request()
  request.model_spec.version.value = 7
  error = _rpc_error(stub.Predict, request)
  assert error.code() == grpc.StatusCode.NOT_FOUND
  assert error.details() == "Servable not found for request: Specific(toy, 7)"


def test_version_label_is_unrecognized(stub):
  request = _predict_request()
  request.model_spec.version_label = "stable"
  error = _rpc_error(stub.Predict, request)
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.details() == "Unrecognized servable version label: stable"


def test_missing_model_spec(stub):
  error = _rpc_error(stub.Predict, apis.PredictRequest())
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.details() == "Missing ModelSpec"


def test_unknown_signature_is_failed_precondition(stub):
  error = _rpc_error(stub.Predict, _predict_request(signature_name="x"))
  assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
  assert error.details() == 'Serving signature key "x" not found.'


def test_missing_input_is_invalid_argument(stub):
  error = _rpc_error(stub.Predict,
                     _predict_request({"user_id": np.array([b"u1"])}))
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "Missing but required: {item_id}" in error.details()


def test_unknown_input_alias_is_invalid_argument(stub):
  error = _rpc_error(stub.Predict, _predict_request({
      "user_id": np.array([b"u1"]),
      "itemid": np.array([b"i"])
  }))
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.details() == (
      "Signature input alias: item_id(feed name: serving_default_item_id:0)"
      " not found in request and no default value provided. Inputs expected"
      " to be in the request {itemid,user_id}, or default input alias set: ")


def test_wrong_dtype_is_invalid_argument(stub):
  error = _rpc_error(stub.Predict, _predict_request({
      "user_id": np.array([b"u1"]),
      "item_id": np.array([1.5], dtype=np.float32)
  }))
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.details() == "Expects arg[0] to be string but float is provided"


def test_wrong_shape_is_invalid_argument(stub):
  error = _rpc_error(stub.Predict, _predict_request({
      "user_id": np.array([[b"u1"]]),
      "item_id": np.array([b"i"])
  }))
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.details() == (
      'input "user_id" has shape [1,1], which is not compatible with the'
      " signature's shape [?]")


def test_error_inside_model_is_invalid_argument_and_server_survives(stub):
  request = _predict_request({"x": np.array([-1.0], dtype=np.float32)},
                             "strict")
  error = _rpc_error(stub.Predict, request)
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "x must be >= 0" in error.details()

  response = stub.Predict(
      _predict_request({"x": np.array([2.0], dtype=np.float32)}, "strict"),
      timeout=5)
  np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [4.0])


def test_client_raises_server_errors_unchanged(client):
  with pytest.raises(grpc.RpcError) as info:
    client.predict("nope", {"user_id": ["u"], "item_id": ["i"]})
  assert info.value.code() == grpc.StatusCode.NOT_FOUND


# Metadata and status.


def test_get_model_metadata_lists_signatures(stub):
  request = apis.GetModelMetadataRequest()
  request.model_spec.name = _MODEL
  request.metadata_field.append("signature_def")
  response = stub.GetModelMetadata(request, timeout=5)
  assert response.model_spec.name == _MODEL
  assert response.model_spec.version.value == 1
  signature_def_map = apis.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signature_def_map)
  signatures = signature_def_map.signature_def
  assert {"serving_default", "recommend", "strict"} <= set(signatures)
  assert set(signatures["serving_default"].inputs) == {"user_id", "item_id"}
  assert (signatures["serving_default"].inputs["user_id"].dtype ==
          tf.string.as_datatype_enum)
  assert set(signatures["recommend"].outputs) == {
      "item_ids", "titles", "scores", "rating", "p_like", "user_length"}


def test_get_model_metadata_errors(stub):
  request = apis.GetModelMetadataRequest()
  request.model_spec.name = _MODEL
  error = _rpc_error(stub.GetModelMetadata, request)
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "at least one metadata_field" in error.details()

  request.metadata_field.append("graph")
  error = _rpc_error(stub.GetModelMetadata, request)
  assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.details() == "Metadata field graph is not supported"

  request = apis.GetModelMetadataRequest()
  request.model_spec.name = "nope"
  request.metadata_field.append("signature_def")
  error = _rpc_error(stub.GetModelMetadata, request)
  assert error.code() == grpc.StatusCode.NOT_FOUND


def test_client_metadata(client):
  metadata = client.metadata(_MODEL)
  assert metadata.name == _MODEL
  assert metadata.version == 1
  assert "recommend" in metadata.signature_defs
  assert "serving_default" in metadata.signature_defs


def test_get_model_status_available(model_stub):
  response = model_stub.GetModelStatus(_status_request(), timeout=5)
  assert len(response.model_version_status) == 1
  status = response.model_version_status[0]
  assert status.version == 1
  assert status.state == apis.ModelVersionStatus.State.AVAILABLE
  assert status.status.error_code == 0
  assert status.status.error_message == ""


def test_get_model_status_errors(model_stub):
  error = _rpc_error(model_stub.GetModelStatus, _status_request("nope"))
  assert error.code() == grpc.StatusCode.NOT_FOUND
  assert error.details() == "Could not find any versions of model nope"

  request = _status_request()
  request.model_spec.version.value = 3
  error = _rpc_error(model_stub.GetModelStatus, request)
  assert error.code() == grpc.StatusCode.NOT_FOUND
  assert error.details() == "Could not find version 3 of model toy"


def test_client_status_and_ready(client):
  assert client.model_status(_MODEL) == {1: "AVAILABLE"}
  assert client.wait_until_ready(_MODEL, timeout=5) == 1


# Recommendations.


def test_recommend(client):
  rows = client_lib.recommend(client, _MODEL, "u7")
  assert [row["rank"] for row in rows] == [1, 2, 3]
  assert [row["item_id"] for row in rows] == ["u7:a", "u7:b", "u7:c"]
  assert [row["title"] for row in rows] == ["Alpha", "Beta", "Gamma"]
  assert rows[0]["score"] == pytest.approx(100.9)
  assert [row["rating"] for row in rows] == pytest.approx([4.5, 3.0, 1.5])
  assert [row["p_like"] for row in rows] == pytest.approx([0.8, 0.4, 0.2])
  # The [B] output is not a per-item column.
  assert set(rows[0]) == {
      "rank", "item_id", "title", "score", "rating", "p_like"}


def test_recommend_main_prints_table(server, capsys):
  exit_code = client_cli.recommend_main([
      "--user", "u7", "--server", f"127.0.0.1:{server.port}", "--model_name",
      _MODEL
  ])
  out = capsys.readouterr().out
  assert exit_code == 0
  header, _, *lines = out.splitlines()[1:]
  assert header.split() == [
      "rank", "item_id", "title", "score", "p_like", "rating"]
  assert lines[0].split() == ["1", "u7:a", "Alpha", "100.9000", "0.8000",
                              "4.5000"]
  assert len(lines) == 3


def test_recommend_main_reports_server_error(server, capsys):
  exit_code = client_cli.recommend_main(
      ["--user", "u7", "--server", f"127.0.0.1:{server.port}"])
  assert exit_code == 1
  assert "NOT_FOUND" in capsys.readouterr().err  # No model named "mtrec".


# Versions.


def test_hot_swap_ignores_incomplete_versions_and_drops_no_request(
    export, tmp_path):
  base_path = tmp_path / _MODEL
  base_path.mkdir()
  _publish(export(1), str(base_path), 1)
  server = _start_server(base_path)
  seen, failures, wrong = [], [], []
  stop = threading.Event()

  def client_loop(stub):
    request = _predict_request()
    while not stop.is_set():
      try:
        response = stub.Predict(request, timeout=5)
      except grpc.RpcError as e:
        failures.append(f"{e.code()}: {e.details()}")
        continue
      version = response.model_spec.version.value
      score = tf.make_ndarray(response.outputs["score"])[0]
      if score != 7 + 100 * version:  # The claimed version computed it.
        wrong.append((version, score))
      seen.append(version)

  try:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
      stub = apis.PredictionServiceStub(channel)
      model_stub = apis.ModelServiceStub(channel)
      loop = threading.Thread(target=client_loop, args=(stub,))
      loop.start()
      try:
        # Not versions: hidden/staging names, and a version being written
        # in place (no saved_model.pb yet). All are newer than 1.
        shutil.copytree(export(9), base_path / ".tmp-8")
        shutil.copytree(export(9), base_path / "9.partial")
        shutil.copytree(export(5), base_path / "5",
                        ignore=shutil.ignore_patterns("saved_model.pb"))
        time.sleep(0.6)  # Several polls.
        assert _states(model_stub) == {1: "AVAILABLE"}
        assert server.version == 1

        _publish(export(2), str(base_path), 2)
        assert _wait_for(lambda: seen and seen[-1] == 2), seen[-5:]
        assert _states(model_stub) == {2: "AVAILABLE", 1: "END"}

        # Finishing the in-place write makes "5" a version.
        shutil.copy(os.path.join(export(5), "saved_model.pb"),
                    base_path / "5")
        assert _wait_for(lambda: seen and seen[-1] == 5), seen[-5:]
      finally:
        stop.set()
        loop.join()
  finally:
    server.stop()

  assert not failures
  assert not wrong
  assert len(seen) > 10
  assert seen == sorted(seen)  # Never back to an old version.
  assert set(seen) == {1, 2, 5}


def test_no_version_yet(export, tmp_path):
  base_path = tmp_path / _MODEL
  base_path.mkdir()
  server = _start_server(base_path)
  try:
    with client_lib.PredictionClient(f"127.0.0.1:{server.port}") as client:
      with pytest.raises(grpc.RpcError) as info:
        client.predict(_MODEL, {"user_id": ["u"], "item_id": ["i"]})
      assert info.value.code() == grpc.StatusCode.NOT_FOUND
      assert info.value.details() == (
          "Servable not found for request: Latest(toy)")
      with pytest.raises(grpc.RpcError) as info:
        client.model_status(_MODEL)
      assert info.value.code() == grpc.StatusCode.NOT_FOUND
      with pytest.raises(TimeoutError, match="not available"):
        client.wait_until_ready(_MODEL, timeout=0.5)

      _publish(export(1), str(base_path), 1)
      assert client.wait_until_ready(_MODEL, timeout=10) == 1
      assert client.predict(_MODEL, {"user_id": ["u"], "item_id": ["i"]})[
          "score"][0] == pytest.approx(102.0)
  finally:
    server.stop()


def test_wait_until_ready_times_out_without_server():
  with client_lib.PredictionClient(f"127.0.0.1:{_free_port()}") as client:
    start = time.monotonic()
    with pytest.raises(TimeoutError):
      client.wait_until_ready(_MODEL, timeout=0.5)
    assert time.monotonic() - start < 5


@pytest.mark.slow
def test_serve_main_serves_until_sigterm(export, tmp_path):
  base_path = tmp_path / _MODEL
  base_path.mkdir()
  _publish(export(1), str(base_path), 1)
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=_REPO_ROOT)
  process = subprocess.Popen(
      [sys.executable, "-m", "serving.model_server", f"--port={port}",
       f"--model_name={_MODEL}", f"--model_base_path={base_path}",
       "--file_system_poll_wait_seconds=1"],
      cwd=_REPO_ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    with client_lib.PredictionClient(f"127.0.0.1:{port}") as client:
      assert client.wait_until_ready(_MODEL, timeout=60) == 1
      outputs = client.predict(_MODEL, {"user_id": ["u"], "item_id": ["i"]})
      assert outputs["score"][0] == pytest.approx(102.0)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
  finally:
    if process.poll() is None:
      process.kill()
      process.communicate()
  assert process.returncode == 0, err[-2000:]
  assert "Serving model toy version 1" in err
  assert "Received SIGTERM" in err
  assert "Server stopped" in err


def test_serve_main_requires_model_base_path(capsys):
  with pytest.raises(SystemExit) as info:
    model_server.serve_main(["--port", "0"])
  assert info.value.code == 2
  assert "--model_base_path" in capsys.readouterr().err


def test_session_config_runs_ops_on_one_thread_in_caller_thread_mode():
  from serving import servables  # pylint: disable=g-import-not-at-top
  # 0 ("TensorFlow chooses") means one thread per op when the server's own
  # threads run the calls; an explicit value is kept either way.
  assert servables.session_config(
      0, 0, run_in_caller_thread=True).intra_op_parallelism_threads == 1
  assert servables.session_config(0, 0).intra_op_parallelism_threads == 0
  assert servables.session_config(
      4, 2, run_in_caller_thread=True).intra_op_parallelism_threads == 4


def test_tensor_info_accepts_exactly_the_shapes_tensorflow_accepts():
  # check_call uses TensorInfo.accepts on every request instead of building
  # a TensorShape; it must answer as TensorShape.is_compatible_with does.
  from serving import servables  # pylint: disable=g-import-not-at-top
  signature_shapes = [None, [], [None], [3], [None, 2], [4, None], [None, None],
                      [1, 2, 3]]
  array_shapes = [(), (0,), (3,), (5,), (3, 2), (4, 2), (4, 7), (2, 3),
                  (1, 2, 3), (1, 2, 4)]
  for dims in signature_shapes:
    shape = tf.TensorShape(dims)
    info = servables.TensorInfo("x", "x:0", tf.string.as_datatype_enum, shape)
    for array_shape in array_shapes:
      assert info.accepts(array_shape) == shape.is_compatible_with(
          array_shape), (dims, array_shape)
