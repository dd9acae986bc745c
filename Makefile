# keras-ebnn: the two commands of the README, plus the other test tiers (tests/README.md).
#   make demo       set up .venv and run the MNIST demo (export the shipped model, build C, run it)
#   make test       set up .venv and run the default test tier: every behaviour, small sweeps (<= 5 min
#                   on 2 cores)
#   make test-full  the full tier (CI): also the tests and sweep values marked slow
#   make test-wheel build the wheel, install it into a fresh venv, export every shipped model for every
#                   target with keras-ebnn-convert and build + run the C (tests/test_packaging.py, full)
#   make targets    only the embedded-target checks (Cortex-M under QEMU, ATmega328P under simavr, Zephyr)
#   make venv-from BASE=../main/.venv   a .venv for another checkout (e.g. a git worktree) that reuses an
#                   existing environment's packages (no download) and installs this checkout editable
# TESTFLAGS adds pytest options (e.g. TESTFLAGS='-k graph'); JOBS is pytest-xdist's worker count.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the full datasets when ../shared/data exists beside the clone (CI, benchmarks); tests never need them
EBNN_DATA_DIR ?= $(wildcard $(abspath ../shared/data))
export EBNN_DATA_DIR
JOBS ?= 2
TESTFLAGS ?=
# pytest-xdist (the test extra) when the venv has it, else one process; expanded when a recipe runs
XDIST = $(shell $(PY) -c 'import xdist' >/dev/null 2>&1 && echo '-n $(JOBS) --dist loadgroup')
PYTEST = $(PY) -m pytest -q -p no:cacheprovider $(XDIST) --durations=25 $(TESTFLAGS)

.PHONY: demo test test-full test-wheel targets setup venv-from

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,plot]'
	$(PY) -m keras_ebnn.setup_larq  # Python >= 3.13: larq without its numpy<2 pin
	$(PY) -m pip install -q --no-deps aeon  # the UEA datasets of the 1-D example and its tests (data files only)
	touch $@

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PYTEST)

test-full: setup
	$(PYTEST) --full

test-wheel: setup
	$(PYTEST) --full tests/test_packaging.py

targets: setup
	$(PYTEST) --full -m targets

venv-from:
	test -x "$(BASE)/bin/python" || { echo "usage: make venv-from BASE=/path/to/an/existing/.venv"; exit 2; }
	$(BASE)/bin/python tests/helpers/venvs.py $(VENV)
	touch $(VENV)/.installed
