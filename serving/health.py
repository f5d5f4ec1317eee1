"""The standard gRPC health service (grpc.health.v1.Health), on grpc.aio.

Load balancers, `grpc_health_probe` and Kubernetes' gRPC probes speak this
protocol, so the wire format must be the official one: package
grpc.health.v1, service Health, methods Check and Watch, messages
HealthCheckRequest {string service = 1} and HealthCheckResponse
{ServingStatus status = 1} with UNKNOWN/SERVING/NOT_SERVING/SERVICE_UNKNOWN.

Why not the official `grpcio-health-checking` package: its releases that
match our grpcio (1.82 and later, including 1.85.1) require protobuf >= 7,
and the project pins protobuf 6.33.6 (TensorFlow 2.21 needs < 7), so pip
cannot install them together. The newest release that resolves is 1.81.1.
Rather than pin a grpcio-health-checking that lags grpcio, this module uses
the official generated messages when that package is importable and
otherwise builds the very same messages from their descriptor, in a private
descriptor pool (so they can never clash with an official copy loaded
later). Either way the bytes on the wire are identical.

Semantics follow the reference implementation (grpc_health.v1.health): Check
on an unknown service is NOT_FOUND; Watch answers SERVICE_UNKNOWN for it and
streams every later change; enter_graceful_shutdown turns everything
NOT_SERVING and freezes it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import grpc

_LOG = logging.getLogger("serving.health")

SERVICE_NAME = "grpc.health.v1.Health"
OVERALL = ""  # The server as a whole.


def _health_messages():
  """(HealthCheckRequest, HealthCheckResponse) classes."""
  try:
    # pylint: disable-next=g-import-not-at-top
    from grpc_health.v1 import health_pb2  # type: ignore
    return health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
  except ImportError:
    pass
  # pylint: disable=g-import-not-at-top
  from google.protobuf import descriptor_pb2
  from google.protobuf import descriptor_pool
  from google.protobuf import message_factory
  # pylint: enable=g-import-not-at-top
  field = descriptor_pb2.FieldDescriptorProto
  file_proto = descriptor_pb2.FileDescriptorProto(
      name="grpc/health/v1/health.proto", package="grpc.health.v1",
      syntax="proto3")
  file_proto.message_type.add(name="HealthCheckRequest").field.add(
      name="service", number=1, type=field.TYPE_STRING,
      label=field.LABEL_OPTIONAL, json_name="service")
  response = file_proto.message_type.add(name="HealthCheckResponse")
  enum = response.enum_type.add(name="ServingStatus")
  for number, name in enumerate(
      ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
    enum.value.add(name=name, number=number)
  response.field.add(
      name="status", number=1, type=field.TYPE_ENUM, label=field.LABEL_OPTIONAL,
      type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
      json_name="status")
  service = file_proto.service.add(name="Health")
  service.method.add(name="Check",
                     input_type=".grpc.health.v1.HealthCheckRequest",
                     output_type=".grpc.health.v1.HealthCheckResponse")
  service.method.add(name="Watch",
                     input_type=".grpc.health.v1.HealthCheckRequest",
                     output_type=".grpc.health.v1.HealthCheckResponse",
                     server_streaming=True)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file_proto)
  return (message_factory.GetMessageClass(
      pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
          message_factory.GetMessageClass(
              pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")))


HealthCheckRequest, HealthCheckResponse = _health_messages()
UNKNOWN = 0
SERVING = 1
NOT_SERVING = 2
SERVICE_UNKNOWN = 3


class HealthServicer:
  """Serving statuses by service name; all methods run on the event loop."""

  def __init__(self):
    self._statuses: dict[str, int] = {}
    self._watchers: dict[str, set[asyncio.Queue]] = {}
    self._frozen = False

  def set(self, service: str, serving_status: int) -> None:
    if self._frozen or self._statuses.get(service) == serving_status:
      return
    self._statuses[service] = serving_status
    for queue in self._watchers.get(service, ()):
      queue.put_nowait(serving_status)

  def status(self, service: str) -> int:
    return self._statuses.get(service, SERVICE_UNKNOWN)

  def enter_graceful_shutdown(self) -> None:
    """Everything NOT_SERVING from now on, whatever set() says later."""
    for service in list(self._statuses):
      self.set(service, NOT_SERVING)
    self._frozen = True

  async def check(self, request, context):
    serving_status = self._statuses.get(request.service)
    if serving_status is None:
      await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    return HealthCheckResponse(status=serving_status)

  async def watch(self, request, context) -> AsyncIterator:
    service = request.service
    queue: asyncio.Queue = asyncio.Queue()
    self._watchers.setdefault(service, set()).add(queue)
    try:
      last = self._statuses.get(service, SERVICE_UNKNOWN)
      yield HealthCheckResponse(status=last)
      while True:
        serving_status = await queue.get()
        if serving_status != last:
          last = serving_status
          yield HealthCheckResponse(status=serving_status)
    finally:
      self._watchers[service].discard(queue)

  def handler(self) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "Check": grpc.unary_unary_rpc_method_handler(
            self.check,
            request_deserializer=HealthCheckRequest.FromString,
            response_serializer=HealthCheckResponse.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(
            self.watch,
            request_deserializer=HealthCheckRequest.FromString,
            response_serializer=HealthCheckResponse.SerializeToString),
    })


def check(channel: grpc.Channel, service: str = OVERALL,
          timeout: float = 5.0) -> int:
  """Client side: one Check over a (sync) channel; returns the status."""
  call = channel.unary_unary(
      f"/{SERVICE_NAME}/Check",
      request_serializer=HealthCheckRequest.SerializeToString,
      response_deserializer=HealthCheckResponse.FromString)
  return call(HealthCheckRequest(service=service), timeout=timeout).status
