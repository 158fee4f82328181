"""Fixtures of the feed-layer tests: fresh simulators (tests/sim/simutil.py start_sim)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sim"))

from simutil import start_sim  # noqa: E402


@pytest.fixture
def live_sim():
    """``live_sim(**kwargs)`` -> a SimHandle of a fresh in-process simulator (stopped after the
    test); defaults: real-time speed."""
    threads = []

    def make(**kwargs):
        kwargs.setdefault("speed", 1.0)
        thread, handle = start_sim(**kwargs)
        threads.append(thread)
        return handle

    try:
        yield make
    finally:
        for thread in threads:
            thread.stop()
