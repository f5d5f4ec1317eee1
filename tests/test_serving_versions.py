"""Versions and configs: policies, labels, reloads, warmup, failed loads.

Each test starts a server over 127.0.0.1 on toy models (serving/testing.py)
whose scores reveal the version that computed them (100 * version + the
lengths of the ids), and checks what TF Serving documents: which versions
are loaded and in which states, that a new version is loaded and warmed up
before the old one goes, that a broken version takes nothing down, that
labels may only name available versions, and that a rollback through
models.config switches without failing a request.
"""

from __future__ import annotations

import os
import shutil
import threading

import grpc
import numpy as np
import pytest

from contracts import serving_layout
from serving import apis
from serving import model_server
from serving import rollback
from serving import testing

_MODEL = "toy"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
  """export(version, warmup_requests=0) -> a toy SavedModel directory."""
  root = tmp_path_factory.mktemp("exports")
  cache = {}

  def _export(version: int, warmup_requests: int = 0) -> str:
    key = (version, warmup_requests)
    if key not in cache:
      cache[key] = testing.export_toy(
          str(root / f"v{version}-w{warmup_requests}"), version,
          warmup_requests)
    return cache[key]

  return _export


def _config(*models: str) -> str:
  return "model_config_list {\n" + "".join(
      f"  config {{\n{m}\n  }}\n" for m in models) + "}\n"


def _model(base_path, name=_MODEL, policy="", labels=()) -> str:
  lines = [f'    name: "{name}"', f'    base_path: "{base_path}"',
           '    model_platform: "tensorflow"']
  if policy:
    lines.append(f"    model_version_policy {{ {policy} }}")
  lines += [f'    version_labels {{ key: "{k}" value: {v} }}'
            for k, v in labels]
  return "\n".join(lines)


def _start(**options) -> model_server.ModelServer:
  options.setdefault("poll_wait_seconds", 0.1)
  return model_server.ModelServer(port=0, host="127.0.0.1", **options).start()


def _states(server, name=_MODEL) -> dict[int, str]:
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    response = apis.ModelServiceStub(channel).GetModelStatus(
        apis.GetModelStatusRequest(model_spec=apis.ModelSpec(name=name)),
        timeout=10)
  return {s.version: apis.ModelVersionStatus.State.Name(s.state)
          for s in response.model_version_status}


def _score(server, version=None, label=None, name=_MODEL) -> float:
  request = testing.predict_request(name, {"user_id": [b"u1"],
                                           "item_id": [b"i"]},
                                    version=version)
  if label:
    request.model_spec.version_label = label
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    response = apis.PredictionServiceStub(channel).Predict(request, timeout=10)
  return response.outputs["score"].float_val[0]


def _reload(server, text: str) -> None:
  request = apis.ReloadConfigRequest()
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  text_format.Parse(text, request.config)
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    apis.ModelServiceStub(channel).HandleReloadConfigRequest(request,
                                                             timeout=30)


def test_version_policies(export, tmp_path):
  base = tmp_path / _MODEL
  for version in (1, 2, 3):
    testing.publish(export(version), str(base), version)
  config = tmp_path / "models.config"
  config.write_text(_config(_model(base, policy="latest { num_versions: 2 }")))
  server = _start(model_config_file=str(config))
  try:
    assert _states(server) == {3: "AVAILABLE", 2: "AVAILABLE"}
    assert _score(server) == 303.0  # Unversioned: the highest loaded.
    assert _score(server, version=2) == 203.0
    _reload(server, _config(_model(base, policy="specific { versions: 1 }")))
    # Loaded first, then the others unloaded: states as TF Serving shows.
    assert testing.wait_for(lambda: _states(server) == {
        3: "END", 2: "END", 1: "AVAILABLE"})
    assert _score(server) == 103.0
    _reload(server, _config(_model(base, policy="all {}")))
    assert testing.wait_for(lambda: set(_states(server).values()) == {
        "AVAILABLE"})
    with pytest.raises(grpc.RpcError) as info:
      _score(server, version=4)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
  finally:
    server.stop()


