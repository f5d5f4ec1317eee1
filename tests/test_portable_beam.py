"""Every Beam step under PortableRunner, against a Beam job service.

The Job API / Fn API path is the one Flink, Spark and Dataflow Runner v2
take: the pipeline is serialized, submitted to a job service and run by SDK
workers, so pickling, local-file assumptions and non-portable transforms
fail here as they would there. Beam's own Python job service and SDK worker
pool need no Java and no download. The whole pipeline (ExampleGen,
StatisticsGen, Transform, the Evaluator's retrieval stage) is run that way
and must produce what the in-process run (the shared small run) produced:
the same examples record for record, and the same evaluation.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import assert_same_evaluation
from conftest import small_config_raw


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _serve(module, port_flag, log_path):
  """Starts `python -m module port_flag=<free port>`; (process, port) once
  the port accepts connections."""
  port = _free_port()
  log = open(log_path, "w")  # noqa: SIM115  (the server writes it)
  # The worker pool starts each SDK worker as `python ...`: this one.
  env = dict(os.environ, PATH=os.pathsep.join(
      [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
  process = subprocess.Popen(
      [sys.executable, "-m", module, f"{port_flag}={port}"], stdout=log,
      stderr=subprocess.STDOUT, env=env)
  deadline = time.time() + 120
  while True:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      return process, port
    except OSError:
      if process.poll() is not None or time.time() > deadline:
        process.kill()
        raise RuntimeError(f"{module} did not start: {log_path}") from None
      time.sleep(0.5)


@pytest.fixture(scope="module")
def portable_beam_args(tmp_path_factory):
  """A job service and an SDK worker pool, each its own process, as on a
  cluster. (LOOPBACK workers would run inside each step's process, whose
  exit then races the workers' threads: an abort after a finished job.)"""
  logs = tmp_path_factory.mktemp("beam_services")
  started = []
  try:
    jobs, job_port = _serve(
        "apache_beam.runners.portability.local_job_service_main", "--port",
        str(logs / "job_service.log"))
    started.append(jobs)
    pool, pool_port = _serve("apache_beam.runners.worker.worker_pool_main",
                             "--service_port", str(logs / "workers.log"))
    started.append(pool)
    yield (["--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}"],
           str(logs / "job_service.log"))
  finally:
    for process in started:
      process.terminate()
      process.wait(timeout=60)


@pytest.mark.slow
def test_the_pipeline_under_portable_runner_matches_the_in_process_run(
    small_run, portable_beam_args, tmp_path):
  import yaml  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components import artifact_readers  # pylint: disable=g-import-not-at-top
  beam_args, service_log = portable_beam_args
  config = tmp_path / "portable.yaml"
  config.write_text(yaml.safe_dump(small_config_raw(beam_args=beam_args)))
  runs = tmp_path / "runs"
  # Its own process with a deadline: a worker that cannot start would
  # leave a job waiting for it forever.
  done = subprocess.run(
      [os.path.join(os.path.dirname(sys.executable), "mtrec"), "run",
       "--config", str(config), "--output-dir", str(runs),
       "--serving-root", str(tmp_path / "serving")],
      capture_output=True, text=True, timeout=1200)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  (run_dir,) = [runs / d for d in os.listdir(runs)
                if (runs / d / "run.json").exists()]

  # Every Beam step went through the job service: one job each for
  # ExampleGen, StatisticsGen, Transform and the Evaluator's stages.
  with open(service_log) as f:
    jobs = f.read().count("Completed job in")
  assert jobs >= 4, jobs

  def records(uri, split):
    # Map entries serialize in no fixed order: compare canonical bytes.
    return sorted(
        tf.train.Example.FromString(r).SerializeToString(deterministic=True)
        for r in artifact_readers.read_examples(uri, split))
  def features(uri, split):
    """Each transformed record as {feature: values}, in a fixed order."""
    rows = []
    for r in artifact_readers.read_examples(uri, split):
      f = tf.train.Example.FromString(r).features.feature
      rows.append({k: tuple(v.int64_list.value) or tuple(v.float_list.value)
                   for k, v in f.items()})
    # Integer features identify a row; floats are compared below.
    return sorted(rows, key=lambda row: sorted(
        (k, v) for k, v in row.items()
        if all(isinstance(x, int) for x in v)))

  for split in ("train", "eval"):
    got = records(str(run_dir / "ExampleGen" / "examples"), split)
    assert got == records(small_run.artifacts.examples, split), split
    # Floats within one float32 rounding: the year's mean and variance are
    # summed in float64 (components.transform.bounded_year), so the runner's
    # bundling order no longer reaches the z-scores.
    got = features(str(run_dir / "Transform" / "transformed_examples"), split)
    expected = features(small_run.artifacts.transformed_examples, split)
    assert len(got) == len(expected), split
    for a, b in zip(got, expected):
      assert a.keys() == b.keys()
      for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), (split, k)
  with open(run_dir / "Evaluator" / "evaluation" / "metrics.json") as f:
    got = json.load(f)
  with open(os.path.join(small_run.artifacts.evaluation,
                         "metrics.json")) as f:
    expected = json.load(f)
  assert got["verdict"] == expected["verdict"]
  assert_same_evaluation(got, expected)
