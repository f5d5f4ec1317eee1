"""The request semantics of TF Serving's inference APIs, on one servable.

Predict, Classify, Regress, MultiInference and GetModelMetadata each validate
a request against the servable's SignatureDefs, run one or more signatures
and shape the answer. Clients (and their error handling) depend on the exact
codes and messages, so the checks follow TF Serving's sources in order:
servables/tensorflow/predict_util.cc, classifier.cc, regressor.cc,
multi_inference.cc, get_model_metadata_impl.cc and
tensorflow/cc/saved_model/util.cc (GetInputValues).

Each `plan_*` function validates and returns a `Plan`: the signature calls to
make and a `finish` function that turns their outputs into the response. The
caller decides how the calls run (a thread pool, the dynamic batcher, or
inline during warmup), so the same semantics serve gRPC, REST and warmup.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

from google.protobuf import text_format
import numpy as np

from serving import apis
from serving import servables
from serving import status
from serving import tensors

Outputs = dict[str, np.ndarray]


@dataclasses.dataclass
class Call:
  """One signature to run, with its decoded inputs.

  `dtypes` holds the dtype each input was sent as. Comparing it with the
  signature (check_call) is left to whoever runs the call, because TF
  Serving reports a wrong dtype only when Session::Run starts, after the
  batching layer has had its say.
  """

  signature: servables.Signature
  inputs: dict[str, np.ndarray]
  dtypes: dict[str, int]


@dataclasses.dataclass
class Plan:
  """A validated request: its signature calls and how to answer."""

  servable: servables.Servable
  calls: list[Call]
  finish: Callable[[list[Outputs]], Any]


def require_model_spec(request: Any) -> apis.ModelSpec:
  if not request.HasField("model_spec"):
    raise status.invalid_argument("Missing ModelSpec")
  return request.model_spec


def _signature_name(model_spec: apis.ModelSpec) -> str:
  return model_spec.signature_name or apis.DEFAULT_SERVING_SIGNATURE


def _make_model_spec(target: apis.ModelSpec, name: str,
                     signature_name: Optional[str], version: int) -> None:
  """MakeModelSpec: name, signature (empty -> serving_default), version."""
  target.Clear()
  target.name = name
  if signature_name is not None:
    target.signature_name = signature_name or apis.DEFAULT_SERVING_SIGNATURE
  target.version.value = version


@functools.lru_cache(maxsize=1024)
def _model_spec_template(name: str, signature_name: Optional[str],
                         version: int) -> apis.ModelSpec:
  """MakeModelSpec's result, built once; responses CopyFrom it (cheaper)."""
  model_spec = apis.ModelSpec()
  _make_model_spec(model_spec, name, signature_name, version)
  return model_spec


def _join(names) -> str:
  return ",".join(sorted(names))


def shape_string(shape: Sequence[Optional[int]]) -> str:
  """TensorShape::DebugString(): "[2,3]"; unknown dimensions are "?"."""
  return "[" + ",".join("?" if d is None else str(int(d)) for d in shape) + "]"


def _debug_string(signature: servables.Signature) -> str:
  return text_format.MessageToString(signature.definition)


# Predict.


def _verify_inputs_size(signature: servables.Signature,
                        request_inputs: Mapping[str, Any]) -> None:
  sent, expected = len(request_inputs), len(signature.inputs)
  if sent > expected or (sent < expected and not signature.defaults):
    request_keys, signature_keys = set(request_inputs), set(signature.inputs)
    raise status.invalid_argument(
        f"input size does not match signature: {sent}!={expected}"
        f" len({{{_join(request_keys)}}}) != len({{{_join(signature_keys)}}})."
        f" Sent extra: {{{_join(request_keys - signature_keys)}}}."
        f" Missing but required: {{{_join(signature_keys - request_keys)}}}.")


def _input_values(signature: servables.Signature,
                  request_inputs: Mapping[str, tensors.TensorProto]
                 ) -> dict[str, tuple[int, np.ndarray]]:
  """saved_model::GetInputValues: alias -> (sent dtype, array)."""
  values = {}
  seen = set()
  for alias, info in signature.inputs.items():
    proto = request_inputs.get(alias)
    if proto is None:
      if alias not in signature.defaults:
        raise status.invalid_argument(
            f"Signature input alias: {alias}(feed name: {info.name}) not"
            " found in request and no default value provided. Inputs"
            f" expected to be in the request {{{_join(request_inputs)}}}, or"
            f" default input alias set: {_join(signature.defaults)}")
      values[alias] = (info.dtype, signature.defaults[alias])
      continue
    seen.add(alias)
    try:
      values[alias] = (proto.dtype, tensors.to_ndarray(proto))
    except tensors.TensorParseError:
      raise status.invalid_argument(f"tensor parsing error: {alias}") from None
  if request_inputs and len(seen) != len(request_inputs):
    raise status.invalid_argument(
        f"Inputs contains invalid name. Used request inputs: {_join(seen)},"
        f" request input: {_join(request_inputs)}")
  return values


