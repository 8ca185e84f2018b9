# make run   - set up (first time: the base dependencies only, no PyTorch, no dev tools) and run emod on the camera,
#              or the bundled demo clip when there is none
# make test  - set up (first time: adds PyTorch and the dev tools to the same .venv), install the Debian packages
#              the suite needs (as root with apt; else prints the command), and run the tests
# make system-deps - only that Debian step (.ci/run and make test share it)
# make docs  - build the documentation site into site/ (git-ignored), warnings as errors (dev set-up)
# make docs-serve - serve it on http://127.0.0.1:8000 while you edit
# make pi-check [PI_CHECK_JSON=FILE] - the README's Pi install on emulated arm64 Debian (root, slow; not part of test)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=  # e.g. https://download.pytorch.org/whl/cpu where PyPI's torch wheel is a CUDA build
# Debian packages some tests need; a test whose package is missing skips and names this step
SYSTEM_PACKAGES := chromium systemd python3-scipy mosquitto

# one .venv, two stamps: `make run` installs the base dependencies; `make test` upgrades the same venv with
# PyTorch and .[dev] (a superset, so `make run` afterwards installs nothing new)
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.run-deps

setup: $(VENV)/.run-deps
setup-dev: $(VENV)/.dev-deps

# which of SYSTEM_PACKAGES are missing: each one's probe (chromium's binary, systemd-analyze, apt's scipy, mosquitto)
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	[ -f /usr/lib/python3/dist-packages/scipy/__init__.py ] || missing="$$missing python3-scipy"; \
	PATH="$$PATH:/usr/sbin" command -v mosquitto >/dev/null || missing="$$missing mosquitto"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages the tests need:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
			|| echo "apt-get failed: the tests that need$$missing will skip"; \
	else \
		echo "the tests that need$$missing will skip; to run them: sudo apt-get install$$missing"; \
	fi

run: setup
	$(BIN)/emod run --loop

test: setup-dev system-deps
	$(BIN)/python -m pytest -q

docs: setup-dev
	$(BIN)/python -m mkdocs build --strict --site-dir site

docs-serve: setup-dev
	$(BIN)/python -m mkdocs serve --strict --dev-addr 127.0.0.1:8000

PI_CHECK_JSON ?= docs/reports/pi_check.json
pi-check: setup-dev
	$(BIN)/python tools/pi_check.py --json $(PI_CHECK_JSON)

.PHONY: setup setup-dev system-deps run test docs docs-serve pi-check
