#!/usr/bin/env bash
# System tools the tests need beyond Python packages: headless Chromium, to
# render and screenshot the validation report. Installs from Debian's
# packages when missing (root only; elsewhere the report test says why it
# cannot run).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # apt's own progress lines (-q: without the download meters), so the
  # install is never silent.
  echo "installing chromium from Debian's packages (headless report"
  echo "screenshots; a few hundred MB with its libraries)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
else
  echo "warning: chromium is missing and cannot be installed here" >&2
fi
