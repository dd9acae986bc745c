"""The two test tiers (see tests/README.md).

default  `make test` / plain `pytest`: every behaviour, small sweeps; tests and sweep values marked
         `slow` are deselected. Budget: at most 5 minutes on a 2-core machine.
full     `make test-full` / `pytest --full` / EBNN_TESTS=full (CI): everything, the full sweeps.

`sweep(values, fast)` makes parametrize values of which the first `fast` run in both tiers and the
rest only in the full one; `count(full, fast)` is the size of a loop run inside one test.
"""
import os

import pytest

FULL = os.environ.get("EBNN_TESTS", "").strip().lower() == "full"  # conftest.py sets it for --full too


def full():
    return FULL


def sweep(values, fast):
    """`values` as pytest.mark.parametrize values: the first `fast` in every tier, the others marked slow."""
    return [v if i < fast else pytest.param(v, marks=pytest.mark.slow) for i, v in enumerate(values)]


def count(full_count, fast_count):
    """How many iterations a loop inside one test runs in the current tier."""
    return full_count if FULL else fast_count
