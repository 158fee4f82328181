"""Suite-wide settings: where the recorded exchange payloads are.

The fixtures live in ``../shared/fixtures/exchanges`` beside the repository (CI clones main
with ``shared/`` next to it). ``P9_FIXTURES`` overrides it; every test module that reads
fixtures resolves them from this variable or the same relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
_DEFAULT = _REPO.parent / "shared" / "fixtures" / "exchanges"
os.environ.setdefault("P9_FIXTURES", str(_DEFAULT))
FIXTURES = Path(os.environ["P9_FIXTURES"])

if not (FIXTURES / "SOURCES.md").is_file():
    raise RuntimeError(
        f"recorded exchange fixtures not found at {FIXTURES}: clone the repository with shared/ beside it "
        "or set P9_FIXTURES"
    )


# --- Redis for the live half's tests (owner: publish) -------------------------------------------
# `redis_url`: the Redis at 127.0.0.1:6379 when it answers, else a private server started for the
# session (so the suite passes where no system Redis runs). Keys go to their own DB
# (P9_TEST_REDIS_DB, default 9). Pub/sub channels are not per DB: name channels and keys with the
# `redis_token` (e.g. symbol f"{redis_token}usdt", worker id f"w-{redis_token}"); every key whose
# name contains the token is deleted after the test.

import secrets  # noqa: E402

import pytest  # noqa: E402

REDIS_TEST_DB = int(os.environ.get("P9_TEST_REDIS_DB", "9"))
#: where the suite looks for a running Redis (point it at a dead port to try the no-Redis path)
REDIS_TEST_PROBE = os.environ.get("P9_TEST_REDIS_PROBE", "127.0.0.1:6379")


@pytest.fixture(scope="session")
def redis_server_url():
    """``redis://HOST:PORT`` (no DB) of the test Redis server."""
    from p9cli.publish.embedded import EmbeddedRedis, ping

    host, _, port = REDIS_TEST_PROBE.rpartition(":")
    if ping(host, int(port)):
        yield f"redis://{host}:{port}"
        return
    server = EmbeddedRedis.start()
    try:
        yield f"redis://{server.host}:{server.port}"
    finally:
        server.stop()


@pytest.fixture
def redis_token() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture
def redis_url(redis_server_url, redis_token):
    url = f"{redis_server_url}/{REDIS_TEST_DB}"
    yield url
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"*{redis_token}*", count=1000):
            client.delete(key)
    finally:
        client.close()


# --- two workers (pytest-xdist, `-n 2` in pyproject's addopts) -----------------------------------
# Each test file runs whole on one worker (its module fixtures, e.g. a simulator, once). The
# end-to-end tests of the live half (live feeds and a real p9 stream against p9 sim, with timing
# rules of their own: "healthy" means a trade within 10 s) form one scope, so two of them never
# share the two cores at once; they run beside the lighter tests of the other worker, and first
# (the longest scope starts at once). A scheduler of our own rather than `--dist loadgroup`: that
# one groups by a suffix xdist writes into each node id, which pytest 9.2 no longer lets it change
# (every test was distributed on its own, the live ones side by side).
_LIVE_GROUP = ("tests/ui/", "tests/stream/", "tests/live/", "tests/test_chaos.py")


def _scope(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "live" if path.startswith(_LIVE_GROUP) else path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class FileOrLiveScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return FileOrLiveScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _scope(item.nodeid) != "live")  # stable: the live scope first
