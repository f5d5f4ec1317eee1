"""Serving under sustained load: version swaps, and a long soak.

Two scenarios against the project's model server in its own process, driven
by a load client in another process (official stubs on grpc.aio, as in
serving_benchmark.py), on the model the pipeline builds from synthetic data:

* swap: concurrency 32 for 60 s while a new version is pushed every 10 s
  the way the pipeline pushes it (pusher.push: copy, rename, pin in
  models.config); the server polls models.config every second, loads and
  warms the new version, swaps it in and unloads the old one. Reported:
  failed requests (target 0), p99 inside the swap windows (from each push
  until the new version answers, plus one second) against p99 outside.
* soak: concurrency 8 for 10 minutes. Reported: the server's RSS after the
  first 30 s of load and at the end (target: growth <= 5%), and p99 per
  minute (its drift).

  .venv/bin/python benchmarks/serving_soak.py [--soak_seconds 600]
      [--output /tmp/serving_soak.json]

Prints the figures and the targets and writes them to JSON. No timed unit
test asserts these: on a shared 2-core machine they are measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
  sys.path.insert(0, _HERE)
# pylint: disable-next=g-import-not-at-top,wrong-import-position
import serving_benchmark as bench  # noqa: E402  (its requests, model, server)


async def _record(target: str, requests: list[Any], concurrency: int,
                  duration_s: float) -> dict[str, Any]:
  """Every request's start (s from the start), latency (s) and status."""
  import grpc  # pylint: disable=g-import-not-at-top
  from serving import apis  # pylint: disable=g-import-not-at-top
  async with grpc.aio.insecure_channel(target) as channel:
    stub = apis.PredictionServiceStub(channel)
    await stub.Predict(requests[0], timeout=30)
    starts: list[float] = []
    latencies: list[float] = []
    codes: list[str] = []
    t0 = time.perf_counter()
    stop_at = t0 + duration_s

    async def worker(index: int) -> None:
      i = index
      while time.perf_counter() < stop_at:
        request = requests[i % len(requests)]
        i += concurrency
        started = time.perf_counter()
        try:
          await stub.Predict(request, timeout=30)
          code = "OK"
        except grpc.RpcError as e:
          code = e.code().name
        starts.append(round(started - t0, 4))
        latencies.append(round(time.perf_counter() - started, 6))
        codes.append(code)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
  return {"starts": starts, "latencies": latencies, "codes": codes,
          "wall_start": time.time() - (time.perf_counter() - t0)}


def load_client_main(spec_path: str) -> None:
  from serving import apis  # pylint: disable=g-import-not-at-top
  with open(spec_path) as f:
    spec = json.load(f)
  requests = [apis.PredictRequest.FromString(bytes.fromhex(b))
              for b in spec["requests"]]
  result = asyncio.run(_record(spec["target"], requests, spec["concurrency"],
                               spec["duration_s"]))
  with open(spec["output"], "w") as f:
    json.dump(result, f)


def _start_load(work_dir: str, target: str, requests: list[Any],
                concurrency: int, duration_s: float,
                name: str) -> tuple[subprocess.Popen, str]:
  spec = {"target": target, "concurrency": concurrency,
          "duration_s": duration_s,
          "requests": [r.SerializeToString().hex() for r in requests],
          "output": os.path.join(work_dir, f"{name}.result.json")}
  spec_path = os.path.join(work_dir, f"{name}.spec.json")
  with open(spec_path, "w") as f:
    json.dump(spec, f)
  process = subprocess.Popen(
      [sys.executable, __file__, "--load_client", spec_path],
      cwd=bench._REPO)  # pylint: disable=protected-access
  return process, spec["output"]


def _finish_load(process: subprocess.Popen, output: str) -> dict[str, Any]:
  if process.wait() != 0:
    raise RuntimeError("the load client failed")
  with open(output) as f:
    return json.load(f)


def _rss_bytes(pid: int) -> int:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError(f"no VmRSS for {pid}")


