# From a fresh clone: `make demo` (runs the lab on generated data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact versions the tests passed with (pip constraints). `make lock` regenerates it; `make install
# CONSTRAINTS=` installs the newest versions pyproject.toml allows instead.
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: demo test install clean bench lock

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade $(PIN) pip
	$(BIN)/python -m pip install --quiet $(PIN) -e ".[test]"
	echo "$(CONSTRAINTS)" > $(STAMP)  # tests/test_lock.py checks the versions against it

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dflab demo --out demo-out

# Two test processes on two cores: one OpenMP/BLAS thread each, or they oversubscribe the CPU
# (scikit-learn's gradient boosting ran 70x slower that way).
# ruff (unused imports, redefinitions, blank-line runs) and vulture (dead code) first: settings in pyproject.toml.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks && $(BIN)/python -m vulture
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --durations=15

# A new lock: resolve pyproject.toml afresh in a scratch venv and write every installed version. Then
# `make test` and `python benchmarks/check_lab_identical.py` on it, and commit constraints.txt.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e ".[test]"
	{ echo "# pip constraints: the versions make install uses. Regenerate with make lock (see README)."; \
	  echo "# Resolved $$(date -u +%Y-%m-%d) for Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version(), platform.machine())')."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | LC_ALL=C sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) demo-out .pytest_cache
