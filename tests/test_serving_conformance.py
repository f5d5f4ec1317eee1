"""Conformance: the same requests, good and bad, and TF Serving's answers.

Every case sends a request over real gRPC (127.0.0.1) with the official stubs
and checks the status code and the exact message TF Serving gives (from its
sources: predict_util.cc, classifier.cc, regressor.cc, multi_inference.cc,
get_model_metadata_impl.cc, get_model_status_impl.cc, server_core.cc,
tensorflow/cc/saved_model/util.cc). Where a message embeds a SignatureDef
dump, the prefix is checked. The REST cases send the equivalent HTTP
requests and check the status and body TF Serving's REST handler gives.

The server serves two models from a --model_config_file: "toy" (a TF2
export, versions 1 and 2 both loaded, label stable -> 1) and "tf1" (a TF1
export with classify and regress signatures).
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Callable, Optional

import grpc
import numpy as np
import pytest

from serving import apis
from serving import model_server
from serving import tensors
from serving import testing

_TOY, _TF1 = "toy", "tf1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  root = tmp_path_factory.mktemp("conformance")
  exports = root / "exports"
  for version in (1, 2):
    testing.publish(testing.export_toy(str(exports / f"toy{version}"),
                                       version), str(root / _TOY), version)
  testing.publish(testing.export_tf1_classifier(str(exports / "tf1"), 3),
                  str(root / _TF1), 3)
  config = root / "models.config"
  config.write_text(f"""
