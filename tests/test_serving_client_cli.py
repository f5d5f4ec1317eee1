"""The `mtrec` client commands (score, metadata, status) against a server.

recommend's command is tested with the rest of recommendations in
test_serving.py.
"""

from __future__ import annotations

import argparse
import json

import pytest

from serving import client_cli
from serving import model_server
from serving import testing

_MODEL = "toy"


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
  return testing.publish_toy_versions(
      str(tmp_path_factory.mktemp("client_cli")), _MODEL)


@pytest.fixture(scope="module")
def server(base_path):
  with model_server.ModelServer(_MODEL, base_path, port=0, host="127.0.0.1",
                                poll_wait_seconds=0) as server:
    yield server


def _args(server, *args):
  return ["--server", f"127.0.0.1:{server.port}", "--model_name", _MODEL,
          *args]


def test_score_main(server, capsys):
  assert client_cli.score_main(_args(server, "--user", "u1", "--items",
                                     "a,item22")) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[1].split() == ["item_id", "batch", "score"]
  assert lines[3].split() == ["a", "2", "203.0000"]


def test_metadata_text_and_json(server, capsys):
  assert client_cli.metadata_main(_args(server)) == 0
  out = capsys.readouterr().out
  assert out.splitlines()[0] == "model toy version 2"
  assert "signature serving_default (tensorflow/serving/predict)" in out
  assert "  input  user_id: DT_STRING [?]" in out
  assert client_cli.metadata_main(_args(server, "--version", "2",
                                        "--json")) == 0
  document = json.loads(capsys.readouterr().out)
  assert document["version"] == 2
  assert document["signatures"]["recommend"]["outputs"]["titles"] == (
      "DT_STRING [?, 3]")


def test_status(server, capsys):
  assert client_cli.status_main(_args(server)) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[1].split() == ["version", "state", "error"]
  # Version 1 was never wanted (latest policy), so it has no state.
  assert [line.split() for line in lines[3:]] == [["2", "AVAILABLE"]]
  assert client_cli.status_main(["--server", f"127.0.0.1:{server.port}",
                                 "--model_name", "nope"]) == 1
  assert "NOT_FOUND: Could not find any versions of model nope" in (
      capsys.readouterr().err)


def test_fusion_weights_are_parsed_or_refused_with_the_part_named():
  assert client_cli._fusion_weights("like=2, rating=0") == {  # pylint: disable=protected-access
      "like": 2.0, "rating": 0.0}
  for bad in ("like", "like=x", "=1"):
    with pytest.raises(argparse.ArgumentTypeError, match="TASK=WEIGHT"):
      client_cli._fusion_weights(bad)  # pylint: disable=protected-access


def test_the_default_signature_spelt_out_for_fast_help_is_tf_servings():
  from serving import apis  # pylint: disable=g-import-not-at-top
  assert client_cli._DEFAULT_SIGNATURE == apis.DEFAULT_SERVING_SIGNATURE  # pylint: disable=protected-access
