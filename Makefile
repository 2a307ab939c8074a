# vitstudy: `make demo` runs the offline quickstart study and writes its feature atlas and
# its report (the atlas first, so that the report's feature panels link into it);
# `make test` runs the test suite. Both create .venv and install the project if needed.
#
# TORCH_INSTALL is how torch and torchvision get into the venv. The default pins the builds
# that lie on this project's CI machines' local disk; on another machine override it, e.g.
#   make demo TORCH_INSTALL="pip install torch torchvision --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_INSTALL ?= pip install torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
STAMP := $(VENV)/.vitstudy-installed
TEST_STAMP := $(VENV)/.vitstudy-test-installed

export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: install demo demo-numbers test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m $(TORCH_INSTALL)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/vitstudy run studies/quickstart.yaml
	$(BIN)/vitstudy atlas studies/quickstart.yaml
	$(BIN)/vitstudy report studies/quickstart.yaml

# README's quickstart table and every quickstart number in docs/, rewritten from results.db
# (`--check` instead: exit 1 when a doc is stale; several --db: mean and range across runs)
demo-numbers: install
	$(BIN)/python bench/demo_numbers.py --db results.db

# The tests also cover the optional backends (Ray, PostgreSQL): install their extras too.
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,ray,postgres]'
	touch $(TEST_STAMP)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check runner tests bench

bench: install
	$(BIN)/python bench/noop_rerun.py

clean:
	rm -rf results.db results.db-wal results.db-shm artifacts reports atlas
