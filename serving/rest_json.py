"""TF Serving's REST JSON formats, converted to and from the API's protos.

A client written against tensorflow_model_server's REST API must get the
same answers here: the same documents accepted, the same response text, the
same error messages. That conversion is this module, and only that: pure
functions from an HTTP body to a request proto and from a response to JSON
text, with no HTTP in them, so the formats can be tested without a server
and the HTTP server (rest.py) stays a router.

The formats and messages follow model_servers/http_rest_api_handler.cc and
util/json_tensor.cc: `instances` (row format, answered with `predictions`)
or `inputs` (columnar, answered with `outputs`); values are converted to the
signature's dtypes (REST reads the SignatureDef first, so `1` is a fine
float); strings are UTF-8 or `{"b64": ...}`, and outputs whose alias ends in
`_bytes` come back base64; floats print with the fewest digits (6, else 9
for float32 / 17 for double) that read back as the same value; classify and
regress read tf.Examples from `examples` (and `context`). A bad document
raises a ServingError with TF Serving's code and message, which the server
answers as `{"error": message}` (error_json).
"""

from __future__ import annotations

import base64
import functools
import json
import math
from typing import Any, Callable, Optional

from google.protobuf import json_format
import numpy as np

from serving import apis
from serving import status
from serving import tensors

_BYTES_SUFFIX = "_bytes"
_B64 = "b64"

_INT_RANGES = {
    tensors.tf.int32.as_datatype_enum: (-2**31, 2**31 - 1),
    tensors.tf.int16.as_datatype_enum: (-2**31, 2**31 - 1),
    tensors.tf.int8.as_datatype_enum: (-2**31, 2**31 - 1),
    tensors.tf.uint8.as_datatype_enum: (-2**31, 2**31 - 1),
    tensors.tf.int64.as_datatype_enum: (-2**63, 2**63 - 1),
    tensors.tf.uint32.as_datatype_enum: (0, 2**32 - 1),
    tensors.tf.uint64.as_datatype_enum: (0, 2**64 - 1),
}
_FLOAT = tensors.tf.float32.as_datatype_enum
_DOUBLE = tensors.tf.float64.as_datatype_enum
_BOOL = tensors.tf.bool.as_datatype_enum


class _Format:
  ROW = "row"
  COLUMNAR = "columnar"


# JSON values, as rapidjson sees them.


def _json_type(value: Any) -> str:
  if value is None:
    return "Null"
  if value is True:
    return "True"
  if value is False:
    return "False"
  if isinstance(value, dict):
    return "Object"
  if isinstance(value, list):
    return "Array"
  if isinstance(value, str):
    return "String"
  return "Number"


def _json_text(value: Any) -> str:
  return json.dumps(value, separators=(",", ":"), allow_nan=True)


def _is_b64(value: Any) -> bool:
  return (isinstance(value, dict) and len(value) == 1 and
          isinstance(value.get(_B64), str))


def _type_error(value: Any, dtype: int) -> status.ServingError:
  return status.invalid_argument(
      f"JSON Value: {_json_text(value)} Type: {_json_type(value)} is not of"
      f" expected type: {tensors.data_type_string(dtype)}")


def _decode_b64(value: Any) -> bytes:
  if not _is_b64(value):
    raise status.invalid_argument(
        f"JSON Value: {_json_text(value)} not formatted correctly for base64"
        " data")
  try:
    return base64.b64decode(value[_B64], validate=True)
  except ValueError:
    raise status.invalid_argument("Unable to base64 decode") from None


def _is_lossless(value: Any, mantissa_bits: int, max_value: float) -> bool:
  if isinstance(value, int):
    return abs(value) <= (1 << mantissa_bits) - 1
  if not math.isfinite(value):
    return True
  return -max_value <= value <= max_value


