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

.PHONY: all venv build test test-fast test-asan test-crash fuzz soak perf profile demo lint clean

all: build

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel cffi
	$(PIP) install -q -e '.[test]' --no-build-isolation
	touch $@

venv: $(STAMP)

# Rebuild the C extension in place whenever csrc/ changes.
pyraftlog/.built: $(STAMP) $(CSRC)
	$(PY) setup.py -q build_ext --inplace --force  # --force: a header change alone rebuilds too
	touch $@

build: pyraftlog/.built
	$(PY) -c 'import pyraftlog'

test: build
	$(PYTEST) -q -m 'not slow' tests

# The C paths under AddressSanitizer + UBSan: a sanitized copy of the package
# is built in build/asan (the editable install is left alone) and put first on
# the path; the sanitizer runtime is preloaded into the (uninstrumented) python.
ASAN_TESTS := tests/test_crc32c.py tests/test_format.py tests/test_conformance.py \
	tests/test_validation.py tests/test_ring.py tests/test_table.py tests/test_group_index.py tests/test_batch.py tests/test_purge.py tests/test_replay_fuzz.py tests/test_objects.py tests/test_ops.py tests/test_plan.py tests/test_walker.py \
	tests/test_snapshot_store.py tests/test_security.py tests/fault/test_faults.py $(wildcard tests/crash/test_corruption.py tests/crash/test_torn_tail.py \
	tests/crash/test_fuzz_recovery.py tests/test_cli.py)
test-asan: build
	rm -rf build/asan && mkdir -p build/asan
	cp -r pyraftlog build/asan/ && rm -f build/asan/pyraftlog/*.so
	PYRAFTLOG_SANITIZE=1 $(PY) pyraftlog/_build.py build/asan > build/asan/build.log
	PYRAFTLOG_EXPECT_SANITIZED=1 PYTHONPATH=$(CURDIR)/build/asan LD_PRELOAD=$(ASAN_LIB) \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
		$(PY) -P -m pytest -q -m "not slow" -p no:cacheprovider $(ASAN_TESTS)

# the long crash runs: 200 kill points, every torn-tail offset, long fuzzing and
# power-loss runs (the short versions of all of them are in `make test`)
test-crash: build
	PYRAFTLOG_KILL_POINTS=200 $(PYTEST) -q tests/crash tests/fault tests/powerloss

# long hypothesis runs: the model test, recovery and replay fuzzing, scaled up
fuzz: build
	PYRAFTLOG_HYPOTHESIS_EXAMPLES=1000 $(PYTEST) -q tests/test_model.py tests/test_model_ring.py
	PYRAFTLOG_HYPOTHESIS_EXAMPLES=1000 $(PYTEST) -q -m slow tests/crash/test_fuzz_recovery.py
	PYRAFTLOG_HYPOTHESIS_EXAMPLES=3000 $(PYTEST) -q -m slow tests/test_replay_fuzz.py

# a long run as a server would make (>= 10 minutes): small segments turning
# over, lagging groups purged, writers and a reader, a reopen every 3 minutes;
# a table per minute, and a verdict (throughput, descriptors, table, RSS).
# Its count-based short version is in `make test` (tests/test_table.py).
soak: build
	$(PY) tests/soak/soak.py --minutes $(or $(SOAK_MINUTES),10)

perf: build
	$(PIP) install -q rocksdict lmdb matplotlib || echo "perf peers or matplotlib not installed; they will be skipped"
	$(PY) perf/run_all.py

# the main workloads under py-spy: reports on stdout, raw stacks and flame
# graphs (SVG) in perf/out/ (see perf/README.md)
profile: build
	$(PIP) install -q py-spy
	for w in ready_loop_pipelined threads asyncio; do $(PY) perf/profile.py --workload $$w --seconds 4 || exit 1; done

# `make demo DEMO_ARGS="--metrics-port 9108"`: any option of the demo (--help),
# an example application in examples/pysyncobj_demo (not in the package)
demo: build
	$(PY) examples/pysyncobj_demo $(DEMO_ARGS)

lint: build
	$(PIP) install -q ruff mypy
	$(VENV)/bin/ruff check pyraftlog examples
	$(VENV)/bin/ruff check --select E9,F tests perf
	$(VENV)/bin/mypy --strict pyraftlog examples/pysyncobj_demo

clean:
	rm -rf build $(VENV) pyraftlog/*.so pyraftlog/_pyraftlog_c.c pyraftlog/.built *.egg-info
