# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv idempotently, install the pinned CPU torch first (a looser requirement would pull
# several GB of CUDA wheels), then decar with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test lint demo bench bench-quality clean

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

# The real-audio bench (README "Benchmark on real audio"): builds it once from Debian packages, then scores the
# baselines with the default probe and, on the same embeddings, EVAR's linear probe. BYOLA=path/to/
# AudioNTT2020-BYOLA-64x96d512.pth adds BYOL-A's released weights (from its repository; not shipped).
BENCH_DIR ?= bench
BENCH_OUT ?= results/bench
BYOLA ?=
bench-quality: $(STAMP)
	test -f $(BENCH_DIR)/summary.json || $(BIN)/decar data build-bench --out $(BENCH_DIR)
	$(BIN)/decar bench --bench $(BENCH_DIR) -o $(BENCH_OUT) --protocol linear --protocol evar-linear \
		$(if $(BYOLA),--model byola:$(BYOLA)) --model random:configs/decar.yaml \
		--model random:configs/audiontt.yaml --model logmel-stats

clean:
	rm -rf $(VENV) demo_run .pytest_cache .ruff_cache
