"""Server-side dynamic batching, with TF Serving's BatchingParameters.

Concurrent requests to the same signature are gathered into one batch,
concatenated along dimension 0, run once, and the outputs are split back, so
a model call's fixed cost (Python and TensorFlow dispatch, one matmul over
the catalog) is paid once per batch instead of once per request. The knobs
and their defaults are TF Serving's (`--enable_batching`,
`--batching_parameters_file` with a text BatchingParameters):

* max_batch_size (1000): rows per batch, and the largest request accepted;
  with enable_large_batch_splitting, max_execution_batch_size caps the rows
  per model call instead and larger requests are split across calls;
* batch_timeout_micros (0): how long an incomplete batch may wait for more
  rows while a thread is free; 0 runs it as soon as a thread is free, so at
  low load nothing waits and under load batches form by themselves while the
  threads are busy;
* max_enqueued_batches (10): the queue bound; past it requests fail fast with
  UNAVAILABLE (load shedding) instead of queueing without limit;
* num_batch_threads (number of CPUs): batches run concurrently;
* allowed_batch_sizes: batches are padded (with copies of their first row) up
  to the next allowed size, so the model sees few distinct shapes.

Requests keep TF Serving's batching errors: inputs must have a batch
dimension and agree on its size. One difference: TF Serving fails a whole
batch whose tasks' inner dimensions differ (or pads them, with
pad_variable_length_inputs); here such a task starts a batch of its own, so
no request fails because of its neighbours, and nothing is padded.

The scheduler lives on the server's asyncio event loop (no locks: one
thread); the model runs on the batch threads, where TensorFlow releases the
GIL.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import os
from typing import Any, Callable, Optional

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
import numpy as np
import tensorflow as tf

from serving import servables
from serving import status

_LOG = logging.getLogger("serving.batching")

Outputs = dict[str, np.ndarray]


def _batching_parameters_class() -> type:
  """tensorflow.serving.BatchingParameters, built from its field list.

  The message lives in session_bundle_config.proto, which the
  tensorflow-serving-api wheel does not ship. A file with the same package,
  message name and fields (in a private descriptor pool, so it can never
  clash with an official copy) parses the same text files with the same
  errors for misspelt fields.
  """
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  file_proto = descriptor_pb2.FileDescriptorProto(
      name=("tensorflow_serving/servables/tensorflow/"
            "session_bundle_config.proto"),
      package="tensorflow.serving",
      syntax="proto3",
      dependency=["google/protobuf/wrappers.proto"])
  message = file_proto.message_type.add(name="BatchingParameters")
  field = descriptor_pb2.FieldDescriptorProto
  fields = [
      ("max_batch_size", ".google.protobuf.Int64Value"),
      ("batch_timeout_micros", ".google.protobuf.Int64Value"),
      ("max_enqueued_batches", ".google.protobuf.Int64Value"),
      ("num_batch_threads", ".google.protobuf.Int64Value"),
      ("thread_pool_name", ".google.protobuf.StringValue"),
      ("allowed_batch_sizes", field.TYPE_INT64),
      ("pad_variable_length_inputs", field.TYPE_BOOL),
      ("enable_large_batch_splitting", ".google.protobuf.BoolValue"),
      ("max_execution_batch_size", ".google.protobuf.Int64Value"),
      ("batch_padding_policy", field.TYPE_STRING),
  ]
  for number, (name, kind) in enumerate(fields, start=1):
    entry = message.field.add(name=name, number=number,
                              label=field.LABEL_OPTIONAL)
    if isinstance(kind, str):
      entry.type = field.TYPE_MESSAGE
      entry.type_name = kind
    else:
      entry.type = kind
      if name == "allowed_batch_sizes":
        entry.label = field.LABEL_REPEATED
  pool.Add(file_proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParametersProto = _batching_parameters_class()


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """The batching knobs, with the defaults TF Serving's scheduler uses."""

  max_batch_size: int = 1000
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 10
  num_batch_threads: int = os.cpu_count() or 1
  thread_pool_name: str = "model_server_batch_threads"
  allowed_batch_sizes: tuple[int, ...] = ()
  pad_variable_length_inputs: bool = False
  enable_large_batch_splitting: bool = False
  max_execution_batch_size: Optional[int] = None

  def validate(self) -> None:
    """The checks TF Serving makes when it creates the batching session."""
    if self.max_batch_size <= 0:
      raise status.invalid_argument("max_batch_size must be positive")
    if self.num_batch_threads <= 0:
      raise status.invalid_argument("num_batch_threads must be positive")
    if self.max_enqueued_batches <= 0:
      raise status.invalid_argument("max_enqueued_batches must be positive")
    if self.batch_timeout_micros < 0:
      raise status.invalid_argument("batch_timeout_micros must be >= 0")
    previous = 0
    for size in self.allowed_batch_sizes:
      if size <= previous:
        raise status.invalid_argument(
            "allowed_batch_sizes entries must be monotonically increasing")
      previous = size
    if (self.allowed_batch_sizes and
        self.allowed_batch_sizes[-1] != self.execution_batch_size):
      raise status.invalid_argument(
          "Last entry in allowed_batch_sizes must match max_batch_size; last"
          f" entry was {self.allowed_batch_sizes[-1]}; expected"
          f" {self.execution_batch_size}")

  @property
  def execution_batch_size(self) -> int:
    """Rows per model call (max_execution_batch_size when splitting)."""
    if self.enable_large_batch_splitting and self.max_execution_batch_size:
      return self.max_execution_batch_size
    return self.max_batch_size


