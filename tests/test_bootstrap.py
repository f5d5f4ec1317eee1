"""scripts/bootstrap.sh: what `make demo` and `make test` install, and when.

The script runs for real in a copy of the repository's install files, with a
stand-in .venv/bin/python that records each pip command instead of running
it (a real install is minutes and GBs; the fresh-machine figures are in
docs/design_measurements.md).
"""

import os
import shutil
import stat
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_FILES = ("requirements.txt", "requirements-dev.txt",
                 "requirements-text.txt", "constraints.txt", "setup.py")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# Records its arguments; `pip install --dry-run` (the local-wheel probe for
# torch) fails when LOCAL_TORCH=0.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$PIP_CALLS"
if [[ "$*" == *--dry-run* ]] && [ "${LOCAL_TORCH:-1}" = 0 ]; then exit 1; fi
exit 0
"""


@pytest.fixture
def checkout(tmp_path):
  for name in INSTALL_FILES:
    shutil.copy(os.path.join(REPO, name), tmp_path / name)
  (tmp_path / "scripts").mkdir()
  shutil.copy(os.path.join(REPO, "scripts", "bootstrap.sh"),
              tmp_path / "scripts" / "bootstrap.sh")
  python = tmp_path / ".venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(FAKE_PYTHON)
  python.chmod(python.stat().st_mode | stat.S_IEXEC)
  return tmp_path


def bootstrap(checkout, *args, local_torch=True, **env):
  """The pip commands one bootstrap.sh run issued (without the python)."""
  calls = checkout / "pip_calls"
  calls.write_text("")
  out = subprocess.run(
      ["bash", str(checkout / "scripts" / "bootstrap.sh"), *args],
      env={**os.environ, "PIP_CALLS": str(calls),
           "LOCAL_TORCH": "1" if local_torch else "0", **env},
      capture_output=True, text=True, check=True)
  assert "Traceback" not in out.stderr
  return [line.removeprefix("-m pip --disable-pip-version-check ")
          for line in calls.read_text().splitlines()]


def test_demo_installs_the_core_only_and_then_nothing(checkout):
  assert bootstrap(checkout) == ["install -c constraints.txt -e ."]
  assert bootstrap(checkout) == []


def test_test_adds_the_extras_after_demo_and_demo_after_test_reuses_them(
    checkout):
  bootstrap(checkout)
  assert bootstrap(checkout, "test") == [
      "install -q --dry-run --no-index --no-deps torch==2.13.0",
      "install -c constraints.txt -e .[text,dev]"]
  assert bootstrap(checkout) == []  # more than the demo needs: reused
  assert bootstrap(checkout, "test") == []


def test_a_changed_pin_reinstalls(checkout):
  bootstrap(checkout, "test")
  with open(checkout / "requirements.txt", "a") as f:
    f.write("six==1.17.0\n")
  assert bootstrap(checkout) == ["install -c constraints.txt -e ."]
  # The extras were installed under the old pins: test installs them again.
  assert bootstrap(checkout, "test")[-1] == (
      "install -c constraints.txt -e .[text,dev]")


def test_without_a_local_wheel_torch_comes_from_the_cpu_index(checkout):
  assert bootstrap(checkout, "test", local_torch=False)[:2] == [
      "install -q --dry-run --no-index --no-deps torch==2.13.0",
      f"install --index-url {CPU_INDEX} torch==2.13.0"]


def test_an_empty_torch_index_leaves_torch_to_pypi(checkout):
  calls = bootstrap(checkout, "test", local_torch=False, MTREC_TORCH_INDEX="")
  assert calls[1:] == ["install -c constraints.txt -e .[text,dev]"]


def test_an_unknown_mode_is_refused(checkout):
  out = subprocess.run(
      ["bash", str(checkout / "scripts" / "bootstrap.sh"), "everything"],
      capture_output=True, text=True, check=False)
  assert out.returncode == 2 and "usage:" in out.stderr


def test_the_image_has_every_package_and_the_extra_with_cpu_torch():
  """No Docker engine here to build it: the Dockerfile's own lines."""
  from pipeline import step_deps  # pylint: disable=g-import-not-at-top
  with open(os.path.join(REPO, "Dockerfile")) as f:
    dockerfile = f.read()
  for package in step_deps.PROJECT_PACKAGES:
    assert f"\nCOPY {package} ./{package}\n" in dockerfile, package
  assert "COPY requirements.txt requirements-dev.txt requirements-text.txt" \
      in dockerfile
  torch_first = dockerfile.index(f"pip install --index-url {CPU_INDEX}")
  assert torch_first < dockerfile.index("-r requirements-text.txt")
