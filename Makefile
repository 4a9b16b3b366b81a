# pyraftlog — every target does its own set-up: `make` creates .venv with the
# package installed editable and its C extension built.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
CSRC := $(wildcard csrc/*.c csrc/*.h) pyraftlog/_build.py setup.py pyproject.toml
PYTEST := $(PY) -m pytest
ASAN_LIB = $(shell gcc -print-file-name=libasan.so)

.PHONY: all venv build test test-fast test-asan test-crash fuzz perf profile demo lint clean

all: build

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel cffi
	$(PIP) install -q -e '.[test]' --no-build-isolation
	touch $@

venv: $(STAMP)

# Rebuild the C extension in place whenever csrc/ changes.
pyraftlog/.built: $(STAMP) $(CSRC)
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: pyraftlog/.built
	$(PY) -c 'import pyraftlog'

test: build
	$(PYTEST) -q -m 'not slow' tests

test-asan: $(STAMP)
	rm -f pyraftlog/.built
	PYRAFTLOG_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --force
	LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
		PYRAFTLOG_SANITIZED=1 $(PYTEST) -q -m 'not slow' -p no:cacheprovider tests
	$(PY) setup.py -q build_ext --inplace --force
	touch pyraftlog/.built

test-crash: build
	PYRAFTLOG_KILL_POINTS=200 $(PYTEST) -q tests/crash tests/fault

fuzz: build
	PYRAFTLOG_HYPOTHESIS_EXAMPLES=2000 $(PYTEST) -q -m slow tests

perf: build
	$(PIP) install -q rocksdict lmdb || echo "perf peers not installed; they will be skipped"
	$(PY) perf/run_all.py

profile: build
	$(PIP) install -q py-spy
	$(PY) perf/profile.py

demo: build
	$(PY) -m pyraftlog.contrib.demo

lint: build
	$(PIP) install -q ruff mypy
	$(VENV)/bin/ruff check pyraftlog tests perf
	$(VENV)/bin/mypy --strict pyraftlog

clean:
	rm -rf build $(VENV) pyraftlog/*.so pyraftlog/_pyraftlog_c.c pyraftlog/.built *.egg-info
