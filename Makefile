# make run   - set up (first time) and run emod on the camera, or the bundled demo clip when there is none
# make test  - set up (first time) and run the tests
# make docs  - build the documentation site into site/ (git-ignored), warnings as errors
# make docs-serve - serve it on http://127.0.0.1:8000 while you edit
# make pi-check [PI_CHECK_JSON=FILE] - the README's Pi install on emulated arm64 Debian (root, slow; not part of test)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=  # e.g. https://download.pytorch.org/whl/cpu where PyPI's torch wheel is a CUDA build

$(BIN)/emod: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/emod

run: setup
	$(BIN)/emod run --loop

test: setup
	$(BIN)/python -m pytest -q

docs: setup
	$(BIN)/python -m mkdocs build --strict --site-dir site

docs-serve: setup
	$(BIN)/python -m mkdocs serve --strict --dev-addr 127.0.0.1:8000

PI_CHECK_JSON ?= docs/reports/pi_check.json
pi-check: setup
	$(BIN)/python tools/pi_check.py --json $(PI_CHECK_JSON)

.PHONY: setup run test docs docs-serve pi-check
