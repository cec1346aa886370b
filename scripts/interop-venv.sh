#!/usr/bin/env bash
# Build .venv-interop: slidestream with the readers that the interop tests load exports with
# (spatialdata, LazySlide's wsidata: extra `interop`), as a user of `slidestream[spatialdata]`
# installs it. A separate environment because spatialdata pins dask<2026.1.2 and anndata pins
# pandas<3, which would downgrade the main one. Point the tests at it with
#   SLIDESTREAM_INTEROP_PYTHON=$PWD/.venv-interop/bin/python
# Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${INTEROP_VENV:-.venv-interop}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# the same pinned torch as the main environment (wsidata and slidestream both require torch)
"$VENV/bin/python" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install --quiet -e ".[interop]"
"$VENV/bin/python" -c "import spatialdata, wsidata; print('interop env:', 'spatialdata', spatialdata.__version__, 'wsidata', wsidata.__version__)"
