"""Fixtures that run a real simulator in-process on free loopback ports.

* ``sim`` (session): one shared simulator (seed :data:`SEED`, simulated start
  :data:`START_MS`, real-time speed) -> a :class:`~p9cli.sim.server.SimHandle` with
  ``.rest_url(exchange)``, ``.ws_url(exchange)``, ``.control_url``, ``.simulator`` (the
  :class:`~p9cli.sim.state.Simulator`) and ``.sim`` (the same). Do not change its faults or
  limits (other tests share it); build your own with ``sim_factory`` for that.
* ``sim_factory`` (function): ``sim_factory(seed=..., start_ms=..., speed=...,
  faults={exchange|"all": {...}}, limits={...}, rate_limits=..., with_ws=..., with_feed=...)``
  starts a fresh simulator and returns its handle (``handle.thread.call(fn, ...)`` runs code
  on the simulator's loop); every simulator it started is stopped after the test.

Both run the simulator in a background thread with its own event loop, so synchronous and
asynchronous tests (any event loop scope) can use them alike.
"""

from __future__ import annotations

import pytest
from simutil import start_sim

from p9cli.sim.server import SimHandle
from p9cli.sim.testing import SimThread


@pytest.fixture(scope="session")
def sim():
    thread, handle = start_sim(speed=1.0, warm_up=True)
    try:
        yield handle
    finally:
        thread.stop()


@pytest.fixture
def sim_factory():
    threads: list[SimThread] = []

    def make(**kwargs) -> SimHandle:
        thread, handle = start_sim(**kwargs)
        threads.append(thread)
        return handle

    try:
        yield make
    finally:
        for thread in threads:
            thread.stop()
