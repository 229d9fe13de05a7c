# ttsr-lightning: every command a user needs. The virtualenv is created on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: help install train study test test-slow test-all lint format bench bench-memory bench-protocols gpu-suite gpu-suite-dry-run clean

help:
	@echo "make install   create $(VENV), install torch==$(TORCH_VERSION) first, then this package [dev]"
	@echo "make train     train the default experiment on the embedded sample dataset (CPU, ~3 min on 2 cores)"
	@echo "make study     the paper's claims in miniature: its ablations on the sample set (CPU, ~45 min)"
	@echo "make test      fast test suite (CPU, < 10 min)"
	@echo "make test-slow the slow tier (CPU, ~40-50 min on 2 cores; CI runs it after make test)"
	@echo "make test-all  every test, slow ones included"
	@echo "make lint      ruff + mypy"
	@echo "make bench / bench-memory / bench-protocols   benchmarks (numbers in benchmarks/RESULTS.md)"
	@echo "make gpu-suite          on a CUDA GPU: pytest -m gpu tests/gpu, then the benchmarks with --device cuda"
	@echo "                        (~25 min; OFFICIAL=DIR: the official code's copy, default third_party/TTSR)"
	@echo "make gpu-suite-dry-run  the same benchmark scripts with --tiny --device cpu (~2 min)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev]"
	# the reference LPIPS for the tests, without its dependencies: its torchvision requirement pulls a
	# CUDA torch, and PyPI's torchvision does not import beside a CPU torch (it breaks torchmetrics)
	$(PY) -m pip install -q --no-deps lpips==0.1.4
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) -m ttsr_lightning

study: install
	$(PY) experiments/miniature.py

test: install
	$(PY) -m pytest -m "not slow and not gpu" -q --durations=10

test-slow: install
	$(PY) -m pytest -m "slow and not gpu" -q --durations=15

test-all: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks experiments
	$(VENV)/bin/ruff format --check src tests benchmarks experiments
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format src tests benchmarks experiments
	$(VENV)/bin/ruff check --fix src tests benchmarks experiments

bench: install
	$(PY) benchmarks/search_transfer.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/data_loader.py

bench-memory: install  # the whole forward against the official one, 1080p within 4 GiB, the halo (~40 min)
	$(PY) benchmarks/whole_forward.py compare
	$(PY) benchmarks/whole_forward.py budget
	$(PY) benchmarks/tiling.py

bench-protocols: install  # evaluate protocol=all against one run per protocol (~8 min)
	$(PY) benchmarks/protocols.py

# On a CUDA GPU (benchmarks/RESULTS.md, "On your own GPU"); the official code, where copied, beside ours
OFFICIAL ?= third_party/TTSR

gpu-suite: install
	CUBLAS_WORKSPACE_CONFIG=:4096:8 WANDB_MODE=disabled $(PY) -m pytest -m gpu tests/gpu -v -rA
	$(PY) benchmarks/train_step.py --device cuda --official $(OFFICIAL)
	$(PY) benchmarks/search_transfer.py --device cuda
	$(PY) benchmarks/search_transfer.py --device cuda --crossover --fused
	$(PY) benchmarks/inference.py --device cuda --max-memory 8 --official $(OFFICIAL)

gpu-suite-dry-run: install  # the same scripts' code paths on tiny sizes; their numbers mean nothing
	$(PY) benchmarks/train_step.py --tiny --device cpu --official $(OFFICIAL)
	$(PY) benchmarks/search_transfer.py --tiny --device cpu
	$(PY) benchmarks/search_transfer.py --tiny --device cpu --crossover --fused
	$(PY) benchmarks/inference.py --tiny --device cpu --official $(OFFICIAL)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
