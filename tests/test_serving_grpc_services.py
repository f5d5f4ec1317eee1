"""serving.grpc_services: the servicers that turn ServingErrors into statuses.

Each servicer method is called directly with a fake ServingService and a
fake context whose abort() records the code and details and raises
AbortError, as grpc.aio's does. One test registers the servicers on a real
grpc.aio server on 127.0.0.1 to check add_to_server and the wire status.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import grpc
import pytest

from serving import apis
from serving import grpc_services
from serving import status


class _Context:
  """What the servicers use of grpc.aio.ServicerContext."""

  def __init__(self, time_remaining: Optional[float] = None):
    self.aborts: list[tuple[grpc.StatusCode, str]] = []
    self._time_remaining = time_remaining

  async def abort(self, code, details=""):
    self.aborts.append((code, details))
    raise grpc.aio.AbortError()

  def time_remaining(self):
    return self._time_remaining


class _Service:
  """A ServingService whose every operation gives `outcome`.

  `outcome` is returned, or raised when it is an exception. Records each
  call as (operation, request, extra arguments).
  """

  def __init__(self, outcome: Any = None):
    self.outcome = outcome
    self.calls: list[tuple[str, Any, tuple]] = []

  def _answer(self, operation, request, *extra):
    self.calls.append((operation, request, extra))
    if isinstance(self.outcome, BaseException):
      raise self.outcome
    return self.outcome

  async def predict(self, request):
    return self._answer("predict", request)

  async def classify(self, request):
    return self._answer("classify", request)

  async def regress(self, request):
    return self._answer("regress", request)

  async def multi_inference(self, request):
    return self._answer("multi_inference", request)

  def get_model_metadata(self, request):  # Synchronous, as the real one.
    return self._answer("get_model_metadata", request)

  def get_model_status(self, request):  # Synchronous, as the real one.
    return self._answer("get_model_status", request)

  async def reload_config(self, request, timeout=None):
    return self._answer("reload_config", request, timeout)


# (servicer class, RPC method, service operation, request, response).
_METHODS = [
    (grpc_services.PredictionServicer, "Predict", "predict",
     apis.PredictRequest, apis.PredictResponse),
    (grpc_services.PredictionServicer, "Classify", "classify",
     apis.ClassificationRequest, apis.ClassificationResponse),
    (grpc_services.PredictionServicer, "Regress", "regress",
     apis.RegressionRequest, apis.RegressionResponse),
    (grpc_services.PredictionServicer, "MultiInference", "multi_inference",
     apis.MultiInferenceRequest, apis.MultiInferenceResponse),
    (grpc_services.PredictionServicer, "GetModelMetadata",
     "get_model_metadata", apis.GetModelMetadataRequest,
     apis.GetModelMetadataResponse),
    (grpc_services.ModelServicer, "GetModelStatus", "get_model_status",
     apis.GetModelStatusRequest, apis.GetModelStatusResponse),
    (grpc_services.ModelServicer, "HandleReloadConfigRequest",
     "reload_config", apis.ReloadConfigRequest, apis.ReloadConfigResponse),
]
_IDS = [m[1] for m in _METHODS]


def _call(servicer_class, method, service, request, context):
  servicer = servicer_class(service)
  return asyncio.run(getattr(servicer, method)(request, context))


@pytest.mark.parametrize("servicer_class, method, operation, request_type,"
                         " response_type", _METHODS, ids=_IDS)
def test_the_service_answer_is_returned(servicer_class, method, operation,
                                        request_type, response_type):
  response = response_type()
  service = _Service(response)
  request = request_type()
  context = _Context(time_remaining=7.5)
  assert _call(servicer_class, method, service, request, context) is response
  [(called, got_request, _)] = service.calls
  assert called == operation
  assert got_request is request
  assert context.aborts == []


@pytest.mark.parametrize("servicer_class, method, operation, request_type,"
                         " response_type", _METHODS, ids=_IDS)
@pytest.mark.parametrize("code, message", [
    (grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(toy)"),
    (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    (grpc.StatusCode.FAILED_PRECONDITION, "Serving signature key not found."),
], ids=["not_found", "invalid_argument", "failed_precondition"])
def test_a_serving_error_becomes_the_call_status(
    servicer_class, method, operation, request_type, response_type, code,
    message):
  del operation, response_type
  context = _Context()
  with pytest.raises(grpc.aio.AbortError):
    _call(servicer_class, method,
          _Service(status.ServingError(code, message)), request_type(),
          context)
  assert context.aborts == [(code, message)]


@pytest.mark.parametrize("servicer_class, method, operation, request_type,"
                         " response_type", _METHODS, ids=_IDS)
def test_anything_else_is_internal_with_the_exception_named(
    servicer_class, method, operation, request_type, response_type):
  del operation, response_type
  context = _Context()
  with pytest.raises(grpc.aio.AbortError):
    _call(servicer_class, method, _Service(KeyError("user_id")),
          request_type(), context)
  assert context.aborts == [(grpc.StatusCode.INTERNAL, "KeyError: 'user_id'")]


@pytest.mark.parametrize("servicer_class, method, operation, request_type,"
                         " response_type", _METHODS, ids=_IDS)
def test_an_abort_inside_the_operation_is_not_aborted_again(
    servicer_class, method, operation, request_type, response_type):
  del operation, response_type
  context = _Context()
  with pytest.raises(grpc.aio.AbortError):
    _call(servicer_class, method, _Service(grpc.aio.AbortError()),
          request_type(), context)
  assert context.aborts == []


@pytest.mark.parametrize("remaining", [12.5, None])
def test_reload_gets_the_time_the_call_has_left(remaining):
  service = _Service(apis.ReloadConfigResponse())
  request = apis.ReloadConfigRequest()
  _call(grpc_services.ModelServicer, "HandleReloadConfigRequest", service,
        request, _Context(time_remaining=remaining))
  assert service.calls == [("reload_config", request, (remaining,))]


class _WireService(_Service):
  """Answers Predict, fails GetModelStatus, records reload deadlines."""

  async def predict(self, request):
    response = apis.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = 4
    return response

  def get_model_status(self, request):
    raise status.not_found(
        f"Could not find any versions of model {request.model_spec.name}")

  async def classify(self, request):
    raise RuntimeError("model exploded")


def test_add_to_server_registers_both_services():
  service = _WireService(apis.ReloadConfigResponse())

  async def scenario():
    server = grpc.aio.server()
    grpc_services.add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
      async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        prediction = apis.PredictionServiceStub(channel)
        model = apis.ModelServiceStub(channel)
        response = await prediction.Predict(apis.PredictRequest(
            model_spec=apis.ModelSpec(name="toy")), timeout=10)
        errors = []
        for call, request in (
            (model.GetModelStatus, apis.GetModelStatusRequest(
                model_spec=apis.ModelSpec(name="nope"))),
            (prediction.Classify, apis.ClassificationRequest())):
          with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(request, timeout=10)
          errors.append((info.value.code(), info.value.details()))
        reload = await model.HandleReloadConfigRequest(
            apis.ReloadConfigRequest(), timeout=10)
        return response, errors, reload
    finally:
      await server.stop(None)

  response, errors, reload = asyncio.run(scenario())
  assert response.model_spec.name == "toy"
  assert response.model_spec.version.value == 4
  assert errors == [
      (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope"),
      (grpc.StatusCode.INTERNAL, "RuntimeError: model exploded"),
  ]
  assert reload == apis.ReloadConfigResponse()
  [(operation, _, (timeout,))] = service.calls
  assert operation == "reload_config"
  # The client's 10 s deadline, as time left (gRPC rounds it up a little).
  assert 5 < timeout < 11
