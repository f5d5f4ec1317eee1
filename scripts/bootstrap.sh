#!/usr/bin/env bash
# Creates (or reuses) .venv and installs mtrec with its pinned dependencies.
# Reinstalls only when a requirements/constraints file or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi
stamp=.venv/.mtrec-install-stamp
want=$(cat requirements.txt requirements-dev.txt constraints.txt setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing mtrec and its pinned dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    -c constraints.txt -r requirements-dev.txt -e .
  echo "$want" > "$stamp"
fi
