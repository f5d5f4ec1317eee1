"""The model server program's runtime: TensorFlow's kernels and its loop."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import uvloop

from serving import model_server
from serving import runtime

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prints whether TensorFlow loaded with oneDNN's ops, after `prelude`.
_PROBE = """
{prelude}
from tensorflow.python.util import _pywrap_util_port
print("onednn", _pywrap_util_port.IsMklEnabled())
"""


def _onednn_in_child(prelude: str, env_value: str | None) -> bool:
  env = {k: v for k, v in os.environ.items()
         if k != runtime.ONEDNN_VARIABLE}
  if env_value is not None:
    env[runtime.ONEDNN_VARIABLE] = env_value
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  done = subprocess.run(
      [sys.executable, "-c", _PROBE.format(prelude=prelude)], cwd=_REPO,
      env=env, capture_output=True, text=True, timeout=300, check=True)
  line = [x for x in done.stdout.splitlines() if x.startswith("onednn ")][-1]
  return line == "onednn True"


def test_server_kernels_turn_onednn_off_unless_the_environment_chose():
  prelude = "from serving import runtime; runtime.use_server_kernels()"
  assert not _onednn_in_child(prelude, None)
  if platform.machine() in ("x86_64", "AMD64"):  # Where the ops exist.
    assert _onednn_in_child("", None)  # TensorFlow's own default.
    assert _onednn_in_child(prelude, "1")  # The operator's choice stands.


def test_use_server_kernels_only_fills_a_missing_variable(monkeypatch):
  monkeypatch.delenv(runtime.ONEDNN_VARIABLE, raising=False)
  runtime.use_server_kernels()
  assert os.environ[runtime.ONEDNN_VARIABLE] == "0"
  monkeypatch.setenv(runtime.ONEDNN_VARIABLE, "1")
  runtime.use_server_kernels()
  assert os.environ[runtime.ONEDNN_VARIABLE] == "1"


def test_the_grpc_server_runs_on_uvloop(tmp_path):
  loop = runtime.new_event_loop()
  try:
    assert isinstance(loop, uvloop.Loop)
  finally:
    loop.close()
  # And the server uses it: an empty base path is no startup error.
  server = model_server.ModelServer(
      "m", str(tmp_path), port=0, host="127.0.0.1",
      poll_wait_seconds=0).start()
  try:
    assert isinstance(server._loop, uvloop.Loop)  # pylint: disable=protected-access
  finally:
    server.stop()
