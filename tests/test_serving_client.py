"""The client library's score() and `serve` as a process.

The `mtrec` client commands are tested in test_serving_client_cli.py.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys

import pytest

from serving import client as client_lib
from serving import health
from serving import model_server
from serving import testing

_MODEL = "toy"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
  return testing.publish_toy_versions(
      str(tmp_path_factory.mktemp("client")), _MODEL)


@pytest.fixture(scope="module")
def server(base_path):
  with model_server.ModelServer(_MODEL, base_path, port=0, host="127.0.0.1",
                                poll_wait_seconds=0) as server:
    yield server


def test_score(server):
  with client_lib.PredictionClient(f"127.0.0.1:{server.port}") as client:
    rows = client_lib.score(client, _MODEL, "u1", ["a", "item22"])
  assert rows == [{"item_id": "a", "batch": 2, "score": 203.0},
                  {"item_id": "item22", "batch": 2, "score": 208.0}]


@pytest.mark.slow
def test_serve_main_process_with_rest_and_config_file(base_path, tmp_path):
  config = tmp_path / "models.config"
  config.write_text(f"""model_config_list {{ config {{
      name: "{_MODEL}" base_path: "{base_path}" model_platform: "tensorflow"
      model_version_policy {{ specific {{ versions: 1 }} }} }} }}""")
  port, rest_port = testing.free_port(), testing.free_port()
  env = dict(os.environ, PYTHONPATH=_REPO_ROOT)
  process = subprocess.Popen(
      [sys.executable, "-m", "serving.model_server", f"--port={port}",
       f"--rest_api_port={rest_port}", "--bind_address=127.0.0.1",
       f"--model_config_file={config}", "--enable_batching",
       "--num_load_threads=2"],
      cwd=_REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  try:
    with client_lib.PredictionClient(f"127.0.0.1:{port}") as client:
      assert client.wait_until_ready(_MODEL, timeout=60) == 1
      import grpc  # pylint: disable=g-import-not-at-top
      with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert health.check(channel) == health.SERVING
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
    connection.request("POST", f"/v1/models/{_MODEL}:predict", body=json.dumps(
        {"instances": [{"user_id": "u", "item_id": "i"}]}))
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read()) == {
        "predictions": [{"batch": 1, "score": 102.0}]}
    connection.close()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
  finally:
    if process.poll() is None:
      process.kill()
      process.communicate()
  assert process.returncode == 0, err[-3000:]
  assert "Serving model toy version 1" in err
  assert "--num_load_threads has no effect on this server" in err
  assert "Exporting HTTP/REST API at:localhost:" in err
  assert "Received SIGTERM" in err and "Server stopped" in err


def test_serve_main_reports_start_failure(tmp_path, capsys):
  config = tmp_path / "models.config"
  config.write_text("model_config_list { config { name: 'a' }")  # Truncated.
  assert model_server.serve_main([
      "--port=0", "--bind_address=127.0.0.1",
      f"--model_config_file={config}"]) == 1
  with pytest.raises(SystemExit) as info:
    model_server.serve_main(["--port", "0"])
  assert info.value.code == 2
  assert "--model_base_path or --model_config_file" in capsys.readouterr().err
