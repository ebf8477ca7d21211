# acr_plugin developer commands. Every target creates/reuses the local .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.acr_plugin-installed
WORK_DIR ?= work_dirs/demo
DEMO_CONFIG ?= configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py
PYTEST_ARGS ?=

.PHONY: install test test-fast test-upstream lint demo bench clean

$(STAMP): requirements/runtime.txt requirements/tests.txt requirements/install.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# All tests, the slow end-to-end ones included. pytest exits 5 when it
# collected nothing: that is an error here, never a green run.
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

# The classic research stack (Python 3.10, torch 2.1.2, upstream mmcv 2.1.0 with
# compiled ops, mmengine 0.10.7, mmsegmentation 1.2.2, timm 1.0.16) in its own
# .venv-upstream: the fast suite and mmseg's own tools (first build ~11-20 min,
# mmcv's ops compile once; see docs/installation.md). CI runs it too.
test-upstream:
	bash tools/upstream_stack.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check acr_plugin tools tests benchmarks

demo: $(STAMP)
	bash tools/demo.sh $(DEMO_CONFIG) $(WORK_DIR)

# Performance and the synthetic ablation (see README "Results"; ~2.5 h on 2 CPU cores)
bench: $(STAMP)
	$(PY) benchmarks/cam_throughput.py
	$(PY) benchmarks/acr_overhead.py --threads 1
	$(PY) benchmarks/synthetic_ablation.py

clean:
	rm -rf work_dirs .pytest_cache .ruff_cache
