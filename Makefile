# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config.toml

.PHONY: install run scan test lint bench bench-quick bench-scale clean

install: $(VENV)/.installed

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The daemon in the foreground on config.toml; its photo folder is ./photos unless configured.
run: install
	mkdir -p photos
	$(BIN)/photocluster -c $(CONFIG) run

scan: install
	$(BIN)/photocluster -c $(CONFIG) scan

lint: install
	$(BIN)/ruff check daemon tests bench
	$(BIN)/mypy

# Three workers on two cores: most daemon tests wait on a subprocess, not the CPU. Tests of the
# real model share one worker (tests/conftest.py), so the session's setA scan runs once.
test: install lint
	$(BIN)/python -m pytest -q -ra -n 3 --dist loadgroup

bench: install
	$(BIN)/python -m bench all

bench-quick: install
	$(BIN)/python -m bench quick

# The daemon with a million photos (part of `make bench`): 30-60 minutes on 2 cores.
bench-scale: install
	$(BIN)/python -m bench scale

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
