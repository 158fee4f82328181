"""Fixtures of the publish tests: private Redis servers on free ports (killed/paused/restarted at will)."""

from __future__ import annotations

import pytest

from p9cli.publish.embedded import EmbeddedRedis


@pytest.fixture
def private_redis():
    """``start(**kwargs) -> EmbeddedRedis``: a server of our own (system redis-server, else the wheel's);
    every one started is stopped after the test."""
    servers: list[EmbeddedRedis] = []

    def start(**kwargs) -> EmbeddedRedis:
        server = EmbeddedRedis.start(**kwargs)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for s in servers:
            s.stop()