def _scalar(value: Any, dtype: int) -> Any:
  """AddValueToTensor: one JSON leaf as a value of `dtype`."""
  is_number = (isinstance(value, (int, float)) and
               not isinstance(value, bool))
  if dtype in (_FLOAT, _DOUBLE):
    if not is_number:
      raise _type_error(value, dtype)
    bits, largest, name = ((24, float(np.finfo(np.float32).max), "float")
                           if dtype == _FLOAT else
                           (53, float(np.finfo(np.float64).max), "double"))
    if not _is_lossless(value, bits, largest):
      raise status.invalid_argument(
          f"Cannot convert JSON value: {_json_text(value)} to {name} without"
          " loss of precision.")
    return float(value)
  if dtype in _INT_RANGES:
    low, high = _INT_RANGES[dtype]
    if not is_number or not isinstance(value, int) or not low <= value <= high:
      raise _type_error(value, dtype)
    return value
  if dtype == _BOOL:
    if not isinstance(value, bool):
      raise _type_error(value, dtype)
    return value
  if dtype == tensors.DT_STRING:
    if isinstance(value, dict):
      return _decode_b64(value)
    if not isinstance(value, str):
      raise _type_error(value, dtype)
    return value.encode("utf-8")
  raise status.unimplemented(
      f"Conversion of JSON Value: {_json_text(value)} to type:"
      f" {tensors.data_type_string(dtype)}")


