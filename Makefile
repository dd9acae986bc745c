# keras-ebnn: the two commands of the README, plus the embedded-target checks.
#   make demo     set up .venv and run the MNIST demo (export the shipped model, build C, run it)
#   make test     set up .venv and run the whole test suite
#   make targets  only the embedded-target checks (Cortex-M under QEMU, ATmega328P under simavr, Zephyr)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the full datasets when ../shared/data exists beside the clone (CI, benchmarks); tests never need them
EBNN_DATA_DIR ?= $(wildcard $(abspath ../shared/data))
export EBNN_DATA_DIR

.PHONY: demo test targets setup

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
	$(PY) -m pytest -q -p no:cacheprovider

targets: setup
	$(PY) -m pytest -q -p no:cacheprovider -m targets
