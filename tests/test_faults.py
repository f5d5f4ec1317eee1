"""Faults, with real processes and real signals: a push killed mid-copy, a
full disk, two pushes at once, a server killed under load.

Each scenario checks what a user of TF Serving relies on: the served version
never changes by accident, no partial version is ever listed, and the next
attempt succeeds.
"""

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from components import pusher
from conftest import assert_same_evaluation
from contracts import serving_layout
from serving import apis
from serving import client as client_lib
from serving import model_server
from serving import testing

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MODEL = "toy"

# One push in its own process: `push(model_dir, serving_root, model_name)`,
# each file copy slowed by `delay` seconds so a signal lands mid-copy, the
# push starting at `start_at` (epoch seconds) so two processes race.
_PUSH_PROCESS = """
import json, shutil, sys, time
from components import pusher
model_dir, serving_root, model_name = sys.argv[1:4]
delay, start_at = float(sys.argv[4]), float(sys.argv[5])
copy2 = shutil.copy2
def slow_copy2(src, dst, **kwargs):
  time.sleep(delay)
  return copy2(src, dst, **kwargs)
shutil.copy2 = slow_copy2  # the pusher copies each file through this name
time.sleep(max(0.0, start_at - time.time()))
version, target, config = pusher.push(model_dir, serving_root, model_name)
print(json.dumps({"version": version, "target": target}))
"""


def _push_process(model_dir, serving_root, delay=0.0, start_at=0.0):
  return subprocess.Popen(
      [sys.executable, "-c", _PUSH_PROCESS, model_dir, serving_root, _MODEL,
       str(delay), str(start_at)],
      cwd=_REPO_ROOT, env=dict(os.environ, PYTHONPATH=_REPO_ROOT),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
  """Toy SavedModels whose scores say their version (offset 100 * v)."""
  root = tmp_path_factory.mktemp("fault_exports")
  return {v: testing.export_toy(str(root / f"v{v}"), v) for v in (1, 2)}


def _complete_versions(model_root):
  names = os.listdir(model_root)
  versions = [n for n in names if n.isdigit()]
  for v in versions:  # a listed version is always whole
    assert os.path.exists(os.path.join(model_root, v, "saved_model.pb")), (
        f"partial version {v} is visible: {names}")
  return sorted(int(v) for v in versions)


def _score(stub, timeout=10):
  request = testing.predict_request(
      _MODEL, {"user_id": np.array([b"u"], object),
               "item_id": np.array([b"i"], object)})
  response = stub.Predict(request, timeout=timeout)
  return response.model_spec.version.value, response.outputs["score"].float_val[0]


def test_pusher_killed_mid_copy_changes_nothing_served(exports, tmp_path):
  serving_root = str(tmp_path / "serving")
  model_root = serving_layout.model_root(serving_root, _MODEL)
  first, _, _ = pusher.push(exports[1], serving_root, _MODEL)
  # The server follows the directory (latest policy), so a partial version
  # would be loaded, or fail to load, as soon as it became visible.
  server = model_server.ModelServer(
      _MODEL, model_root, port=0, host="127.0.0.1",
      poll_wait_seconds=0.05).start()
  try:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
      stub = apis.PredictionServiceStub(channel)
      assert _score(stub) == (first, 102.0)
      process = _push_process(exports[2], serving_root, delay=0.3)
      try:
        assert testing.wait_for(lambda: any(
            n.startswith(".tmp-") and os.listdir(os.path.join(model_root, n))
            for n in os.listdir(model_root)), timeout=60), "no copy started"
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
      finally:
        if process.poll() is None:
          process.kill()
      assert process.returncode == -signal.SIGKILL
      for _ in range(10):  # over several of the server's polls
        assert _complete_versions(model_root) == [first]
        assert _score(stub) == (first, 102.0)
        time.sleep(0.05)
      orphans = [n for n in os.listdir(model_root) if n.startswith(".tmp-")]
      assert len(orphans) == 1

      second, _, _ = pusher.push(exports[2], serving_root, _MODEL)
      assert second > first
      # The killed push's copy is gone: the next push removed it.
      assert sorted(os.listdir(model_root)) == sorted(
          [str(first), str(second)])
      assert serving_layout.pinned_version(serving_root, _MODEL) == second
      assert testing.wait_for(lambda: _score(stub) == (second, 202.0),
                              timeout=30)
  finally:
    server.stop()


@contextlib.contextmanager
def _small_disk(path, size_bytes):
  """A real full disk where the machine allows mounting (root), else None."""
  os.makedirs(path)
  mounted = subprocess.run(
      ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", path],
      capture_output=True).returncode == 0 if shutil.which("mount") else False
  try:
    yield mounted
  finally:
    if mounted:
      subprocess.run(["umount", "-l", path], check=False)


def _fake_saved_model(path, payload_bytes):
  os.makedirs(os.path.join(path, "variables"))
  with open(os.path.join(path, "saved_model.pb"), "wb") as f:
    f.write(b"pb")
  with open(os.path.join(path, "variables", "variables.data-00000-of-00001"),
            "wb") as f:
    f.write(os.urandom(payload_bytes))
  return path


def test_push_onto_a_full_disk_fails_clearly_and_leaves_nothing(
    tmp_path, monkeypatch):
  small = _fake_saved_model(str(tmp_path / "small"), 10_000)
  big = _fake_saved_model(str(tmp_path / "big"), 3_000_000)
  disk = str(tmp_path / "disk")
  with _small_disk(disk, 1_000_000) as mounted:
    serving_root = os.path.join(disk, "serving")
    model_root = serving_layout.model_root(serving_root, _MODEL)
    first, _, _ = pusher.push(small, serving_root, _MODEL)
    config_before = open(serving_layout.model_config_path(serving_root)).read()
    if not mounted:  # no tmpfs here: the same error, injected
      def no_space(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
      monkeypatch.setattr(shutil, "copy2", no_space)
    with pytest.raises(pusher.PushError) as info:
      pusher.push(big, serving_root, _MODEL)
    assert info.value.errno == errno.ENOSPC
    assert "No space left on device" in str(info.value)
    assert "nothing was published and the served version is unchanged" in (
        str(info.value))
    assert sorted(os.listdir(model_root)) == [str(first)]
    assert open(serving_layout.model_config_path(serving_root)).read() == (
        config_before)
    monkeypatch.undo()

    # The pin itself fails (the config file cannot be written): the version
    # already renamed into place is taken back.
    def config_fails(root, config):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), root)
    monkeypatch.setattr(serving_layout, "_write_model_config", config_fails)
    with pytest.raises(pusher.PushError, match="pinning version .* failed"):
      pusher.push(small, serving_root, _MODEL)
    monkeypatch.undo()
    assert sorted(os.listdir(model_root)) == [str(first)]
    assert serving_layout.pinned_version(serving_root, _MODEL) == first

    # With space again, the next push succeeds.
    second, _, _ = pusher.push(small, serving_root, _MODEL)
    assert serving_layout.pinned_version(serving_root, _MODEL) == second
    assert _complete_versions(model_root) == [first, second]