def test_labels_need_available_versions(export, tmp_path):
  base = tmp_path / _MODEL
  for version in (1, 2):
    testing.publish(export(version), str(base), version)
  config = tmp_path / "models.config"
  config.write_text(_config(_model(base, policy="all {}",
                                   labels=[("stable", 1)])))
  # At startup nothing is loaded yet, so TF Serving refuses any label...
  with pytest.raises(RuntimeError) as info:
    _start(model_config_file=str(config))
  assert str(info.value) == (
      "Failed to start server. Error: FAILED_PRECONDITION: Request to assign"
      " label to version 1 of model toy, which is not currently available for"
      " inference")
  # ... unless told to allow it.
  server = _start(model_config_file=str(config),
                  allow_version_labels_for_unavailable_models=True)
  try:
    assert _score(server, label="stable") == 103.0
    # Moving a label to an available version is a config change.
    _reload(server, _config(_model(base, policy="all {}",
                                   labels=[("stable", 2), ("canary", 1)])))
    assert _score(server, label="stable") == 203.0
    assert _score(server, label="canary") == 103.0
    # A label on a version that is not loaded: refused, old config kept.
    with pytest.raises(grpc.RpcError) as info:
      _reload(server, _config(_model(base, policy="all {}",
                                     labels=[("stable", 9)])))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == (
        "Request to assign label to version 9 of model toy, which is not"
        " currently available for inference")
    assert _score(server, label="stable") == 203.0
  finally:
    server.stop()


def test_reload_adds_and_removes_models(export, tmp_path):
  first, second = tmp_path / "first", tmp_path / "second"
  testing.publish(export(1), str(first), 1)
  testing.publish(export(2), str(second), 2)
  server = _start(model_name="first", model_base_path=str(first))
  try:
    # A new model is loaded before the reload returns.
    _reload(server, _config(_model(first, "first"), _model(second, "second")))
    assert _states(server, "second") == {2: "AVAILABLE"}
    assert _score(server, name="second") == 203.0
    # A model left out is unloaded; its history stays in the status.
    _reload(server, _config(_model(second, "second")))
    assert testing.wait_for(lambda: _states(server, "first") == {1: "END"})
    with pytest.raises(grpc.RpcError) as info:
      _score(server, name="first")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == (
        "Servable not found for request: Latest(first)")
  finally:
    server.stop()


def test_config_file_is_polled(export, tmp_path):
  base = tmp_path / _MODEL
  for version in (1, 2):
    testing.publish(export(version), str(base), version)
  config = tmp_path / "models.config"
  config.write_text(_config(_model(base, policy="specific { versions: 1 }")))
  server = _start(model_config_file=str(config),
                  model_config_file_poll_wait_seconds=0.2)
  try:
    assert _states(server) == {1: "AVAILABLE"}
    config.write_text(_config(_model(base, policy="specific { versions: 2 }")))
    assert testing.wait_for(lambda: _states(server) == {2: "AVAILABLE",
                                                        1: "END"})
    config.write_text("this is not a config")  # Logged; the old one stays.
    assert testing.wait_for(lambda: _score(server) == 203.0)
  finally:
    server.stop()


def _call_count(server, version) -> int:
  request = testing.predict_request(
      _MODEL, {"rows": np.array([0], np.int64)}, signature_name="call_count",
      version=version)
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    response = apis.PredictionServiceStub(channel).Predict(request, timeout=10)
  return response.outputs["calls"].int64_val[0]


def test_warmup_requests_run_before_a_version_serves(export, tmp_path):
  base = tmp_path / _MODEL
  testing.publish(export(1, warmup_requests=3), str(base), 1)
  server = _start(model_base_path=str(base), model_name=_MODEL,
                  num_request_iterations_for_warmup=2)
  try:
    assert _call_count(server, 1) == 6  # 3 records, 2 iterations each.
  finally:
    server.stop()
  server = _start(model_base_path=str(base), model_name=_MODEL,
                  enable_model_warmup=False)
  try:
    assert _call_count(server, 1) == 0
  finally:
    server.stop()


