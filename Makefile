# Two commands on a fresh machine: `make demo` (install + main job), `make test` (install + tests).
# Both create or reuse the virtual environment in .venv; torch is pinned to the CPU build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.adpc-installed

.PHONY: demo test lint install clean system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,all]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/adpc demo

# Two pytest workers, one file each (the converter files share session fixtures within a
# worker); every worker runs torch and ExecuTorch on one thread (tests/conftest.py).
test: $(STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Debian packages for the aarch64 cross check (best effort; tests skip with a reason without).
system-packages:
	@sh tools/system_packages.sh

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