@dataclasses.dataclass(frozen=True)
class RequestLimits:
  """(mtrec) Bounds on the string data one request may carry; 0: none.

  TF Serving bounds a request only by gRPC's message size, and the REST
  API by nothing; a 100 MB user id then reaches the graph as a valid
  string. These flags (`--max_request_string_bytes`,
  `--max_string_element_bytes`) cap it before any model call. The codes
  follow gRPC's and TensorFlow's use: too much data in all is
  RESOURCE_EXHAUSTED (as an oversized message is), one malformed value is
  INVALID_ARGUMENT.
  """

  max_request_string_bytes: int = 0
  max_string_element_bytes: int = 0

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) < 0:
        raise ValueError(f"--{field.name} must be >= 0, got "
                         f"{getattr(self, field.name)}")

  @property
  def enabled(self) -> bool:
    return bool(self.max_request_string_bytes or self.max_string_element_bytes)


def check_limits(calls: Sequence[Call], limits: RequestLimits) -> None:
  """Raises when the string inputs of a request's calls exceed `limits`."""
  total = 0
  for call in calls:
    for alias, array in call.inputs.items():
      if array.dtype != object:
        continue
      sizes = [len(v) for v in array.ravel()]
      if limits.max_string_element_bytes and sizes and (
          max(sizes) > limits.max_string_element_bytes):
        raise status.invalid_argument(
            f"input \"{alias}\" holds a string of {max(sizes)} bytes, over"
            f" --max_string_element_bytes={limits.max_string_element_bytes}")
      total += sum(sizes)
  if limits.max_request_string_bytes and (
      total > limits.max_request_string_bytes):
    raise status.resource_exhausted(
        f"The request's string inputs hold {total} bytes, over"
        f" --max_request_string_bytes={limits.max_request_string_bytes}")


def check_call(call: Call) -> None:
  """The checks Session::Run makes on its feeds, before anything runs.

  A dtype mismatch is FunctionCallFrame::SetArgs' error, word for word. A
  shape the signature cannot take is INVALID_ARGUMENT too; TF Serving leaves
  that to the graph's ops, whose messages name graph nodes instead.
  """
  signature = call.signature
  for alias, array in call.inputs.items():
    info = signature.inputs[alias]
    dtype = call.dtypes[alias]
    if dtype != info.dtype:
      raise status.invalid_argument(
          f"Expects arg[{signature.arg_index[alias]}] to be"
          f" {tensors.data_type_string(info.dtype)} but"
          f" {tensors.data_type_string(dtype)} is provided")
    if not info.accepts(array.shape):
      expected = shape_string(info.shape.as_list())  # The rank is known here.
      raise status.invalid_argument(
          f"input \"{alias}\" has shape {shape_string(array.shape)}, which is"
          f" not compatible with the signature's shape {expected}")


def _call(signature: servables.Signature,
          values: Mapping[str, tuple[int, np.ndarray]]) -> Call:
  return Call(signature, {alias: v[1] for alias, v in values.items()},
              {alias: v[0] for alias, v in values.items()})


def _output_aliases(signature: servables.Signature,
                    output_filter: Sequence[str]) -> Sequence[str]:
  if not output_filter:
    return signature.output_aliases
  aliases = []
  for alias in output_filter:
    if alias not in signature.outputs:
      raise status.invalid_argument(
          f"output tensor alias not found in signature: {alias} Outputs"
          f" expected to be in the set {{{_join(signature.outputs)}}}.")
    if alias in aliases:
      raise status.invalid_argument(f"duplicate output tensor alias: {alias}")
    aliases.append(alias)
  return aliases


def _find_signature(servable: servables.Servable, model_spec: apis.ModelSpec,
                    missing: Callable[[str], status.ServingError]
                    ) -> tuple[str, Any]:
  """The requested signature; `missing(name)` is raised when there is none.

  The error differs by API, as in TF Serving: Predict answers
  FAILED_PRECONDITION, Classify and Regress INVALID_ARGUMENT.
  """
  signature_name = _signature_name(model_spec)
  signature = servable.signatures.get(signature_name)
  if signature is None:
    raise missing(signature_name)
  return signature_name, signature