def parse_batching_parameters(text: str,
                              source: str = "<string>") -> BatchingParameters:
  """Parses a text BatchingParameters (what --batching_parameters_file holds).

  Raises:
    status.ServingError: INVALID_ARGUMENT for a malformed file or values.
  """
  proto = BatchingParametersProto()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise status.invalid_argument(
        f"Invalid protobuf file: '{source}': {e}") from None
  values: dict[str, Any] = {}
  for name in ("max_batch_size", "batch_timeout_micros",
               "max_enqueued_batches", "num_batch_threads",
               "max_execution_batch_size"):
    if proto.HasField(name):
      values[name] = getattr(proto, name).value
  if proto.HasField("thread_pool_name"):
    values["thread_pool_name"] = proto.thread_pool_name.value
  if proto.HasField("enable_large_batch_splitting"):
    values["enable_large_batch_splitting"] = (
        proto.enable_large_batch_splitting.value)
  values["allowed_batch_sizes"] = tuple(proto.allowed_batch_sizes)
  values["pad_variable_length_inputs"] = proto.pad_variable_length_inputs
  if proto.pad_variable_length_inputs:
    _LOG.warning("pad_variable_length_inputs: tasks whose inner dimensions"
                 " differ are run in separate batches instead of padded")
  parameters = BatchingParameters(**values)
  parameters.validate()
  return parameters


def read_batching_parameters(path: str) -> BatchingParameters:
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      text = f.read()
  except tf.errors.OpError as e:
    raise status.from_exception(e) from None
  return parse_batching_parameters(text, path)


def batch_size(inputs: dict[str, np.ndarray]) -> int:
  """The rows of a request; TF Serving's batching checks, word for word."""
  size = None
  for array in inputs.values():
    if array.ndim == 0:
      raise status.invalid_argument(
          "Batching Run() input tensors must have at least one dimension")
    if size is None:
      size = array.shape[0]
    elif array.shape[0] != size:
      raise status.invalid_argument(
          "Batching Run() input tensors must have equal 0th-dimension size")
  return size or 0


class _Task:
  __slots__ = ("inputs", "size", "inner_shapes", "future", "enqueued",
               "finish")

  def __init__(self, inputs: dict[str, np.ndarray], size: int,
               future: asyncio.Future, enqueued: float,
               finish: Optional[Callable[[Outputs], Any]] = None):
    self.inputs = inputs
    self.size = size
    self.finish = finish
    self.inner_shapes = tuple(
        (alias, array.shape[1:]) for alias, array in sorted(inputs.items()))
    self.future = future
    self.enqueued = enqueued


