"""The `mtrec` command line: help, flag spellings, no TensorFlow for help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from contracts import flags
from pipeline import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run in a fresh interpreter: `mtrec COMMAND --help`, then report whether
# TensorFlow got imported (argparse exits after printing help).
_HELP_PROBE = """
import json, sys
from pipeline import cli
try:
  status = cli.main(sys.argv[1:])
except SystemExit as e:
  status = e.code
print(json.dumps({"status": status,
                  "tensorflow": "tensorflow" in sys.modules}),
      file=sys.stderr)
"""

_FAST_HELP = list(cli.COMMANDS)  # serve's flags: serving/server_flags.py


@pytest.mark.parametrize("command", _FAST_HELP)
def test_command_help_is_on_stdout_without_importing_tensorflow(command):
  done = subprocess.run([sys.executable, "-c", _HELP_PROBE, command,
                         "--help"], cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)
  probe = json.loads(done.stderr.strip().splitlines()[-1])
  assert probe == {"status": 0, "tensorflow": False}, done.stderr
  assert done.stdout.startswith(f"usage: mtrec {command}")


def test_flag_parser_takes_both_spellings_into_one_dest():
  parser = flags.FlagParser(prog="t")
  parser.add_argument("--model-name", default="m")
  parser.add_argument("--to_version", type=int)
  parser.add_argument("--server")
  assert vars(parser.parse_args(["--model_name", "a", "--to-version", "3"])) \
      == {"model_name": "a", "to_version": 3, "server": None}
  assert vars(parser.parse_args(["--model-name=b", "--to_version=4"])) == {
      "model_name": "b", "to_version": 4, "server": None}
  assert flags.spellings("--serving_root") == ["--serving_root",
                                               "--serving-root"]
  assert flags.spellings("--port") == ["--port"]
  assert flags.spellings("-k") == ["-k"]


@pytest.mark.parametrize("model_flag, root_flag, version_flag", [
    ("--model_name", "--serving-root", "--to_version"),
    ("--model-name", "--serving_root", "--to-version"),
])
def test_rollback_takes_either_spelling(tmp_path, capsys, model_flag,
                                        root_flag, version_flag):
  root = tmp_path / "serving"
  assert cli.main(["rollback", model_flag, "films", root_flag, str(root),
                   version_flag, "2"]) == 1
  assert capsys.readouterr().err.strip() == (
      f"mtrec rollback: No versions of films under {root / 'films'}")


@pytest.mark.parametrize("command", ["recommend", "score", "metadata",
                                     "status"])
def test_client_commands_list_both_spellings(command, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main([command, "--help"])
  assert e.value.code == 0
  assert "--model_name MODEL_NAME, --model-name MODEL_NAME" in (
      capsys.readouterr().out)
