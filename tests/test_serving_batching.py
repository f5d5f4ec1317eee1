"""Server-side batching: TF Serving's parameters, errors and guarantees.

The toy model's `batch` output tells how many rows each model call saw, so
the tests see batches form; each request's `score` depends on its own ids,
so they also see that every request gets its own rows back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest

from serving import apis
from serving import batching
from serving import model_server
from serving import status
from serving import testing

_MODEL = "toy"


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
  root = tmp_path_factory.mktemp("batching")
  testing.publish(testing.export_toy(str(root / "export"), 1),
                  str(root / _MODEL), 1)
  return str(root / _MODEL)


def _server(base_path, **parameters) -> model_server.ModelServer:
  return model_server.ModelServer(
      _MODEL, base_path, port=0, host="127.0.0.1", poll_wait_seconds=0,
      enable_batching=True,
      batching_parameters=batching.BatchingParameters(**parameters)).start()


def _predict(port, users, items, signature_name=""):
  request = testing.predict_request(
      _MODEL, {"user_id": np.array(users, dtype=object),
               "item_id": np.array(items, dtype=object)}, signature_name)
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    return apis.PredictionServiceStub(channel).Predict(request, timeout=20)


def test_parameters_file_format_and_checks():
  parameters = batching.parse_batching_parameters("""
      max_batch_size { value: 32 }
      batch_timeout_micros { value: 2000 }
      max_enqueued_batches { value: 100 }
      num_batch_threads { value: 4 }
      allowed_batch_sizes: 8
      allowed_batch_sizes: 32
  """)
  assert parameters == batching.BatchingParameters(
      max_batch_size=32, batch_timeout_micros=2000, max_enqueued_batches=100,
      num_batch_threads=4, allowed_batch_sizes=(8, 32))
  assert batching.BatchingParameters().max_batch_size == 1000  # TF's default.
  with pytest.raises(status.ServingError) as info:
    batching.parse_batching_parameters("max_batch_size { value: 8 }\n"
                                       "batch_timeout: 5", "b.config")
  assert info.value.message.startswith("Invalid protobuf file: 'b.config'")
  with pytest.raises(status.ServingError) as info:
    batching.parse_batching_parameters(
        "max_batch_size { value: 16 } allowed_batch_sizes: 8")
  assert info.value.message == (
      "Last entry in allowed_batch_sizes must match max_batch_size; last"
      " entry was 8; expected 16")
  with pytest.raises(status.ServingError) as info:
    batching.parse_batching_parameters(
        "max_batch_size { value: 8 } allowed_batch_sizes: 8"
        " allowed_batch_sizes: 4")
  assert info.value.message == (
      "allowed_batch_sizes entries must be monotonically increasing")


def test_concurrent_requests_share_batches_and_get_their_rows(base_path):
  # A timeout long enough for 16 requests to meet in one batch.
  server = _server(base_path, max_batch_size=64, batch_timeout_micros=200_000,
                   num_batch_threads=1)
  try:
    def call(i):
      users = [f"u{i}", f"user{i}"]
      response = _predict(server.port, users, ["x" * i, "y"])
      return i, response
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
      results = list(pool.map(call, range(16)))
  finally:
    server.stop()
  batch_sizes = []
  for i, response in results:
    scores = list(response.outputs["score"].float_val)
    expected = [len(f"u{i}") + i + 100.0, len(f"user{i}") + 1 + 100.0]
    assert scores == expected
    batch_sizes.append(response.outputs["batch"].int_val[0])
  assert max(batch_sizes) > 2  # Requests of 2 rows met in a bigger batch.


def test_padding_to_allowed_batch_sizes(base_path):
  server = _server(base_path, max_batch_size=8, allowed_batch_sizes=(4, 8))
  try:
    response = _predict(server.port, ["a", "bb", "ccc"], ["", "", ""])
  finally:
    server.stop()
  assert list(response.outputs["score"].float_val) == [101.0, 102.0, 103.0]
  assert list(response.outputs["batch"].int_val) == [4, 4, 4]  # Padded.


def test_batching_errors_are_tf_servings(base_path):
  server = _server(base_path, max_batch_size=4)
  try:
    cases = [
        (testing.predict_request(_MODEL, {"x": np.float32(1.0)},
                                 signature_name="scalar"),
         "Batching Run() input tensors must have at least one dimension"),
        (testing.predict_request(_MODEL, {"user_id": [b"a", b"b"],
                                          "item_id": [b"c"]}),
         "Batching Run() input tensors must have equal 0th-dimension size"),
        (testing.predict_request(_MODEL, {"user_id": [b"a"] * 5,
                                          "item_id": [b"c"] * 5}),
         "Task size 5 is larger than maximum input batch size 4"),
    ]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
      stub = apis.PredictionServiceStub(channel)
      for request, message in cases:
        with pytest.raises(grpc.RpcError) as info:
          stub.Predict(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == message
  finally:
    server.stop()


def test_large_batch_splitting(base_path):
  server = _server(base_path, max_batch_size=16,
                   enable_large_batch_splitting=True,
                   max_execution_batch_size=4)
  try:
    users = [f"u{i}" for i in range(10)]
    response = _predict(server.port, users, [""] * 10)
  finally:
    server.stop()
  assert list(response.outputs["score"].float_val) == [
      100.0 + len(u) for u in users]
  assert max(response.outputs["batch"].int_val) <= 4  # Ran in pieces.


def test_full_queue_sheds_load_with_unavailable(base_path):
  # One open batch of one row waits 0.5 s for company; a request of two
  # rows needs a second batch, and the queue holds one.
  server = _server(base_path, max_batch_size=2, batch_timeout_micros=500_000,
                   max_enqueued_batches=1, num_batch_threads=1)
  try:
    first = concurrent.futures.ThreadPoolExecutor(1).submit(
        _predict, server.port, ["a"], ["b"])
    time.sleep(0.15)
    with pytest.raises(grpc.RpcError) as info:
      _predict(server.port, ["a", "b"], ["c", "d"])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == (
        "The batch scheduling queue to which this task was submitted is full")
    assert list(first.result(timeout=10).outputs["score"].float_val) == [102.0]
  finally:
    server.stop()


def test_without_batching_each_request_runs_alone(base_path):
  server = model_server.ModelServer(_MODEL, base_path, port=0,
                                    host="127.0.0.1", poll_wait_seconds=0,
                                    max_workers=2).start()
  results = []
  lock = threading.Lock()
  try:
    def call(i):
      response = _predict(server.port, [f"u{i}"], ["i"])
      with lock:
        results.append(response.outputs["batch"].int_val[0])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      list(pool.map(call, range(16)))
  finally:
    server.stop()
  assert results == [1] * 16


class _GatedSignature:
  """A stand-in signature: records each call's rows; the first one blocks."""

  def __init__(self):
    self.first_entered = threading.Event()
    self.release_first = threading.Event()
    self.calls: list[tuple[float, list[str]]] = []

  def __call__(self, inputs):
    self.calls.append((time.monotonic(), list(inputs["x"])))
    if len(self.calls) == 1:
      self.first_entered.set()
      assert self.release_first.wait(10)
    return {"y": inputs["x"]}


