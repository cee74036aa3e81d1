# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv idempotently, install the pinned CPU torch first (a looser requirement would pull
# several GB of CUDA wheels), then decar with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/decar demo --out demo_run

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pretrain.py
	$(BIN)/python benchmarks/bench_kmeans.py

clean:
	rm -rf $(VENV) demo_run .pytest_cache .ruff_cache
