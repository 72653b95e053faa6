# halut: `make setup` once on a fresh Debian 12 machine, then `make demo` / `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.halut-setup-stamp
APT_PACKAGES := opensta qflow qflow-tech-osu018 liblz4-dev g++ make chromium
TORCH := torch==2.13.0
export HALUT_CACHE ?= $(HOME)/.cache/halut
export YOWASP_CACHE_DIR ?= $(HOME)/.cache/halut/yowasp
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup apt venv demo test test-fast bench lint clean help
help:
	@echo "make setup  - install system tools (apt), a venv in .venv and the package"
	@echo "make demo   - the end-to-end demo (halut demo)"
	@echo "make test   - the test suite"
	@echo "make bench  - benchmarks, JSON in bench/results/"
	@echo "make lint   - ruff + mypy + verilator lint"

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory apt
	@$(MAKE) --no-print-directory venv
	@touch $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	python3 -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "apt: all present"; fi

venv:
	@[ -x $(PIP) ] || python3 -m venv --clear $(VENV)
	@$(PIP) install -q --upgrade pip
	@$(PIP) install -q $(TORCH)
	@$(PIP) install -q -e '.[dev]'
	@mkdir -p $(YOWASP_CACHE_DIR)
	@$(PY) -c "import flows.tools as t; t.warm_up_yosys()" || true

demo: setup
	$(VENV)/bin/halut demo

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-fast: setup
	$(PY) -m pytest -n 2 -q -m "not slow"

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check learning emulator flows tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/halut hw lint

clean:
	rm -rf build bench/results .pytest_cache .mypy_cache .ruff_cache
