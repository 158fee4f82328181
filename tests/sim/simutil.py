"""Helpers to start a real simulator for tests (a module of its own: several test folders
have a ``conftest.py``, so ``from conftest import ...`` would pick whichever was imported first).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from p9cli.sim.server import SimHandle
from p9cli.sim.testing import SimThread

SEED = 9
#: 2026-01-05 12:34:56.789 UTC: a fixed simulated start keeps every test reproducible.
START_MS = 1_767_616_496_789
#: A clock that (practically) stands still: rate-limit windows and books do not move.
FROZEN_SPEED = 1e-9


def start_sim(**kwargs) -> tuple[SimThread, SimHandle]:
    kwargs.setdefault("seed", SEED)
    kwargs.setdefault("start_ms", START_MS)
    kwargs.setdefault("warm_up", False)
    thread = SimThread(**kwargs)
    handle = thread.start()
    handle.thread = thread  # type: ignore[attr-defined]
    return thread, handle


@contextlib.contextmanager
def frozen_sim(advance_ms: int = 0, **kwargs) -> Iterator[SimHandle]:
    """A simulator whose clock stands still after ``advance_ms`` of simulated trading (the
    trades, candles and books asked for are fixed, so answers compare with the ground truth)."""
    kwargs.setdefault("speed", FROZEN_SPEED)
    thread, handle = start_sim(**kwargs)
    try:
        if advance_ms:
            httpx.post(handle.control_url + "/clock/advance", json={"ms": advance_ms}).raise_for_status()
        yield handle
    finally:
        thread.stop()