model_config_list {{
  config {{
    name: "{_TOY}"
    base_path: "{root / _TOY}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
  }}
  config {{
    name: "{_TF1}"
    base_path: "{root / _TF1}"
    model_platform: "tensorflow"
  }}
}}
""")
  server = model_server.ModelServer(
      port=0, host="127.0.0.1", rest_api_port=0,
      model_config_file=str(config), poll_wait_seconds=0,
      allow_version_labels_for_unavailable_models=True).start()
  yield server
  server.stop()


def _score_request(**overrides) -> apis.PredictRequest:
  inputs = overrides.pop("inputs", {"user_id": [b"u1"], "item_id": [b"i22"]})
  return testing.predict_request(overrides.pop("name", _TOY), inputs,
                                 **overrides)


def _classify_request(signature: str = "classify_x", name: str = _TF1,
                      xs=(0.0, 2.0)) -> apis.ClassificationRequest:
  request = apis.ClassificationRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature
  for x in xs:
    request.input.example_list.examples.add().CopyFrom(testing.example(x=x))
  return request


def _regress_request(signature: str = "regress_x", name: str = _TF1,
                     xs=(0.5, 1.0)) -> apis.RegressionRequest:
  request = apis.RegressionRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature
  for x in xs:
    request.input.example_list.examples.add().CopyFrom(testing.example(x=x))
  return request


def _multi_request(*tasks: tuple[str, str, str]) -> apis.MultiInferenceRequest:
  request = apis.MultiInferenceRequest()
  for name, signature, method in tasks:
    task = request.tasks.add()
    task.model_spec.name = name
    task.model_spec.signature_name = signature
    task.method_name = method
  request.input.example_list.examples.add().CopyFrom(testing.example(x=1.0))
  return request


def _with(request, mutate: Callable[[Any], None]):
  mutate(request)
  return request


def _bad_tensor_content():
  request = _score_request()
  request.inputs["user_id"].Clear()
  request.inputs["user_id"].dtype = tensors.DT_STRING
  request.inputs["user_id"].tensor_shape.dim.add().size = 1
  item_id = request.inputs["item_id"]
  item_id.Clear()
  item_id.dtype = tensors.tf.float32.as_datatype_enum
  item_id.tensor_shape.dim.add().size = 3
  item_id.tensor_content = np.array([1.0, 2.0], np.float32).tobytes()  # 8 < 12
  return request


_CLASSIFY = apis.CLASSIFY_METHOD_NAME
_REGRESS = apis.REGRESS_METHOD_NAME

# (id, method, request factory, code, exact message or None, message prefix)
_ERROR_CASES = [
    ("predict-missing-model-spec", "Predict", apis.PredictRequest,
     grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("predict-empty-model-name", "Predict", lambda: _score_request(name=""),
     grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ("predict-unknown-model", "Predict", lambda: _score_request(name="nope"),
     grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("predict-unknown-version", "Predict", lambda: _score_request(version=7),
     grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(toy, 7)"),
    ("predict-unknown-label", "Predict",
     lambda: _with(_score_request(),
                   lambda r: setattr(r.model_spec, "version_label", "nope")),
     grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: nope"),
    ("predict-unknown-signature", "Predict",
     lambda: _score_request(signature_name="nope"),
     grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not'
     " found."),
    ("predict-missing-input", "Predict",
     lambda: _score_request(inputs={"user_id": [b"u"]}),
     grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 1!=2 len({user_id}) !="
     " len({item_id,user_id}). Sent extra: {}. Missing but required:"
     " {item_id}."),
    ("predict-extra-input", "Predict",
     lambda: _score_request(inputs={"user_id": [b"u"], "item_id": [b"i"],
                                    "extra": [b"e"]}),
     grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 3!=2 len({extra,item_id,user_id})"
     " != len({item_id,user_id}). Sent extra: {extra}. Missing but required:"
     " {}."),
    ("predict-misnamed-input", "Predict",
     lambda: _score_request(inputs={"user_id": [b"u"], "itemid": [b"i"]}),
     grpc.StatusCode.INVALID_ARGUMENT,
     "Signature input alias: item_id(feed name: serving_default_item_id:0)"
     " not found in request and no default value provided. Inputs expected"
     " to be in the request {itemid,user_id}, or default input alias set: "),
    ("predict-wrong-dtype", "Predict",
     lambda: _score_request(inputs={"user_id": np.array([1], np.int64),
                                    "item_id": [b"i"]}),
     grpc.StatusCode.INVALID_ARGUMENT,
     "Expects arg[1] to be string but int64 is provided"),
    ("predict-unparsable-tensor", "Predict", _bad_tensor_content,
     grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: item_id"),
    ("predict-unknown-output", "Predict",
     lambda: _with(_score_request(),
                   lambda r: r.output_filter.append("nope")),
     grpc.StatusCode.INVALID_ARGUMENT,
     "output tensor alias not found in signature: nope Outputs expected to be"
     " in the set {batch,score}."),
    ("predict-duplicate-output", "Predict",
     lambda: _with(_score_request(),
                   lambda r: r.output_filter.extend(["score", "score"])),
     grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: score"),
    ("classify-missing-model-spec", "Classify", apis.ClassificationRequest,
     grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("classify-unknown-signature", "Classify",
     lambda: _classify_request("nope"), grpc.StatusCode.INVALID_ARGUMENT,
     "No signature was found with the name: nope"),
    ("classify-two-inputs", "Classify",
     lambda: _classify_request("serving_default", name=_TOY),
     grpc.StatusCode.INVALID_ARGUMENT, "Expected one input Tensor."),
    ("classify-predict-signature", "Classify",
     lambda: _classify_request(""), grpc.StatusCode.INVALID_ARGUMENT,
     None, "No classification inputs found in SignatureDef: "),
    ("classify-regression-signature", "Classify",
     lambda: _classify_request("regress_x"), grpc.StatusCode.INVALID_ARGUMENT,
     None, 'Expected classification signature outputs to contain at least'
     ' one of "classes" or "scores". Signature was: '),
    ("classify-empty-input", "Classify",
     lambda: _classify_request(xs=()), grpc.StatusCode.INVALID_ARGUMENT,
     "Input is empty."),
    ("regress-classification-signature", "Regress",
     lambda: _regress_request("classify_x"), grpc.StatusCode.INVALID_ARGUMENT,
     "Expected one output Tensor."),
    ("regress-unknown-model", "Regress",
     lambda: _regress_request(name="nope"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    ("multi-no-tasks", "MultiInference", apis.MultiInferenceRequest,
     grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ("multi-duplicate-signature", "MultiInference",
     lambda: _multi_request((_TF1, "regress_x", _REGRESS),
                            (_TF1, "regress_x", _REGRESS)),
     grpc.StatusCode.INVALID_ARGUMENT,
     "Duplicate evaluation of signature: regress_x"),
    ("multi-two-models", "MultiInference",
     lambda: _multi_request((_TF1, "regress_x", _REGRESS),
                            (_TOY, "classify_x", _CLASSIFY)),
     grpc.StatusCode.INVALID_ARGUMENT,
     "All ModelSpecs in a MultiInferenceRequest must access the same model"
     " name."),
    ("multi-unknown-signature", "MultiInference",
     lambda: _multi_request((_TF1, "nope", _REGRESS)),
     grpc.StatusCode.INVALID_ARGUMENT,
     "Requested signature not found in model graph: nope"),
    ("multi-predict-method", "MultiInference",
     lambda: _multi_request((_TF1, "serving_default",
                             apis.PREDICT_METHOD_NAME)),
     grpc.StatusCode.UNIMPLEMENTED,
     "Unsupported signature method_name: tensorflow/serving/predict"),
    ("metadata-missing-model-spec", "GetModelMetadata",
     apis.GetModelMetadataRequest, grpc.StatusCode.INVALID_ARGUMENT,
     "Missing ModelSpec"),
    ("metadata-no-field", "GetModelMetadata",
     lambda: apis.GetModelMetadataRequest(
         model_spec=apis.ModelSpec(name=_TOY)),
     grpc.StatusCode.INVALID_ARGUMENT,
     "GetModelMetadataRequest must specify at least one metadata_field"),
    ("metadata-unsupported-field", "GetModelMetadata",
     lambda: apis.GetModelMetadataRequest(
         model_spec=apis.ModelSpec(name=_TOY), metadata_field=["graph"]),
     grpc.StatusCode.INVALID_ARGUMENT, "Metadata field graph is not supported"),
    ("metadata-unknown-model", "GetModelMetadata",
     lambda: apis.GetModelMetadataRequest(
         model_spec=apis.ModelSpec(name="nope"),
         metadata_field=["signature_def"]),
     grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("status-missing-model-spec", "GetModelStatus", apis.GetModelStatusRequest,
     grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("status-unknown-model", "GetModelStatus",
     lambda: apis.GetModelStatusRequest(model_spec=apis.ModelSpec(name="nope")),
     grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope"),
    ("status-unknown-version", "GetModelStatus",
     lambda: _with(apis.GetModelStatusRequest(
         model_spec=apis.ModelSpec(name=_TOY)),
                   lambda r: setattr(r.model_spec.version, "value", 9)),
     grpc.StatusCode.NOT_FOUND, "Could not find version 9 of model toy"),
    ("reload-empty-config", "HandleReloadConfigRequest",
     apis.ReloadConfigRequest, grpc.StatusCode.INVALID_ARGUMENT,
     "ServerModelConfig type not supported by HandleReloadConfigRequest. Only"
     " ModelConfigList is currently supported"),
    ("reload-duplicate-model", "HandleReloadConfigRequest",
     lambda: _reload_request(("a", "/models/a"), ("a", "/models/b")),
     grpc.StatusCode.INVALID_ARGUMENT,
     "Illegal to list model a multiple times in config list"),
    ("reload-relative-path", "HandleReloadConfigRequest",
     lambda: _reload_request(("a", "models/a")),
     grpc.StatusCode.INVALID_ARGUMENT,
     "Expected model a to have an absolute path or URI; got"
     " base_path()=models/a"),
]


def _reload_request(*models: tuple[str, str]) -> apis.ReloadConfigRequest:
  request = apis.ReloadConfigRequest()
  for name, base_path in models:
    model = request.config.model_config_list.config.add()
    model.name, model.base_path = name, base_path
    model.model_platform = "tensorflow"
  return request


def _method(channel: grpc.Channel, name: str):
  service = (apis.ModelServiceStub if name in (
      "GetModelStatus", "HandleReloadConfigRequest") else
             apis.PredictionServiceStub)(channel)
  return getattr(service, name)


@pytest.mark.parametrize("case", _ERROR_CASES, ids=[c[0] for c in _ERROR_CASES])
def test_error_case(channel, case):
  _, method, make_request, code, message, *prefix = case
  with pytest.raises(grpc.RpcError) as info:
    _method(channel, method)(make_request(), timeout=10)
  assert info.value.code() == code, info.value.details()
  if message is not None:
    assert info.value.details() == message
  else:
    assert info.value.details().startswith(prefix[0]), info.value.details()


# Successful calls.


def test_predict_answers_like_tf_serving(stub):
  response = stub.Predict(_score_request(), timeout=10)
  assert response.model_spec.name == _TOY
  assert response.model_spec.signature_name == "serving_default"
  assert response.model_spec.version.value == 2  # all {}: the latest.
  score = response.outputs["score"]
  assert score.dtype == tensors.tf.float32.as_datatype_enum
  assert [d.size for d in score.tensor_shape.dim] == [1]
  assert list(score.float_val) == [205.0]  # Typed fields, not tensor_content.


def test_predict_by_version_and_label(stub):
  response = stub.Predict(_score_request(version=1), timeout=10)
  assert response.model_spec.version.value == 1
  assert list(response.outputs["score"].float_val) == [105.0]
  request = _score_request()
  request.model_spec.version_label = "stable"
  response = stub.Predict(request, timeout=10)
  assert response.model_spec.version.value == 1
  assert list(response.outputs["score"].float_val) == [105.0]


def test_predict_accepts_tensor_content_and_short_fields(stub):
  # A client may send tensor_content, or fewer typed values than the shape
  # (the last value repeats): Tensor::FromProto's rules.
  request = testing.predict_request(_TOY, {"x": np.array([1.0, 2.0],
                                                         np.float32)},
                                    signature_name="strict")
  request.inputs["x"].CopyFrom(tensors.tf.make_tensor_proto(
      np.array([1.0, 2.0], np.float32)))
  assert request.inputs["x"].tensor_content
  response = stub.Predict(request, timeout=10)
  assert list(response.outputs["y"].float_val) == [2.0, 4.0]
  short = apis.PredictRequest()
  short.CopyFrom(request)
  short.inputs["x"].ClearField("tensor_content")
  short.inputs["x"].tensor_shape.dim[0].size = 3
  short.inputs["x"].float_val.append(5.0)
  response = stub.Predict(short, timeout=10)
  assert list(response.outputs["y"].float_val) == [10.0, 10.0, 10.0]


def test_predict_op_error_keeps_tensorflow_code(stub):
  request = testing.predict_request(_TOY, {"x": np.array([-1.0], np.float32)},
                                    signature_name="strict")
  with pytest.raises(grpc.RpcError) as info:
    stub.Predict(request, timeout=10)
  assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "x must be >= 0" in info.value.details()


def test_classify(stub):
  response = stub.Classify(_classify_request(), timeout=10)
  assert response.model_spec.name == _TF1
  assert response.model_spec.signature_name == "classify_x"
  assert response.model_spec.version.value == 3
  first, second = response.result.classifications
  assert [c.label for c in first.classes] == ["neg", "pos"]
  assert [c.score for c in first.classes] == pytest.approx([0.5, 0.5])
  assert second.classes[1].score == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_classify_with_context(stub):
  # ExampleListWithContext: the context's features reach every example.
  request = apis.ClassificationRequest()
  request.model_spec.name = _TF1
  request.model_spec.signature_name = "classify_x"
  with_context = request.input.example_list_with_context
  with_context.context.CopyFrom(testing.example(x=2.0))
  with_context.examples.add()
  with_context.examples.add().CopyFrom(testing.example(x=0.0))
  first, second = stub.Classify(request, timeout=10).result.classifications
  assert first.classes[1].score == pytest.approx(1 / (1 + np.exp(-2.0)))
  assert second.classes[1].score == pytest.approx(0.5)  # Its own x wins.


def test_regress_both_output_shapes(stub):
  for signature in ("regress_x", "regress_flat"):
    response = stub.Regress(_regress_request(signature), timeout=10)
    assert [r.value for r in response.result.regressions] == [4.0, 5.0]
    assert response.model_spec.signature_name == signature


def test_default_signature_name_is_filled_in(stub):
  request = _regress_request("")
  with pytest.raises(grpc.RpcError):  # serving_default is a predict one.
    stub.Regress(request, timeout=10)
  request = testing.predict_request(_TF1, {"x": np.array([2.0], np.float32)})
  response = stub.Predict(request, timeout=10)
  assert response.model_spec.signature_name == "serving_default"
  assert list(response.outputs["y"].float_val) == [6.0]


def test_multi_inference(stub):
  request = _multi_request((_TF1, "classify_x", _CLASSIFY),
                           (_TF1, "regress_x", _REGRESS))
  response = stub.MultiInference(request, timeout=10)
  classify, regress = response.results
  assert classify.model_spec.signature_name == "classify_x"
  assert classify.model_spec.version.value == 3
  assert [c.label for c in
          classify.classification_result.classifications[0].classes] == [
              "neg", "pos"]
  assert regress.regression_result.regressions[0].value == pytest.approx(5.0)


def test_metadata(stub):
  request = apis.GetModelMetadataRequest(model_spec=apis.ModelSpec(name=_TF1),
                                         metadata_field=["signature_def"])
  response = stub.GetModelMetadata(request, timeout=10)
  assert response.model_spec.name == _TF1
  assert response.model_spec.version.value == 3
  assert not response.model_spec.signature_name
  signature_def_map = apis.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signature_def_map)
  signatures = signature_def_map.signature_def
  assert signatures["classify_x"].method_name == _CLASSIFY
  assert set(signatures["classify_x"].outputs) == {"classes", "scores"}


def test_status_lists_every_version_newest_first(model_stub):
  request = apis.GetModelStatusRequest(model_spec=apis.ModelSpec(name=_TOY))
  response = model_stub.GetModelStatus(request, timeout=10)
  assert [(s.version, apis.ModelVersionStatus.State.Name(s.state),
           s.status.error_code, s.status.error_message)
          for s in response.model_version_status] == [
              (2, "AVAILABLE", 0, ""), (1, "AVAILABLE", 0, "")]


# REST: the same operations over HTTP.


def _http(server, method: str, path: str,
          body: Optional[Any] = None) -> tuple[int, Any, str]:
  connection = http.client.HTTPConnection("127.0.0.1", server.rest_port,
                                          timeout=10)
  try:
    payload = None if body is None else (
        body if isinstance(body, bytes) else json.dumps(body).encode())
    connection.request(method, path, body=payload)
    response = connection.getresponse()
    text = response.read().decode()
    content_type = response.getheader("Content-Type")
  finally:
    connection.close()
  return response.status, json.loads(text) if text else None, content_type


_REST_ERROR_CASES = [
    ("GET", "/v1/models/nope", None, 404,
     "Could not find any versions of model nope"),
    ("GET", "/v1/models/toy/versions/9", None, 404,
     "Could not find version 9 of model toy"),
    ("GET", "/v1/models/nope/metadata", None, 404,
     "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("POST", "/v1/models/toy:predict", {"instances": [{"user_id": "u"}]}, 400,
     "Failed to process element: 0 of 'instances' list. JSON object:"
     ' {"user_id":"u"} keys must be equal to: item_id,user_id'),
    ("POST", "/v1/models/toy:predict", {"inputs": {"user_id": ["u"]}}, 400,
     "Missing named input: item_id in 'inputs' object."),
    ("POST", "/v1/models/toy:predict", {"signature_name": "nope",
                                        "instances": [1]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/toy/labels/nope:predict", {"instances": [1.0]}, 400,
     "Unrecognized servable version label: nope"),
    ("POST", "/v1/models/toy/versions/7:predict",
     {"signature_name": "strict", "instances": [1.0]}, 404,
     "Servable not found for request: Specific(toy, 7)"),
    ("POST", "/v1/models/toy:predict", {"nothing": 1}, 400,
     "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/toy:predict", b"", 400,
     "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/toy:predict",
     {"signature_name": "strict", "instances": ["a"]}, 400,
     "Failed to process element: 0 of 'instances' list. Error:"
     ' INVALID_ARGUMENT: JSON Value: "a" Type: String is not of expected'
     " type: float"),
    ("POST", "/v1/models/toy:predict",
     {"signature_name": "strict", "instances": [-1.0]}, 400, None),
    ("POST", "/v1/models/toy:explain", {}, 400,
     "Malformed request: POST /v1/models/toy:explain"),
    ("POST", "/v1/models/tf1:classify", {"signature_name": "classify_x"}, 400,
     'JSON Value: {"signature_name":"classify_x"} When method is classify,'
     " key 'examples' is expected and was not found"),
]


@pytest.mark.parametrize("case", _REST_ERROR_CASES,
                         ids=[f"{c[0]} {c[1]}" for c in _REST_ERROR_CASES])
def test_rest_error_case(server, case):
  method, path, body, http_status, message = case
  got_status, document, content_type = _http(server, method, path, body)
  assert got_status == http_status, document
  assert content_type == "application/json"
  assert set(document) == {"error"}
  if message is not None:
    assert document["error"] == message


def test_rest_status_and_metadata(server):
  code, document, _ = _http(server, "GET", "/v1/models/toy")
  assert code == 200
  assert document == {"model_version_status": [
      {"version": "2", "state": "AVAILABLE",
       "status": {"error_code": "OK", "error_message": ""}},
      {"version": "1", "state": "AVAILABLE",
       "status": {"error_code": "OK", "error_message": ""}}]}
  code, document, _ = _http(server, "GET", "/v1/models/toy/labels/stable")
  assert code == 200 and len(document["model_version_status"]) == 2
  code, document, _ = _http(server, "GET",
                            "/v1/models/toy/versions/1/metadata")
  assert code == 200
  assert document["model_spec"] == {"name": "toy", "signature_name": "",
                                    "version": "1"}
  inputs = document["metadata"]["signature_def"]["signature_def"][
      "serving_default"]["inputs"]
  assert inputs["user_id"]["dtype"] == "DT_STRING"
  assert inputs["user_id"]["tensor_shape"]["dim"][0]["size"] == "-1"


def test_rest_predict_row_and_columnar(server):
  code, document, _ = _http(server, "POST", "/v1/models/toy:predict", {
      "instances": [{"user_id": "u1", "item_id": "i22"},
                    {"user_id": "u22", "item_id": "i"}]})
  assert code == 200
  assert document == {"predictions": [{"batch": 2, "score": 205.0},
                                      {"batch": 2, "score": 204.0}]}
  code, document, _ = _http(server, "POST", "/v1/models/toy/versions/1:predict",
                            {"inputs": {"user_id": ["u1"], "item_id": ["i"]}})
  assert code == 200
  assert document == {"outputs": {"batch": [1], "score": [103.0]}}
  # One input and one output: the names disappear; ints become floats.
  code, document, _ = _http(server, "POST", "/v1/models/toy:predict",
                            {"signature_name": "strict", "instances": [1, 2.5]})
  assert (code, document) == (200, {"predictions": [2.0, 5.0]})
  code, document, _ = _http(server, "POST", "/v1/models/toy:predict",
                            {"signature_name": "strict", "inputs": [0.1]})
  assert (code, document) == (200, {"outputs": [0.2]})
  code, document, _ = _http(server, "POST", "/v1/models/toy:predict", {
      "signature_name": "recommend", "instances": [{"b64": "dTc="}]})
  assert code == 200
  assert document["predictions"][0]["item_ids"] == ["u7:a", "u7:b", "u7:c"]


def test_rest_classify_and_regress(server):
  code, document, _ = _http(server, "POST", "/v1/models/tf1:classify", {
      "signature_name": "classify_x", "examples": [{"x": 0.0}]})
  assert (code, document) == (200, {"results": [[["neg", 0.5],
                                                 ["pos", 0.5]]]})
  code, document, _ = _http(server, "POST", "/v1/models/tf1:regress", {
      "signature_name": "regress_x", "context": {"x": 1.0},
      "examples": [{}, {"x": 0.5}]})
  assert (code, document) == (200, {"results": [5.0, 4.0]})


def test_unknown_paths_are_not_found(server):
  code, document, _ = _http(server, "GET", "/healthz")
  assert (code, document) == (404, None)
