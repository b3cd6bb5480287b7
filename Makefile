# From a fresh clone: `make demo` (runs the lab on generated data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dflab demo --out demo-out

# Two test processes on two cores: one OpenMP/BLAS thread each, or they oversubscribe the CPU
# (scikit-learn's gradient boosting ran 70x slower that way).
# ruff (unused imports, redefinitions, blank-line runs) and vulture (dead code) first: settings in pyproject.toml.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks && $(BIN)/python -m vulture
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --durations=15

clean:
	rm -rf $(VENV) demo-out .pytest_cache
