"""serving.manager: discovery, the load/unload order, failed loads, reloads.

test_serving_manager.py covers resolution errors, the default policy on
real exports, a pinning reload and stop(); this file covers the rest of the
manager's own logic. The manager is driven directly, without a gRPC server:
`start` with `file_system_poll_wait_seconds=0` loads what is on disk and
then polls only when asked (`poll`), so each step is deterministic. Most tests replace
`servables.load` with a fake that records the loads and returns Servables
without a Session (a version directory only needs a saved_model.pb to be
discovered); one test loads a real toy SavedModel with warmup records.
"""

from __future__ import annotations

import os
import shutil

import grpc
import numpy as np
import pytest

from serving import apis
from serving import config as config_lib
from serving import inference
from serving import manager as manager_lib
from serving import servables
from serving import status
from serving import testing

_MODEL = "m"


class _FakeLoader:
  """Stands in for servables.load: records calls, fails where told."""

  def __init__(self):
    self.calls: list[tuple[str, int]] = []
    self.failures: dict[tuple[str, int], status.ServingError] = {}

  def __call__(self, name, version, path, tags=(), config=None,
               run_options=None):
    del tags, config, run_options
    self.calls.append((name, version))
    error = self.failures.get((name, version))
    if error is not None:
      raise error
    return servables.Servable(name, version, path, None, {})


@pytest.fixture
def loader(monkeypatch):
  fake = _FakeLoader()
  monkeypatch.setattr(servables, "load", fake)
  return fake


def _version(base, version: int, complete: bool = True) -> str:
  path = os.path.join(str(base), str(version))
  os.makedirs(path, exist_ok=True)
  if complete:
    with open(os.path.join(path, "saved_model.pb"), "wb"):
      pass
  return path


def _model_text(base, name=_MODEL, policy="", labels=()) -> str:
  lines = [f'name: "{name}"', f'base_path: "{base}"',
           'model_platform: "tensorflow"']
  if policy:
    lines.append(f"model_version_policy {{ {policy} }}")
  lines += [f'version_labels {{ key: "{k}" value: {v} }}' for k, v in labels]
  return "config { " + " ".join(lines) + " }"


def _config(*models: str) -> apis.ModelServerConfig:
  return config_lib.parse_model_server_config(
      "model_config_list { " + " ".join(models) + " }")


def _manager(config, **options) -> manager_lib.ModelManager:
  options.setdefault("file_system_poll_wait_seconds", 0)
  options.setdefault("load_retry_interval_micros", 0)
  manager = manager_lib.ModelManager(manager_lib.ManagerOptions(**options))
  manager.start(config)
  return manager


@pytest.fixture
def managers():
  """Stops every manager a test started."""
  started = []
  yield started
  for manager in started:
    manager.stop()


def _start(managers, config, **options) -> manager_lib.ModelManager:
  manager = _manager(config, **options)
  managers.append(manager)
  return manager


def _states(manager, name=_MODEL) -> dict[int, str]:
  return {v: apis.ModelVersionStatus.State.Name(s.state)
          for v, s in manager.version_states(apis.ModelSpec(name=name))}


def _spec(name=_MODEL, version=None, label=None) -> apis.ModelSpec:
  spec = apis.ModelSpec(name=name)
  if version is not None:
    spec.version.value = version
  if label is not None:
    spec.version_label = label
  return spec


def _error(call, *args, **kwargs) -> status.ServingError:
  with pytest.raises(status.ServingError) as info:
    call(*args, **kwargs)
  return info.value


# Discovery and the default policy.