class _Batch:
  __slots__ = ("tasks", "size", "inner_shapes")

  def __init__(self, task: _Task):
    self.tasks = [task]
    self.size = task.size
    self.inner_shapes = task.inner_shapes


class _Queue:
  """The batches waiting for one signature of one servable."""

  def __init__(self, signature: servables.Signature):
    self.signature = signature
    self.batches: collections.deque[_Batch] = collections.deque()


class Batcher:
  """Batches concurrent calls per signature; one instance per server.

  All methods but the model call itself run on the event loop passed in.
  """

  def __init__(self, parameters: BatchingParameters,
               loop: asyncio.AbstractEventLoop):
    parameters.validate()
    self._parameters = parameters
    self._loop = loop
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=parameters.num_batch_threads,
        thread_name_prefix=parameters.thread_pool_name)
    self._idle_threads = parameters.num_batch_threads
    self._queues: dict[int, _Queue] = {}
    self._timer: Optional[asyncio.TimerHandle] = None
    self._timer_at = 0.0

  @property
  def parameters(self) -> BatchingParameters:
    return self._parameters

  def close(self) -> None:
    self._executor.shutdown(wait=False, cancel_futures=True)

  async def run(self, signature: servables.Signature,
                inputs: dict[str, np.ndarray],
                size: Optional[int] = None,
                finish: Optional[Callable[[Outputs], Any]] = None) -> Any:
    """Runs one request's inputs as part of a batch; returns its outputs.

    Args:
      signature: what to run.
      inputs: alias -> array, all with the same first dimension.
      size: that dimension, when the caller has checked it (batch_size()).
      finish: turns this request's outputs into what run() returns (its
        response), on the batch thread: work the event loop, which every
        request passes through, does not have to do.

    Raises:
      status.ServingError: the request cannot be batched (see batch_size),
        it is larger than max_batch_size, the queue is
        full (UNAVAILABLE), or the model call failed.
    """
    if size is None:
      size = batch_size(inputs)
    if size > self._parameters.max_batch_size:
      raise status.invalid_argument(
          f"Task size {size} is larger than maximum input batch size"
          f" {self._parameters.max_batch_size}")
    limit = self._parameters.execution_batch_size
    if size > limit:
      # enable_large_batch_splitting: run it in pieces, answer as one.
      pieces = [{alias: array[start:start + limit]
                 for alias, array in inputs.items()}
                for start in range(0, size, limit)]
      results = await asyncio.gather(
          *(self._enqueue(signature, piece, min(limit, size - i * limit))
            for i, piece in enumerate(pieces)))
      outputs = {alias: np.concatenate([r[alias] for r in results])
                 for alias in results[0]}
      return finish(outputs) if finish is not None else outputs
    return await self._enqueue(signature, inputs, size, finish)

  def _enqueue(self, signature: servables.Signature,
               inputs: dict[str, np.ndarray], size: int,
               finish: Optional[Callable[[Outputs], Any]] = None
              ) -> asyncio.Future:
    future = self._loop.create_future()
    task = _Task(inputs, size, future, self._loop.time(), finish)
    queue = self._queues.get(id(signature))
    if queue is None:
      queue = self._queues[id(signature)] = _Queue(signature)
    last = queue.batches[-1] if queue.batches else None
    if (last is not None and
        last.size + size <= self._parameters.execution_batch_size and
        last.inner_shapes == task.inner_shapes):
      last.tasks.append(task)
      last.size += size
    else:
      if len(queue.batches) >= self._parameters.max_enqueued_batches:
        raise status.unavailable(
            "The batch scheduling queue to which this task was submitted is"
            " full")
      queue.batches.append(_Batch(task))
    self._schedule()
    return future

  def _schedule(self) -> None:
    """Hands ready batches to idle threads; arms a timer for the rest."""
    timeout = self._parameters.batch_timeout_micros / 1e6
    full = self._parameters.execution_batch_size
    now = self._loop.time()
    next_due = None
    while self._idle_threads > 0:
      chosen = None
      for key in list(self._queues):
        queue = self._queues[key]
        if not queue.batches:
          del self._queues[key]  # Drops queues of unloaded versions.
          continue
        first = queue.batches[0]
        due = first.tasks[0].enqueued + timeout
        if len(queue.batches) > 1 or first.size >= full or now >= due:
          chosen = queue
          break
        next_due = due if next_due is None else min(next_due, due)
      if chosen is None:
        break
      batch = chosen.batches.popleft()
      # Round robin: the queue just served goes to the back.
      self._queues[id(chosen.signature)] = self._queues.pop(
          id(chosen.signature))
      if not chosen.batches:
        del self._queues[id(chosen.signature)]
      self._dispatch(chosen.signature, batch)
    if next_due is not None and self._idle_threads > 0:
      if self._timer is None or next_due < self._timer_at:
        if self._timer is not None:
          self._timer.cancel()
        self._timer_at = next_due
        self._timer = self._loop.call_at(next_due, self._on_timer)

  def _on_timer(self) -> None:
    self._timer = None
    self._schedule()

  def _dispatch(self, signature: servables.Signature, batch: _Batch) -> None:
    tasks = [t for t in batch.tasks if not t.future.done()]  # Cancelled.
    if not tasks:
      return
    self._idle_threads -= 1
    done = self._loop.run_in_executor(self._executor, self._execute,
                                      signature, tasks)
    done.add_done_callback(lambda f: self._finish(f, tasks))

  def _execute(self, signature: servables.Signature,
               tasks: list[_Task]) -> list[Any]:
    """On a batch thread: merge, pad, run, check and split."""
    try:
      total = sum(t.size for t in tasks)
      padded = self._padded_size(total)
      if len(tasks) == 1 and padded == total:
        merged = tasks[0].inputs
      else:
        merged = {}
        for alias in tasks[0].inputs:
          parts = [t.inputs[alias] for t in tasks]
          if padded > total:
            first_row = parts[0][:1]
            parts.append(np.repeat(first_row, padded - total, axis=0))
          merged[alias] = np.concatenate(parts)
      outputs = signature(merged)
      for array in outputs.values():
        if array.ndim == 0:
          raise status.failed_precondition(
              "Batched output tensor has 0 dimensions")
        if array.shape[0] != padded:
          raise status.failed_precondition(
              "Batched output tensor's 0th dimension does not equal the sum"
              " of the 0th dimension sizes of the input tensors")
      results = []
      start = 0
      for task in tasks:
        end = start + task.size
        if len(tasks) == 1 and padded == total:
          result = outputs
        else:
          result = {alias: array[start:end]
                    for alias, array in outputs.items()}
        start = end
        if task.finish is not None:
          try:
            result = task.finish(result)
          except Exception as e:  # pylint: disable=broad-except
            result = status.from_exception(e)
        results.append(result)
      return results
    except status.ServingError as e:
      return [e] * len(tasks)
    except Exception as e:  # pylint: disable=broad-except
      _LOG.exception("Batch failed")
      return [status.from_exception(e)] * len(tasks)

  def _padded_size(self, total: int) -> int:
    for size in self._parameters.allowed_batch_sizes:
      if size >= total:
        return size
    return total

  def _finish(self, done: asyncio.Future, tasks: list[_Task]) -> None:
    self._idle_threads += 1
    try:
      results = done.result()
    except BaseException as e:  # pylint: disable=broad-except
      results = [status.from_exception(e)] * len(tasks)
    for task, result in zip(tasks, results):
      if task.future.done():
        continue
      if isinstance(result, BaseException):
        task.future.set_exception(result)
      else:
        task.future.set_result(result)
    self._schedule()
