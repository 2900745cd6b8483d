# Two commands do all the set-up on a fresh machine: `make tune` and `make test`.
# Both create .venv and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(or $(GANTUNE_DATA_DIR),../shared/datasets)
# pytest processes: two pytest-xdist processes by default, each test file in one of them (its module
# fixtures built once), which overlaps the suite's waits on Ray; TEST_WORKERS=1 runs it in this process.
TEST_WORKERS ?= 2

.PHONY: install tune tune-example test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

tune: install
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) tuner/run.py --space demo --storage-path $(CURDIR)/runs

# your own GAN, plugged in by two flags (examples/tiny_gan.py; the protocol is in tuner/trainers.py)
tune-example: install
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) tuner/run.py --trainer examples.tiny_gan:make_trainer \
		--space examples.tiny_gan:space --num-samples 4 --epochs 2 --limit 2000 --eval-samples 500 \
		--storage-path $(CURDIR)/runs

test: install
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

bench: install
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) bench/throughput.py
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) bench/eval_cost.py
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) bench/overheads.py
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) bench/concurrency.py
	GANTUNE_DATA_DIR=$(DATA_DIR) $(PY) bench/search_efficiency.py
