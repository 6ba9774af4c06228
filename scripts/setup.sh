#!/usr/bin/env bash
# Install nowcast (editable, with the dev extras) into the current Python environment.
#
# Where no PyTorch is installed yet, install the pinned CPU build first
# (`torch==2.13.0`); a user who already has a (CUDA) torch keeps it, since the
# package itself only asks for a range.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python || command -v python3)}"  # the `python` the README uses
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "nowcast setup: no torch found, installing torch==2.13.0 (CPU build)"
  "$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "nowcast setup: installed ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
