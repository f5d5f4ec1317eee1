"""TensorProto <-> numpy, the way TF Serving reads and writes tensors.

Why not tf.make_tensor_proto / tf.make_ndarray: they are general and slow
(tens of microseconds per tensor), and a Python server spends a large part of
each request converting tensors. They also write numbers into
`tensor_content`, while TF Serving answers with the typed repeated fields
(`Tensor::AsProtoField`: float_val, int64_val, string_val, ...); clients that
read one but not the other exist, so the server must write what TF Serving
writes. Reading follows `Tensor::FromProto`: a `tensor_content` of the wrong
size is an error, a typed field with fewer values than the shape repeats its
last value, and an empty one means all zeros.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

TensorProto = tensor_pb2.TensorProto

DT_STRING = types_pb2.DT_STRING

# dtype -> (numpy dtype, typed field). Half and bfloat16 travel as their bit
# patterns in half_val.
_FIELDS = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
}
_ENUM_BY_NUMPY = {dtype: enum for enum, (dtype, _) in _FIELDS.items()}

# TensorFlow's DataTypeString() names, which TF Serving's messages use
# ("Expects arg[0] to be string but float is provided").
_DATA_TYPE_STRINGS = {
    types_pb2.DT_FLOAT: "float",
    types_pb2.DT_DOUBLE: "double",
    types_pb2.DT_HALF: "half",
}


class TensorParseError(ValueError):
  """The proto is not a valid tensor (Tensor::FromProto would fail)."""


def data_type_string(dtype: int) -> str:
  """TensorFlow's DataTypeString(): "float", "string", "int64", ..."""
  if dtype in _DATA_TYPE_STRINGS:
    return _DATA_TYPE_STRINGS[dtype]
  try:
    return tf.as_dtype(dtype).name
  except TypeError:
    return f"unknown dtype enum ({dtype})"


def data_type_name(dtype: int) -> str:
  """The enum name: "DT_FLOAT"."""
  try:
    return types_pb2.DataType.Name(dtype)
  except ValueError:
    return str(dtype)


def numpy_dtype(dtype: int) -> np.dtype:
  """The numpy dtype the server uses for a TensorFlow dtype."""
  if dtype == DT_STRING:
    return np.dtype(object)
  if dtype in _FIELDS:
    return _FIELDS[dtype][0]
  return tf.as_dtype(dtype).as_numpy_dtype


def dtype_enum(array: np.ndarray) -> int:
  """The TensorFlow dtype of an array (object and bytes arrays are strings)."""
  kind = array.dtype.kind
  if kind in ("O", "S", "U"):
    return DT_STRING
  enum = _ENUM_BY_NUMPY.get(array.dtype)
  if enum is not None:
    return enum
  return tf.as_dtype(array.dtype).as_datatype_enum


def to_ndarray(proto: TensorProto) -> np.ndarray:
  """Decodes a request tensor as Tensor::FromProto does.

  Raises:
    TensorParseError: invalid dtype or shape, or a tensor_content whose size
      does not match the shape.
  """
  dtype = proto.dtype
  if dtype == types_pb2.DT_INVALID:
    raise TensorParseError("tensor has no dtype")
  tensor_shape = proto.tensor_shape
  shape = []
  for dim in tensor_shape.dim:
    size = dim.size
    if size < 0:
      raise TensorParseError(f"invalid dimension {size}")
    shape.append(size)
  if tensor_shape.unknown_rank:
    raise TensorParseError("tensor shape has unknown rank")
  size = math.prod(shape)
  if dtype == DT_STRING:
    values = proto.string_val
    count = len(values)
    if count == size and len(shape) == 1:
      # The common request (a batch of ids). numpy keeps bytes whole in an
      # object array, so this is the general path's array, made faster.
      return np.array(list(values), dtype=object)
    if count == size:
      flat = list(values)
    elif count == 0:
      flat = [b""] * size
    elif count > size:
      flat = list(values[:size])
    else:
      flat = list(values) + [values[-1]] * (size - count)
    array = np.empty(size, dtype=object)
    array[:] = flat
    return array.reshape(shape)
  field = _FIELDS.get(dtype)
  if field is None:
    try:
      return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
      raise TensorParseError(str(e)) from None
  np_dtype, field_name = field
  if proto.tensor_content:
    content = proto.tensor_content
    if len(content) != size * np_dtype.itemsize:
      raise TensorParseError(
          f"tensor_content holds {len(content)} bytes, the shape needs"
          f" {size * np_dtype.itemsize}")
    return np.frombuffer(content, dtype=np_dtype).reshape(shape)
  values = getattr(proto, field_name)
  count = len(values)
  if dtype == types_pb2.DT_HALF:
    bits = np.fromiter(values, dtype=np.uint16, count=count)
    flat = bits.view(np.float16)
  else:
    flat = np.fromiter(values, dtype=np_dtype, count=count)
  if count == size:
    return flat.reshape(shape)
  if count == 0:
    return np.zeros(shape, dtype=np_dtype)
  if count > size:
    return flat[:size].reshape(shape)
  padded = np.empty(size, dtype=np_dtype)
  padded[:count] = flat
  padded[count:] = flat[-1]
  return padded.reshape(shape)


def fill_proto(array: np.ndarray, proto: TensorProto,
               dtype: Optional[int] = None) -> None:
  """Writes an array into `proto` as Tensor::AsProtoField does.

  Args:
    array: the values; object or bytes arrays are DT_STRING.
    proto: an empty TensorProto (e.g. a fresh map entry) to fill.
    dtype: the TensorFlow dtype, when the caller knows it; else inferred.
  """
  array = np.asarray(array)
  if dtype is None:
    dtype = dtype_enum(array)
  proto.dtype = dtype
  dims = proto.tensor_shape.dim
  for size in array.shape:
    dims.add(size=size)
  if dtype == DT_STRING:
    flat = array.ravel().tolist()
    if flat and not isinstance(flat[0], bytes):
      flat = [v if isinstance(v, bytes) else str(v).encode("utf-8")
              for v in flat]
    proto.string_val.extend(flat)
    return
  field = _FIELDS.get(dtype)
  if field is None:
    # Rare dtypes (complex, quantized, bfloat16): TensorFlow's own encoder.
    encoded = tf.make_tensor_proto(array)
    proto.tensor_content = encoded.tensor_content
    return
  np_dtype, field_name = field
  flat = array.ravel()
  if flat.dtype != np_dtype:
    flat = flat.astype(np_dtype)
  if dtype == types_pb2.DT_HALF:
    flat = flat.view(np.uint16)
  getattr(proto, field_name).extend(flat.tolist())


def make_proto(array: np.ndarray, dtype: Optional[int] = None) -> TensorProto:
  proto = TensorProto()
  fill_proto(array, proto, dtype)
  return proto
