# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv idempotently, install the pinned CPU torch first (a looser requirement would pull
# several GB of CUDA wheels), then decar with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test lint demo bench bench-quality bench-methods clean

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

# The demo fetches seven small Debian packages with `apt-get download`, which needs apt's package lists: as
# root, they are refreshed once when empty. Without them the demo says so and uses generated audio.
demo: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! apt-cache show csound-soundfont >/dev/null 2>&1; then \
		apt-get update -qq || true; fi
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

# Each method pretrained on the bench corpus for the same wall-clock budget, with one encoder (AudioNTT d = 512,
# 0.96 s crops, batch 64), then probed on the bench against that encoder at random init. Runs are resumable:
# run the target again after an interruption. BUDGET is minutes per method.
BUDGET ?= 30
METHODS_OUT ?= results/methods
METHOD_SETTINGS = model.kwargs.d=512 optim.batch_size=64 optim.epochs=1000 optim.steps_per_epoch=500 \
	data.num_workers=2 time_budget_minutes=$(BUDGET)
bench-methods: $(STAMP)
	test -f $(BENCH_DIR)/summary.json || $(BIN)/decar data build-bench --out $(BENCH_DIR)
	$(BIN)/decar pretrain --config configs/audiontt.yaml --data $(BENCH_DIR)/corpus/files.txt \
		--out $(METHODS_OUT)/deepcluster_v1 --resume $(METHOD_SETTINGS) objective.kmeans_backend=torch
	$(BIN)/decar pretrain --config configs/decar_v2.yaml --data $(BENCH_DIR)/corpus/files.txt \
		--out $(METHODS_OUT)/dcv2 --resume $(METHOD_SETTINGS) optim.lr=0.6 optim.warmup_epochs=0.2
	$(BIN)/decar pretrain --config configs/decar_online.yaml --data $(BENCH_DIR)/corpus/files.txt \
		--out $(METHODS_OUT)/online --resume $(METHOD_SETTINGS) optim.lr=0.6 optim.warmup_epochs=0.2
	$(BIN)/decar bench --bench $(BENCH_DIR) -o $(METHODS_OUT)/bench --model random:configs/audiontt.yaml \
		$(foreach m,deepcluster_v1 dcv2 online,--model $(METHODS_OUT)/$(m)/checkpoint.pt)

clean:
	rm -rf $(VENV) demo_run .pytest_cache .ruff_cache
