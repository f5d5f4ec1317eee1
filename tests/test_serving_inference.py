"""serving.inference: request validation and responses, without a model.

A Servable built from SignatureDefs alone (no Session) is enough for the
plan: validation happens before anything runs, and `finish` is fed the
outputs a run would have produced.
"""

import grpc
import numpy as np
import pytest

import trainer  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving import apis
from serving import inference
from serving import servables
from serving import status

DT_FLOAT, DT_STRING, DT_INT64 = 1, 7, 9


def _signature_def(inputs, outputs, method=apis.PREDICT_METHOD_NAME):
  """inputs/outputs: alias -> (tensor name, dtype, dims or None)."""
  definition = meta_graph_pb2.SignatureDef(method_name=method)
  for target, tensors in ((definition.inputs, inputs),
                          (definition.outputs, outputs)):
    for alias, (name, dtype, dims) in tensors.items():
      info = target[alias]
      info.name, info.dtype = name, dtype
      if dims is None:
        info.tensor_shape.unknown_rank = True
      for d in dims or ():
        info.tensor_shape.dim.add().size = -1 if d is None else d
  return definition


def _servable():
  predict = _signature_def(
      {"user_id": ("u:0", DT_STRING, [None]),
       "item_id": ("i:0", DT_STRING, [None])},
      {"score": ("s:0", DT_FLOAT, [None]), "rank": ("r:0", DT_INT64, [None])})
  return servables.Servable("mtrec", 3, "/m/3", None,
                            {"serving_default": predict,
                             "other": predict})


def _request(signature_name="", **inputs):
  request = apis.PredictRequest()
  request.model_spec.name = "mtrec"
  request.model_spec.signature_name = signature_name
  for alias, values in inputs.items():
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(values))
  return request


def _error(fn, *args):
  with pytest.raises(status.ServingError) as e:
    fn(*args)
  return e.value


@pytest.mark.parametrize("shape, text", [
    ([2, 3], "[2,3]"), ([None, 3], "[?,3]"), ([], "[]"), ((4,), "[4]")])
def test_shape_string(shape, text):
  assert inference.shape_string(shape) == text


def test_predict_plans_one_call_and_answers_every_output():
  request = _request(user_id=[b"u1", b"u2"], item_id=[b"i1", b"i2"])
  plan = inference.plan_predict(_servable(), request)
  [call] = plan.calls
  assert call.signature.name == "serving_default"
  assert call.inputs["user_id"].tolist() == [b"u1", b"u2"]
  assert call.dtypes == {"user_id": DT_STRING, "item_id": DT_STRING}
  response = plan.finish([{"score": np.array([0.5, 0.25], np.float32),
                           "rank": np.array([1, 2], np.int64)}])
  assert response.model_spec.name == "mtrec"
  assert response.model_spec.signature_name == "serving_default"
  assert response.model_spec.version.value == 3
  assert sorted(response.outputs) == ["rank", "score"]
  assert list(response.outputs["score"].float_val) == [0.5, 0.25]
  assert list(response.outputs["rank"].int64_val) == [1, 2]


def test_predict_output_filter_keeps_only_the_named_outputs():
  request = _request("other", user_id=[b"u"], item_id=[b"i"])
  request.output_filter.append("score")
  plan = inference.plan_predict(_servable(), request)
  response = plan.finish([{"score": np.array([1.0], np.float32),
                           "rank": np.array([1], np.int64)}])
  assert list(response.outputs) == ["score"]
  assert response.model_spec.signature_name == "other"


