#!/usr/bin/env bash
# The device call's command: benchmarks/gpu_suite.py on the lent GPU machine (see its header).
#
#   bash benchmarks/gpu_suite.sh --phases environment train_step search_transfer projection \
#       --budget-s 500                                        # first call (timeout_s 540)
#   bash benchmarks/gpu_suite.sh --phases gpu_tests --budget-s 300      # second call (timeout_s 330)
#
# That machine has Python 3.12 with torch, lightning, torchmetrics and pytest, but not hydra-core,
# omegaconf or antlr4: the carried wheels (benchmarks/prepare_gpu_wheels.sh) go to /tmp/site. The
# package runs from src/ (not installed). Results go to $OUT (what the device call brings back),
# else to benchmarks/results/gpu_suite.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "no hydra/omegaconf and no .whl/: run benchmarks/prepare_gpu_wheels.sh"; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>/dev/null
exec "$PY" benchmarks/gpu_suite.py --out "${OUT:-benchmarks/results/gpu_suite}" "$@"