def _p99(latencies: list[float]) -> float:
  return bench._percentiles(latencies)["p99_ms"]  # pylint: disable=protected-access


def swap_scenario(work_dir: str, target: str, serving_root: str,
                  model_name: str, model_dir: str, requests: list[Any],
                  duration_s: float, every_s: float,
                  concurrency: int) -> dict[str, Any]:
  import grpc  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from components import pusher  # pylint: disable=g-import-not-at-top
  from serving import apis  # pylint: disable=g-import-not-at-top
  from serving import testing  # pylint: disable=g-import-not-at-top
  process, output = _start_load(work_dir, target, requests, concurrency,
                                duration_s, "swap")
  swaps = []
  started = time.time()
  time.sleep(every_s)
  while time.time() - started < duration_s - 5:
    pushed_at = time.time()
    version, _, _ = pusher.push(model_dir, serving_root, model_name)
    # The new version is in when a request naming it is answered.
    with grpc.insecure_channel(target) as channel:
      stub = apis.PredictionServiceStub(channel)
      probe = testing.predict_request(
          model_name, {"user_id": np.array(["swap-probe"], dtype=object)},
          signature_name="recommend")
      probe.model_spec.version.value = version
      while time.time() - pushed_at < 60:
        try:
          stub.Predict(probe, timeout=5)
          break
        except grpc.RpcError:
          time.sleep(0.05)
    swaps.append({"version": version, "pushed_at": pushed_at,
                  "serving_after_s": round(time.time() - pushed_at, 3)})
    time.sleep(max(0.0, every_s - (time.time() - pushed_at)))
  result = _finish_load(process, output)
  wall_start = result["wall_start"]
  windows = [(s["pushed_at"] - wall_start,
              s["pushed_at"] - wall_start + s["serving_after_s"] + 1.0)
             for s in swaps]
  inside, outside = [], []
  for start, latency in zip(result["starts"], result["latencies"]):
    (inside if any(a <= start <= b for a, b in windows) else
     outside).append(latency)
  failed: dict[str, int] = {}
  for code in result["codes"]:
    if code != "OK":
      failed[code] = failed.get(code, 0) + 1
  return {"concurrency": concurrency, "duration_s": duration_s,
          "swaps": swaps, "requests": len(result["codes"]),
          "failed_requests": sum(failed.values()), "failures": failed,
          "p99_ms_during_swaps": _p99(inside),
          "p99_ms_outside_swaps": _p99(outside),
          "requests_during_swaps": len(inside)}