def _dense_shape(value: Any) -> list[int]:
  """GetDenseTensorShape: the sizes of the first list at each level."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if not value:
      break
    value = value[0]
  return shape


def _fill(value: Any, level: int, shape: list[int], dtype: int,
          out: list[Any]) -> None:
  """FillTensorProto: checks the nesting against `shape`, collects leaves."""
  rank = len(shape)
  if not isinstance(value, list):
    if level != rank:
      raise status.invalid_argument(
          f"JSON Value: {_json_text(value)} found at incorrect level:"
          f" {level + 1} in the JSON DOM. Expected at level: {rank}")
    if isinstance(value, dict) and dtype != tensors.DT_STRING:
      raise _type_error(value, dtype)
    out.append(_scalar(value, dtype))
    return
  if level >= rank:
    raise status.invalid_argument(
        f"Encountered list at unexpected level: {level} expected < {rank}")
  if len(value) != shape[level]:
    raise status.invalid_argument(
        f"Encountered list at unexpected size: {len(value)} at level:"
        f" {level} expected size: {shape[level]}")
  for item in value:
    _fill(item, level + 1, shape, dtype, out)


def _tensor(value: Any, dtype: int) -> tuple[list[int], list[Any]]:
  shape = _dense_shape(value)
  values: list[Any] = []
  _fill(value, 0, shape, dtype, values)
  return shape, values


def _tensor_proto(shape: list[int], values: list[Any],
                  dtype: int) -> tensors.TensorProto:
  np_dtype = tensors.numpy_dtype(dtype)
  if dtype == tensors.DT_STRING:
    array = np.empty(len(values), dtype=object)
    array[:] = values
  else:
    array = np.asarray(values, dtype=np_dtype)
  return tensors.make_proto(array.reshape(shape), dtype)


def _is_named(value: Any) -> bool:
  """An object of named inputs (not a {"b64": ...} value)."""
  return isinstance(value, dict) and not _is_b64(value)


def _instances(instances: list, input_infos: dict[str, Any]
              ) -> dict[str, tensors.TensorProto]:
  """FillTensorMapFromInstancesList (row format)."""
  if not isinstance(instances[0], dict) and len(input_infos) > 1:
    raise status.invalid_argument(
        "instances is a plain list, but expecting list of objects as multiple"
        " input tensors required as per tensorinfo_map")
  named = _is_named(instances[0])
  names = sorted(input_infos)
  columns: dict[str, list[Any]] = {name: [] for name in names}
  item_shapes: dict[str, list[int]] = {}

  def add(item: Any, name: str) -> None:
    if name not in input_infos:
      raise status.invalid_argument(
          f"JSON object: does not have named input: {name}")
    shape, values = _tensor(item, input_infos[name].dtype)
    if name not in item_shapes:
      item_shapes[name] = shape
    elif math.prod(item_shapes[name]) != len(values):
      raise status.invalid_argument(
          f"Expecting tensor size: {math.prod(item_shapes[name])} but got:"
          f" {len(values)}")
    elif item_shapes[name] != shape:
      raise status.invalid_argument(
          f"Expecting shape [{','.join(map(str, item_shapes[name]))}] but"
          f" got: [{','.join(map(str, shape))}]")
    columns[name].extend(values)

  for index, element in enumerate(instances):
    if named:
      if not _is_named(element):
        raise status.invalid_argument(
            f"Expecting object but got list at item {index} of input list")
      for name, item in element.items():
        try:
          add(item, name)
        except status.ServingError as e:
          raise status.invalid_argument(
              f"Failed to process element: {index} key: {name} of"
              f" 'instances' list. Error: {e}") from None
      if set(element) != set(names):
        raise status.invalid_argument(
            f"Failed to process element: {index} of 'instances' list. JSON"
            f" object: {_json_text(element)} keys must be equal to:"
            f" {','.join(names)}")
    else:
      if _is_named(element):
        raise status.invalid_argument(
            f"Expecting value/list but got object at item {index} of input"
            " list")
      try:
        add(element, names[0])
      except status.ServingError as e:
        raise status.invalid_argument(
            f"Failed to process element: {index} of 'instances' list."
            f" Error: {e}") from None
  return {
      name: _tensor_proto([len(instances)] + item_shapes[name],
                          columns[name], input_infos[name].dtype)
      for name in names if name in item_shapes
  }


def _columnar(inputs: Any, input_infos: dict[str, Any]
             ) -> dict[str, tensors.TensorProto]:
  """FillTensorMapFromInputsMap (columnar format)."""
  if not isinstance(inputs, dict) or _is_b64(inputs):
    if len(input_infos) > 1:
      raise status.invalid_argument(
          "inputs is a plain value/list, but expecting an object as multiple"
          " input tensors required as per tensorinfo_map")
    (name, info), = input_infos.items()
    shape, values = _tensor(inputs, info.dtype)
    return {name: _tensor_proto(shape, values, info.dtype)}
  protos = {}
  for name, info in sorted(input_infos.items()):
    if name not in inputs:
      raise status.invalid_argument(
          f"Missing named input: {name} in 'inputs' object.")
    shape, values = _tensor(inputs[name], info.dtype)
    protos[name] = _tensor_proto(shape, values, info.dtype)
  return protos


def _parse_json(body: bytes) -> dict:
  """ParseJson: the document must be a JSON object."""
  if not body:
    raise status.invalid_argument("JSON Parse error: The document is empty")
  try:
    document = json.loads(body)
  except (ValueError, UnicodeDecodeError) as e:
    position = getattr(e, "pos", 0)
    message = getattr(e, "msg", str(e))
    raise status.invalid_argument(
        f"JSON Parse error: {message} at offset: {position}") from None
  if not isinstance(document, dict):
    raise status.invalid_argument(
        f"JSON Value: {_json_text(document)} Is not object")
  return document


def _signature_name(document: dict) -> str:
  name = document.get("signature_name", "")
  if not isinstance(name, str):
    raise status.invalid_argument(
        f"JSON Value: {_json_text(document)} not formatted correctly."
        " 'signature_name' key must be a string value.")
  return name


def predict_request_from_json(
    body: bytes, model_spec: apis.ModelSpec,
    input_infos: Callable[[str], dict[str, Any]]
) -> tuple[apis.PredictRequest, str]:
  """FillPredictRequestFromJson: the request and its format (row/columnar).

  Args:
    body: the HTTP body.
    model_spec: name and version/label from the URL.
    input_infos: signature name -> {alias: TensorInfo} of its inputs.
  """
  document = _parse_json(body)
  request = apis.PredictRequest()
  request.model_spec.CopyFrom(model_spec)
  signature_name = _signature_name(document)
  request.model_spec.signature_name = signature_name
  infos = input_infos(signature_name)
  if not infos:
    raise status.invalid_argument(
        "Failed to get input map for signature:"
        f" {signature_name or 'DEFAULT'}")
  has_instances, has_inputs = "instances" in document, "inputs" in document
  if has_instances and has_inputs:
    raise status.invalid_argument(
        f"JSON Value: {_json_text(document)} Not formatted correctly"
        " expecting only one of 'inputs' or 'instances' keys to exist ")
  if has_instances:
    instances = document["instances"]
    if not isinstance(instances, list):
      raise status.invalid_argument(
          f"JSON Value: {_json_text(document)} Excepting 'instances' to be an"
          " list/array")
    if not instances:
      raise status.invalid_argument(
          f"JSON Value: {_json_text(document)} No values in 'instances'"
          " array")
    protos, request_format = _instances(instances, infos), _Format.ROW
  elif has_inputs:
    protos, request_format = (_columnar(document["inputs"], infos),
                              _Format.COLUMNAR)
  else:
    raise status.invalid_argument("Missing 'inputs' or 'instances' key")
  for name, proto in protos.items():
    request.inputs[name].CopyFrom(proto)
  return request, request_format


def _feature_kind(feature_name: str, current: Optional[str],
                  wanted: str) -> str:
  if current is not None and current != wanted:
    raise status.invalid_argument(
        f"Unexpected element type in feature: {feature_name} expecting type:"
        f" {current}")
  return wanted


def _example(value: Any):
  """MakeExampleFromJsonObject: one JSON object -> tf.Example."""
  example = tensors.tf.train.Example()
  if not isinstance(value, dict):
    raise status.invalid_argument(
        f"Example must be JSON object but got JSON {_json_type(value)}")
  for name, content in value.items():
    items = content if isinstance(content, list) else [content]
    kind = None
    floats, ints, strings = [], [], []
    for item in items:
      if item is None or isinstance(item, list):
        raise status.invalid_argument(
            f"Feature: {name} has element with unexpected JSON type:"
            f" {_json_type(item)}")
      if isinstance(item, bool):
        kind = _feature_kind(name, kind, "int64")
        ints.append(int(item))
      elif isinstance(item, dict):
        if not _is_b64(item):
          raise status.invalid_argument(
              f"Feature: {name} has element with unexpected JSON type:"
              " Object")
        kind = _feature_kind(name, kind, "bytes")
        strings.append(_decode_b64(item))
      elif isinstance(item, str):
        kind = _feature_kind(name, kind, "bytes")
        strings.append(item.encode("utf-8"))
      elif isinstance(item, float):
        kind = _feature_kind(name, kind, "float")
        if not _is_lossless(item, 24, float(np.finfo(np.float32).max)):
          raise status.invalid_argument(
              f"Cannot convert JSON value: {_json_text(item)} to float"
              " without loss of precision.")
        floats.append(item)
      else:
        kind = _feature_kind(name, kind, "int64")
        if item >= 2**63:
          raise status.invalid_argument(
              f"Feature: {name} has uint64 element. Only int64 is"
              " supported.")
        ints.append(item)
    feature = example.features.feature[name]
    if kind == "float":
      feature.float_list.value.extend(floats)
    elif kind == "int64":
      feature.int64_list.value.extend(ints)
    elif kind == "bytes":
      feature.bytes_list.value.extend(strings)
  return example


def examples_request_from_json(body: bytes, request: Any) -> None:
  """FillClassifyRegressRequestFromJson."""
  document = _parse_json(body)
  request.model_spec.signature_name = _signature_name(document)
  model_input = request.input
  has_context = "context" in document
  if has_context:
    model_input.example_list_with_context.context.CopyFrom(
        _example(document["context"]))
  if "examples" not in document:
    raise status.invalid_argument(
        f"JSON Value: {_json_text(document)} When method is classify, key"
        " 'examples' is expected and was not found")
  examples = document["examples"]
  if not isinstance(examples, list):
    raise status.invalid_argument(
        f"JSON Value: {_json_text(document)} Expecting 'examples' value to be"
        " an list/array")
  if not examples:
    raise status.invalid_argument(
        f"JSON Value: {_json_text(document)} 'examples' value is an empty"
        " array")
  target = (model_input.example_list_with_context.examples if has_context
            else model_input.example_list.examples)
  for value in examples:
    target.add().CopyFrom(_example(value))


# Responses.


def _decimal(value: float, float32: bool) -> str:
  """WriteDecimal: the shortest of 6 / max_digits10 digits that round-trips."""
  if math.isnan(value):
    return "NaN"
  if math.isinf(value):
    return "-Infinity" if value < 0 else "Infinity"
  text = "%.6g" % value
  same = (np.float32(text) == np.float32(value)) if float32 else (
      float(text) == value)
  if not same:
    text = ("%.9g" if float32 else "%.17g") % value
  if "." not in text and "e" not in text:
    text += ".0"
  return text


def _json_bool(value: bool) -> str:
  return "true" if value else "false"


def _json_b64(value: bytes) -> str:
  return json.dumps({_B64: base64.b64encode(value).decode("ascii")})


def _json_string(value: Any) -> str:
  if isinstance(value, bytes):
    value = value.decode("utf-8", errors="replace")
  return json.dumps(value, ensure_ascii=False)


def _json_values(array: np.ndarray, as_bytes: bool) -> Any:
  """The nested JSON text of an array (a scalar for rank 0)."""
  array = np.asarray(array)
  kind = array.dtype.kind
  if kind == "f":
    render = functools.partial(_decimal, float32=array.dtype.itemsize <= 4)
  elif kind == "b":
    render = _json_bool
  elif kind in ("i", "u"):
    render = str
  elif as_bytes:
    render = _json_b64
  else:
    render = _json_string

  def nest(value: Any) -> str:
    if isinstance(value, list):
      return "[" + ", ".join(nest(v) for v in value) + "]"
    return render(value)

  return nest(array.tolist())


def json_from_outputs(outputs: dict[str, np.ndarray],
                      request_format: str) -> str:
  """MakeJsonFromTensors: `predictions` (row) or `outputs` (columnar)."""
  if not outputs:
    raise status.invalid_argument("Cannot convert empty tensor map to JSON")
  names = sorted(outputs)
  as_bytes = {name: name.endswith(_BYTES_SUFFIX) for name in names}
  if request_format == _Format.COLUMNAR:
    if len(names) == 1:
      body = _json_values(outputs[names[0]], as_bytes[names[0]])
    else:
      body = "{" + ", ".join(
          f"{json.dumps(name)}: {_json_values(outputs[name], as_bytes[name])}"
          for name in names) + "}"
    return '{"outputs": ' + body + "}"
  batch = None
  for name in names:
    if outputs[name].ndim == 0:
      raise status.invalid_argument(
          f"Tensor name: {name} has no shape information ")
    size = outputs[name].shape[0]
    if batch is not None and size != batch:
      raise status.invalid_argument(
          f"Tensor name: {name} has inconsistent batch size: {size}"
          f" expecting: {batch}")
    batch = size
  rows = []
  for i in range(batch or 0):
    values = {name: _json_values(outputs[name][i], as_bytes[name])
              for name in names}
    if len(names) == 1:
      rows.append(values[names[0]])
    else:
      rows.append("{" + ", ".join(f"{json.dumps(name)}: {values[name]}"
                                  for name in names) + "}")
  return '{"predictions": [' + ", ".join(rows) + "]}"


def json_from_classification(result: apis.ClassificationResult) -> str:
  if not result.classifications:
    raise status.invalid_argument(
        "Cannot convert empty ClassificationResults to JSON")
  rows = []
  for classifications in result.classifications:
    rows.append("[" + ", ".join(
        f"[{json.dumps(c.label, ensure_ascii=False)},"
        f" {_decimal(c.score, True)}]" for c in classifications.classes) + "]")
  return '{"results": [' + ", ".join(rows) + "]}"


def json_from_regression(result: apis.RegressionResult) -> str:
  if not result.regressions:
    raise status.invalid_argument(
        "Cannot convert empty RegressionResults to JSON")
  return '{"results": [' + ", ".join(
      _decimal(r.value, True) for r in result.regressions) + "]}"


def json_from_status(response: apis.GetModelStatusResponse) -> str:
  return json_format.MessageToJson(
      response, always_print_fields_with_no_presence=True)


def json_from_metadata(response: apis.GetModelMetadataResponse) -> str:
  signature_def_map = apis.SignatureDefMap()
  response.metadata[apis.SIGNATURE_DEF_FIELD].Unpack(signature_def_map)
  options = dict(preserving_proto_field_name=True,
                 always_print_fields_with_no_presence=True)
  model_spec = json_format.MessageToJson(response.model_spec, **options)
  signatures = json_format.MessageToJson(signature_def_map, **options)
  return ('{\n"model_spec":' + model_spec + ',\n"metadata": {"signature_def": '
          + signatures + "}\n}\n")


def error_json(message: str) -> str:
  return json.dumps({"error": message}, indent=4, ensure_ascii=False)
