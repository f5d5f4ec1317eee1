"""serving.rest: RestApi's routing and status codes, RestServer's HTTP side.

RestApi is driven through `handle(method, path, body)` with a fake
ServingService on an event loop of the test's own, so what is checked is
this module's part: which operation a path reaches with which ModelSpec,
the HTTP status of each failure, the deadline, and that status and metadata
run on the loop. The JSON formats are rest_json's (test_serving_rest_json.py
and the REST cases of test_serving_conformance.py). RestServer (aiohttp) is
started on that loop at 127.0.0.1 with a fake RestApi to check what reaches
it and what goes back; the last tests send raw HTTP (oversized, malformed,
chunked) to a real ModelServer serving the toy model and check that it
answers each and keeps serving.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
import types

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import apis
from serving import model_server
from serving import rest
from serving import rest_json
from serving import servables
from serving import status
from serving import testing

_FLOAT = tf.float32.as_datatype_enum


@pytest.fixture(scope="module")
def loop():
  loop = asyncio.new_event_loop()
  thread = threading.Thread(target=loop.run_forever, daemon=True)
  thread.start()
  yield loop
  loop.call_soon_threadsafe(loop.stop)
  thread.join()
  loop.close()


class _Manager:
  """resolve(): a servable whose `serving_default` takes a float `x`."""

  def __init__(self):
    self.error = None
    info = servables.TensorInfo("x", "x:0", _FLOAT, tf.TensorShape([None]))
    self.servable = types.SimpleNamespace(signatures={
        "serving_default": types.SimpleNamespace(inputs={"x": info})})

  def resolve(self, model_spec):
    if self.error is not None:
      raise self.error
    return self.servable


class _Service:
  """Records each operation and its request; fails with `error` if set."""

  def __init__(self):
    self.manager = _Manager()
    self.calls: list[tuple[str, object]] = []
    self.threads: list[threading.Thread] = []
    self.error = None
    self.delay = 0.0
    self.cancelled = threading.Event()

  def _record(self, operation, request):
    self.calls.append((operation, request))
    self.threads.append(threading.current_thread())
    if self.error is not None:
      raise self.error

  async def _wait(self):
    try:
      await asyncio.sleep(self.delay)
    except asyncio.CancelledError:
      self.cancelled.set()
      raise

  async def predict(self, request):
    self._record("predict", request)
    await self._wait()
    x = tf.make_ndarray(request.inputs["x"])
    response = apis.PredictResponse()
    response.outputs["y"].CopyFrom(tf.make_tensor_proto(2 * x))
    return response

  async def classify(self, request):
    self._record("classify", request)
    await self._wait()
    response = apis.ClassificationResponse()
    classes = response.result.classifications.add().classes
    classes.add(label="neg", score=0.25)
    classes.add(label="pos", score=0.75)
    return response

  async def regress(self, request):
    self._record("regress", request)
    await self._wait()
    response = apis.RegressionResponse()
    response.result.regressions.add(value=1.5)
    return response

  def get_model_metadata(self, request):
    self._record("metadata", request)
    response = apis.GetModelMetadataResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.metadata[apis.SIGNATURE_DEF_FIELD].Pack(apis.SignatureDefMap())
    return response

  def get_model_status(self, request):
    self._record("status", request)
    response = apis.GetModelStatusResponse()
    version = response.model_version_status.add()
    version.version = 3
    version.state = apis.ModelVersionStatus.State.AVAILABLE
    version.status.SetInParent()
    return response


@pytest.fixture
def service():
  return _Service()


class _OnLoop:
  """A RestApi whose `handle` is called from this thread, run on `loop`."""

  def __init__(self, api: rest.RestApi, loop: asyncio.AbstractEventLoop):
    self._api = api
    self._loop = loop

  def handle(self, method, path, body):
    return asyncio.run_coroutine_threadsafe(
        self._api.handle(method, path, body), self._loop).result(30)


@pytest.fixture
def api(service, loop):
  return _OnLoop(rest.RestApi(service), loop)


def _spec(name="toy", version=None, label=None) -> apis.ModelSpec:
  spec = apis.ModelSpec(name=name)
  if version is not None:
    spec.version.value = version
  if label is not None:
    spec.version_label = label
  return spec


# Routing.

_STATUS_JSON = {"model_version_status": [{
    "version": "3", "state": "AVAILABLE",
    "status": {"error_code": "OK", "error_message": ""}}]}

_ROUTES = [
    ("GET", "/v1/models/toy", "status", _spec()),
    ("GET", "/v1/models/toy/versions/3", "status", _spec(version=3)),
    ("GET", "/v1/models/toy/labels/stable", "status", _spec(label="stable")),
    ("GET", "/v1/models/my%20model/labels/can%2Fary", "status",
     _spec("my model", label="can/ary")),
    ("GET", "/V1/MODELS/toy/VERSIONS/2", "status", _spec(version=2)),
    ("GET", "/v1/models/toy/metadata", "metadata", _spec()),
    ("GET", "/v1/models/toy/versions/2/metadata", "metadata",
     _spec(version=2)),
    ("GET", "/v1/models/toy/labels/canary/metadata", "metadata",
     _spec(label="canary")),
    ("POST", "/v1/models/toy:classify", "classify", _spec()),
    ("POST", "/v1/models/toy/labels/stable:classify", "classify",
     _spec(label="stable")),
    ("POST", "/V1/Models/toy/Versions/5:REGRESS", "regress",
     _spec(version=5)),
    ("POST", "/v1/models/toy:predict", "predict", _spec()),
    ("POST", "/v1/models/toy/versions/7:predict", "predict",
     _spec(version=7)),
]
_BODIES = {
    "classify": b'{"examples": [{"x": 1.0}]}',
    "regress": b'{"examples": [{"x": 1.0}]}',
    "predict": b'{"instances": [1.0]}',
}
_ANSWERS = {
    "status": _STATUS_JSON,
    "classify": {"results": [[["neg", 0.25], ["pos", 0.75]]]},
    "regress": {"results": [1.5]},
    "predict": {"predictions": [2.0]},
}


@pytest.mark.parametrize("method, path, operation, model_spec", _ROUTES,
                         ids=[f"{r[0]} {r[1]}" for r in _ROUTES])
def test_routes(api, service, method, path, operation, model_spec):
  code, text = api.handle(method, path, _BODIES.get(operation, b""))
  assert code == 200, text
  [(called, request)] = service.calls
  assert called == operation
  assert request.model_spec == model_spec
  if operation == "metadata":
    assert list(request.metadata_field) == [apis.SIGNATURE_DEF_FIELD]
    assert json.loads(text)["model_spec"]["name"] == model_spec.name
  else:
    assert json.loads(text) == _ANSWERS[operation]


@pytest.mark.parametrize("method, path, message", [
    ("POST", "/v1/models/toy", "Malformed request: POST /v1/models/toy"),
    ("POST", "/v1/models/toy:explain",
     "Malformed request: POST /v1/models/toy:explain"),
    ("POST", "/v1/models/toy/versions/x:predict",
     "Malformed request: POST /v1/models/toy/versions/x:predict"),
    ("GET", "/v1/models/toy:predict",
     "Malformed request: GET /v1/models/toy:predict"),
    ("GET", "/v1/models/toy/extra", "Malformed request: GET /v1/models/toy/extra"),
    ("GET", "/v1/models/", "Malformed request: GET /v1/models/"),
    ("GET", "/v1/other", "Malformed request: GET /v1/other"),
    ("PUT", "/v1/models/toy", "Malformed request: PUT /v1/models/toy"),
    ("DELETE", "/v1/models/toy", "Malformed request: DELETE /v1/models/toy"),
    ("GET", "/v1/models", "Missing model name in request."),
    ("GET", "/v1/models/toy/versions/99999999999999999999",
     "Failed to convert version: 99999999999999999999 to numeric."),
])
def test_bad_requests_are_400_and_reach_no_operation(api, service, method,
                                                     path, message):
  code, text = api.handle(method, path, b"{}")
  assert (code, json.loads(text)) == (400, {"error": message})
  assert text == rest_json.error_json(message)
  assert service.calls == []


# Failures and their HTTP statuses.


@pytest.mark.parametrize("code, http_status", [
    (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.INVALID_ARGUMENT, 400),
    (grpc.StatusCode.FAILED_PRECONDITION, 400),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.UNIMPLEMENTED, 501),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.INTERNAL, 500),
])
@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v1/models/toy", b""),
    ("GET", "/v1/models/toy/metadata", b""),
    ("POST", "/v1/models/toy:regress", b'{"examples": [{}]}'),
    ("POST", "/v1/models/toy:predict", b'{"instances": [1.0]}'),
], ids=["status", "metadata", "regress", "predict"])
def test_serving_errors_keep_their_message_with_tf_servings_http_status(
    api, service, code, http_status, method, path, body):
  service.error = status.ServingError(code, "what went wrong")
  assert api.handle(method, path, body) == (
      http_status, rest_json.error_json("what went wrong"))


def test_an_unexpected_exception_is_500_with_its_type(api, service):
  service.error = ZeroDivisionError("division by zero")
  assert api.handle("POST", "/v1/models/toy:classify",
                    b'{"examples": [{}]}') == (
                        500,
                        rest_json.error_json(
                            "ZeroDivisionError: division by zero"))


def test_predict_reads_the_signature_from_the_resolved_servable(api,
                                                                service):
  code, text = api.handle("POST", "/v1/models/toy:predict",
                          b'{"signature_name": "nope", "instances": [1.0]}')
  assert (code, json.loads(text)) == (400, {
      "error": 'Serving signature name: "nope" not found in signature def'})
  service.manager.error = status.not_found(
      "Servable not found for request: Specific(toy, 7)")
  code, text = api.handle("POST", "/v1/models/toy/versions/7:predict",
                          b'{"instances": [1.0]}')
  assert (code, json.loads(text)) == (404, {
      "error": "Servable not found for request: Specific(toy, 7)"})
  assert service.calls == []


def test_predict_columnar_request_and_answer(api, service):
  code, text = api.handle("POST", "/v1/models/toy:predict",
                          b'{"inputs": {"x": [1, 2.5]}}')
  # A single output loses its name, as in TF Serving.
  assert (code, json.loads(text)) == (200, {"outputs": [2.0, 5.0]})
  [(_, request)] = service.calls
  np.testing.assert_array_equal(tf.make_ndarray(request.inputs["x"]),
                                np.array([1.0, 2.5], np.float32))


def test_classify_body_becomes_the_request_examples(api, service):
  code, _ = api.handle("POST", "/v1/models/toy:classify",
                       b'{"signature_name": "cls", "context": {"c": 1.0},'
                       b' "examples": [{"x": 2.0}, {"x": 3.0}]}')
  assert code == 200
  [(_, request)] = service.calls
  assert request.model_spec.signature_name == "cls"
  with_context = request.input.example_list_with_context
  assert list(with_context.context.features.feature["c"].float_list.value) == [
      1.0]
  assert [list(e.features.feature["x"].float_list.value)
          for e in with_context.examples] == [[2.0], [3.0]]


def test_status_and_metadata_run_on_the_event_loop(api, service, loop):
  loop_thread = asyncio.run_coroutine_threadsafe(
      _current_thread(), loop).result(5)
  assert api.handle("GET", "/v1/models/toy", b"")[0] == 200
  assert api.handle("GET", "/v1/models/toy/metadata", b"")[0] == 200
  assert service.threads == [loop_thread, loop_thread]
  assert loop_thread is not threading.current_thread()


async def _current_thread():
  return threading.current_thread()


def test_a_slow_call_is_504_and_cancelled(service, loop):
  api = _OnLoop(rest.RestApi(service, timeout_in_ms=50), loop)
  service.delay = 10.0
  started = time.monotonic()
  assert api.handle("POST", "/v1/models/toy:classify",
                    b'{"examples": [{}]}') == (
                        504, rest_json.error_json("Deadline Exceeded"))
  assert time.monotonic() - started < 5
  assert service.cancelled.wait(5)


def test_a_zero_timeout_means_no_deadline(service, loop):
  api = _OnLoop(rest.RestApi(service, timeout_in_ms=0), loop)
  service.delay = 0.3
  code, text = api.handle("POST", "/v1/models/toy:regress",
                          b'{"examples": [{}]}')
  assert (code, json.loads(text)) == (200, {"results": [1.5]})
  assert not service.cancelled.is_set()


def test_large_bodies_convert_off_the_event_loop(api, service):
  # Over rest._OFFLOAD_BYTES each way: parsed and printed on a worker
  # thread, with the same answer.
  xs = list(range(20000))
  code, text = api.handle("POST", "/v1/models/toy:predict",
                          json.dumps({"inputs": {"x": xs}}).encode())
  assert code == 200
  assert json.loads(text) == {"outputs": [2.0 * x for x in xs]}
  [(operation, _)] = service.calls
  assert operation == "predict"


# RestServer.


def _on(loop, coroutine, timeout=30.0):
  return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)


class _Api:
  """A RestApi stand-in: records requests, answers (200, a JSON echo)."""

  def __init__(self, delay: float = 0.0):
    self.requests: list[tuple[str, str, bytes]] = []
    self.delay = delay
    self.active = 0
    self.most_active = 0
    self.cancelled = threading.Event()

  async def handle(self, method, path, body):
    self.requests.append((method, path, body))
    self.active += 1
    self.most_active = max(self.most_active, self.active)
    try:
      await asyncio.sleep(self.delay)
      return 200, json.dumps({"method": method, "path": path,
                              "body": body.decode()})
    except asyncio.CancelledError:
      self.cancelled.set()
      raise
    finally:
      self.active -= 1


@pytest.fixture
def start_server(loop):
  servers = []

  def start(api, idle_timeout=30.0,
            max_body_bytes=rest.DEFAULT_MAX_BODY_BYTES):
    server = _on(loop, rest.RestServer(api, "127.0.0.1", 0, max_body_bytes,
                                       idle_timeout).start())
    servers.append(server)
    return server

  yield start
  for server in servers:
    _on(loop, server.stop())


def _request(port, method, path, body=None, connection=None, headers=None):
  own = connection is None
  connection = connection or http.client.HTTPConnection("127.0.0.1", port,
                                                        timeout=10)
  try:
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()
  finally:
    if own:
      connection.close()


def _raw(port, data: bytes, timeout=10.0) -> tuple[int, dict[str, str],
                                                    bytes]:
  """Sends `data` as it is; (status, headers, body) of the answer."""
  with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
    s.sendall(data)
    response = http.client.HTTPResponse(s)
    response.begin()
    body = response.read()
    return response.status, dict(response.getheaders()), body


def test_server_passes_method_path_and_body_to_the_api(start_server):
  api = _Api()
  server = start_server(api)
  response, payload = _request(server.port, "POST",
                               "/v1/models/toy:predict?debug=1",
                               body=b'{"instances": [1]}')
  assert response.status == 200
  assert response.getheader("Content-Type") == "application/json"
  assert int(response.getheader("Content-Length")) == len(payload)
  assert response.getheader("Server").startswith("mtrec-model-server")
  assert json.loads(payload) == {"method": "POST",
                                 "path": "/v1/models/toy:predict",
                                 "body": '{"instances": [1]}'}
  for method in ("GET", "PUT", "DELETE", "PATCH"):
    response, payload = _request(server.port, method, "/V1/anything")
    assert response.status == 200
    assert json.loads(payload)["method"] == method
  assert [r[0] for r in api.requests] == ["POST", "GET", "PUT", "DELETE",
                                          "PATCH"]


def test_the_path_reaches_the_api_still_percent_encoded(start_server):
  api = _Api()
  server = start_server(api)
  response, _ = _request(server.port, "GET",
                         "/v1/models/my%20model/labels/can%2Fary")
  assert response.status == 200
  assert api.requests[0][1] == "/v1/models/my%20model/labels/can%2Fary"


@pytest.mark.parametrize("path", ["/healthz", "/v1", "/v2/models/toy", "/"])
def test_paths_outside_v1_are_404_with_no_body(start_server, path):
  api = _Api()
  server = start_server(api)
  response, payload = _request(server.port, "GET", path)
  assert (response.status, payload) == (404, b"")
  assert response.getheader("Content-Length") == "0"
  assert response.getheader("Content-Type") is None
  assert api.requests == []


def test_keep_alive_serves_several_requests_on_one_connection(start_server):
  api = _Api()
  server = start_server(api)
  connection = http.client.HTTPConnection("127.0.0.1", server.port,
                                          timeout=10)
  try:
    for i in range(3):
      response, payload = _request(server.port, "GET", f"/v1/models/m{i}",
                                   connection=connection)
      assert response.status == 200
      assert json.loads(payload)["path"] == f"/v1/models/m{i}"
  finally:
    connection.close()
  assert len(api.requests) == 3


def test_requests_wait_on_the_loop_concurrently_holding_no_thread(
    start_server):
  api = _Api(delay=0.5)
  server = start_server(api)
  statuses = []

  def client(i):
    response, _ = _request(server.port, "GET", f"/v1/models/m{i}")
    statuses.append(response.status)

  clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
  started = time.monotonic()
  for thread in clients:
    thread.start()
  for thread in clients:
    thread.join()
  assert statuses == [200] * 8
  assert api.most_active == 8
  assert time.monotonic() - started < 8 * 0.5


def test_an_idle_connection_is_closed_after_the_idle_timeout(start_server):
  api = _Api()
  server = start_server(api, idle_timeout=0.3)
  with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
    started = time.monotonic()
    assert s.recv(1) == b""  # The server hung up on the silent client.
    assert time.monotonic() - started < 5
  response, _ = _request(server.port, "GET", "/v1/models/toy")
  assert response.status == 200


def test_a_body_that_stops_arriving_is_408_after_the_idle_timeout(
    start_server):
  api = _Api()
  server = start_server(api, idle_timeout=0.3)
  code, headers, body = _raw(
      server.port, b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
      b"Content-Length: 100\r\n\r\n{\"instances\"")
  assert code == 408
  assert headers["Connection"] == "close"
  assert json.loads(body) == {"error": "Timed out reading the request body"}
  assert api.requests == []


def test_stop_does_not_wait_for_idle_keep_alive_connections(loop):
  api = _Api()
  server = _on(loop, rest.RestServer(api, "127.0.0.1", 0).start())
  port = server.port
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
  try:
    response, _ = _request(port, "GET", "/v1/models/toy",
                           connection=connection)
    assert response.status == 200
    started = time.monotonic()
    _on(loop, server.stop())  # The connection above is open and idle.
    assert time.monotonic() - started < 5
  finally:
    connection.close()
  with pytest.raises(OSError):
    socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_stop_lets_a_running_request_finish(loop):
  api = _Api(delay=0.5)
  server = _on(loop, rest.RestServer(api, "127.0.0.1", 0).start())
  answers = []

  def client():
    answers.append(_request(server.port, "GET", "/v1/models/toy"))

  thread = threading.Thread(target=client)
  thread.start()
  assert _wait_until(lambda: api.active == 1)
  _on(loop, server.stop(grace=5))
  thread.join()
  [(response, payload)] = answers
  assert response.status == 200
  assert json.loads(payload)["path"] == "/v1/models/toy"


def test_stop_cancels_a_request_still_running_after_the_grace_period(loop):
  api = _Api(delay=30)
  server = _on(loop, rest.RestServer(api, "127.0.0.1", 0).start())
  errors = []

  def client():
    try:
      _request(server.port, "GET", "/v1/models/toy")
    except (OSError, http.client.HTTPException) as e:
      errors.append(e)

  thread = threading.Thread(target=client)
  thread.start()
  assert _wait_until(lambda: api.active == 1)
  started = time.monotonic()
  _on(loop, server.stop(grace=0.2))
  assert time.monotonic() - started < 5
  thread.join()
  assert api.cancelled.is_set()
  assert len(errors) == 1  # The connection was dropped, unanswered.


def _wait_until(condition, timeout=5.0) -> bool:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.01)
  return condition()


def test_a_chunked_request_body_reaches_the_api(start_server):
  api = _Api()
  server = start_server(api)
  connection = http.client.HTTPConnection("127.0.0.1", server.port,
                                          timeout=10)
  try:
    connection.request("POST", "/v1/models/toy:predict",
                       body=iter([b'{"instances": ', b"[1]}"]),
                       encode_chunked=True)
    response = connection.getresponse()
    payload = response.read()
    assert response.status == 200
    assert json.loads(payload)["body"] == '{"instances": [1]}'
    # The chunks were the body, not a next request: the connection goes on.
    response, payload = _request(server.port, "GET", "/v1/models/toy",
                                 connection=connection)
    assert response.status == 200
  finally:
    connection.close()
  assert len(api.requests) == 2


# --rest_api_max_body_bytes, on RestServer.


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(
    start_server):
  api = _Api()
  server = start_server(api, max_body_bytes=100)
  started = time.monotonic()
  code, headers, body = _raw(  # Headers only: no body is ever sent.
      server.port, b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
      b"Content-Length: 101\r\n\r\n")
  assert time.monotonic() - started < 5
  assert code == 413
  assert headers["Content-Type"] == "application/json"
  assert headers["Connection"] == "close"
  assert json.loads(body) == {"error": "Request body of 101 bytes exceeds"
                                       " --rest_api_max_body_bytes=100"}
  assert api.requests == []
  # At the limit it is served.
  response, _ = _request(server.port, "POST", "/v1/models/toy:predict",
                         body=b"x" * 100)
  assert response.status == 200


def test_a_chunked_body_growing_past_the_limit_is_413(start_server):
  api = _Api()
  server = start_server(api, max_body_bytes=100)
  connection = http.client.HTTPConnection("127.0.0.1", server.port,
                                          timeout=10)
  try:
    connection.request("POST", "/v1/models/toy:predict",
                       body=iter([b"x" * 60] * 3), encode_chunked=True)
    response = connection.getresponse()
    payload = response.read()
  finally:
    connection.close()
  assert response.status == 413
  assert response.getheader("Connection") == "close"
  assert json.loads(payload)["error"].endswith(
      " bytes exceeds --rest_api_max_body_bytes=100")
  assert api.requests == []


def test_expect_100_continue_is_refused_413_for_a_body_over_the_limit(
    start_server):
  api = _Api()
  server = start_server(api, max_body_bytes=100)
  with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
    s.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
    answer = s.recv(65536)
  assert answer.startswith(b"HTTP/1.1 413 ")
  with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
    s.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(b"{}")
    response = http.client.HTTPResponse(s)
    response.begin()
    assert response.status == 200
    assert json.loads(response.read())["body"] == "{}"


def test_a_zero_limit_means_no_limit(start_server):
  api = _Api()
  server = start_server(api, max_body_bytes=0)
  response, _ = _request(server.port, "POST", "/v1/models/toy:predict",
                         body=b"x" * (1 << 20))
  assert response.status == 200
  assert len(api.requests[0][2]) == 1 << 20


def test_the_max_body_flag_and_option():
  assert model_server.ServerOptions().rest_api_max_body_bytes == 64 << 20
  parser = model_server.build_arg_parser()
  assert parser.parse_args([]).rest_api_max_body_bytes == 67108864
  assert parser.parse_args(
      ["--rest_api_max_body_bytes=0"]).rest_api_max_body_bytes == 0
  # Accepted for TF Serving's command lines; no effect here.
  assert parser.parse_args(
      ["--rest_api_num_threads=16"]).rest_api_num_threads == 16


# A real ModelServer (the toy model) against bad and odd HTTP.

_PREDICT = b'{"inputs": {"user_id": ["u1"], "item_id": ["i"]}}'


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory):
  root = tmp_path_factory.mktemp("rest")
  testing.publish(testing.export_toy(str(root / "export"), 1),
                  str(root / "toy"), 1)
  server = model_server.ModelServer(
      "toy", str(root / "toy"), port=0, host="127.0.0.1", poll_wait_seconds=0,
      rest_api_port=0).start()
  yield server
  server.stop()


def _predict_succeeds(server, connection=None) -> None:
  response, payload = _request(server.rest_port, "POST",
                               "/v1/models/toy:predict", body=_PREDICT,
                               connection=connection)
  assert response.status == 200, payload
  assert json.loads(payload) == {"outputs": {"batch": [1], "score": [103.0]}}


def test_model_server_answers_1gb_content_length_413_from_the_header(
    toy_server):
  started = time.monotonic()
  code, headers, body = _raw(
      toy_server.rest_port,
      b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
      b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
  assert time.monotonic() - started < 5
  assert code == 413
  assert headers["Content-Type"] == "application/json"
  assert json.loads(body) == {
      "error": "Request body of 1000000000 bytes exceeds"
               " --rest_api_max_body_bytes=67108864"}
  _predict_succeeds(toy_server)


def test_model_server_answers_malformed_json_400(toy_server):
  connection = http.client.HTTPConnection("127.0.0.1", toy_server.rest_port,
                                          timeout=10)
  try:
    response, payload = _request(toy_server.rest_port, "POST",
                                 "/v1/models/toy:predict",
                                 body=b'{"inputs": {"user_id": [',
                                 connection=connection)
    assert response.status == 400
    assert response.getheader("Content-Type") == "application/json"
    [message] = json.loads(payload).values()
    assert payload.decode() == rest_json.error_json(message)
    assert message.startswith("JSON Parse error: ")
    _predict_succeeds(toy_server, connection)  # Same connection.
  finally:
    connection.close()
  _predict_succeeds(toy_server)


def test_model_server_answers_a_bad_content_length_400(toy_server):
  code, _, _ = _raw(
      toy_server.rest_port,
      b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n"
      b"Content-Length: abc\r\n\r\n" + _PREDICT)
  assert code == 400
  _predict_succeeds(toy_server)


def test_model_server_reads_a_chunked_body(toy_server):
  connection = http.client.HTTPConnection("127.0.0.1", toy_server.rest_port,
                                          timeout=10)
  try:
    connection.request("POST", "/v1/models/toy:predict",
                       body=iter([_PREDICT[:10], _PREDICT[10:]]),
                       encode_chunked=True)
    response = connection.getresponse()
    payload = response.read()
    assert response.status == 200, payload
    assert json.loads(payload) == {"outputs": {"batch": [1],
                                               "score": [103.0]}}
    _predict_succeeds(toy_server, connection)
  finally:
    connection.close()
  _predict_succeeds(toy_server)
