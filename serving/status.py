"""The one error type of the serving layer, and how it maps to the wire.

TF Serving reports every failure as a `tensorflow::Status`: a code from
tensorflow/core/protobuf/error_codes.proto and a message. The gRPC API returns
it as the call's status (the two code spaces share their numbering), the REST
API as `{"error": message}` with an HTTP status picked by code
(model_servers/http_server.cc ToHTTPStatusCode), and ModelService puts it in
StatusProto fields. Every layer here raises `ServingError` with the code and
the message TF Serving would produce, and only the edges (gRPC servicers, the
REST handler, GetModelStatus) translate it, so the same failure reads the same
on every surface.
"""

from __future__ import annotations

from typing import Optional

import grpc

# TensorFlow's error codes and gRPC's status codes share their numbering.
_GRPC_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

# model_servers/http_server.cc ToHTTPStatusCode.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
  """A request or load failure with the status TF Serving would report."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  def __str__(self) -> str:
    # tensorflow::Status::ToString(): "INVALID_ARGUMENT: message".
    return f"{self.code.name}: {self.message}"

  @property
  def http_status(self) -> int:
    return _HTTP_STATUS.get(self.code, 500)


def invalid_argument(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def resource_exhausted(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def unavailable(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.UNAVAILABLE, message)


def internal(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INTERNAL, message)


def unknown(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.UNKNOWN, message)


def grpc_code(number: int) -> grpc.StatusCode:
  """The gRPC code of a TensorFlow error code number (UNKNOWN if unheard of)."""
  return _GRPC_CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def from_exception(error: BaseException) -> ServingError:
  """The status a failure inside TensorFlow (or a load) turns into.

  tf.errors.OpError keeps its code and message, as Session::Run's status does
  in TF Serving; anything else is UNKNOWN with the exception's text.
  """
  if isinstance(error, ServingError):
    return error
  error_code: Optional[int] = getattr(error, "error_code", None)
  message: Optional[str] = getattr(error, "message", None)
  if isinstance(error_code, int) and isinstance(message, str):
    return ServingError(grpc_code(error_code), message)
  return unknown(str(error) or type(error).__name__)