def test_broken_versions_take_nothing_down(export, tmp_path):
  base = tmp_path / _MODEL
  testing.publish(export(1), str(base), 1)
  server = _start(model_base_path=str(base), model_name=_MODEL,
                  max_num_load_retries=1, load_retry_interval_micros=1000)
  try:
    # A corrupt saved_model.pb: retried, then END with the loader's error.
    broken = tmp_path / "broken"
    shutil.copytree(export(2), broken)
    (broken / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    testing.publish(str(broken), str(base), 2)
    assert testing.wait_for(lambda: _states(server).get(2) == "END")
    request = apis.GetModelStatusRequest()
    request.model_spec.name = _MODEL
    request.model_spec.version.value = 2
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
      status = apis.ModelServiceStub(channel).GetModelStatus(
          request, timeout=10).model_version_status[0]
    assert status.status.error_code != 0
    assert status.status.error_message
    assert _states(server)[1] == "AVAILABLE"
    assert _score(server) == 103.0
    # A warmup record that fails fails the load the same way.
    bad_warmup = tmp_path / "bad-warmup"
    shutil.copytree(export(3), bad_warmup)
    testing.write_warmup(str(bad_warmup), [testing.predict_request(
        _MODEL, {"user_id": [b"u"]})])  # item_id missing.
    testing.publish(str(bad_warmup), str(base), 3)
    assert testing.wait_for(lambda: _states(server).get(3) == "END")
    assert _score(server) == 103.0
  finally:
    server.stop()


def _client_loop(port, stop, seen, failures, wrong):
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = apis.PredictionServiceStub(channel)
    request = testing.predict_request(_MODEL, {"user_id": [b"u1"],
                                               "item_id": [b"i"]})
    while not stop.is_set():
      try:
        response = stub.Predict(request, timeout=10)
      except grpc.RpcError as e:
        failures.append(f"{e.code()}: {e.details()}")
        continue
      version = response.model_spec.version.value
      if response.outputs["score"].float_val[0] != 3 + 100 * version:
        wrong.append(version)
      seen.append(version)


@pytest.mark.parametrize("batching", [False, True], ids=["direct", "batching"])
def test_push_during_load_fails_no_request(export, tmp_path, batching):
  """The done-when test: push v2 while clients loop on Predict."""
  base = tmp_path / _MODEL
  testing.publish(export(1, warmup_requests=2), str(base), 1)
  server = _start(model_base_path=str(base), model_name=_MODEL,
                  enable_batching=batching)
  stop = threading.Event()
  seen, failures, wrong = [], [], []
  loops = [threading.Thread(target=_client_loop,
                            args=(server.port, stop, seen, failures, wrong))
           for _ in range(4)]
  try:
    for loop in loops:
      loop.start()
    assert testing.wait_for(lambda: len(seen) > 20)
    testing.publish(export(2, warmup_requests=2), str(base), 2)
    assert testing.wait_for(lambda: seen[-1] == 2 and len(
        [v for v in seen[-40:] if v == 2]) >= 40, timeout=20)
  finally:
    stop.set()
    for loop in loops:
      loop.join()
    server.stop()
  assert not failures
  assert not wrong
  assert seen.count(1) > 10 and seen.count(2) >= 40
  # Each client moved to version 2 once and never back: the last 1 comes
  # before the first 2 of the same client is not checkable across threads,
  # but no 1 may follow a run of 40 twos.
  last_two_run = len(seen) - seen[::-1].index(1) if 1 in seen else 0
  assert all(v == 2 for v in seen[last_two_run:])


def test_rollback_through_models_config(export, tmp_path, capsys):
  serving_root = tmp_path / "serving"
  base = serving_root / _MODEL
  for version in (1, 2):
    testing.publish(export(version), str(base), version)
  serving_layout.pin_version(str(serving_root), _MODEL, 2)
  server = _start(model_config_file=serving_layout.model_config_path(
      str(serving_root)), model_config_file_poll_wait_seconds=0.2)
  stop = threading.Event()
  seen, failures, wrong = [], [], []
  loop = threading.Thread(target=_client_loop,
                          args=(server.port, stop, seen, failures, wrong))
  try:
    assert _states(server) == {2: "AVAILABLE"}
    loop.start()
    assert testing.wait_for(lambda: len(seen) > 10)
    # Through the server's ModelService: switched before the call returns.
    assert rollback.rollback_main([
        "--model_name", _MODEL, "--serving-root", str(serving_root),
        "--server", f"127.0.0.1:{server.port}"]) == 0
    assert "toy: version 2 -> 1" in capsys.readouterr().out
    assert testing.wait_for(lambda: seen[-1] == 1)
    assert testing.wait_for(lambda: _states(server) == {2: "END",
                                                        1: "AVAILABLE"})
    # Nothing older: refused, nothing changes.
    assert rollback.rollback_main(["--model_name", _MODEL, "--serving-root",
                                   str(serving_root)]) == 1
    assert "no older version" in capsys.readouterr().err
    # Forward again by version; the polling server follows the file.
    assert rollback.rollback_main(["--model_name", _MODEL, "--serving-root",
                                   str(serving_root), "--to_version", "2"]) == 0
    assert testing.wait_for(lambda: seen[-1] == 2)
  finally:
    stop.set()
    loop.join()
    server.stop()
  assert not failures and not wrong


def test_relative_base_path_is_resolved(export, tmp_path, monkeypatch):
  base = tmp_path / _MODEL
  testing.publish(export(1), str(base), 1)
  monkeypatch.chdir(tmp_path)
  server = _start(model_base_path=_MODEL, model_name=_MODEL)
  try:
    assert server.manager.config().model_config_list.config[0].base_path == (
        os.path.join(str(tmp_path), _MODEL))
    assert _score(server) == 103.0
  finally:
    server.stop()
