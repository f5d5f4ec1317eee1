"""The deployment files: valid, consistent, and runnable by `mtrec serve`.

The manifests are for the real TensorFlow Serving binary, which CI does not
run; these checks catch what would only fail at deploy time: a config that
TF Serving would reject, a flag with a typo (every flag must be one
`mtrec serve` accepts by the same name, which is also the promise that the
two servers are interchangeable), a probe on the wrong path.
"""

from __future__ import annotations

import os

import yaml

from serving import batching
from serving import config as config_lib
from serving import model_server

_DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "deploy")


def _load(*parts):
  with open(os.path.join(_DEPLOY, *parts)) as f:
    return yaml.safe_load(f)


def _flags_accepted(flags: list[str]) -> None:
  known = {action.dest for action in
           model_server.build_arg_parser()._actions}  # pylint: disable=protected-access
  for flag in flags:
    name = flag.lstrip("-").split("=", 1)[0]
    assert name in known, f"{flag} is not a flag `mtrec serve` knows"


def test_kubernetes_manifests():
  config_map = _load("k8s", "configmap.yaml")
  models = config_lib.parse_model_server_config(
      config_map["data"]["models.config"], "configmap models.config")
  config_lib.validate(models)  # TF Serving's checks: absolute paths, names.
  assert [m.base_path for m in models.model_config_list.config] == [
      "/models/mtrec"]
  batching.parse_batching_parameters(config_map["data"]["batching.config"])

  deployment = _load("k8s", "deployment.yaml")
  pod = deployment["spec"]["template"]["spec"]
  container, = pod["containers"]
  assert container["image"].startswith("tensorflow/serving:")
  args = container["args"]
  _flags_accepted(args)
  assert "--model_config_file=/config/models.config" in args
  assert container["readinessProbe"]["httpGet"]["path"] == (
      "/v1/models/mtrec/metadata")
  mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
  volumes = {v["name"]: v for v in pod["volumes"]}
  assert mounts == {"models": "/models", "config": "/config"}
  assert volumes["config"]["configMap"]["name"] == (
      config_map["metadata"]["name"])
  assert volumes["models"]["persistentVolumeClaim"]["claimName"] == (
      _load("k8s", "pvc.yaml")["metadata"]["name"])
  ports = {p["name"] for p in container["ports"]}
  service = _load("k8s", "service.yaml")
  assert {p["targetPort"] for p in service["spec"]["ports"]} == ports
  assert set(_load("k8s", "kustomization.yaml")["resources"]) == {
      "pvc.yaml", "configmap.yaml", "deployment.yaml", "service.yaml"}


def test_compose_file():
  service = _load("docker-compose.yml")["services"]["serving"]
  assert service["entrypoint"] == ["tensorflow_model_server"]
  _flags_accepted(service["command"])
  with open(os.path.join(_DEPLOY, "batching.config")) as f:
    batching.parse_batching_parameters(f.read())
