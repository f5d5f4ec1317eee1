"""TF Serving's HTTP/REST API (`--rest_api_port`), over the same operations.

Many clients (curl, browsers, services without gRPC) use the REST API:

  GET  /v1/models/<name>[/versions/<v> | /labels/<l>]            status
  GET  /v1/models/<name>[/versions/<v> | /labels/<l>]/metadata   metadata
  POST /v1/models/<name>[/versions/<v> | /labels/<l>]:predict    (also
       :classify and :regress)

This module is the HTTP side: it routes each request to the same
ServingService as gRPC (same validation, same batches) and answers with the
HTTP status TF Serving maps the code to (NOT_FOUND 404, INVALID_ARGUMENT
400, ...). What the JSON bodies hold, both ways, is rest_json.py's, so the
formats can be tested without a socket and this module holds no format
rules.

The HTTP server is the standard library's, with a bounded worker pool
(`--rest_api_num_threads`) instead of a thread per connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import logging
import re
import socket
import socketserver
import threading
import urllib.parse
from typing import Any, Callable, Optional

import grpc

from serving import apis
from serving import rest_json
from serving import service as service_lib
from serving import status
from serving import tensors

_LOG = logging.getLogger("serving.rest")

_HANDLED_PATHS = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?", re.IGNORECASE)


class RestApi:
  """Maps HTTP requests onto a ServingService running on an event loop."""

  def __init__(self, service: service_lib.ServingService,
               loop: asyncio.AbstractEventLoop, timeout_in_ms: int = 30000):
    self._service = service
    self._loop = loop
    self._timeout = timeout_in_ms / 1000 if timeout_in_ms > 0 else None

  def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
    """Returns (HTTP status, JSON body) for one request."""
    try:
      return 200, self._dispatch(method, path, body)
    except status.ServingError as e:
      return e.http_status, rest_json.error_json(e.message)
    except Exception as e:  # pylint: disable=broad-except
      _LOG.exception("REST %s %s failed", method, path)
      return 500, rest_json.error_json(f"{type(e).__name__}: {e}")

  def _await(self, coroutine) -> Any:
    future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
    try:
      return future.result(self._timeout)
    except concurrent.futures.TimeoutError:
      future.cancel()
      raise status.ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                "Deadline Exceeded") from None

  def _run(self, function: Callable[[], Any]) -> Any:
    async def call():
      return function()
    return self._await(call())

  def _dispatch(self, method: str, path: str, body: bytes) -> str:
    malformed = status.invalid_argument(f"Malformed request: {method} {path}")
    if method == "POST":
      match = _PREDICTION_PATH.fullmatch(path)
      if not match:
        raise malformed
      name, version, label, verb = match.groups()
      model_spec = _model_spec(name, version, label)
      verb = verb.lower()
      if verb == "predict":
        return self._predict(model_spec, body)
      request = (apis.ClassificationRequest() if verb == "classify" else
                 apis.RegressionRequest())
      request.model_spec.CopyFrom(model_spec)
      rest_json.examples_request_from_json(body, request)
      if verb == "classify":
        response = self._await(self._service.classify(request))
        return rest_json.json_from_classification(response.result)
      response = self._await(self._service.regress(request))
      return rest_json.json_from_regression(response.result)
    if method == "GET":
      match = _STATUS_PATH.fullmatch(path)
      if not match:
        raise malformed
      name, version, label, metadata = match.groups()
      if not name:
        raise status.invalid_argument("Missing model name in request.")
      model_spec = _model_spec(name, version, label)
      if metadata:
        request = apis.GetModelMetadataRequest()
        request.model_spec.CopyFrom(model_spec)
        request.metadata_field.append(apis.SIGNATURE_DEF_FIELD)
        return rest_json.json_from_metadata(
            self._run(lambda: self._service.get_model_metadata(request)))
      request = apis.GetModelStatusRequest()
      request.model_spec.CopyFrom(model_spec)
      return rest_json.json_from_status(
          self._run(lambda: self._service.get_model_status(request)))
    raise malformed

  def _predict(self, model_spec: apis.ModelSpec, body: bytes) -> str:
    def input_infos(signature_name: str) -> dict[str, Any]:
      servable = self._service.manager.resolve(model_spec)
      name = signature_name or apis.DEFAULT_SERVING_SIGNATURE
      signature = servable.signatures.get(name)
      if signature is None:
        raise status.invalid_argument(
            f'Serving signature name: "{name}" not found in signature def')
      return signature.inputs

    request, request_format = rest_json.predict_request_from_json(
        body, model_spec, input_infos)
    response = self._await(self._service.predict(request))
    outputs = {alias: tensors.to_ndarray(proto)
               for alias, proto in response.outputs.items()}
    return rest_json.json_from_outputs(outputs, request_format)


def _model_spec(name: str, version: Optional[str],
                label: Optional[str]) -> apis.ModelSpec:
  """FillModelSpecWithNameVersionAndLabel, names URL-decoded."""
  model_spec = apis.ModelSpec()
  model_spec.name = urllib.parse.unquote(name)
  if version:
    try:
      model_spec.version.value = int(version)
    except (ValueError, OverflowError):
      raise status.invalid_argument(
          f"Failed to convert version: {version} to numeric.") from None
  if label:
    model_spec.version_label = urllib.parse.unquote(label)
  return model_spec


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  server_version = "mtrec-model-server"
  api: RestApi  # Set on the subclass the server creates.

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    _LOG.debug("%s - %s", self.address_string(), format % args)

  def _serve(self) -> None:
    length = int(self.headers.get("Content-Length") or 0)
    body = self.rfile.read(length) if length > 0 else b""
    path = urllib.parse.urlsplit(self.path).path
    if not _HANDLED_PATHS.fullmatch(path):
      self.send_response(404)
      self.send_header("Content-Length", "0")
      self.end_headers()
      return
    code, text = self.api.handle(self.command, path, body)
    payload = text.encode("utf-8")
    self.send_response(code)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815


class RestServer(socketserver.TCPServer):
  """An HTTP server whose connections run on a bounded worker pool."""

  allow_reuse_address = True

  def __init__(self, address: tuple[str, int], api: RestApi, num_threads: int,
               idle_timeout: float = 30.0):
    handler = type("Handler", (_Handler,), {"api": api,
                                            "timeout": idle_timeout})
    self._pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, num_threads), thread_name_prefix="rest")
    super().__init__(address, handler)
    self._thread: Optional[threading.Thread] = None
    self._connections: set[socket.socket] = set()
    self._connections_lock = threading.Lock()

  @property
  def port(self) -> int:
    return self.server_address[1]

  def process_request(self, request, client_address):
    self._pool.submit(self._process, request, client_address)

  def _process(self, request, client_address) -> None:
    with self._connections_lock:
      self._connections.add(request)
    try:
      self.finish_request(request, client_address)
    except Exception:  # pylint: disable=broad-except
      self.handle_error(request, client_address)
    finally:
      with self._connections_lock:
        self._connections.discard(request)
      self.shutdown_request(request)

  def start(self) -> RestServer:
    self._thread = threading.Thread(target=self.serve_forever,
                                    kwargs={"poll_interval": 0.2},
                                    name="rest-accept", daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    """Stops accepting, lets running requests finish, closes the socket."""
    self.shutdown()
    if self._thread is not None:
      self._thread.join()
    # Idle keep-alive connections would hold their worker until the idle
    # timeout: end their read side, so each finishes the request it is
    # answering (if any) and then sees the end of the stream.
    with self._connections_lock:
      for connection in self._connections:
        try:
          connection.shutdown(socket.SHUT_RD)
        except OSError:
          pass
    self._pool.shutdown(wait=True, cancel_futures=True)
    self.server_close()
