"""Load test of the model server: QPS and latency percentiles, with floors.

Measures, in one run on one machine:

* `recommend` (top-k over the full catalog for one user per request) and
  `serving_default` (score 100 items for one user per request) through the
  project's server over gRPC, at concurrency 1, 8 and 32;
* floor 1, an in-process SavedModel call: the same signatures called
  directly in this process, with the TensorFlow kernels the server program
  uses (serving/runtime.py), one request's worth at a time. The server's
  single-request latency minus this is what serving costs;
* floor 2, a no-op PredictionService (returns an empty PredictResponse) on
  the same grpc.aio stack and event loop (serving/runtime.py), driven by
  the same load client with the same `recommend` requests. Its QPS is what
  the load client and gRPC alone allow on this machine, so the server's QPS
  is judged against it.

The server and the no-op server run in their own processes, and so does the
load client (official stubs on grpc.aio, one coroutine per concurrent
request, requests and responses fully (de)serialized), so no measurement
shares a GIL with what it measures. On a shared machine the background load
drifts, so the measurements are interleaved: each round measures the
in-process floor, then every cell (no-op, recommend, serving_default, at each
concurrency) back to back, and the figures pool all rounds (QPS: requests
over time; percentiles: over all latencies). The model is either given
(--model_base_path) or built by running the project's pipeline on synthetic
data (--build_synthetic N interactions, the default 50,000 gives a catalog
of about 1,000 items).

  .venv/bin/python benchmarks/serving_benchmark.py [--output bench.json]

Prints a table and writes every figure to JSON. Targets (checked and printed
with the figures): recommend QPS at concurrency 32 >= 60% of the no-op's,
its p99 <= 25 ms, and single-request p50 within 1 ms of the in-process call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, Optional

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pylint: disable-next=g-import-not-at-top,wrong-import-position
from serving import runtime  # noqa: E402

# The in-process floor runs TensorFlow with the server program's kernels.
runtime.use_server_kernels()

_SCORE_ITEMS = 100


def _percentiles(latencies: list[float]) -> dict[str, float]:
  ordered = sorted(latencies)
  n = len(ordered)
  if not n:
    return {"p50_ms": float("nan"), "p95_ms": float("nan"),
            "p99_ms": float("nan"), "mean_ms": float("nan")}
  pick = lambda q: ordered[min(n - 1, int(q * n))] * 1e3  # pylint: disable=unnecessary-lambda-assignment
  return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
          "mean_ms": sum(ordered) / n * 1e3}


# Requests.


def _requests(model_name: str, signature: str, users: list[str],
              items: list[str], count: int = 64) -> list[Any]:
  """Distinct requests to cycle through (so no cache can help)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from serving import testing  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  requests = []
  for i in range(count):
    user = users[i % len(users)]
    if signature == "recommend":
      inputs = {"user_id": np.array([user], dtype=object)}
    else:
      chosen = rng.choice(len(items), size=_SCORE_ITEMS, replace=False)
      inputs = {"user_id": np.array([user] * _SCORE_ITEMS, dtype=object),
                "item_id": np.array([items[j] for j in chosen], dtype=object)}
    requests.append(testing.predict_request(model_name, inputs,
                                            signature_name=signature))
  return requests


# The load client (runs in its own process).


async def _drive(target: str, requests: list[Any], concurrency: int,
                 warmup_s: float, duration_s: float) -> dict[str, Any]:
  import grpc  # pylint: disable=g-import-not-at-top
  from serving import apis  # pylint: disable=g-import-not-at-top
  options = [("grpc.max_receive_message_length", -1)]
  async with grpc.aio.insecure_channel(target, options=options) as channel:
    stub = apis.PredictionServiceStub(channel)
    await stub.Predict(requests[0], timeout=30)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    measuring = False
    stop_at = time.perf_counter() + warmup_s + duration_s
    measure_from = time.perf_counter() + warmup_s

    async def worker(index: int) -> None:
      nonlocal measuring
      i = index
      while True:
        now = time.perf_counter()
        if now >= stop_at:
          return
        request = requests[i % len(requests)]
        i += concurrency
        started = time.perf_counter()
        try:
          await stub.Predict(request, timeout=30)
        except grpc.RpcError as e:
          errors[e.code().name] = errors.get(e.code().name, 0) + 1
          continue
        if started >= measure_from:
          latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - max(began, measure_from)
  return {"requests": len(latencies), "qps": len(latencies) / elapsed,
          "elapsed_s": elapsed, "errors": errors,
          "_latencies": [round(x, 7) for x in latencies]}


