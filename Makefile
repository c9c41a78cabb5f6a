# skhybrid: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall when the dependency list changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
OUT ?= demo-output
PYTEST_ARGS ?=

.PHONY: install demo test test-all lint format examples bench bench-quick docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,plots,dask]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)  ## create .venv and install skhybrid with everything the tests need

demo: install  ## the whole method on the embedded synthetic data set (a few minutes on a CPU)
	$(BIN)/skhybrid demo --out $(OUT) --overwrite

test: install lint  ## install, lint and run the test suite (slow tests excluded)
	$(BIN)/python -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

test-all: install  ## every test, the slow ones included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

examples: install  ## run every example at a reduced size
	$(BIN)/python -m pytest tests/test_examples.py -m "slow or not slow" $(PYTEST_ARGS)

bench: install  ## full benchmarks (see docs/performance.md)
	$(BIN)/python -m benchmarks --out bench-results

bench-quick: install  ## quick benchmarks (a few minutes on 2 cores)
	$(BIN)/python -m benchmarks --quick --out bench-results

docs: install  ## static site of docs/ in site/ (mkdocs; links and anchors checked)
	$(BIN)/mkdocs build

clean:
	rm -rf $(VENV) $(OUT) bench-results site .pytest_cache .ruff_cache *.egg-info
