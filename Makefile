# Two commands do all the set-up on a fresh machine: `make tune` and `make test`.
# Both create .venv and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(or $(GANTUNE_DATA_DIR),../shared/datasets)

.PHONY: install tune test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

tune: install
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) -m models.train --model gan --loss hinge --z-dim 32 \
		--dataset fashion_mnist --limit 10000 --epochs 1 --out runs/train

test: install
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) bench/throughput.py
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) bench/eval_cost.py
