# make run   - set up (first time) and run emod on the camera, or the bundled demo clip when there is none
# make test  - set up (first time) and run the tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/emod: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/emod

run: setup
	$(BIN)/emod run --loop

test: setup
	$(BIN)/python -m pytest -q

.PHONY: setup run test