def _no_serving_signature_key(name: str) -> status.ServingError:
  return status.failed_precondition(
      f'Serving signature key "{name}" not found.')


def _no_signature_named(name: str) -> status.ServingError:
  return status.invalid_argument(f"No signature was found with the name: {name}")


def plan_predict(servable: servables.Servable,
                 request: apis.PredictRequest,
                 method_name_check: bool = False) -> Plan:
  """Validates a PredictRequest (RunPredict / PreProcessPrediction)."""
  model_spec = require_model_spec(request)
  signature_name, signature = _find_signature(servable, model_spec,
                                              _no_serving_signature_key)
  if method_name_check and signature.method_name not in (
      apis.PREDICT_METHOD_NAME, apis.CLASSIFY_METHOD_NAME,
      apis.REGRESS_METHOD_NAME):
    raise status.internal(
        "Expected prediction signature method_name to be one of"
        f" {{{apis.PREDICT_METHOD_NAME}, {apis.CLASSIFY_METHOD_NAME},"
        f" {apis.REGRESS_METHOD_NAME}}}. Was: {signature.method_name}")
  _verify_inputs_size(signature, request.inputs)
  values = _input_values(signature, request.inputs)
  aliases = _output_aliases(signature, request.output_filter)
  response_model_spec = _model_spec_template(model_spec.name, signature_name,
                                             servable.version)
  output_infos = signature.outputs

  # Runs on the batch thread, once per request, holding the GIL the event
  # loop waits for: keep it to the message writes.
  def finish(outputs: list[Outputs]) -> apis.PredictResponse:
    response = apis.PredictResponse()
    response.model_spec.CopyFrom(response_model_spec)
    computed = outputs[0]
    response_outputs = response.outputs
    for alias in aliases:
      tensors.fill_proto(computed[alias], response_outputs[alias],
                         output_infos[alias].dtype)
    return response

  return Plan(servable, [_call(signature, values)], finish)


# Classify and Regress.


def serialized_examples(model_input: apis.Input) -> np.ndarray:
  """InputToSerializedExampleTensor: one serialized tf.Example per row.

  With a context, each row is the context's bytes followed by the example's:
  parsing that is a proto merge, so the example's features win.
  """
  kind = model_input.WhichOneof("kind")
  if kind == "example_list":
    rows = [e.SerializeToString() for e in model_input.example_list.examples]
  elif kind == "example_list_with_context":
    with_context = model_input.example_list_with_context
    context = with_context.context.SerializeToString()
    rows = [context + e.SerializeToString() for e in with_context.examples]
  else:
    rows = []
  if not rows:
    raise status.invalid_argument("Input is empty.")
  array = np.empty(len(rows), dtype=object)
  array[:] = rows
  return array


def _classification_signature(servable: servables.Servable,
                              model_spec: apis.ModelSpec,
                              method_name_check: bool) -> servables.Signature:
  """GetClassificationSignatureDef."""
  signature_name, signature = _find_signature(
      servable, model_spec, _no_signature_named)
  check_classification_signature(signature, method_name_check)
  return signature


def check_classification_signature(signature: servables.Signature,
                                   method_name_check: bool) -> None:
  """PreProcessClassification's checks."""
  if method_name_check and signature.method_name != apis.CLASSIFY_METHOD_NAME:
    raise status.invalid_argument(
        "Expected classification signature method_name to be"
        f" {apis.CLASSIFY_METHOD_NAME}. Was: {signature.method_name}")
  if len(signature.inputs) != 1:
    raise status.invalid_argument("Expected one input Tensor.")
  if len(signature.outputs) not in (1, 2):
    raise status.invalid_argument(
        "Expected one or two output Tensors, found"
        f" {len(signature.outputs)}")
  if apis.CLASSIFY_INPUTS not in signature.inputs:
    raise status.invalid_argument(
        "No classification inputs found in SignatureDef: "
        + _debug_string(signature))
  if (apis.CLASSIFY_OUTPUT_CLASSES not in signature.outputs and
      apis.CLASSIFY_OUTPUT_SCORES not in signature.outputs):
    raise status.invalid_argument(
        "Expected classification signature outputs to contain at least one"
        f' of "{apis.CLASSIFY_OUTPUT_CLASSES}" or'
        f' "{apis.CLASSIFY_OUTPUT_SCORES}". Signature was: '
        + _debug_string(signature))


