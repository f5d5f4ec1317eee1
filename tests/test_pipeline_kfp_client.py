"""pipeline/kfp_client.py against a stub kfp.Client (never a network).

The stub binds every call to the real kfp.Client signatures, so a keyword
kfp does not take fails here rather than at an endpoint.
"""

from __future__ import annotations

import dataclasses
import inspect

import kfp
import pytest

from pipeline import kfp_client

_REAL_INIT = inspect.signature(kfp.Client.__init__)
_REAL_CREATE = inspect.signature(kfp.Client.create_run_from_pipeline_package)


class _Result:

  def __init__(self, run_id):
    self.run_id = run_id


class _StubClient:
  """Records each construction and run; answers a fixed run id."""

  instances: list[_StubClient] = []
  run_id = "run-42"

  def __init__(self, *args, **kwargs):
    _REAL_INIT.bind(self, *args, **kwargs)  # a TypeError if kfp refuses it
    self.init_args = args
    self.init_kwargs = kwargs
    self.runs = []
    _StubClient.instances.append(self)

  def create_run_from_pipeline_package(self, *args, **kwargs):
    bound = _REAL_CREATE.bind(self, *args, **kwargs)
    self.runs.append({k: v for k, v in bound.arguments.items()
                      if k != "self"})
    return _Result(self.run_id)


@pytest.fixture
def stub(monkeypatch):
  _StubClient.instances = []
  monkeypatch.setattr(kfp, "Client", _StubClient)
  return _StubClient


def test_submit_creates_one_run_with_every_setting(stub):
  arguments = {"trainer_config": "{}", "beam_args": ["--runner=X"]}
  submitted = kfp_client.submit(
      "/tmp/p.yaml", "https://kfp.example.com/pipeline", arguments,
      run_name="nightly", experiment="recs", namespace="team-a",
      pipeline_root="gs://bucket/root", enable_caching=False)
  assert submitted == kfp_client.Submitted(
      "run-42", "https://kfp.example.com/pipeline/#/runs/details/run-42")
  (client,) = stub.instances
  assert client.init_args == ()
  assert client.init_kwargs == {"host": "https://kfp.example.com/pipeline",
                                "namespace": "team-a"}
  assert client.runs == [{
      "pipeline_file": "/tmp/p.yaml",
      "arguments": {"trainer_config": "{}", "beam_args": ["--runner=X"]},
      "run_name": "nightly", "experiment_name": "recs",
      "namespace": "team-a", "pipeline_root": "gs://bucket/root",
      "enable_caching": False}]


def test_without_a_namespace_the_client_keeps_kfps_default(stub):
  submitted = kfp_client.submit("p.yaml", "http://localhost:8080/", {})
  (client,) = stub.instances
  # No namespace keyword: kfp.Client's own default ("kubeflow") applies.
  assert client.init_kwargs == {"host": "http://localhost:8080/"}
  assert client.runs == [{
      "pipeline_file": "p.yaml", "arguments": {}, "run_name": None,
      "experiment_name": None, "namespace": None, "pipeline_root": None,
      "enable_caching": None}]
  # The trailing slash is not doubled in the run's URL.
  assert submitted.url == "http://localhost:8080/#/runs/details/run-42"


def test_arguments_are_sent_as_a_plain_dict_copy(stub):
  class _Mapping(dict):
    pass

  arguments = _Mapping(num_cpu_devices=2)
  kfp_client.submit("p.yaml", "http://h", arguments)
  sent = stub.instances[0].runs[0]["arguments"]
  assert type(sent) is dict
  assert sent == {"num_cpu_devices": 2}
  sent["num_cpu_devices"] = 3  # the client's copy, not the caller's
  assert arguments == {"num_cpu_devices": 2}


def test_the_url_names_the_run_id_kfp_answered(stub, monkeypatch):
  monkeypatch.setattr(stub, "run_id", "0f3c-77")
  submitted = kfp_client.submit("p.yaml", "https://a.example.com//", {})
  assert submitted.run_id == "0f3c-77"
  assert submitted.url == "https://a.example.com/#/runs/details/0f3c-77"


def test_submitted_is_immutable():
  submitted = kfp_client.Submitted("r", "u")
  with pytest.raises(dataclasses.FrozenInstanceError):
    submitted.run_id = "other"  # type: ignore[misc]


def test_an_endpoint_error_reaches_the_caller(stub, monkeypatch):
  def refuse(self, *args, **kwargs):
    raise ConnectionError("connection refused")

  monkeypatch.setattr(stub, "create_run_from_pipeline_package", refuse)
  with pytest.raises(ConnectionError, match="connection refused"):
    kfp_client.submit("p.yaml", "http://h", {})
