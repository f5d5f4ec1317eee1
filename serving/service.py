"""TF Serving's API operations, independent of the transport.

gRPC (grpc_services.py) and REST (rest.py) are two encodings of the same
operations; both call this class, so a request behaves the same whichever
way it arrives, down to the batch it lands in. Each inference operation
resolves the ModelSpec to a loaded servable (manager), validates the request
(inference), runs the signature calls (on the dynamic batcher when
--enable_batching, else on a bounded thread pool, never on the event loop)
and builds the response.

All coroutines run on the server's event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from typing import Any, Awaitable, Callable, Optional

from serving import apis
from serving import batching
from serving import inference
from serving import manager as manager_lib
from serving import status

_LOG = logging.getLogger("serving.service")


class ServingService:
  """Predict, Classify, Regress, MultiInference, metadata, status, reload."""

  def __init__(self, manager: manager_lib.ModelManager,
               loop: asyncio.AbstractEventLoop,
               executor: concurrent.futures.Executor,
               batcher: Optional[batching.Batcher] = None,
               method_name_check: bool = False,
               limits: inference.RequestLimits = inference.RequestLimits()):
    """Initializes the service.

    Args:
      manager: resolves ModelSpecs and holds the config.
      loop: the event loop every coroutine here runs on.
      executor: the bounded pool that runs unbatched model calls (and config
        reloads, which block).
      batcher: batches single-signature calls when given.
      method_name_check: --enable_signature_method_name_check.
      limits: (mtrec) bounds on a request's string inputs.
    """
    self._manager = manager
    self._loop = loop
    self._executor = executor
    self._batcher = batcher
    self._check = method_name_check
    self._limits = limits

  @property
  def manager(self) -> manager_lib.ModelManager:
    return self._manager

  def _execute(self, plan: inference.Plan) -> Awaitable[Any]:
    """Starts a plan's calls off the event loop; awaiting gives the response.

    Not a coroutine: a single call (every Predict) is one future for the
    caller to await, so the loop, which every request passes through,
    resumes no coroutine in between when the result arrives.

    Raises:
      status.ServingError: the call fails the request limits, batching's or
        Session::Run's checks on its inputs (nothing has been started then).
    """
    calls = plan.calls
    finish = plan.finish
    if self._limits.enabled:
      inference.check_limits(calls, self._limits)
    if len(calls) == 1:
      call = calls[0]
      if self._batcher is not None:
        size = batching.batch_size(call.inputs)  # Batching's checks first.
        inference.check_call(call)
        return self._batcher.submit(call.signature, call.inputs, size,
                                    lambda outputs: finish([outputs]))
      inference.check_call(call)
      return self._loop.run_in_executor(
          self._executor, lambda: finish([call.signature(call.inputs)]))
    return self._execute_in_turn(calls, finish)

  async def _execute_in_turn(self, calls: list[inference.Call],
                             finish: Callable[[list[Any]], Any]) -> Any:
    outputs = []
    for call in calls:
      inference.check_call(call)
      outputs.append(await self._loop.run_in_executor(
          self._executor, call.signature, call.inputs))
    return finish(outputs)

  async def predict(self, request: apis.PredictRequest) -> apis.PredictResponse:
    servable = self._manager.resolve(inference.require_model_spec(request))
    return await self._execute(
        inference.plan_predict(servable, request, self._check))

  async def classify(
      self, request: apis.ClassificationRequest) -> apis.ClassificationResponse:
    servable = self._manager.resolve(inference.require_model_spec(request))
    return await self._execute(
        inference.plan_classify(servable, request, self._check))

  async def regress(
      self, request: apis.RegressionRequest) -> apis.RegressionResponse:
    servable = self._manager.resolve(inference.require_model_spec(request))
    return await self._execute(
        inference.plan_regress(servable, request, self._check))

  async def multi_inference(
      self, request: apis.MultiInferenceRequest) -> apis.MultiInferenceResponse:
    servable = self._manager.resolve(
        inference.multi_inference_model_spec(request))
    return await self._execute(
        inference.plan_multi_inference(servable, request, self._check))

  def get_model_metadata(
      self,
      request: apis.GetModelMetadataRequest) -> apis.GetModelMetadataResponse:
    inference.check_metadata_request(request)
    servable = self._manager.resolve(request.model_spec)
    return inference.model_metadata(servable, request.model_spec.name)

  def get_model_status(
      self, request: apis.GetModelStatusRequest) -> apis.GetModelStatusResponse:
    model_spec = inference.require_model_spec(request)
    response = apis.GetModelStatusResponse()
    for version, state in self._manager.version_states(model_spec):
      version_status = response.model_version_status.add()
      version_status.version = version
      version_status.state = state.state
      version_status.status.SetInParent()  # TF Serving always sets it.
      if state.error is not None:
        version_status.status.error_code = state.error.code.value[0]
        version_status.status.error_message = state.error.message
    return response

  async def reload_config(
      self, request: apis.ReloadConfigRequest,
      timeout: Optional[float] = None) -> apis.ReloadConfigResponse:
    """HandleReloadConfigRequest: the status goes in the response and the call.

    Raises:
      status.ServingError: the reload failed (the response is not sent then;
        gRPC carries the same code and message).
    """
    config = request.config
    if config.WhichOneof("config") != "model_config_list":
      raise status.invalid_argument(
          "ServerModelConfig type not supported by HandleReloadConfigRequest."
          " Only ModelConfigList is currently supported")
    for index, model in enumerate(config.model_config_list.config):
      _LOG.info("Config entry index : %d path : %s name : %s platform : %s",
                index, model.base_path, model.name, model.model_platform)
    await self._loop.run_in_executor(
        self._executor,
        functools.partial(self._manager.reload_config, config, timeout))
    return apis.ReloadConfigResponse()