def test_predict_errors_match_tf_serving():
  servable = _servable()
  error = _error(inference.plan_predict, servable, apis.PredictRequest())
  assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                         "Missing ModelSpec")
  error = _error(inference.plan_predict, servable,
                 _request("nope", user_id=[b"u"], item_id=[b"i"]))
  assert error.code == grpc.StatusCode.FAILED_PRECONDITION
  assert error.message == 'Serving signature key "nope" not found.'
  error = _error(inference.plan_predict, servable, _request(user_id=[b"u"]))
  assert error.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.message == (
      "input size does not match signature: 1!=2 len({user_id}) !="
      " len({item_id,user_id}). Sent extra: {}. Missing but required:"
      " {item_id}.")
  error = _error(inference.plan_predict, servable,
                 _request(user_id=[b"u"], item=[b"i"]))
  assert error.message == (
      "Signature input alias: item_id(feed name: i:0) not found in request"
      " and no default value provided. Inputs expected to be in the request"
      " {item,user_id}, or default input alias set: ")
  for bad, message in (
      (["price"], "output tensor alias not found in signature: price Outputs"
                  " expected to be in the set {rank,score}."),
      (["score", "score"], "duplicate output tensor alias: score")):
    request = _request(user_id=[b"u"], item_id=[b"i"])
    request.output_filter.extend(bad)
    error = _error(inference.plan_predict, servable, request)
    assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                           message)


def test_predict_method_name_check_is_internal():
  odd = _signature_def({"x": ("x:0", DT_FLOAT, [None])},
                       {"y": ("y:0", DT_FLOAT, [None])}, method="custom")
  servable = servables.Servable("m", 1, "/m/1", None,
                                {"serving_default": odd})
  request = _request(x=np.array([1.0], np.float32))
  inference.plan_predict(servable, request)  # not checked by default
  error = _error(inference.plan_predict, servable, request, True)
  assert error.code == grpc.StatusCode.INTERNAL
  assert error.message.endswith("Was: custom")


def test_check_call_reports_dtype_and_shape_as_session_run_does():
  request = _request(user_id=np.array([1.0], np.float32),
                     item_id=[b"i"])
  [call] = inference.plan_predict(_servable(), request).calls
  error = _error(inference.check_call, call)
  # Feeds are numbered by sorted tensor name: i:0 is 0, u:0 is 1.
  assert error.message == "Expects arg[1] to be string but float is provided"
  request = _request(user_id=[[b"u"]], item_id=[b"i"])
  [call] = inference.plan_predict(_servable(), request).calls
  error = _error(inference.check_call, call)
  assert error.message == ('input "user_id" has shape [1,1], which is not'
                           " compatible with the signature's shape [?]")
  [call] = inference.plan_predict(
      _servable(), _request(user_id=[b"u"], item_id=[b"i"])).calls
  inference.check_call(call)  # a right call passes


def test_serialized_examples_prefix_the_context():
  model_input = apis.Input()
  e1 = model_input.example_list.examples.add()
  e1.features.feature["a"].int64_list.value.append(1)
  rows = inference.serialized_examples(model_input)
  assert rows.tolist() == [e1.SerializeToString()]
  model_input = apis.Input()
  with_context = model_input.example_list_with_context
  with_context.context.features.feature["c"].float_list.value.append(2.0)
  e2 = with_context.examples.add()
  e2.features.feature["a"].int64_list.value.append(3)
  rows = inference.serialized_examples(model_input)
  assert rows.dtype == object
  assert rows.tolist() == [with_context.context.SerializeToString() +
                           e2.SerializeToString()]
  merged = tf.train.Example.FromString(rows[0])
  assert sorted(merged.features.feature) == ["a", "c"]
  error = _error(inference.serialized_examples, apis.Input())
  assert error.message == "Input is empty."


def test_classification_result_pairs_labels_and_scores():
  result = apis.ClassificationResult()
  inference.classification_result(
      {"classes": np.array([[b"a", b"b"], [b"c", b"d"]], object),
       "scores": np.array([[0.75, 0.25], [0.5, 0.5]], np.float32)},
      2, result)
  got = [[(c.label, c.score) for c in r.classes]
         for r in result.classifications]
  assert got == [[("a", 0.75), ("b", 0.25)], [("c", 0.5), ("d", 0.5)]]
  only_scores = apis.ClassificationResult()
  inference.classification_result(
      {"scores": np.array([[0.125]], np.float32)}, 1, only_scores)
  [[cls]] = [r.classes for r in only_scores.classifications]
  assert (cls.label, cls.score) == ("", 0.125)