async def _wait_for(event: threading.Event) -> None:
  assert await asyncio.get_running_loop().run_in_executor(None, event.wait, 10)


def test_batch_threads_take_the_next_batch_without_the_event_loop():
  # TF Serving's scheduler threads pull work: a thread that finishes a batch
  # starts the next ready one at once. Here the event loop is blocked when
  # the first batch finishes, so the second can only start if the batch
  # thread takes it itself.
  signature = _GatedSignature()

  async def scenario():
    loop = asyncio.get_running_loop()
    batcher = batching.Batcher(
        batching.BatchingParameters(max_batch_size=8, num_batch_threads=1),
        loop)
    try:
      first = asyncio.ensure_future(
          batcher.run(signature, {"x": np.array(["a"], dtype=object)}))
      await _wait_for(signature.first_entered)
      rest = [asyncio.ensure_future(
          batcher.run(signature, {"x": np.array([name], dtype=object)}))
              for name in ("b", "c")]
      await asyncio.sleep(0)  # Both join the one waiting batch.
      blocked_from = time.monotonic()
      signature.release_first.set()
      time.sleep(0.3)  # Blocks the loop: it cannot dispatch anything.
      blocked_until = time.monotonic()
      outputs = await asyncio.gather(first, *rest)
    finally:
      batcher.close()
    return outputs, blocked_from, blocked_until

  outputs, blocked_from, blocked_until = asyncio.run(scenario())
  assert [list(o["y"]) for o in outputs] == [["a"], ["b"], ["c"]]
  assert [rows for _, rows in signature.calls] == [["a"], ["b", "c"]]
  second_started = signature.calls[1][0]
  assert blocked_from <= second_started < blocked_until