def soak_scenario(work_dir: str, target: str, server_pid: int,
                  requests: list[Any], duration_s: float,
                  concurrency: int) -> dict[str, Any]:
  process, output = _start_load(work_dir, target, requests, concurrency,
                                duration_s, "soak")
  samples = []
  began = time.time()
  done = threading.Event()

  def sample():
    while not done.is_set():
      samples.append((round(time.time() - began, 1), _rss_bytes(server_pid)))
      done.wait(5)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  result = _finish_load(process, output)
  done.set()
  sampler.join()
  samples.append((round(time.time() - began, 1), _rss_bytes(server_pid)))
  after_warmup = next((rss for t, rss in samples if t >= 30), samples[0][1])
  end = samples[-1][1]
  per_minute: dict[int, list[float]] = {}
  for start, latency in zip(result["starts"], result["latencies"]):
    per_minute.setdefault(int(start // 60), []).append(latency)
  p99s = [round(_p99(v), 2) for _, v in sorted(per_minute.items())]
  failed = sum(code != "OK" for code in result["codes"])
  return {"concurrency": concurrency, "duration_s": duration_s,
          "requests": len(result["codes"]), "failed_requests": failed,
          "rss_mb_first_sample": round(samples[0][1] / 2**20, 1),
          "rss_mb_after_30s": round(after_warmup / 2**20, 1),
          "rss_mb_end": round(end / 2**20, 1),
          "rss_growth": round(end / after_warmup - 1, 4),
          "p99_ms_per_minute": p99s,
          "rss_mb_samples": [(t, round(r / 2**20, 1)) for t, r in samples]}


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--build_synthetic", type=int, default=50000)
  parser.add_argument("--swap_seconds", type=float, default=60)
  parser.add_argument("--swap_every", type=float, default=10)
  parser.add_argument("--swap_concurrency", type=int, default=32)
  parser.add_argument("--soak_seconds", type=float, default=600)
  parser.add_argument("--soak_concurrency", type=int, default=8)
  parser.add_argument("--output", default=os.path.join(
      tempfile.gettempdir(), "serving_soak.json"))
  parser.add_argument("--load_client", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.load_client:
    load_client_main(args.load_client)
    return 0

  from contracts import serving_layout  # pylint: disable=g-import-not-at-top
  work_dir = tempfile.mkdtemp(prefix="serving-soak-")
  print(f"Building the model ({args.build_synthetic} synthetic "
        "interactions) ...", file=sys.stderr)
  base_path, model_name = bench._build_model(  # pylint: disable=protected-access
      work_dir, args.build_synthetic)
  serving_root = os.path.dirname(base_path)
  model_dir = serving_layout.version_dir(
      serving_root, model_name,
      serving_layout.served_version(serving_root, model_name))
  users, items = bench._catalog(model_dir)  # pylint: disable=protected-access
  requests = bench._requests(model_name, "recommend", users, items)  # pylint: disable=protected-access
  port = bench._free_port()  # pylint: disable=protected-access
  target = f"127.0.0.1:{port}"
  server_args = [sys.executable, "-m", "serving.model_server",
                 f"--port={port}", "--bind_address=127.0.0.1",
                 "--model_config_file="
                 f"{serving_layout.model_config_path(serving_root)}",
                 "--model_config_file_poll_wait_seconds=1",
                 "--enable_batching", "--adaptive_batch_timeout"]
  results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                         "load_average_before":
                                         os.getloadavg()}}
  with bench._process(server_args, "", os.path.join(  # pylint: disable=protected-access
      work_dir, "server.log")) as server:
    bench._wait_ready(target, model_name)  # pylint: disable=protected-access
    print(f"Swap: {args.swap_seconds:.0f} s at concurrency "
          f"{args.swap_concurrency}, a push every {args.swap_every:.0f} s",
          file=sys.stderr)
    results["swap"] = swap_scenario(
        work_dir, target, serving_root, model_name, model_dir, requests,
        args.swap_seconds, args.swap_every, args.swap_concurrency)
    print(f"Soak: {args.soak_seconds:.0f} s at concurrency "
          f"{args.soak_concurrency}", file=sys.stderr)
    results["soak"] = soak_scenario(work_dir, target, server.pid, requests,
                                    args.soak_seconds, args.soak_concurrency)
  results["machine"]["load_average_after"] = os.getloadavg()
  swap, soak = results["swap"], results["soak"]
  results["targets"] = {
      "swap_failed_requests_0": swap["failed_requests"] == 0,
      "soak_rss_growth_le_5pct": soak["rss_growth"] <= 0.05,
  }
  with open(args.output, "w") as f:
    json.dump(results, f, indent=2)
  print(f"swap: {len(swap['swaps'])} pushes, {swap['requests']} requests, "
        f"{swap['failed_requests']} failed; p99 {swap['p99_ms_during_swaps']:.1f}"
        f" ms during swaps ({swap['requests_during_swaps']} requests) vs "
        f"{swap['p99_ms_outside_swaps']:.1f} ms outside; new version serving "
        f"after {[s['serving_after_s'] for s in swap['swaps']]} s")
  print(f"soak: {soak['requests']} requests, {soak['failed_requests']} failed;"
        f" RSS {soak['rss_mb_after_30s']} MB after 30 s -> "
        f"{soak['rss_mb_end']} MB at the end ({soak['rss_growth']:+.1%}); "
        f"p99 per minute {soak['p99_ms_per_minute']} ms")
  for name, ok in results["targets"].items():
    print(f"  target {name}: {'met' if ok else 'MISSED'}")
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