@pytest.mark.parametrize("outputs, n, message", [
    ({"scores": np.array([0.5], np.float32)}, 1,
     "Expected Tensor shape: [batch_size num_classes] but got [1]"),
    ({"scores": np.array([[1]], np.int64)}, 1,
     "Expected scores Tensor of DT_FLOAT. Got: DT_INT64"),
    ({"classes": np.array([[b"a"]], object)}, 2,
     "Expected classes output batch size of 2. Got: 1"),
    ({"classes": np.array([[b"a", b"b"]], object),
      "scores": np.array([[0.5]], np.float32)}, 1,
     "Tensors class and score should match in dim_size(1). Got 2 vs. 1"),
])
def test_classification_result_errors(outputs, n, message):
  error = _error(inference.classification_result, outputs, n,
                 apis.ClassificationResult())
  assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                         message)


@pytest.mark.parametrize("values", [
    np.array([1.5, -2.0], np.float32), np.array([[1.5], [-2.0]], np.float32)])
def test_regression_result_takes_a_vector_or_a_column(values):
  result = apis.RegressionResult()
  inference.regression_result({"outputs": values}, 2, result)
  assert [r.value for r in result.regressions] == [1.5, -2.0]


@pytest.mark.parametrize("values, n, message", [
    (np.zeros((2, 2), np.float32), 2,
     "Expected output Tensor shape to be either [batch_size] or"
     " [batch_size, 1] but got [2,2]"),
    (np.zeros(3, np.float32), 2,
     "Input batch size did not match output batch size: 2 vs. 3"),
    (np.zeros(2, np.float64), 2,
     "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"),
])
def test_regression_result_errors(values, n, message):
  error = _error(inference.regression_result, {"outputs": values}, n,
                 apis.RegressionResult())
  assert error.message == message


def _classify_signature(inputs=None, outputs=None,
                        method=apis.CLASSIFY_METHOD_NAME):
  inputs = inputs or {"inputs": ("x:0", DT_STRING, [None])}
  outputs = outputs or {"scores": ("s:0", DT_FLOAT, [None, 2])}
  return servables.Signature("c", _signature_def(inputs, outputs, method),
                             None)


def test_classification_signature_checks():
  check = inference.check_classification_signature
  check(_classify_signature(), True)
  error = _error(check, _classify_signature(method="x"), True)
  assert error.message == ("Expected classification signature method_name to"
                           " be tensorflow/serving/classify. Was: x")
  check(_classify_signature(method="x"), False)
  error = _error(check, _classify_signature(
      inputs={"inputs": ("x:0", DT_STRING, None),
              "more": ("m:0", DT_STRING, None)}), True)
  assert error.message == "Expected one input Tensor."
  error = _error(check, _classify_signature(
      outputs={"scores": ("s:0", DT_FLOAT, None),
               "classes": ("c:0", DT_STRING, None),
               "b": ("b:0", DT_FLOAT, None)}), True)
  assert error.message == "Expected one or two output Tensors, found 3"
  error = _error(check, _classify_signature(
      inputs={"examples": ("x:0", DT_STRING, None)}), True)
  assert error.message.startswith(
      "No classification inputs found in SignatureDef: ")
  error = _error(check, _classify_signature(
      outputs={"probabilities": ("p:0", DT_FLOAT, None)}), True)
  assert error.message.startswith(
      'Expected classification signature outputs to contain at least one of'
      ' "classes" or "scores". Signature was: ')
  assert error.code == grpc.StatusCode.INVALID_ARGUMENT


def test_regression_signature_checks():
  check = inference.check_regression_signature
  ok = {"outputs": ("o:0", DT_FLOAT, None)}
  check(_classify_signature(outputs=ok, method=apis.REGRESS_METHOD_NAME),
        True)
  error = _error(check, _classify_signature(outputs=ok), True)
  assert error.message == ("Expected regression signature method_name to be"
                           " tensorflow/serving/regress. Was:"
                           " tensorflow/serving/classify")
  error = _error(check, _classify_signature(
      outputs=dict(ok, more=("m:0", DT_FLOAT, None))), False)
  assert error.message == "Expected one output Tensor."
  error = _error(check, _classify_signature(
      outputs={"scores": ("s:0", DT_FLOAT, None)}), False)
  assert error.message.startswith(
      "No regression outputs found in SignatureDef: ")
