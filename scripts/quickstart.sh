#!/usr/bin/env bash
# Set up a virtual environment in .venv, install slidestream, and run the pipeline on the bundled
# sample slide. Safe to re-run: finished work is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: these exact wheels are the tested ones (CPU or CUDA, same wheel).
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -e ".[test,workflow]"
SAMPLE=$(.venv/bin/python -c "from slidestream.data import sample_slide; print(sample_slide())")
OUT=${OUT:-out/quickstart}
.venv/bin/slidestream info "$SAMPLE"
# tissue -> tiles (0.5 um/px, 224 px) -> features with the built-in encoder (no weights needed)
.venv/bin/slidestream extract "$SAMPLE" --out "$OUT" --encoder handcrafted
.venv/bin/slidestream export h5 "$OUT" --encoder handcrafted --dest "$OUT/h5"
echo "Done: slide store $OUT/$(basename "${SAMPLE%.*}").zarr, tissue outline $OUT/$(basename "${SAMPLE%.*}").tiles.png"
