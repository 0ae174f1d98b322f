# Two commands for a fresh machine:
#   make up     set up, build the demo models once, start the fleet on the embedded broker
#   make test   set up, run the whole test suite (real broker process, real checkpoints)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test test-fast lint bench-engine clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on a CPU machine this is the local 2.13.0 CPU build, and
	# nothing later may pull a newer (CUDA) torch through a looser range
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/fleet up

test: $(STAMP)
	$(PY) -m pytest -q -m "not gpu"

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not gpu"

lint: $(STAMP)
	$(VENV)/bin/ruff check contracts router worker fleet benchmarks tests
	$(VENV)/bin/mypy

bench-engine: $(STAMP)
	$(PY) -m benchmarks.engine_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
