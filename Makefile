# Two commands do all set-up on a fresh machine:  `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean

$(STAMP): pyproject.toml hatch_build.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU machines here serve this exact torch build from local disk.
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev,elpv,weights,scale,tracking]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rgi-anomalib benchmark --config configs/benchmark/demo.yaml \
		--run-dir runs/benchmark/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) results runs .pytest_cache .ruff_cache
