"""Fixtures of the fetch-history tests: REST-only simulators (see history_helpers.py)."""

from __future__ import annotations

import pytest
from history_helpers import start_thread

from p9cli.sim.testing import SimThread


@pytest.fixture
def start_sim():
    """A fresh REST-only simulator per call (for tests that add faults or move its clock)."""
    threads: list[SimThread] = []
    try:
        yield lambda **kwargs: start_thread(threads, **kwargs)
    finally:
        for t in threads:
            t.stop()


@pytest.fixture(scope="session")
def shared_sim():
    """One REST-only simulator for the tests that neither change its faults nor move its
    clock (they compare counters as differences). Saves building the market history again."""
    threads: list[SimThread] = []
    try:
        yield start_thread(threads)
    finally:
        for t in threads:
            t.stop()