def test_close_fails_queued_requests_with_unavailable():
  signature = _GatedSignature()
  signature.release_first.set()

  async def scenario():
    batcher = batching.Batcher(
        batching.BatchingParameters(max_batch_size=8,
                                    batch_timeout_micros=10_000_000,
                                    num_batch_threads=1),
        asyncio.get_running_loop())
    waiting = asyncio.ensure_future(
        batcher.run(signature, {"x": np.array(["a"], dtype=object)}))
    await asyncio.sleep(0.05)  # Queued, waiting 10 s for company.
    batcher.close()
    with pytest.raises(status.ServingError) as info:
      await asyncio.wait_for(waiting, 5)
    with pytest.raises(status.ServingError) as after:
      await batcher.run(signature, {"x": np.array(["b"], dtype=object)})
    return info.value, after.value

  queued, after_close = asyncio.run(scenario())
  assert queued.code == grpc.StatusCode.UNAVAILABLE
  assert after_close.code == grpc.StatusCode.UNAVAILABLE
  assert signature.calls == []  # Nothing ran.


def test_requests_cancelled_while_queued_do_not_run():
  signature = _GatedSignature()

  async def scenario():
    batcher = batching.Batcher(
        batching.BatchingParameters(max_batch_size=8, num_batch_threads=1),
        asyncio.get_running_loop())
    try:
      first = asyncio.ensure_future(
          batcher.run(signature, {"x": np.array(["a"], dtype=object)}))
      await _wait_for(signature.first_entered)
      gone, kept = [asyncio.ensure_future(
          batcher.run(signature, {"x": np.array([name], dtype=object)}))
                    for name in ("gone", "kept")]
      await asyncio.sleep(0)  # Both are queued behind the running batch.
      gone.cancel()  # As grpc.aio does when the client goes away.
      await asyncio.sleep(0)
      signature.release_first.set()
      outputs = await asyncio.gather(first, kept)
    finally:
      batcher.close()
    return outputs, gone.cancelled()

  outputs, cancelled = asyncio.run(scenario())
  assert cancelled
  assert [list(o["y"]) for o in outputs] == [["a"], ["kept"]]
  assert [rows for _, rows in signature.calls] == [["a"], ["kept"]]


def test_adaptive_timeout_runs_a_request_at_an_idle_server_at_once():
  # TF Serving holds a partial batch for batch_timeout_micros even when
  # nothing else is coming; with adaptive_timeout a request that finds the
  # server idle runs at once. The control shows the timeout is in force.
  signature = _GatedSignature()
  signature.release_first.set()
  parameters = batching.BatchingParameters(
      max_batch_size=8, batch_timeout_micros=30_000_000, num_batch_threads=1)

  async def scenario(adaptive: bool, wait_s: float):
    batcher = batching.Batcher(parameters, asyncio.get_running_loop(),
                               adaptive_timeout=adaptive)
    try:
      return await asyncio.wait_for(
          batcher.run(signature, {"x": np.array(["a"], dtype=object)}),
          wait_s)
    finally:
      batcher.close()

  with pytest.raises(asyncio.TimeoutError):
    asyncio.run(scenario(adaptive=False, wait_s=0.5))  # Held for 30 s.
  outputs = asyncio.run(scenario(adaptive=True, wait_s=5))
  assert list(outputs["y"]) == ["a"]


def test_adaptive_timeout_holds_a_partial_batch_while_requests_arrive():
  # "b" arrives while the first batch runs: the server is under load, so
  # when the thread is free again the batch ["b"] waits for company
  # (batch_timeout_micros) and "c", sent just after, joins it.
  signature = _GatedSignature()

  async def scenario():
    batcher = batching.Batcher(
        batching.BatchingParameters(max_batch_size=8,
                                    batch_timeout_micros=1_000_000,
                                    num_batch_threads=1),
        asyncio.get_running_loop(), adaptive_timeout=True)
    try:
      first = asyncio.ensure_future(
          batcher.run(signature, {"x": np.array(["a"], dtype=object)}))
      await _wait_for(signature.first_entered)
      second = asyncio.ensure_future(
          batcher.run(signature, {"x": np.array(["b"], dtype=object)}))
      await asyncio.sleep(0)  # Queued while "a" runs.
      signature.release_first.set()
      await first
      third = asyncio.ensure_future(
          batcher.run(signature, {"x": np.array(["c"], dtype=object)}))
      return await asyncio.wait_for(asyncio.gather(second, third), 10)
    finally:
      batcher.close()

  outputs = asyncio.run(scenario())
  assert [list(o["y"]) for o in outputs] == [["b"], ["c"]]
  assert [rows for _, rows in signature.calls] == [["a"], ["b", "c"]]