def test_start_loads_only_the_latest_complete_version(loader, managers,
                                                      tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  _version(base, 2)
  _version(base, 3, complete=False)  # No saved_model.pb yet: not a version.
  os.makedirs(base / ".tmp-4")  # A pusher's staging name: not a version.
  manager = _start(managers, _config(_model_text(base)))
  assert loader.calls == [(_MODEL, 2)]
  assert _states(manager) == {2: "AVAILABLE"}
  assert manager.available_versions(_MODEL) == [2]
  assert manager.model_names() == [_MODEL]
  assert manager.resolve(_spec()).version == 2
  assert manager.resolve(_spec(version=2)).version == 2
  assert manager.resolve(_spec()).path == os.path.join(str(base), "2")


def test_a_missing_base_path_is_not_a_startup_error(loader, managers,
                                                    tmp_path):
  base = tmp_path / "later"
  manager = _start(managers, _config(_model_text(base)))
  assert loader.calls == []
  assert _error(manager.resolve, _spec()).message == (
      f"Servable not found for request: Latest({_MODEL})")
  assert _error(manager.version_states, _spec()).message == (
      f"Could not find any versions of model {_MODEL}")
  _version(base, 5)
  manager.poll(timeout=10)
  assert manager.resolve(_spec()).version == 5
  assert _states(manager) == {5: "AVAILABLE"}


def test_negative_poll_wait_loads_nothing_until_polled(loader, managers,
                                                       tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(managers, _config(_model_text(base)),
                   file_system_poll_wait_seconds=-1)
  assert loader.calls == []
  assert manager.available_versions(_MODEL) == []
  manager.poll(timeout=10)
  assert loader.calls == [(_MODEL, 1)]
  assert manager.available_versions(_MODEL) == [1]


def test_periodic_polling_picks_up_a_new_version(loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(managers, _config(_model_text(base)),
                   file_system_poll_wait_seconds=0.05)
  _version(base, 2)
  assert testing.wait_for(lambda: manager.available_versions(_MODEL) == [2])
  assert _states(manager) == {2: "AVAILABLE", 1: "END"}






# The availability-preserving policy, step by step.


def _record_available(manager, name=_MODEL) -> list[list[int]]:
  """The loaded versions after every state change the manager reports."""
  seen = []
  manager.add_listener(lambda: seen.append(manager.available_versions(name)))
  return seen


def test_new_latest_version_loads_before_the_old_one_unloads(
    loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(managers, _config(_model_text(base)))
  old = manager.resolve(_spec())
  seen = _record_available(manager)
  _version(base, 2)
  manager.poll(timeout=10)
  # LOADING 2 (1 serves), 2 published (both), 1 unloaded.
  assert seen == [[1], [1, 2], [2]]
  assert _states(manager) == {2: "AVAILABLE", 1: "END"}
  assert manager.resolve(_spec()).version == 2
  # A request that resolved version 1 keeps its servable.
  assert old.version == 1 and old.model_name == _MODEL


def test_all_policy_loads_the_highest_version_first(loader, managers,
                                                    tmp_path):
  base = tmp_path / _MODEL
  for version in (1, 2, 3):
    _version(base, version)
  manager = _start(managers, _config(_model_text(base, policy="all {}")))
  assert loader.calls == [(_MODEL, 3), (_MODEL, 2), (_MODEL, 1)]
  assert manager.available_versions(_MODEL) == [1, 2, 3]
  assert manager.resolve(_spec()).version == 3
  assert [v for v, _ in manager.version_states(_spec())] == [3, 2, 1]
  error = _error(manager.resolve, _spec("other", version=1))
  assert (error.code, error.message) == (
      grpc.StatusCode.NOT_FOUND,
      "Servable not found for request: Specific(other, 1)")


def test_latest_n_policy(loader, managers, tmp_path):
  base = tmp_path / _MODEL
  for version in (1, 2, 3):
    _version(base, version)
  manager = _start(managers, _config(
      _model_text(base, policy="latest { num_versions: 2 }")))
  assert manager.available_versions(_MODEL) == [2, 3]
  _version(base, 4)
  manager.poll(timeout=10)
  assert manager.available_versions(_MODEL) == [3, 4]
  assert _states(manager) == {4: "AVAILABLE", 3: "AVAILABLE",
                              2: "END"}


def test_narrowing_the_policy_unloads_the_lowest_first(loader, managers,
                                                       tmp_path):
  base = tmp_path / _MODEL
  for version in (1, 2, 3):
    _version(base, version)
  manager = _start(managers, _config(_model_text(base, policy="all {}")))
  seen = _record_available(manager)
  manager.reload_config(_config(
      _model_text(base, policy="specific { versions: 1 }")), timeout=10)
  manager.poll(timeout=10)
  assert seen == [[1, 3], [1]]
  assert _states(manager) == {3: "END", 2: "END", 1: "AVAILABLE"}
  assert loader.calls == [(_MODEL, 3), (_MODEL, 2), (_MODEL, 1)]


def test_switching_specific_versions_loads_before_unloading(
    loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  _version(base, 2)
  manager = _start(managers, _config(
      _model_text(base, policy="specific { versions: 2 }")))
  seen = _record_available(manager)
  manager.reload_config(_config(
      _model_text(base, policy="specific { versions: 1 }")), timeout=10)
  manager.poll(timeout=10)
  assert seen == [[2], [1, 2], [1]]
  assert manager.resolve(_spec()).version == 1


def test_a_version_removed_from_disk_is_unloaded(loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  _version(base, 2)
  manager = _start(managers, _config(_model_text(base, policy="all {}")))
  shutil.rmtree(base / "2")
  manager.poll(timeout=10)
  assert _states(manager) == {2: "END", 1: "AVAILABLE"}
  assert manager.resolve(_spec()).version == 1


# Failed loads.


def test_start_fails_when_an_initial_version_fails(loader, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  loader.failures[(_MODEL, 1)] = status.not_found("boom")
  manager = manager_lib.ModelManager(manager_lib.ManagerOptions(
      file_system_poll_wait_seconds=0, max_num_load_retries=2,
      load_retry_interval_micros=0))
  try:
    error = _error(manager.start, _config(_model_text(base)))
  finally:
    manager.stop()
  assert error.code == grpc.StatusCode.UNKNOWN
  assert error.message == (
      "1 model(s) did not become available: {{{name: m version: 1} due to"
      " error: NOT_FOUND: boom}, }")
  assert loader.calls == [(_MODEL, 1)] * 3  # 1 + max_num_load_retries.


def test_a_failed_version_keeps_the_old_one_and_is_not_retried(
    loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(managers, _config(_model_text(base)),
                   max_num_load_retries=1)
  loader.failures[(_MODEL, 2)] = status.ServingError(
      grpc.StatusCode.DATA_LOSS, "corrupt")
  _version(base, 2)
  manager.poll(timeout=10)
  assert loader.calls == [(_MODEL, 1), (_MODEL, 2), (_MODEL, 2)]
  assert _states(manager) == {2: "END", 1: "AVAILABLE"}
  [(_, state)] = manager.version_states(_spec(version=2))
  assert str(state.error) == "DATA_LOSS: corrupt"
  assert manager.resolve(_spec()).version == 1
  manager.poll(timeout=10)  # A failed version is not tried again...
  assert len(loader.calls) == 3
  # ... until it leaves the base path and comes back.
  shutil.rmtree(base / "2")
  manager.poll(timeout=10)
  del loader.failures[(_MODEL, 2)]
  _version(base, 2)
  manager.poll(timeout=10)
  assert loader.calls[-1] == (_MODEL, 2)
  assert manager.resolve(_spec()).version == 2
  assert _states(manager) == {2: "AVAILABLE", 1: "END"}


def test_a_failing_listener_does_not_stop_loading(loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(managers, _config(_model_text(base)))

  def broken():
    raise RuntimeError("listener bug")

  manager.add_listener(broken)
  _version(base, 2)
  manager.poll(timeout=10)
  assert manager.available_versions(_MODEL) == [2]


# Configuration and labels.


def test_reload_adds_a_model_and_waits_for_it(loader, managers, tmp_path):
  first, second = tmp_path / "first", tmp_path / "second"
  _version(first, 1)
  _version(second, 4)
  manager = _start(managers, _config(_model_text(first, "first")))
  manager.reload_config(_config(_model_text(first, "first"),
                                _model_text(second, "second")), timeout=10)
  # Loaded before reload_config returned: no poll needed.
  assert manager.resolve(_spec("second")).version == 4
  assert manager.model_names() == ["first", "second"]
  assert [m.name for m in manager.config().model_config_list.config] == [
      "first", "second"]


def test_reload_that_adds_a_failing_model_raises(loader, managers, tmp_path):
  first, second = tmp_path / "first", tmp_path / "second"
  _version(first, 1)
  _version(second, 3)
  loader.failures[("second", 3)] = status.invalid_argument("bad graph")
  manager = _start(managers, _config(_model_text(first, "first")),
                   max_num_load_retries=0)
  error = _error(manager.reload_config, _config(
      _model_text(first, "first"), _model_text(second, "second")), timeout=10)
  assert error.code == grpc.StatusCode.UNKNOWN
  assert error.message == (
      "1 model(s) did not become available: {{{name: second version: 3} due"
      " to error: INVALID_ARGUMENT: bad graph}, }")
  assert manager.resolve(_spec("first")).version == 1


def test_reload_removing_a_model_unloads_it_and_keeps_its_history(
    loader, managers, tmp_path):
  first, second = tmp_path / "first", tmp_path / "second"
  _version(first, 1)
  _version(second, 2)
  manager = _start(managers, _config(_model_text(first, "first"),
                                     _model_text(second, "second")))
  manager.reload_config(_config(_model_text(second, "second")), timeout=10)
  manager.poll(timeout=10)
  assert manager.model_names() == ["second"]
  assert manager.available_versions("first") == []
  assert _states(manager, "first") == {1: "END"}
  assert _error(manager.resolve, _spec("first")).message == (
      "Servable not found for request: Latest(first)")
  assert manager.resolve(_spec("second")).version == 2


def test_an_invalid_reload_keeps_the_old_config(loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(managers, _config(_model_text(base)))
  before = manager.config()
  error = _error(manager.reload_config, _config(_model_text(base),
                                                _model_text(base)))
  assert (error.code, error.message) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      f"Illegal to list model {_MODEL} multiple times in config list")
  error = _error(manager.reload_config, _config(_model_text("relative/path")))
  assert error.message == (
      f"Expected model {_MODEL} to have an absolute path or URI; got"
      " base_path()=relative/path")
  error = _error(manager.reload_config, _config(_model_text(
      base, labels=[("stable", 9)])))
  assert error.code == grpc.StatusCode.FAILED_PRECONDITION
  assert manager.config() == before
  # An empty config is legal and changes nothing.
  manager.reload_config(apis.ModelServerConfig(), timeout=10)
  assert manager.config() == before
  assert manager.resolve(_spec()).version == 1




def test_labels_for_unavailable_versions_only_when_new(loader, managers,
                                                       tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(
      managers, _config(_model_text(base, labels=[("next", 2)])),
      allow_version_labels_for_unavailable_models=True)
  # A new label may name a version that is not loaded yet...
  assert _error(manager.resolve, _spec(label="next")).message == (
      "Servable not found for request: Specific(m, 2)")
  _version(base, 2)
  manager.poll(timeout=10)
  assert manager.resolve(_spec(label="next")).version == 2
  # ... but an existing label may not move to one.
  error = _error(manager.reload_config, _config(_model_text(
      base, labels=[("next", 3)])))
  assert error.code == grpc.StatusCode.FAILED_PRECONDITION
  assert manager.resolve(_spec(label="next")).version == 2


def test_labels_can_be_disallowed(loader, managers, tmp_path):
  base = tmp_path / _MODEL
  _version(base, 1)
  manager = _start(managers, _config(_model_text(base)),
                   allow_version_labels=False)
  error = _error(manager.resolve, _spec(label="stable"))
  assert (error.code, error.message) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      "ModelSpec has 'version_label' set, but it is not currently allowed by"
      " the server.")
  error = _error(manager.reload_config,
                 _config(_model_text(base, labels=[("stable", 1)])))
  assert (error.code, error.message) == (
      grpc.StatusCode.FAILED_PRECONDITION,
      "Model version labels are not currently allowed by the server.")




# A real SavedModel: load, warmup, run.


def test_real_load_replays_warmup_before_publishing(managers, tmp_path):
  base = tmp_path / _MODEL
  testing.publish(testing.export_toy(str(tmp_path / "export"), 1,
                                     warmup_requests=2), str(base), 1)
  manager = _start(managers, _config(_model_text(base)),
                   num_request_iterations_for_warmup=3)
  servable = manager.resolve(_spec())
  assert set(testing.TOY_SIGNATURES) <= set(servable.signatures)
  request = testing.predict_request(
      _MODEL, {"rows": np.array([0], np.int64)}, signature_name="call_count")
  response = inference.run_inline(inference.plan_predict(servable, request))
  assert list(response.outputs["calls"].int64_val) == [6]  # 2 records x 3.
  request = testing.predict_request(_MODEL, {"user_id": [b"ab"],
                                             "item_id": [b"c"]})
  response = inference.run_inline(inference.plan_predict(servable, request))
  assert list(response.outputs["score"].float_val) == [103.0]
