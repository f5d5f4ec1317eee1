"""Scale: synthetic interactions through ExampleGen + Transform on Beam's
multi-process local runner, one fresh process per size.

Each size runs in its own child interpreter (`python -m
benchmarks.suite.scale --child N DIR`), so its memory is its own: the parent
samples the summed resident memory of the child's whole process tree (the
child and Beam's worker processes) from /proc every 0.2 s, and takes the
largest single process's peak from os.wait4's rusage (ru_maxrss, which
includes the descendants the child waited for). Wall time is the child's
ExampleGen + Transform time, measured inside it, without interpreter start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

from benchmarks.suite import common

BEAM_ARGS = ["--direct_running_mode=multi_processing",
             "--direct_num_workers=2"]
CONFIG = os.path.join(common.CONFIGS, "demo.yaml")


def _children(pid: int) -> list[int]:
  out = []
  try:
    for task in os.listdir(f"/proc/{pid}/task"):
      with open(f"/proc/{pid}/task/{task}/children") as f:
        out.extend(int(c) for c in f.read().split())
  except OSError:
    pass
  return out


def tree_rss_bytes(pid: int) -> int:
  """Summed VmRSS of `pid` and all its descendants (0 once it is gone)."""
  total, todo, seen = 0, [pid], set()
  while todo:
    p = todo.pop()
    if p in seen:
      continue
    seen.add(p)
    try:
      with open(f"/proc/{p}/status") as f:
        for line in f:
          if line.startswith("VmRSS:"):
            total += int(line.split()[1]) * 1024
            break
    except OSError:
      continue
    todo.extend(_children(p))
  return total


def measure(n: int, work_dir: str, beam_args: Sequence[str] = tuple(BEAM_ARGS)
            ) -> dict[str, Any]:
  """ExampleGen + Transform on n synthetic interactions in a fresh process."""
  out_dir = os.path.join(work_dir, f"scale-{n}")
  shutil.rmtree(out_dir, ignore_errors=True)
  cmd = [sys.executable, "-m", "benchmarks.suite.scale", "--child", str(n),
         out_dir, "--beam-args", json.dumps(list(beam_args))]
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  start = time.time()
  with open(os.path.join(work_dir, f"scale-{n}.log"), "w") as log_file:
    proc = subprocess.Popen(cmd, cwd=common.ROOT, env=env, stdout=log_file,
                            stderr=subprocess.STDOUT)
    peak = [0]
    done = threading.Event()

    def sample():
      while not done.is_set():
        peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
        done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
  wall = time.time() - start
  if proc.returncode != 0:
    raise RuntimeError(f"scale run of {n} rows failed (rc {proc.returncode}); "
                       f"see {log_file.name}")
  with open(os.path.join(out_dir, "result.json")) as f:
    result = json.load(f)
  return dict(result, interactions=n,
              process_wall_seconds=round(wall, 1),
              peak_tree_rss_mib=round(peak[0] / 2**20, 1),
              peak_process_rss_mib=round(usage.ru_maxrss / 1024, 1))


def run(sizes: Sequence[int], work_dir: str,
        log: Callable[[str], None] = print) -> dict[str, Any]:
  os.makedirs(work_dir, exist_ok=True)
  rows = []
  for n in sizes:
    row = measure(n, work_dir)
    log(f"  scale {n:,}: {row['seconds']:.1f}s, "
        f"{row['rows_per_second']:,.0f} rows/s, tree peak "
        f"{row['peak_tree_rss_mib']:,.0f} MiB")
    rows.append(row)
  return {"beam_args": BEAM_ARGS, "rows": rows}


def _child(n: int, out_dir: str, beam_args: Sequence[str]) -> None:
  """Inside the fresh process: the two steps, timed, result to JSON."""
  config = common.load_config(
      CONFIG, data={"format": "synthetic",
                    "options": {"num_interactions": n, "seed": 7}},
      beam_args=list(beam_args))
  ran = common.run_steps(config, out_dir, ("ExampleGen", "Transform"), print)
  from contracts import artifacts  # pylint: disable=g-import-not-at-top
  counts = artifacts.read_metadata(ran["uris"].examples)["summary"]
  seconds = sum(ran["seconds"].values())
  result = {"seconds": round(seconds, 1),
            "example_gen_seconds": round(ran["seconds"]["ExampleGen"], 1),
            "transform_seconds": round(ran["seconds"]["Transform"], 1),
            "rows_per_second": round(n / seconds, 1),
            "train_rows": counts["interactions_train"],
            "eval_rows": counts["interactions_eval"]}
  # The artifacts themselves are not needed; keep the disk free.
  for name in ("Transform", "ExampleGen"):
    shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "result.json"), "w") as f:
    json.dump(result, f)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--child", nargs=2, metavar=("N", "DIR"), required=True)
  parser.add_argument("--beam-args", default=json.dumps(BEAM_ARGS))
  args = parser.parse_args(argv)
  _child(int(args.child[0]), args.child[1], json.loads(args.beam_args))
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  sys.exit(main())
