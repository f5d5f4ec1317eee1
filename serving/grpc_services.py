"""tensorflow.serving.PredictionService and ModelService on grpc.aio.

Thin adapters: each method awaits the ServingService operation and turns a
ServingError into the call's status (code and message), exactly where TF
Serving's ToGRPCStatus does. Anything unexpected is INTERNAL with the
exception named, and logged. The servicer base classes and the registration
helpers are the official ones from tensorflow_serving.apis, so method paths
and messages are TF Serving's by construction.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import grpc

from serving import apis
from serving import service as service_lib
from serving import status

_LOG = logging.getLogger("serving.grpc")


async def _answer(context: grpc.aio.ServicerContext, name: str,
                  call: Callable[[], Awaitable[Any]]) -> Any:
  try:
    return await call()
  except status.ServingError as e:
    _LOG.debug("%s failed: %s", name, e)
    await context.abort(e.code, e.message)
  except grpc.aio.AbortError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    _LOG.exception("%s failed", name)
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")


async def _sync(value: Any) -> Any:
  return value


class PredictionServicer(apis.PredictionServiceServicer):
  """tensorflow.serving.PredictionService."""

  def __init__(self, service: service_lib.ServingService):
    self._service = service

  async def Predict(self, request, context):  # pylint: disable=invalid-name
    # The hot path: no helper coroutine, one try.
    try:
      return await self._service.predict(request)
    except status.ServingError as e:
      await context.abort(e.code, e.message)
    except grpc.aio.AbortError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      _LOG.exception("Predict failed")
      await context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

  async def Classify(self, request, context):  # pylint: disable=invalid-name
    return await _answer(context, "Classify",
                         lambda: self._service.classify(request))

  async def Regress(self, request, context):  # pylint: disable=invalid-name
    return await _answer(context, "Regress",
                         lambda: self._service.regress(request))

  async def MultiInference(self, request, context):  # pylint: disable=invalid-name
    return await _answer(context, "MultiInference",
                         lambda: self._service.multi_inference(request))

  async def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return await _answer(
        context, "GetModelMetadata",
        lambda: _sync(self._service.get_model_metadata(request)))


class ModelServicer(apis.ModelServiceServicer):
  """tensorflow.serving.ModelService."""

  def __init__(self, service: service_lib.ServingService):
    self._service = service

  async def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return await _answer(
        context, "GetModelStatus",
        lambda: _sync(self._service.get_model_status(request)))

  # pylint: disable-next=invalid-name
  async def HandleReloadConfigRequest(self, request, context):
    remaining = context.time_remaining()
    return await _answer(
        context, "HandleReloadConfigRequest",
        lambda: self._service.reload_config(request, remaining))


def add_to_server(service: service_lib.ServingService,
                  server: grpc.aio.Server) -> None:
  apis.add_PredictionServiceServicer_to_server(PredictionServicer(service),
                                               server)
  apis.add_ModelServiceServicer_to_server(ModelServicer(service), server)