def check_regression_signature(signature: servables.Signature,
                               method_name_check: bool) -> None:
  """PreProcessRegression's checks."""
  if method_name_check and signature.method_name != apis.REGRESS_METHOD_NAME:
    raise status.invalid_argument(
        "Expected regression signature method_name to be"
        f" {apis.REGRESS_METHOD_NAME}. Was: {signature.method_name}")
  if len(signature.inputs) != 1:
    raise status.invalid_argument("Expected one input Tensor.")
  if len(signature.outputs) != 1:
    raise status.invalid_argument("Expected one output Tensor.")
  if apis.REGRESS_INPUTS not in signature.inputs:
    raise status.invalid_argument(
        "No regression inputs found in SignatureDef: "
        + _debug_string(signature))
  if apis.REGRESS_OUTPUTS not in signature.outputs:
    raise status.invalid_argument(
        "No regression outputs found in SignatureDef: "
        + _debug_string(signature))


def _examples_call(signature: servables.Signature, examples: np.ndarray,
                   input_alias: str) -> Call:
  return _call(signature, {input_alias: (tensors.DT_STRING, examples)})


def _dtype_name(array: np.ndarray) -> str:
  return tensors.data_type_name(tensors.dtype_enum(array))


def classification_result(outputs: Outputs, num_examples: int,
                          result: apis.ClassificationResult) -> None:
  """PostProcessClassificationResult."""
  classes = outputs.get(apis.CLASSIFY_OUTPUT_CLASSES)
  scores = outputs.get(apis.CLASSIFY_OUTPUT_SCORES)
  for name, array, dtype in (("classes", classes, "DT_STRING"),
                             ("scores", scores, "DT_FLOAT")):
    if array is None:
      continue
    if array.ndim != 2:
      raise status.invalid_argument(
          "Expected Tensor shape: [batch_size num_classes] but got "
          + shape_string(array.shape))
    if _dtype_name(array) != dtype:
      raise status.invalid_argument(
          f"Expected {name} Tensor of {dtype}. Got: {_dtype_name(array)}")
    if array.shape[0] != num_examples:
      raise status.invalid_argument(
          f"Expected {name} output batch size of {num_examples}. Got:"
          f" {array.shape[0]}")
  if classes is not None and scores is not None:
    if classes.shape[1] != scores.shape[1]:
      raise status.invalid_argument(
          "Tensors class and score should match in dim_size(1). Got"
          f" {classes.shape[1]} vs. {scores.shape[1]}")
  num_classes = (classes if classes is not None else scores).shape[1]
  labels = classes.tolist() if classes is not None else None
  values = scores.tolist() if scores is not None else None
  for i in range(num_examples):
    classifications = result.classifications.add()
    for c in range(num_classes):
      cls = classifications.classes.add()
      if labels is not None:
        label = labels[i][c]
        cls.label = (label.decode("utf-8", errors="replace")
                     if isinstance(label, bytes) else label)
      if values is not None:
        cls.score = values[i][c]


def regression_result(outputs: Outputs, num_examples: int,
                      result: apis.RegressionResult) -> None:
  """PostProcessRegressionResult."""
  values = outputs[apis.REGRESS_OUTPUTS]
  if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
    raise status.invalid_argument(
        "Expected output Tensor shape to be either [batch_size] or"
        " [batch_size, 1] but got " + shape_string(values.shape))
  if values.shape[0] != num_examples:
    raise status.invalid_argument(
        "Input batch size did not match output batch size:"
        f" {num_examples} vs. {values.shape[0]}")
  if _dtype_name(values) != "DT_FLOAT":
    raise status.invalid_argument(
        f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(values)}")
  for value in values.reshape(-1).tolist():
    result.regressions.add().value = value


def plan_classify(servable: servables.Servable,
                  request: apis.ClassificationRequest,
                  method_name_check: bool = False) -> Plan:
  """Validates a ClassificationRequest (RunClassify)."""
  model_spec = require_model_spec(request)
  signature = _classification_signature(servable, model_spec,
                                        method_name_check)
  examples = serialized_examples(request.input)
  call = _examples_call(signature, examples, apis.CLASSIFY_INPUTS)
  name, signature_name = model_spec.name, model_spec.signature_name
  version = servable.version

  def finish(outputs: list[Outputs]) -> apis.ClassificationResponse:
    response = apis.ClassificationResponse()
    _make_model_spec(response.model_spec, name, signature_name, version)
    classification_result(outputs[0], len(examples), response.result)
    return response

  return Plan(servable, [call], finish)


