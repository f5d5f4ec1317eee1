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

The HTTP server is aiohttp's, on the gRPC server's event loop: a request
costs no thread, and the model calls it makes are the service's, which run
them off the loop (batcher or worker pool) exactly as for gRPC. Converting
a large JSON body (either way) is CPU work too, so above `_OFFLOAD_BYTES`
it runs on the loop's default executor. The body is read by the server,
not by aiohttp's `Request.read()`: a Content-Length above
`--rest_api_max_body_bytes` is answered 413 from the header, and a chunked
body that grows past it is cut off with 413 too. A malformed request line
or header (e.g. `Content-Length: abc`) is answered 400 by aiohttp's parser,
as libevent answers it for TF Serving, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from typing import Any, Awaitable, Callable, Optional, Protocol, TypeVar

from aiohttp import http_exceptions
from aiohttp import web
import grpc

from serving import apis
from serving import rest_json
from serving import service as service_lib
from serving import status
from serving import tensors
from serving.server_flags import DEFAULT_MAX_BODY_BYTES

_LOG = logging.getLogger("serving.rest")

_HANDLED_PATHS = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?", re.IGNORECASE)

# JSON conversions of more bytes than this run off the event loop.
_OFFLOAD_BYTES = 64 * 1024
_SERVER_NAME = "mtrec-model-server"

_T = TypeVar("_T")


class RestApi:
  """Maps HTTP requests onto a ServingService; runs on the service's loop."""

  def __init__(self, service: service_lib.ServingService,
               timeout_in_ms: int = 30000):
    self._service = service
    self._timeout = timeout_in_ms / 1000 if timeout_in_ms > 0 else None

  async def handle(self, method: str, path: str,
                   body: bytes) -> tuple[int, str]:
    """Returns (HTTP status, JSON body) for one request."""
    try:
      return 200, await self._dispatch(method, path, body)
    except status.ServingError as e:
      return e.http_status, rest_json.error_json(e.message)
    except Exception as e:  # pylint: disable=broad-except
      _LOG.exception("REST %s %s failed", method, path)
      return 500, rest_json.error_json(f"{type(e).__name__}: {e}")

  async def _await(self, awaitable: Awaitable[_T]) -> _T:
    """A service call under --rest_api_timeout_in_ms (cancelled past it)."""
    try:
      async with asyncio.timeout(self._timeout):
        return await awaitable
    except TimeoutError:
      raise status.ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                "Deadline Exceeded") from None

  @staticmethod
  async def _convert(size: int, function: Callable[..., _T], *args) -> _T:
    """function(*args), off the loop when it converts `size` > the bound."""
    if size <= _OFFLOAD_BYTES:
      return function(*args)
    return await asyncio.get_running_loop().run_in_executor(
        None, function, *args)

  async def _dispatch(self, method: str, path: str, body: bytes) -> str:
    malformed = status.invalid_argument(f"Malformed request: {method} {path}")
    if method == "POST":
      match = _PREDICTION_PATH.fullmatch(path)
      if not match:
        raise malformed
      name, version, label, verb = match.groups()
      model_spec = _model_spec(name, version, label)
      verb = verb.lower()
      if verb == "predict":
        return await self._predict(model_spec, body)
      request = (apis.ClassificationRequest() if verb == "classify" else
                 apis.RegressionRequest())
      request.model_spec.CopyFrom(model_spec)
      await self._convert(len(body), rest_json.examples_request_from_json,
                          body, request)
      if verb == "classify":
        response = await self._await(self._service.classify(request))
        return rest_json.json_from_classification(response.result)
      response = await self._await(self._service.regress(request))
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
            self._service.get_model_metadata(request))
      request = apis.GetModelStatusRequest()
      request.model_spec.CopyFrom(model_spec)
      return rest_json.json_from_status(
          self._service.get_model_status(request))
    raise malformed

  async def _predict(self, model_spec: apis.ModelSpec, body: bytes) -> str:
    def input_infos(signature_name: str) -> dict[str, Any]:
      servable = self._service.manager.resolve(model_spec)
      name = signature_name or apis.DEFAULT_SERVING_SIGNATURE
      signature = servable.signatures.get(name)
      if signature is None:
        raise status.invalid_argument(
            f'Serving signature name: "{name}" not found in signature def')
      return signature.inputs

    request, request_format = await self._convert(
        len(body), rest_json.predict_request_from_json, body, model_spec,
        input_infos)
    response = await self._await(self._service.predict(request))
    return await self._convert(response.ByteSize(), _predict_json, response,
                               request_format)


def _predict_json(response: apis.PredictResponse, request_format: str) -> str:
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


class Api(Protocol):
  """What RestServer serves: RestApi, or a stand-in in tests."""

  async def handle(self, method: str, path: str,
                   body: bytes) -> tuple[int, str]:
    ...


