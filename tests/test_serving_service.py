"""serving.service: ServingService over a ModelManager, without a transport.

The service is called directly on an event loop of the test's own. What is
checked is the service's part: where a plan's calls run (the executor, the
batcher, one after the other for MultiInference), that input checks happen
before anything is started, how GetModelStatus is built from the manager's
states (errors included), and ReloadConfig's validation and hand-off.
TF Serving's request validation and message texts are
test_serving_inference.py's and test_serving_conformance.py's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import threading

import grpc
import numpy as np
import pytest

from serving import apis
from serving import batching
from serving import config as config_lib
from serving import manager as manager_lib
from serving import service as service_lib
from serving import status
from serving import testing

_TOY, _TF1, _BROKEN = "toy", "tf1", "broken"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("service")
  toy = testing.export_toy(str(root / "exports" / "toy1"), 1)
  testing.publish(toy, str(root / _TOY), 1)
  testing.publish(testing.export_tf1_classifier(
      str(root / "exports" / "tf1"), 3), str(root / _TF1), 3)
  # "broken": version 1 loads, version 2's saved_model.pb is garbage.
  testing.publish(toy, str(root / _BROKEN), 1)
  broken = root / "exports" / "broken2"
  shutil.copytree(toy, broken)
  (broken / "saved_model.pb").write_bytes(b"\x08\x01garbage")
  testing.publish(str(broken), str(root / _BROKEN), 2)
  return root


def _config(root, *names: str) -> apis.ModelServerConfig:
  config = apis.ModelServerConfig()
  for name in names:
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(root / name)
    model.model_platform = apis.TENSORFLOW_PLATFORM
    if name == _BROKEN:
      model.model_version_policy.all.SetInParent()
  return config


@pytest.fixture(scope="module")
def manager(root):
  manager = manager_lib.ModelManager(manager_lib.ManagerOptions(
      file_system_poll_wait_seconds=0, max_num_load_retries=0))
  manager.start(_config(root, _TOY, _TF1, _BROKEN))
  yield manager
  manager.stop()


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
  """Counts submissions and remembers the threads they ran on."""

  def __init__(self):
    super().__init__(max_workers=2, thread_name_prefix="test-pool")
    self.submitted = 0
    self.threads: list[str] = []

  def submit(self, fn, /, *args, **kwargs):
    self.submitted += 1

    def run():
      self.threads.append(threading.current_thread().name)
      return fn(*args, **kwargs)

    return super().submit(run)


class _FakeBatcher:
  """Records what the service submits; runs it inline."""

  def __init__(self, loop):
    self.loop = loop
    self.submitted: list[tuple[str, list[str], int]] = []

  def submit(self, signature, inputs, size, finish):
    self.submitted.append((signature.name, sorted(inputs), size))
    future = self.loop.create_future()
    future.set_result(finish(signature(inputs)))
    return future


@pytest.fixture
def loop():
  loop = asyncio.new_event_loop()
  yield loop
  loop.close()


@pytest.fixture
def executor():
  executor = _CountingExecutor()
  yield executor
  executor.shutdown(wait=True)


@pytest.fixture
def service(manager, loop, executor):
  return service_lib.ServingService(manager, loop, executor)


def _score_request(name=_TOY, **inputs) -> apis.PredictRequest:
  inputs = inputs or {"user_id": [b"u1"], "item_id": [b"i22"]}
  return testing.predict_request(name, inputs)


def _classify_request(signature="classify_x", xs=(0.0,)):
  request = apis.ClassificationRequest()
  request.model_spec.name = _TF1
  request.model_spec.signature_name = signature
  for x in xs:
    request.input.example_list.examples.add().CopyFrom(testing.example(x=x))
  return request


def _error(loop, coroutine_or_call) -> status.ServingError:
  with pytest.raises(status.ServingError) as info:
    if asyncio.iscoroutine(coroutine_or_call):
      loop.run_until_complete(coroutine_or_call)
    else:
      coroutine_or_call()
  return info.value


# Where calls run.


def test_predict_runs_on_the_executor(service, loop, executor):
  response = loop.run_until_complete(service.predict(_score_request()))
  assert list(response.outputs["score"].float_val) == [105.0]
  assert response.model_spec.version.value == 1
  assert executor.submitted == 1
  assert executor.threads[0].startswith("test-pool")
  assert service.manager is not None


def test_input_checks_come_before_anything_runs(service, loop, executor):
  # A float for a string input: Session::Run's dtype check, not run.
  error = _error(loop, service.predict(_score_request(
      user_id=np.array([1.0], np.float32), item_id=[b"i"])))
  assert error.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.message.startswith("Expects arg[")
  assert error.message.endswith("to be string but float is provided")
  assert executor.submitted == 0


def test_resolution_errors_come_from_the_manager(service, loop, executor):
  error = _error(loop, service.predict(apis.PredictRequest()))
  assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                         "Missing ModelSpec")
  error = _error(loop, service.predict(_score_request(name="nope")))
  assert (error.code, error.message) == (
      grpc.StatusCode.NOT_FOUND,
      "Servable not found for request: Latest(nope)")
  error = _error(loop, service.classify(apis.ClassificationRequest()))
  assert error.message == "Missing ModelSpec"
  error = _error(loop, service.multi_inference(apis.MultiInferenceRequest()))
  assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                         "ModelSpec has no name specified.")
  assert executor.submitted == 0


def test_multi_inference_runs_its_calls_in_turn(service, loop, executor):
  request = apis.MultiInferenceRequest()
  for signature, method in (("classify_x", apis.CLASSIFY_METHOD_NAME),
                            ("regress_x", apis.REGRESS_METHOD_NAME)):
    task = request.tasks.add()
    task.model_spec.name = _TF1
    task.model_spec.signature_name = signature
    task.method_name = method
  request.input.example_list.examples.add().CopyFrom(testing.example(x=1.0))
  response = loop.run_until_complete(service.multi_inference(request))
  assert executor.submitted == 2  # One per task.
  classify, regress = response.results
  assert [c.label for c in
          classify.classification_result.classifications[0].classes] == [
              "neg", "pos"]
  assert regress.regression_result.regressions[0].value == pytest.approx(5.0)


def test_with_a_batcher_single_calls_are_submitted_to_it(manager, loop,
                                                         executor):
  batcher = _FakeBatcher(loop)
  service = service_lib.ServingService(manager, loop, executor, batcher)
  response = loop.run_until_complete(service.predict(_score_request(
      user_id=[b"a", b"bb"], item_id=[b"c", b"d"])))
  assert list(response.outputs["score"].float_val) == [102.0, 103.0]
  response = loop.run_until_complete(service.classify(
      _classify_request(xs=(0.0, 1.0, 2.0))))
  assert len(response.result.classifications) == 3
  request = apis.RegressionRequest()
  request.model_spec.name = _TF1
  request.model_spec.signature_name = "regress_flat"
  request.input.example_list.examples.add().CopyFrom(testing.example(x=0.5))
  response = loop.run_until_complete(service.regress(request))
  assert [r.value for r in response.result.regressions] == [4.0]
  assert batcher.submitted == [
      ("serving_default", ["item_id", "user_id"], 2),
      ("classify_x", ["inputs"], 3),
      ("regress_flat", ["inputs"], 1),
  ]
  assert executor.submitted == 0


def test_with_a_batcher_batching_checks_come_first(manager, loop, executor):
  batcher = _FakeBatcher(loop)
  service = service_lib.ServingService(manager, loop, executor, batcher)
  # Unequal rows and a wrong dtype: batching's complaint wins.
  error = _error(loop, service.predict(_score_request(
      user_id=np.array([1.0, 2.0], np.float32), item_id=[b"i"])))
  assert (error.code, error.message) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      "Batching Run() input tensors must have equal 0th-dimension size")
  # Rows agree, the dtype does not: Session::Run's check, before submit.
  error = _error(loop, service.predict(_score_request(
      user_id=np.array([1.0], np.float32), item_id=[b"i"])))
  assert error.message.endswith("to be string but float is provided")
  assert batcher.submitted == []


def test_concurrent_predicts_share_a_real_batch(manager, loop, executor):
  batcher = batching.Batcher(batching.BatchingParameters(
      max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1),
      loop)
  try:
    service = service_lib.ServingService(manager, loop, executor, batcher)

    async def both():
      return await asyncio.gather(
          service.predict(_score_request(user_id=[b"a"], item_id=[b"b"])),
          service.predict(_score_request(user_id=[b"abc"], item_id=[b"d"])))

    first, second = loop.run_until_complete(both())
  finally:
    batcher.close()
  assert list(first.outputs["score"].float_val) == [102.0]
  assert list(second.outputs["score"].float_val) == [104.0]
  # Each request saw the batch of two rows it was part of.
  assert list(first.outputs["batch"].int_val) == [2]
  assert list(second.outputs["batch"].int_val) == [2]
  assert executor.submitted == 0


# Metadata and status.


def test_get_model_metadata(service):
  request = apis.GetModelMetadataRequest(
      model_spec=apis.ModelSpec(name=_TF1),
      metadata_field=[apis.SIGNATURE_DEF_FIELD])
  response = service.get_model_metadata(request)
  assert response.model_spec.name == _TF1
  assert response.model_spec.version.value == 3
  signatures = apis.SignatureDefMap()
  response.metadata[apis.SIGNATURE_DEF_FIELD].Unpack(signatures)
  assert set(signatures.signature_def) == {
      "classify_x", "regress_x", "regress_flat", "serving_default"}


@pytest.mark.parametrize("fields, message", [
    ([], "GetModelMetadataRequest must specify at least one metadata_field"),
    (["signature_def", "other"], "Metadata field other is not supported"),
])
def test_get_model_metadata_checks_the_request_first(service, fields,
                                                     message):
  request = apis.GetModelMetadataRequest(
      model_spec=apis.ModelSpec(name="not-loaded"), metadata_field=fields)
  error = _error(None, lambda: service.get_model_metadata(request))
  assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                         message)


def test_get_model_status_reports_states_and_load_errors(service, manager):
  response = service.get_model_status(apis.GetModelStatusRequest(
      model_spec=apis.ModelSpec(name=_BROKEN)))
  failed, available = response.model_version_status
  assert (available.version, available.state) == (
      1, apis.ModelVersionStatus.State.AVAILABLE)
  assert available.HasField("status")
  assert (available.status.error_code, available.status.error_message) == (
      0, "")
  assert (failed.version, failed.state) == (
      2, apis.ModelVersionStatus.State.END)
  [(_, state)] = manager.version_states(_versioned(_BROKEN, 2))
  assert state.error is not None
  assert failed.status.error_code == state.error.code.value[0] != 0
  assert failed.status.error_message == state.error.message != ""


def _versioned(name, version) -> apis.ModelSpec:
  spec = apis.ModelSpec(name=name)
  spec.version.value = version
  return spec


def test_get_model_status_errors(service):
  error = _error(None, lambda: service.get_model_status(
      apis.GetModelStatusRequest()))
  assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                         "Missing ModelSpec")
  error = _error(None, lambda: service.get_model_status(
      apis.GetModelStatusRequest(model_spec=_versioned(_TOY, 9))))
  assert (error.code, error.message) == (
      grpc.StatusCode.NOT_FOUND, "Could not find version 9 of model toy")


# ReloadConfig.


@pytest.fixture
def own_manager(root):
  """A manager the test may reconfigure."""
  manager = manager_lib.ModelManager(manager_lib.ManagerOptions(
      file_system_poll_wait_seconds=0))
  manager.start(_config(root, _TOY))
  yield manager
  manager.stop()


def test_reload_config_loads_the_new_model_on_the_executor(
    own_manager, root, loop, executor):
  service = service_lib.ServingService(own_manager, loop, executor)
  response = loop.run_until_complete(service.reload_config(
      apis.ReloadConfigRequest(config=_config(root, _TOY, _TF1)),
      timeout=60))
  assert response == apis.ReloadConfigResponse()
  assert executor.submitted == 1
  assert own_manager.model_names() == [_TOY, _TF1]
  assert own_manager.available_versions(_TF1) == [3]


def test_reload_config_refuses_other_config_kinds(own_manager, loop,
                                                  executor):
  service = service_lib.ServingService(own_manager, loop, executor)
  request = apis.ReloadConfigRequest()
  request.config.custom_model_config.SetInParent()
  error = _error(loop, service.reload_config(request))
  assert (error.code, error.message) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      "ServerModelConfig type not supported by HandleReloadConfigRequest."
      " Only ModelConfigList is currently supported")
  # An empty config is refused here too (the manager would accept it).
  error = _error(loop, service.reload_config(apis.ReloadConfigRequest()))
  assert error.code == grpc.StatusCode.INVALID_ARGUMENT
  assert executor.submitted == 0
  assert own_manager.model_names() == [_TOY]


def test_reload_config_passes_the_deadline_on(own_manager, root, loop,
                                              executor):
  service = service_lib.ServingService(own_manager, loop, executor)
  error = _error(loop, service.reload_config(
      apis.ReloadConfigRequest(config=_config(root, _TOY, _TF1)),
      timeout=1e-9))
  assert (error.code, error.message) == (
      grpc.StatusCode.DEADLINE_EXCEEDED,
      "Timed out waiting for models to load")


def test_reload_errors_keep_their_status(own_manager, root, loop, executor):
  service = service_lib.ServingService(own_manager, loop, executor)
  config = _config(root, _TOY)
  config.model_config_list.config[0].version_labels["stable"] = 7
  error = _error(loop, service.reload_config(
      apis.ReloadConfigRequest(config=config), timeout=60))
  assert (error.code, error.message) == (
      grpc.StatusCode.FAILED_PRECONDITION,
      "Request to assign label to version 7 of model toy, which is not"
      " currently available for inference")
  assert own_manager.config() == config_lib.single_model_config(
      _TOY, str(root / _TOY))