def test_concurrent_pushes_serialize_and_pin_the_highest(exports, tmp_path):
  serving_root = str(tmp_path / "serving")
  model_root = serving_layout.model_root(serving_root, _MODEL)
  # Another model's entry must survive both read-modify-writes.
  os.makedirs(serving_root)
  with open(serving_layout.model_config_path(serving_root), "w") as f:
    f.write('model_config_list { config { name: "other" '
            'base_path: "/models/other" model_platform: "tensorflow" } }')
  start_at = time.time() + 3.0  # both interpreters are up by then
  processes = [_push_process(exports[v], serving_root, 0.01, start_at)
               for v in (1, 2)]
  results = []
  for process in processes:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    results.append(json.loads(out.strip().splitlines()[-1]))
  versions = sorted(r["version"] for r in results)
  assert versions[0] < versions[1]
  assert _complete_versions(model_root) == versions
  config = serving_layout.read_model_config(serving_root)
  assert [e.name for e in config.model_config_list.config] == [
      "other", _MODEL]
  assert serving_layout.pinned_version(serving_root, _MODEL) == versions[1]
  assert not [n for n in os.listdir(model_root) if n.startswith(".")]


def _start_server(config_path, port):
  return subprocess.Popen(
      [sys.executable, "-m", "serving.model_server", f"--port={port}",
       "--bind_address=127.0.0.1", f"--model_config_file={config_path}"],
      cwd=_REPO_ROOT, env=dict(os.environ, PYTHONPATH=_REPO_ROOT),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_server_killed_under_load_then_restarted_serves_the_pinned_version(
    exports, tmp_path):
  serving_root = str(tmp_path / "serving")
  pinned, _, config_path = pusher.push(exports[1], serving_root, _MODEL)
  newer = pusher.publish_version(
      exports[2], serving_layout.model_root(serving_root, _MODEL))[0]
  assert newer > pinned  # present on disk, but not the one pinned
  port = testing.free_port()
  server = _start_server(config_path, port)
  codes, versions = [], set()
  lock = threading.Lock()
  stop = threading.Event()

  def load():
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      stub = apis.PredictionServiceStub(channel)
      while not stop.is_set():
        try:
          version, _ = _score(stub, timeout=5)
          with lock:
            codes.append(grpc.StatusCode.OK)
            versions.add(version)
        except grpc.RpcError as e:
          with lock:
            codes.append(e.code())
          time.sleep(0.01)

  threads = []
  try:
    with client_lib.PredictionClient(f"127.0.0.1:{port}") as client:
      assert client.wait_until_ready(_MODEL, timeout=90) == pinned
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
      t.start()
    assert testing.wait_for(lambda: codes.count(grpc.StatusCode.OK) >= 50,
                            timeout=60)
    server.kill()  # SIGKILL: no drain, no goodbye
    server.wait(timeout=30)
    with lock:
      served_before = len(codes)
    assert testing.wait_for(lambda: len(codes) >= served_before + 20,
                            timeout=30)
    with lock:
      after_kill = set(codes[served_before:])
    assert after_kill == {grpc.StatusCode.UNAVAILABLE}, after_kill

    server = _start_server(config_path, port)
    with client_lib.PredictionClient(f"127.0.0.1:{port}") as client:
      assert client.wait_until_ready(_MODEL, timeout=90) == pinned
    with lock:
      restarted_at = len(codes)
    assert testing.wait_for(
        lambda: codes[restarted_at:].count(grpc.StatusCode.OK) >= 20,
        timeout=60)
    assert versions == {pinned}
  finally:
    stop.set()
    for t in threads:
      t.join(timeout=30)
    if server.poll() is None:
      server.kill()
    server.communicate()


def _run_dirs(runs):
  """Run directories under a pipeline root (not .cache)."""
  return {d for d in os.listdir(runs) if not d.startswith(".")} if (
      os.path.isdir(runs)) else set()


def _steps(run_dir):
  with open(os.path.join(run_dir, "run.json")) as f:
    return {s["name"]: s["status"] for s in json.load(f)["steps"]}


def _kill_run_during(step, command, runs, settle_seconds):
  """Starts `mtrec run`, SIGKILLs its process group once `step` has run for
  `settle_seconds`; returns the killed run's directory."""
  before = _run_dirs(runs)
  process = subprocess.Popen(command, cwd=_REPO_ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    def started():
      new = _run_dirs(runs) - before
      return bool(new) and os.path.exists(
          os.path.join(runs, *new, "logs", f"{step}.log"))
    assert testing.wait_for(started, timeout=300, interval=0.2), (
        f"{step} never started")
    time.sleep(settle_seconds)
  finally:
    os.killpg(process.pid, signal.SIGKILL)  # the runner and the step
    process.wait(timeout=60)
  (new,) = _run_dirs(runs) - before
  return os.path.join(runs, new)


@pytest.mark.slow
def test_steps_killed_mid_run_resume_to_an_uninterrupted_runs_artifacts(
    small_run, tmp_path):
  import yaml  # pylint: disable=g-import-not-at-top
  from conftest import small_config_raw  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components import artifact_readers  # pylint: disable=g-import-not-at-top
  config = tmp_path / "small.yaml"
  config.write_text(yaml.safe_dump(small_config_raw()))
  runs = str(tmp_path / "runs")
  command = [os.path.join(os.path.dirname(sys.executable), "mtrec"), "run",
             "--config", str(config), "--output-dir", runs,
             "--serving-root", str(tmp_path / "serving")]

  killed = _kill_run_during("ExampleGen", command, runs, settle_seconds=3)
  assert _steps(killed) == {"ExampleGen": "running"}
  assert not os.path.exists(
      os.path.join(killed, "ExampleGen", "examples", "metadata.json"))

  killed = _kill_run_during("Trainer", command, runs, settle_seconds=8)
  steps = _steps(killed)
  assert steps["ExampleGen"] == steps["Transform"] == "succeeded", steps
  assert steps["Trainer"] == "running"
  assert not os.path.exists(
      os.path.join(killed, "Trainer", "model", "metadata.json"))

  done = subprocess.run(command, cwd=_REPO_ROOT, capture_output=True,
                        text=True, timeout=900)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  (final,) = {d for d in _run_dirs(runs)
              if _steps(os.path.join(runs, d)).get("Trainer") == "succeeded"}
  steps = _steps(os.path.join(runs, final))
  # The rerun resumed: what finished before the kill was reused.
  assert steps["ExampleGen"] == steps["Transform"] == "cached", steps
  assert steps["Trainer"] == "succeeded"

  def records(uri, split):
    # Map entries serialize in no fixed order: compare canonical bytes.
    return sorted(
        tf.train.Example.FromString(r).SerializeToString(deterministic=True)
        for r in artifact_readers.read_examples(uri, split))
  examples = os.path.join(runs, final, "ExampleGen", "examples")
  for split in ("train", "eval"):
    assert records(examples, split) == records(
        small_run.artifacts.examples, split)
  with open(os.path.join(runs, final, "Evaluator", "evaluation",
                         "metrics.json")) as f:
    resumed = json.load(f)
  with open(os.path.join(small_run.artifacts.evaluation,
                         "metrics.json")) as f:
    uninterrupted = json.load(f)
  assert_same_evaluation(resumed, uninterrupted)
