#!/usr/bin/env bash
# Wheels for the lent GPU machine (Python 3.12, torch, lightning, torchmetrics, pytest, but no Hydra).
#
#   benchmarks/prepare_gpu_wheels.sh [DEST]      # DEST defaults to .whl/ (git-ignored)
#
# That machine cannot reach a registry, so what ttsr_lightning imports and it lacks travels with the
# device call as wheels (`carry: [".whl", ...]`, installed by benchmarks/gpu_suite.sh). The versions
# are the ones this checkout's .venv runs, so the GPU run composes configs exactly as the tests do:
#   hydra-core, omegaconf      pure-Python wheels from PyPI
#   antlr4-python3-runtime     hydra's pin 4.9.x exists only as a source archive: built here
# wandb is not needed: ttsr_lightning imports it only when a W&B logger is configured, and the suite
# runs with logger=none (lightning's WandbLogger import does not need it either).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=${1:-.whl}

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
HYDRA=$(version hydra-core)
OMEGACONF=$(version omegaconf)
ANTLR=$(version antlr4-python3-runtime)

rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "hydra-core==$HYDRA" "omegaconf==$OMEGACONF"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "antlr4-python3-runtime==$ANTLR"
ls -l "$DEST"
du -sh "$DEST"
