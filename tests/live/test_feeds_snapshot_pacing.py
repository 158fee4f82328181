"""After a mass reconnect every book wants a REST snapshot at once: the requests go out
staggered at the configured rate through the one shared REST client (no snapshot storm)."""

from __future__ import annotations

import time

from feedutil import Recorder, check_books_against_truth, settings_for

from p9cli.exchanges import binance
from p9cli.live import FeedOptions, LiveFeeds
from p9cli.rest.client import ClientOptions, ExchangeClient
from p9cli.universe import SYMBOLS

RATE = 8.0


class TimedClient:
    """The real REST client; remembers when each request was sent (for the assertion only)."""

    def __init__(self, client: ExchangeClient):
        self.client = client
        self.sent: list[tuple[float, str]] = []

    async def send(self, req, counters=None):
        self.sent.append((time.monotonic(), req.target))
        return await self.client.send(req, counters)


async def test_snapshots_after_a_mass_reconnect_are_staggered(live_sim):
    sim = live_sim(speed=2.0, faults={"binance": {"ws_drop_every_seconds": 2.0}})
    async with ExchangeClient(binance, sim.rest_url("binance"), ClientOptions(give_up=False)) as real:
        client = TimedClient(real)
        rec = Recorder()
        opts = FeedOptions(snapshot_rate_per_s=RATE, backoff_base_s=0.01, backoff_cap_s=0.05)
        async with LiveFeeds(
            settings_for(sim),
            rec,
            exchanges=("binance",),
            symbols=SYMBOLS,
            options=opts,
            rest_clients={"binance": client},
        ) as feeds:
            for _ in range(60):
                await feeds.wait(0.1)
                s = feeds.stats()["binance"]
                if s["reconnects"] >= 1 and s["state"] == "live":
                    break
            stats = feeds.stats()["binance"]
    assert stats["reconnects"] >= 1 and stats["state"] == "live", stats
    depth = [t for t, target in client.sent if target.startswith("/api/v3/depth")]
    assert len(depth) >= 2 * len(SYMBOLS), client.sent  # every book, at start and after the drop
    # k requests take at least (k - 1) / RATE (a loaded machine may start one a little late,
    # hence the tolerance): never a burst, however many books want a snapshot at once
    spans = [
        (depth[j] - depth[i]) - (j - i) / RATE for i in range(len(depth)) for j in range(i + 1, len(depth))
    ]
    assert min(spans) >= -0.15, "\n".join(f"{t:.4f} {x}" for t, x in client.sent)
    assert await check_books_against_truth(sim.control_url, rec.books, per_book=3) >= 10