def plan_regress(servable: servables.Servable,
                 request: apis.RegressionRequest,
                 method_name_check: bool = False) -> Plan:
  """Validates a RegressionRequest (RunRegress)."""
  model_spec = require_model_spec(request)
  signature_name, signature = _find_signature(
      servable, model_spec, _no_signature_named)
  check_regression_signature(signature, method_name_check)
  examples = serialized_examples(request.input)
  call = _examples_call(signature, examples, apis.REGRESS_INPUTS)
  name, version = model_spec.name, servable.version

  def finish(outputs: list[Outputs]) -> apis.RegressionResponse:
    response = apis.RegressionResponse()
    _make_model_spec(response.model_spec, name, model_spec.signature_name,
                     version)
    regression_result(outputs[0], len(examples), response.result)
    return response

  return Plan(servable, [call], finish)


# MultiInference.


def multi_inference_model_spec(
    request: apis.MultiInferenceRequest) -> apis.ModelSpec:
  """The ModelSpec whose servable runs every task: the first task's."""
  if request.tasks and request.tasks[0].HasField("model_spec"):
    return request.tasks[0].model_spec
  return apis.ModelSpec()


def plan_multi_inference(servable: servables.Servable,
                         request: apis.MultiInferenceRequest,
                         method_name_check: bool = False) -> Plan:
  """Validates a MultiInferenceRequest (TensorFlowMultiInferenceRunner)."""
  model_name = ""
  input_tensor_name = ""
  seen_signatures = set()
  tasks = []
  for task in request.tasks:
    if not task.model_spec.name:
      raise status.invalid_argument(
          "Found ModelSpec with an empty model name.")
    if not model_name:
      model_name = task.model_spec.name
    elif model_name != task.model_spec.name:
      raise status.invalid_argument(
          "All ModelSpecs in a MultiInferenceRequest must access the same"
          " model name.")
    signature_name = _signature_name(task.model_spec)
    if signature_name in seen_signatures:
      raise status.invalid_argument(
          f"Duplicate evaluation of signature: {signature_name}")
    seen_signatures.add(signature_name)
    signature = servable.signatures.get(signature_name)
    if signature is None:
      raise status.invalid_argument(
          f"Requested signature not found in model graph: {signature_name}")
    if task.method_name == apis.CLASSIFY_METHOD_NAME:
      check_classification_signature(signature, method_name_check)
      input_alias = apis.CLASSIFY_INPUTS
    elif task.method_name == apis.REGRESS_METHOD_NAME:
      check_regression_signature(signature, method_name_check)
      input_alias = apis.REGRESS_INPUTS
    else:
      raise status.unimplemented(
          f"Unsupported signature method_name: {task.method_name}")
    name = signature.inputs[input_alias].name
    if not input_tensor_name:
      input_tensor_name = name
    elif input_tensor_name != name:
      raise status.invalid_argument(
          "Input tensor must be the same for all Signatures.")
    tasks.append((task, signature, input_alias))
  examples = serialized_examples(request.input)
  calls = [_examples_call(signature, examples, input_alias)
           for _, signature, input_alias in tasks]
  version = servable.version

  def finish(outputs: list[Outputs]) -> apis.MultiInferenceResponse:
    response = apis.MultiInferenceResponse()
    for (task, _, _), computed in zip(tasks, outputs):
      result = response.results.add()
      if task.method_name == apis.CLASSIFY_METHOD_NAME:
        classification_result(computed, len(examples),
                              result.classification_result)
      else:
        regression_result(computed, len(examples), result.regression_result)
      _make_model_spec(result.model_spec, task.model_spec.name,
                       task.model_spec.signature_name, version)
    return response

  return Plan(servable, calls, finish)


# GetModelMetadata.


def check_metadata_request(request: apis.GetModelMetadataRequest) -> None:
  """ValidateGetModelMetadataRequest (after the ModelSpec check)."""
  require_model_spec(request)
  if not request.metadata_field:
    raise status.invalid_argument(
        "GetModelMetadataRequest must specify at least one metadata_field")
  for field in request.metadata_field:
    if field != apis.SIGNATURE_DEF_FIELD:
      raise status.invalid_argument(f"Metadata field {field} is not supported")


def model_metadata(servable: servables.Servable,
                   model_name: str) -> apis.GetModelMetadataResponse:
  signature_def_map = apis.SignatureDefMap()
  for name, signature_def in servable.signature_defs.items():
    signature_def_map.signature_def[name].CopyFrom(signature_def)
  response = apis.GetModelMetadataResponse()
  response.model_spec.name = model_name
  response.model_spec.version.value = servable.version
  response.metadata[apis.SIGNATURE_DEF_FIELD].Pack(signature_def_map)
  return response


def run_inline(plan: Plan) -> Any:
  """Runs a plan on the calling thread (warmup, tools)."""
  outputs = []
  for call in plan.calls:
    check_call(call)
    outputs.append(call.signature(call.inputs))
  return plan.finish(outputs)