class RestServer:
  """aiohttp's HTTP server for an Api, on the running event loop.

  Usage, from coroutines on the loop the Api's service runs on:

    server = await RestServer(api, "0.0.0.0", 8501).start()
    ... server.port ...
    await server.stop(grace=10)
  """

  def __init__(self, api: Api, host: str, port: int,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               idle_timeout: float = 30.0):
    """Initializes the server; nothing binds until start().

    Args:
      api: answers each request under /v1/.
      host: the interface to bind.
      port: the port; 0 picks a free one (see `port` after start()).
      max_body_bytes: --rest_api_max_body_bytes; 0 or less: no limit.
      idle_timeout: seconds a connection may stay silent, between requests
        or while sending a body, before the server closes it.
    """
    self._api = api
    self._host = host
    self._requested_port = port
    self._max_body_bytes = max(0, max_body_bytes)
    self._idle_timeout = idle_timeout
    self._runner: Optional[web.AppRunner] = None
    self._port: Optional[int] = None
    self._handlers: set[asyncio.Task] = set()

  @property
  def port(self) -> int:
    if self._port is None:
      raise RuntimeError("RestServer is not started")
    return self._port

  async def start(self) -> RestServer:
    """Binds the port and starts answering (on the running loop)."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", self._serve,
                         expect_handler=self._expect)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None,
        keepalive_timeout=self._idle_timeout,
        # A client that hangs up cancels its request, as a gRPC client's
        # cancellation does (and ends a lingering read after a 413).
        handler_cancellation=True,
        # stop() bounds the wait itself (its grace).
        shutdown_timeout=None)
    await runner.setup()
    try:
      site = web.TCPSite(runner, self._host, self._requested_port)
      await site.start()
    except BaseException:
      await runner.cleanup()
      raise
    self._runner = runner
    self._port = runner.addresses[0][1]
    return self

  async def stop(self, grace: Optional[float] = None) -> None:
    """Stops accepting, lets running requests finish, closes connections.

    Idle keep-alive connections are closed at once; a request still running
    after `grace` seconds (None: no limit) is cancelled, its connection
    dropped.
    """
    runner, self._runner = self._runner, None
    if runner is None:
      return
    cleanup = asyncio.ensure_future(runner.cleanup())
    done, _ = await asyncio.wait({cleanup}, timeout=grace)
    if not done:
      for task in list(self._handlers):
        task.cancel()
    await cleanup

  # The HTTP side.

  def _too_large(self, size: int, at_least: bool = False) -> web.Response:
    what = f"at least {size}" if at_least else str(size)
    response = _json_response(413, rest_json.error_json(
        f"Request body of {what} bytes exceeds"
        f" --rest_api_max_body_bytes={self._max_body_bytes}"))
    # What the client still sends is read and dropped (aiohttp's lingering
    # close, bounded in time), then the connection closes.
    response.force_close()
    return response

  def _declared_too_large(self, request: web.BaseRequest) -> bool:
    length = request.content_length
    return bool(self._max_body_bytes and length is not None and
                length > self._max_body_bytes)

  async def _expect(self, request: web.Request) -> Optional[web.Response]:
    """`Expect: 100-continue`: no 100 for a body that would be refused."""
    if self._declared_too_large(request):
      return self._too_large(request.content_length)
    expect = request.headers.get("Expect", "")
    if request.version == (1, 1) and expect.lower() == "100-continue":
      await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
      request.writer.output_size = 0  # As aiohttp's own expect handler.
    return None

  async def _read_body(self, request: web.BaseRequest) -> bytes | web.Response:
    """The whole body, or the error response that ends the request."""
    if self._declared_too_large(request):
      return self._too_large(request.content_length)
    limit = self._max_body_bytes
    chunks = []
    size = 0
    try:
      while True:
        async with asyncio.timeout(self._idle_timeout):
          chunk = await request.content.readany()
        if not chunk:
          return b"".join(chunks)
        size += len(chunk)
        if limit and size > limit:
          return self._too_large(size, at_least=True)
        chunks.append(chunk)
    except TimeoutError:
      code, message = 408, "Timed out reading the request body"
    except (ConnectionError, http_exceptions.HttpProcessingError) as e:
      code, message = 400, f"Failed to read the request body: {e}"
    response = _json_response(code, rest_json.error_json(message))
    response.force_close()
    return response

  async def _serve(self, request: web.Request) -> web.StreamResponse:
    task = asyncio.current_task()
    self._handlers.add(task)
    try:
      path = request.rel_url.raw_path  # Still %-encoded, as TF Serving's.
      if not _HANDLED_PATHS.fullmatch(path):
        response = web.Response(status=404)
        response.headers["Server"] = _SERVER_NAME
        return response
      body = await self._read_body(request)
      if isinstance(body, web.Response):
        return body
      code, text = await self._api.handle(request.method, path, body)
      return _json_response(code, text)
    finally:
      self._handlers.discard(task)


def _json_response(code: int, text: str) -> web.Response:
  return web.Response(status=code, body=text.encode("utf-8"), headers={
      "Content-Type": "application/json", "Server": _SERVER_NAME})
