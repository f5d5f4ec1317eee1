"""Training throughput of the configured model, in examples per second.

Prepares ExampleGen and Transform output once (as
benchmarks/model_comparison.py, whose work directory it shares), then fits
the config's trainer section with the pipeline's own training code under the
strategy the machine picks (or `--num-cpu-devices N` logical CPUs) and
reports examples per second over the epochs after the first (which also
traces the graph), over all epochs, and the time of the first epoch. No
export, no evaluation: training only.

  .venv/bin/python benchmarks/train_throughput.py \\
      --config configs/movielens_latest_small.yaml --epochs 5

`--workers 2` also trains with MultiWorkerMirroredStrategy on 2 worker
processes on localhost (pipeline/multi_worker.py's TF_CONFIG and ports; the
same global batch), then on 1 worker, and prints both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trainer  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf  # noqa: E402

from benchmarks import model_comparison  # noqa: E402
from pipeline import config as config_lib  # noqa: E402
from pipeline import multi_worker  # noqa: E402
from trainer import distribution  # noqa: E402
from trainer import run as trainer_run  # noqa: E402


def measure(config_path: str, work_dir: str, epochs: int,
            num_cpu_devices: int = 1) -> dict:
  config = config_lib.load_config(config_path)
  strategy = distribution.choose_strategy(num_cpu_devices)
  uris = model_comparison.prepare(config, work_dir)
  trainer_config = config.trainer.model_copy(update={"epochs": epochs})
  mixed = distribution.use_mixed_precision(trainer_config.mixed_precision)
  if mixed:
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
  tf.keras.utils.set_random_seed(trainer_config.seed)
  with tempfile.TemporaryDirectory() as logs:
    start = time.time()
    trained = trainer_run.fit(uris["graph"], uris["transformed"],
                              uris["examples"], trainer_config, logs,
                              strategy, log=lambda m: None)
    wall = time.time() - start
  rows = trained["stats"]["rows"]
  history = trained["history"]
  epochs_run = trained["epochs_run"]
  return {
      "config": os.path.abspath(config_path),
      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                 f"{len(tf.config.list_physical_devices('GPU'))} GPUs",
      "strategy": distribution.describe(strategy),
      "mixed_precision": mixed,
      "train_rows": rows,
      "batch_size": trainer_config.batch_size,
      "epochs": epochs_run,
      "examples_per_second_after_first_epoch": round(
          trained["examples_per_second"], 1),
      "fit_seconds": round(trained["train_seconds"], 1),
      "wall_seconds_with_statistics_pass": round(wall, 1),
      "final_loss": history["loss"][-1],
  }


def measure_workers(config_path: str, work_dir: str, epochs: int,
                    workers: int) -> dict:
  """`measure` on `workers` processes on localhost; the chief's figures."""
  model_comparison.prepare(config_lib.load_config(config_path), work_dir)
  hosts = [f"localhost:{p}" for p in multi_worker.free_ports(workers)]
  procs = [subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), "--config", config_path,
       "--work-dir", work_dir, "--epochs", str(epochs)],
      stdout=subprocess.PIPE, text=True,
      env=dict(os.environ, TF_CONFIG=multi_worker.tf_config(hosts, i)))
           for i in range(workers)]
  outputs = [p.communicate()[0] for p in procs]
  if any(p.returncode for p in procs):
    raise RuntimeError(f"a worker failed: {[p.returncode for p in procs]}")
  return json.loads(outputs[0])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      "configs", "movielens_latest_small.yaml"))
  parser.add_argument("--work-dir", default=os.path.join(
      tempfile.gettempdir(), "mtrec_model_comparison"))
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--num-cpu-devices", type=int, default=1)
  parser.add_argument("--workers", type=int, default=1,
                      help=">1: that many workers, then 1, in one run.")
  parser.add_argument("--output", default=None,
                      help="also write the figures to this JSON file (the "
                      "suite's --merge-multi-worker reads --workers')")
  args = parser.parse_args(argv)
  if args.workers > 1:
    several = measure_workers(args.config, args.work_dir, args.epochs,
                              args.workers)
    one = measure(args.config, args.work_dir, args.epochs)
    key = "examples_per_second_after_first_epoch"
    figures = {"workers": args.workers, "several": several, "one": one,
               "ratio": round(several[key] / one[key], 3)}
    print(json.dumps(figures, indent=2))
    if args.output:
      with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    return 0
  print(json.dumps(measure(args.config, args.work_dir, args.epochs,
                           args.num_cpu_devices), indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
