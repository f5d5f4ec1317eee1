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
  threads are busy. With mtrec's --adaptive_batch_timeout the wait applies
  only under load (see Batcher), so a timeout buys larger batches at high
  concurrency without delaying a lone request;
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

The event loop enqueues; the batch threads take ready batches themselves
and run the model, where TensorFlow releases the GIL (see Batcher).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import threading
import time
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

  The event loop only enqueues: run() adds the request to the open batch of
  its signature's queue and awaits its future. The batch threads take the
  work themselves, as TF Serving's batch scheduler threads do: a thread that
  finishes a batch hands the results to the loop (one call_soon_threadsafe
  per batch) and goes straight on to the next ready batch, without a round
  trip through the loop. Under load the model therefore runs back to back;
  a scheduler on the loop that submitted each batch to a pool waited, on
  every batch, for the loop to notice the previous one had finished and for
  the woken thread to get the GIL (figure in docs/design_measurements.md),
  which capped throughput at the concurrency the benchmark drives. The
  queues are shared by the loop and the batch threads under one lock, held
  only to move tasks and batches.
  """

  def __init__(self, parameters: BatchingParameters,
               loop: asyncio.AbstractEventLoop,
               adaptive_timeout: bool = False):
    """Starts the batch threads.

    Args:
      parameters: TF Serving's knobs.
      loop: the event loop whose coroutines call run() and submit().
      adaptive_timeout: (mtrec) a partial batch waits batch_timeout_micros
        for more rows only while the server is under load, i.e. when a
        request arrived while the last batch ran; one that arrives at an
        idle server runs at once. TF Serving holds every partial batch for
        the timeout, which costs a lone request the whole of it.
    """
    parameters.validate()
    self._parameters = parameters
    self._loop = loop
    self._adaptive_timeout = adaptive_timeout
    self._lock = threading.Lock()
    self._work = threading.Condition(self._lock)
    self._queues: dict[int, _Queue] = {}
    self._closed = False
    # The load signal for adaptive_timeout (under the lock): batches being
    # run, and requests enqueued while one was, since the last batch began.
    self._running = 0
    self._arrived_while_running = 0
    self._threads = [
        threading.Thread(target=self._serve_batches, daemon=True,
                         name=f"{parameters.thread_pool_name}_{i}")
        for i in range(parameters.num_batch_threads)]
    for thread in self._threads:
      thread.start()

  @property
  def parameters(self) -> BatchingParameters:
    return self._parameters

  def close(self, timeout: float = 30.0) -> None:
    """Stops the batch threads; requests still queued fail with UNAVAILABLE.

    Blocks (up to `timeout` seconds in all) while batches already running
    finish; their results reach the loop if the loop still runs.
    """
    with self._lock:
      self._closed = True
      abandoned = [task for queue in self._queues.values()
                   for batch in queue.batches for task in batch.tasks]
      self._queues.clear()
      self._work.notify_all()
    if abandoned and not self._loop.is_closed():
      error = status.unavailable("The batch scheduler is shutting down")
      try:
        self._loop.call_soon_threadsafe(self._deliver, abandoned,
                                        [error] * len(abandoned))
      except RuntimeError:  # The loop closed meanwhile.
        pass
    deadline = time.monotonic() + timeout
    for thread in self._threads:
      if thread is not threading.current_thread():
        thread.join(timeout=max(0.0, deadline - time.monotonic()))

  async def run(self, signature: servables.Signature,
                inputs: dict[str, np.ndarray],
                size: Optional[int] = None,
                finish: Optional[Callable[[Outputs], Any]] = None) -> Any:
    """Runs one request's inputs as part of a batch; returns its outputs.

    The coroutine form of submit(), with the same arguments and errors.
    """
    return await self.submit(signature, inputs, size, finish)

  def submit(self, signature: servables.Signature,
             inputs: dict[str, np.ndarray],
             size: Optional[int] = None,
             finish: Optional[Callable[[Outputs], Any]] = None
            ) -> asyncio.Future:
    """Queues one request's inputs for a batch; the future gets its outputs.

    On the event loop. A plain function, so a request that fits one batch
    (nearly all do) costs the loop no coroutine: the caller awaits the
    task's own future.

    Args:
      signature: what to run.
      inputs: alias -> array, all with the same first dimension.
      size: that dimension, when the caller has checked it (batch_size()).
      finish: turns this request's outputs into what run() returns (its
        response), on the batch thread: work the event loop, which every
        request passes through, does not have to do. (A request split
        across batches is finished on the loop, once every piece is back.)

    Raises:
      status.ServingError: the request cannot be batched (see batch_size),
        it is larger than max_batch_size, or the queue is full
        (UNAVAILABLE); raised here, or by the future for a failed model call.
    """
    if size is None:
      size = batch_size(inputs)
    if size > self._parameters.max_batch_size:
      raise status.invalid_argument(
          f"Task size {size} is larger than maximum input batch size"
          f" {self._parameters.max_batch_size}")
    limit = self._parameters.execution_batch_size
    if size <= limit:
      return self._enqueue(signature, inputs, size, finish)
    # enable_large_batch_splitting: run it in pieces, answer as one.
    pieces = [{alias: array[start:start + limit]
               for alias, array in inputs.items()}
              for start in range(0, size, limit)]
    futures = []
    try:
      for i, piece in enumerate(pieces):
        futures.append(self._enqueue(signature, piece,
                                     min(limit, size - i * limit)))
    except status.ServingError:
      for future in futures:  # The queued pieces are dropped, not run.
        future.cancel()
      raise
    return asyncio.ensure_future(self._join_pieces(futures, finish),
                                 loop=self._loop)

  @staticmethod
  async def _join_pieces(futures: list[asyncio.Future],
                         finish: Optional[Callable[[Outputs], Any]]) -> Any:
    results = await asyncio.gather(*futures)
    outputs = {alias: np.concatenate([r[alias] for r in results])
               for alias in results[0]}
    return finish(outputs) if finish is not None else outputs

  def _enqueue(self, signature: servables.Signature,
               inputs: dict[str, np.ndarray], size: int,
               finish: Optional[Callable[[Outputs], Any]] = None
              ) -> asyncio.Future:
    """On the loop: adds a task to its queue's open batch, or opens one."""
    future = self._loop.create_future()
    task = _Task(inputs, size, future, time.monotonic(), finish)
    full = self._parameters.execution_batch_size
    with self._lock:
      if self._closed:
        raise status.unavailable("The batch scheduler is shutting down")
      if self._running:
        self._arrived_while_running += 1
      queue = self._queues.get(id(signature))
      if queue is None:
        queue = self._queues[id(signature)] = _Queue(signature)
      last = queue.batches[-1] if queue.batches else None
      if (last is not None and last.size + size <= full and
          last.inner_shapes == task.inner_shapes):
        last.tasks.append(task)
        last.size += size
        wake = last.size >= full  # Ready now, before any timeout.
      else:
        if len(queue.batches) >= self._parameters.max_enqueued_batches:
          raise status.unavailable(
              "The batch scheduling queue to which this task was submitted"
              " is full")
        queue.batches.append(_Batch(task))
        wake = True
      if wake:
        self._work.notify()
    return future

  def _next_batch(self) -> Optional[tuple[servables.Signature, _Batch]]:
    """On a batch thread: waits for a ready batch; None once closed.

    A queue's first batch is ready when another batch waits behind it, when
    it is full, or when its first task has waited batch_timeout_micros (with
    adaptive_timeout, only while under load). Queues are served round robin.
    Called with the lock held.
    """
    full = self._parameters.execution_batch_size
    while not self._closed:
      timeout = self._parameters.batch_timeout_micros / 1e6
      if self._adaptive_timeout and not self._arrived_while_running:
        timeout = 0.0  # Idle: nobody is likely to join soon.
      now = time.monotonic()
      next_due = None
      # A queue is kept only while it holds a batch: _enqueue creates it
      # with one, and it is dropped here when its last batch is taken.
      for key, queue in list(self._queues.items()):
        first = queue.batches[0]
        due = first.tasks[0].enqueued + timeout
        if len(queue.batches) > 1 or first.size >= full or now >= due:
          batch = queue.batches.popleft()
          # Round robin: the queue just served goes to the back.
          del self._queues[key]
          if queue.batches:
            self._queues[key] = queue
          self._running += 1
          self._arrived_while_running = 0
          return queue.signature, batch
        next_due = due if next_due is None else min(next_due, due)
      self._work.wait(None if next_due is None else next_due - now)
    return None

  def _serve_batches(self) -> None:
    """A batch thread: takes ready batches and runs them until closed."""
    ran = False
    while True:
      with self._lock:
        if ran:
          self._running -= 1
        chosen = self._next_batch()
      if chosen is None:
        return
      ran = True
      signature, batch = chosen
      # Requests cancelled while queued (client gone, deadline passed) do
      # not cost model time. done() is read off the loop's thread: a race
      # only means a request cancelled this instant still runs.
      tasks = [task for task in batch.tasks if not task.future.done()]
      if not tasks:
        continue
      try:
        results = self._execute(signature, tasks)
      except BaseException as e:  # pylint: disable=broad-except
        # _execute answers every error itself; this keeps a batch thread
        # alive, and its requests answered, whatever else escapes.
        results = [status.from_exception(e)] * len(tasks)
      try:
        self._loop.call_soon_threadsafe(self._deliver, tasks, results)
      except RuntimeError:  # The loop is closed: nobody waits any more.
        return

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

  @staticmethod
  def _deliver(tasks: list[_Task], results: list[Any]) -> None:
    """On the loop: completes each task's future (cancelled ones are done)."""
    for task, result in zip(tasks, results):
      if task.future.done():
        continue
      if isinstance(result, BaseException):
        task.future.set_exception(result)
      else:
        task.future.set_result(result)
