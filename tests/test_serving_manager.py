"""ModelManager on its own: which versions load, what a ModelSpec resolves
to, the states GetModelStatus reports, and a reload that pins a version,
with TF Serving's messages (no gRPC server in between)."""

from __future__ import annotations

import grpc
import pytest

from serving import apis
from serving import config as config_lib
from serving import manager as manager_lib
from serving import status
from serving import testing

_MODEL = "toy"
State = apis.ModelVersionStatus.State


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
  return testing.publish_toy_versions(
      str(tmp_path_factory.mktemp("manager")), _MODEL, (1, 2, 3))


@pytest.fixture
def manager(base_path):
  m = manager_lib.ModelManager(manager_lib.ManagerOptions(
      file_system_poll_wait_seconds=0))
  m.start(config_lib.single_model_config(_MODEL, base_path))
  yield m
  m.stop()


def _spec(name=_MODEL, version=None, label=None):
  spec = apis.ModelSpec(name=name)
  if version is not None:
    spec.version.value = version
  if label is not None:
    spec.version_label = label
  return spec


def test_the_default_policy_serves_the_latest_version_only(manager):
  assert manager.model_names() == [_MODEL]
  assert manager.available_versions(_MODEL) == [3]
  assert manager.resolve(_spec()).version == 3
  assert manager.resolve(_spec(version=3)).version == 3
  with pytest.raises(status.ServingError,
                     match=r"^NOT_FOUND: Servable not found for request: "
                     r"Specific\(toy, 1\)$") as e:
    manager.resolve(_spec(version=1))
  assert e.value.code == grpc.StatusCode.NOT_FOUND
  assert [(v, s.state) for v, s in manager.version_states(_spec())] == [
      (3, State.AVAILABLE)]


def test_requests_without_a_name_or_with_an_unknown_label(manager):
  with pytest.raises(status.ServingError,
                     match="^INVALID_ARGUMENT: ModelSpec has no name specified.$") as e:
    manager.resolve(_spec(name=""))
  assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
  with pytest.raises(status.ServingError,
                     match="^INVALID_ARGUMENT: Unrecognized servable version label: stable$"):
    manager.resolve(_spec(label="stable"))
  with pytest.raises(status.ServingError,
                     match=r"^NOT_FOUND: Servable not found for request: Latest\(nope\)$"):
    manager.resolve(_spec(name="nope"))
  with pytest.raises(status.ServingError,
                     match="^NOT_FOUND: Could not find any versions of model nope$"):
    manager.version_states(_spec(name="nope"))
  with pytest.raises(status.ServingError,
                     match="^NOT_FOUND: Could not find version 7 of model toy$"):
    manager.version_states(_spec(version=7))


def test_a_reload_pins_a_version_and_labels_it(manager, base_path):
  config = config_lib.single_model_config(_MODEL, base_path)
  entry = config.model_config_list.config[0]
  entry.model_version_policy.specific.versions.extend([1, 2])
  # A label may only name a version that is available (TF Serving's rule).
  entry.version_labels["canary"] = 2
  with pytest.raises(status.ServingError,
                     match="^FAILED_PRECONDITION: Request to assign label to "
                     "version 2 of model toy, which is not currently "
                     "available for inference$"):
    manager.reload_config(config, timeout=60)
  del entry.version_labels["canary"]
  manager.reload_config(config, timeout=60)
  manager.poll(timeout=60)
  entry.version_labels["stable"] = 1
  entry.version_labels["canary"] = 2
  manager.reload_config(config, timeout=60)
  assert manager.available_versions(_MODEL) == [1, 2]
  assert manager.resolve(_spec(label="stable")).version == 1
  assert manager.resolve(_spec(label="canary")).version == 2
  states = dict(manager.version_states(_spec()))
  assert states[1].state == states[2].state == State.AVAILABLE
  assert states[3].state == State.END  # unloaded after the swap
  assert manager.config() == config


def test_stop_unloads_everything(base_path):
  m = manager_lib.ModelManager(manager_lib.ManagerOptions(
      file_system_poll_wait_seconds=0))
  m.start(config_lib.single_model_config(_MODEL, base_path))
  m.stop()
  assert m.available_versions(_MODEL) == []
  assert [(v, s.state) for v, s in m.version_states(_spec())] == [
      (3, State.END)]