def load_client_main(spec: dict[str, Any]) -> None:
  """Child process: runs each job (target, requests, concurrency) in turn."""
  from serving import apis  # pylint: disable=g-import-not-at-top
  requests = {}
  for name, blobs in spec["requests"].items():
    requests[name] = [apis.PredictRequest.FromString(bytes.fromhex(b))
                      for b in blobs]
  results = []
  for job in spec["jobs"]:
    result = asyncio.run(_drive(job["target"], requests[job["requests"]],
                                job["concurrency"], spec["warmup_s"],
                                spec["duration_s"]))
    result["latencies"] = result.pop("_latencies")
    results.append(dict(job, **result))
  print(json.dumps(results))


def _run_jobs(jobs: list[dict[str, Any]], requests: dict[str, list[Any]],
              warmup_s: float, duration_s: float) -> list[dict[str, Any]]:
  spec = {"jobs": jobs, "warmup_s": warmup_s, "duration_s": duration_s,
          "requests": {name: [r.SerializeToString().hex() for r in batch]
                       for name, batch in requests.items()}}
  with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(spec, f)
  try:
    done = subprocess.run(
        [sys.executable, __file__, "--load_client", f.name], cwd=_REPO,
        check=False, capture_output=True, text=True)
  finally:
    os.unlink(f.name)
  if done.returncode:
    raise RuntimeError(f"the load client failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def _pool(cells: list[dict[str, Any]]) -> dict[str, Any]:
  """One figure from several rounds of the same cell."""
  latencies = [x for c in cells for x in c["latencies"]]
  elapsed = sum(c["elapsed_s"] for c in cells)
  errors: dict[str, int] = {}
  for c in cells:
    for code, count in c["errors"].items():
      errors[code] = errors.get(code, 0) + count
  pooled = {"concurrency": cells[0]["concurrency"], "rounds": len(cells),
            "requests": len(latencies), "qps": len(latencies) / elapsed,
            "qps_per_round": [round(c["qps"], 1) for c in cells],
            "errors": errors}
  pooled.update(_percentiles(latencies))
  return pooled


# The no-op server (runs in its own process).


def noop_server_main(port: int) -> None:
  """A PredictionService that answers every Predict with an empty response."""
  import grpc  # pylint: disable=g-import-not-at-top
  from serving import apis  # pylint: disable=g-import-not-at-top
  empty = apis.PredictResponse()

  class NoOp(apis.PredictionServiceServicer):

    async def Predict(self, request, context):  # pylint: disable=invalid-name
      return empty

  async def serve():
    server = grpc.aio.server(options=[
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_receive_message_length", 2**31 - 1)])
    apis.add_PredictionServiceServicer_to_server(NoOp(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()

  with asyncio.Runner(loop_factory=runtime.new_event_loop) as runner:
    runner.run(serve())


@contextlib.contextmanager
def _process(args: list[str], ready: str, log_path: str,
             timeout: float = 300) -> Iterator[subprocess.Popen]:
  with open(log_path, "w") as log:
    process = subprocess.Popen(args, cwd=_REPO, stdout=subprocess.PIPE,
                               stderr=log, text=True)
  try:
    deadline = time.monotonic() + timeout
    if ready:
      for line in process.stdout:
        if ready in line:
          break
        if time.monotonic() > deadline:
          raise TimeoutError(f"{args} did not get ready")
    yield process
  finally:
    process.terminate()
    try:
      process.wait(timeout=30)
    except subprocess.TimeoutExpired:
      process.kill()


def _wait_ready(target: str, model_name: str, timeout: float = 300) -> None:
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  with client_lib.PredictionClient(target) as client:
    client.wait_until_ready(model_name, timeout=timeout)


# Floor 1: in-process calls.


def _time_calls(call, inputs: list[Any], duration_s: float) -> list[float]:
  for args in inputs[:16]:
    call(args)
  latencies = []
  stop = time.perf_counter() + duration_s
  i = 0
  while time.perf_counter() < stop:
    started = time.perf_counter()
    call(inputs[i % len(inputs)])
    latencies.append(time.perf_counter() - started)
    i += 1
  return latencies


class _InProcess:
  """Floor 1: the signatures called in this process, one request at a time.

  `saved_model` is the standard TF2 call (tf.saved_model.load, then the
  signature function; outputs converted to numpy); `session` is the path the
  server itself uses (the MetaGraph in a Session, a Session callable, with
  the server's default threading).
  """

  def __init__(self, model_dir: str, requests: dict[str, list[Any]]):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from serving import servables  # pylint: disable=g-import-not-at-top
    from serving import tensors  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self._model = tf.saved_model.load(model_dir)
    self._servable = servables.load(
        "bench", 1, model_dir,
        config=servables.session_config(run_in_caller_thread=True),
        run_options=servables.caller_thread_run_options())
    self._arrays = {
        name: [{alias: tensors.to_ndarray(proto)
                for alias, proto in request.inputs.items()}
               for request in batch]
        for name, batch in requests.items()}
    self.latencies: dict[str, list[float]] = {}

  def measure(self, duration_s: float) -> None:
    tf = self._tf
    for name, arrays in self._arrays.items():
      function = self._model.signatures[name]
      tensors = [{k: tf.constant(v) for k, v in a.items()} for a in arrays]

      def saved_model_call(kwargs, function=function):
        for value in function(**kwargs).values():
          value.numpy()

      signature = self._servable.signatures[name]
      self.latencies.setdefault(f"saved_model/{name}", []).extend(
          _time_calls(saved_model_call, tensors, duration_s / 2))
      self.latencies.setdefault(f"session/{name}", []).extend(
          _time_calls(signature, arrays, duration_s / 2))

  def results(self) -> dict[str, Any]:
    return {key: dict(_percentiles(values), calls=len(values))
            for key, values in self.latencies.items()}


def _catalog(model_dir: str) -> tuple[list[str], list[str]]:
  """(user ids, item ids) to build requests from."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from serving import apis  # pylint: disable=g-import-not-at-top
  from serving import tensors  # pylint: disable=g-import-not-at-top
  from serving import warmup  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(model_dir)
  items = [i.decode() for i in model.item_ids.numpy().tolist()]
  users = set()
  path = warmup.warmup_path(model_dir)
  if os.path.exists(path):
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      log = apis.PredictionLog.FromString(record)
      proto = log.predict_log.request.inputs.get("user_id")
      if proto is not None:
        users.update(v.decode() for v in tensors.to_ndarray(proto).ravel())
  users = sorted(users) or [f"u{i}" for i in range(100)]
  # Unknown users cost the same (an out-of-vocabulary embedding).
  users += [f"bench-user-{i}" for i in range(64 - len(users))]
  return users, items


def _build_model(work_dir: str, interactions: int,
                 candidates: int = 100) -> tuple[str, str]:
  """Runs the pipeline on synthetic data; returns (base path, model name)."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  config = config_lib.parse_config({
      "pipeline_name": "serving-benchmark",
      "model_name": "mtrec",
      "data": {"format": "synthetic",
               "options": {"num_interactions": interactions, "seed": 7}},
      "example_gen": {"rating_min": 1, "rating_max": 5},
      "trainer": {"epochs": 2},
      "evaluator": {"ks": [10], "must_beat_popularity": []},
      "serving": {"top_k": 10, "ranking": {"candidates": candidates}},
  })
  result = runner.run_pipeline(
      config, output_dir=os.path.join(work_dir, "runs"),
      serving_root=os.path.join(work_dir, "serving"),
      log=lambda m: print(m, file=sys.stderr))
  if not result.pushed.get("pushed"):
    raise RuntimeError(f"the pipeline did not push: {result.pushed}")
  return os.path.dirname(result.pushed["destination"]), config.model_name


# The run.


def _free_port() -> int:
  from serving import testing  # pylint: disable=g-import-not-at-top
  return testing.free_port()


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_base_path", default="",
                      help="Serve this model (newest version) instead of"
                      " building one.")
  parser.add_argument("--model_name", default="mtrec")
  parser.add_argument("--build_synthetic", type=int, default=50000,
                      help="Interactions of the synthetic data set the"
                      " benchmark model is trained on.")
  parser.add_argument("--candidates", type=int, default=100,
                      help="serving.ranking.candidates of the built model: "
                      "how many items the fused stage re-ranks")
  parser.add_argument("--concurrency", default="1,8,32")
  parser.add_argument("--duration", type=float, default=5.0,
                      help="Measured seconds per cell and round.")
  parser.add_argument("--rounds", type=int, default=3,
                      help="Interleaved rounds of every cell.")
  parser.add_argument("--warmup", type=float, default=1.0,
                      help="Unmeasured seconds before each cell.")
  # A partial batch waits up to 1 ms for more rows, but only under load
  # (--adaptive_batch_timeout): fewer, larger model calls at concurrency 8
  # and 32, and a lone request still runs at once.
  parser.add_argument("--server_flags",
                      default="--enable_batching --adaptive_batch_timeout",
                      help="Extra flags for the model server.")
  parser.add_argument("--batching_parameters", default=(
      "max_batch_size { value: 1024 }\nbatch_timeout_micros { value: 1000 }\n"
      "max_enqueued_batches { value: 64 }\nnum_batch_threads { value: 1 }\n"),
                      help="BatchingParameters text for --enable_batching.")
  parser.add_argument("--output", default=os.path.join(
      tempfile.gettempdir(), "serving_benchmark.json"),
                      help="Where to write every figure as JSON.")
  parser.add_argument("--load_client", help=argparse.SUPPRESS)
  parser.add_argument("--noop_server", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.load_client:
    with open(args.load_client) as f:
      load_client_main(json.load(f))
    return 0
  if args.noop_server:
    noop_server_main(args.noop_server)
    return 0

  concurrency = [int(c) for c in args.concurrency.split(",")]
  work_dir = tempfile.mkdtemp(prefix="serving-bench-")
  try:
    if args.model_base_path:
      base_path, model_name = args.model_base_path, args.model_name
    else:
      print(f"Building the model: pipeline on {args.build_synthetic}"
            " synthetic interactions ...", file=sys.stderr)
      base_path, model_name = _build_model(work_dir, args.build_synthetic,
                                           args.candidates)
    versions = sorted(glob.glob(os.path.join(base_path, "[0-9]*")),
                      key=lambda p: int(os.path.basename(p)))
    model_dir = versions[-1]
    users, items = _catalog(model_dir)
    requests = {
        "recommend": _requests(model_name, "recommend", users, items),
        "serving_default": _requests(model_name, "serving_default", users,
                                     items),
    }
    in_process = _InProcess(model_dir, requests)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_before": os.getloadavg()},
        "model": {"base_path": base_path, "version_dir": model_dir,
                  "catalog_items": len(items), "top_k": 10,
                  "score_items_per_request": _SCORE_ITEMS},
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup,
                     "rounds": args.rounds, "concurrency": concurrency,
                     "server_flags": args.server_flags,
                     "batching_parameters": args.batching_parameters},
    }
    print(f"Catalog: {len(items)} items", file=sys.stderr)

    noop_port, port = _free_port(), _free_port()
    batching_file = os.path.join(work_dir, "batching.config")
    with open(batching_file, "w") as f:
      f.write(args.batching_parameters)
    flags = [f for f in args.server_flags.split() if f]
    if "--enable_batching" in flags:
      flags.append(f"--batching_parameters_file={batching_file}")
    server_args = [sys.executable, "-m", "serving.model_server",
                   f"--port={port}", "--bind_address=127.0.0.1",
                   f"--model_name={model_name}",
                   f"--model_base_path={base_path}"] + flags
    jobs = []
    for c in concurrency:
      jobs.append({"name": "noop", "target": f"127.0.0.1:{noop_port}",
                   "requests": "recommend", "concurrency": c})
      for signature in ("recommend", "serving_default"):
        jobs.append({"name": signature, "target": f"127.0.0.1:{port}",
                     "requests": signature, "concurrency": c})
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with _process([sys.executable, __file__, "--noop_server",
                   str(noop_port)], "ready",
                  os.path.join(work_dir, "noop.log")), _process(
                      server_args, "", os.path.join(work_dir, "server.log")):
      _wait_ready(f"127.0.0.1:{port}", model_name)
      for round_index in range(args.rounds):
        print(f"Round {round_index + 1}/{args.rounds}: in-process floor,"
              f" then {len(jobs)} load cells ...", file=sys.stderr)
        in_process.measure(args.duration)
        for cell in _run_jobs(jobs, requests, args.warmup, args.duration):
          cells.setdefault((cell["name"], cell["concurrency"]),
                           []).append(cell)
    results["in_process"] = in_process.results()
    results["noop"] = [_pool(cells[("noop", c)]) for c in concurrency]
    results["server"] = {
        signature: [_pool(cells[(signature, c)]) for c in concurrency]
        for signature in ("recommend", "serving_default")}
    results["machine"]["load_average_after"] = os.getloadavg()

    results["targets"] = _targets(results, concurrency)
    with open(args.output, "w") as f:
      json.dump(results, f, indent=2)
    _print(results)
    print(f"\nwrote {args.output}")
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  return 0


def _cell(rows: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
  return next(r for r in rows if r["concurrency"] == concurrency)


def _targets(results: dict[str, Any], concurrency: list[int]
            ) -> dict[str, Any]:
  top = max(concurrency)
  recommend = _cell(results["server"]["recommend"], top)
  noop = _cell(results["noop"], top)
  # Each round measures the no-op and recommend cells seconds apart, so the
  # per-round ratios show how much of the pooled ratio is the machine's drift.
  per_round = [round(r / n, 3) for r, n in zip(recommend["qps_per_round"],
                                               noop["qps_per_round"])]
  targets = {
      "qps_ratio_vs_noop": {
          "measured": recommend["qps"] / noop["qps"], "target": ">= 0.60",
          "met": recommend["qps"] >= 0.6 * noop["qps"],
          "per_round": per_round},
      "p99_ms_at_max_concurrency": {
          "measured": recommend["p99_ms"], "target": "<= 25",
          "met": recommend["p99_ms"] <= 25.0},
  }
  if 1 in concurrency:
    for signature in ("recommend", "serving_default"):
      single = _cell(results["server"][signature], 1)["p50_ms"]
      floor = results["in_process"][f"saved_model/{signature}"]["p50_ms"]
      targets[f"{signature}_p50_over_in_process_ms"] = {
          "measured": single - floor, "target": "<= 1.0",
          "met": single - floor <= 1.0}
  return targets


def _print(results: dict[str, Any]) -> None:
  model = results["model"]
  machine = results["machine"]
  print(f"\nServing benchmark: catalog {model['catalog_items']} items,"
        f" recommend top-{model['top_k']}, serving_default scores"
        f" {model['score_items_per_request']} items;"
        f" {machine['cpus']} CPUs (load average before/after:"
        f" {machine['load_average_before'][0]:.1f}/"
        f"{machine['load_average_after'][0]:.1f});"
        f" {results['settings']['rounds']} interleaved rounds of"
        f" {results['settings']['duration_s']:g} s per cell;"
        f" server flags: {results['settings']['server_flags']}")
  print(f"{'what':<34}{'conc':>5}{'QPS':>9}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}")
  for key, floor in results["in_process"].items():
    print(f"{'in-process ' + key:<34}{1:>5}{'':>9}"
          f"{floor['p50_ms']:>9.2f}{floor['p95_ms']:>9.2f}"
          f"{floor['p99_ms']:>9.2f}{'':>8}")
  rows = [("no-op PredictionService", results["noop"])]
  rows += [(f"server {s}", r) for s, r in results["server"].items()]
  for name, cells in rows:
    for cell in cells:
      print(f"{name:<34}{cell['concurrency']:>5}{cell['qps']:>9.0f}"
            f"{cell['p50_ms']:>9.2f}{cell['p95_ms']:>9.2f}"
            f"{cell['p99_ms']:>9.2f}{sum(cell['errors'].values()):>8}")
  print("\nTargets:")
  for name, target in results["targets"].items():
    rounds = ""
    if "per_round" in target:
      rounds = "; per round: " + ", ".join(
          f"{r:.3f}" for r in target["per_round"])
    print(f"  {name}: {target['measured']:.3f} (target {target['target']})"
          f" -> {'met' if target['met'] else 'NOT met'}{rounds}")


if __name__ == "__main__":
  sys.exit(main())
