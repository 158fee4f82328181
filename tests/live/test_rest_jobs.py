"""The feed's REST queue (p9cli.live.rest_jobs.RestJobs) against the simulator, through the real
REST client: what goes first, how a trade replay pages until its holes are closed, and that a
failed job waits for its retry without holding a slot.

The simulator runs without WebSockets, with a clock that stands still after 30 simulated minutes, so the
trades and candles asked for are fixed and compared with its ground truth (``/truth/trades``).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from simutil import START_MS, frozen_sim

from p9cli.exchanges import binance, okx
from p9cli.exchanges.venue import get_venue
from p9cli.live.clock import SYSTEM_CLOCK
from p9cli.live.rest_jobs import RestJobs
from p9cli.live.stats import FeedStats
from p9cli.rest.client import ClientOptions, ExchangeClient

MIN = 60_000


@pytest.fixture(scope="module")
def sim():
    with frozen_sim(30 * MIN, with_ws=False, with_feed=True, rate_limits=False) as handle:
        yield handle


def sim_now(sim) -> int:
    return int(httpx.get(sim.control_url + "/health", timeout=10).json()["now_ms"])


def true_ids(sim, exchange: str, symbol: str) -> list[int]:
    r = httpx.get(
        sim.control_url + "/truth/trades",
        params={"exchange": exchange, "symbol": symbol, "start": START_MS - MIN, "end": sim_now(sim) + 1},
        timeout=30,
    )
    r.raise_for_status()
    return [int(t["id"]) for t in r.json()["trades"]]


class RecordingClient:
    """The real REST client; remembers each request's target (for the assertions only)."""

    def __init__(self, client: ExchangeClient):
        self.client = client
        self.sent: list[str] = []

    async def send(self, req, counters=None):
        self.sent.append(req.target)
        return await self.client.send(req, counters)

    async def __aexit__(self, *exc):
        return await self.client.__aexit__(*exc)


class Link:
    def __init__(self, link_id: int):
        self.id = link_id


class Holes:
    """Open trade ids of one symbol, closed by what the replay hands on (as the feed's tape)."""

    def __init__(self, ids):
        self.missing = set(ids)
        self.handed_on: list[int] = []

    def span(self, symbol):
        return (min(self.missing), max(self.missing)) if self.missing else None

    def on_replay(self, symbol, trades):
        for t in trades:
            if t.id_last in self.missing:
                self.missing.discard(t.id_last)
                self.handed_on.append(t.id_last)


def jobs_for(exchange, client, holes=None, **kwargs) -> tuple[RestJobs, dict]:
    got: dict = {"snapshots": [], "klines": []}
    holes = holes or Holes(())
    jobs = RestJobs(
        get_venue(exchange),
        client,
        FeedStats(exchange),
        SYSTEM_CLOCK,
        on_snapshot=lambda link, symbol, snap: got["snapshots"].append(link.id),
        on_replay=holes.on_replay,
        still_wanted=lambda link, symbol: True,
        replay_span=holes.span,
        on_klines=lambda symbol, tf, bars: got["klines"].append((tf, int(bars.open_time[0]))),
        **kwargs,
    )
    return jobs, got


async def run_until(jobs: RestJobs, done, timeout: float = 20.0) -> None:
    task = asyncio.ensure_future(jobs.run())
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the REST jobs did not finish in time"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_replays_and_candle_completions_go_before_queued_book_snapshots(sim):
    ids = true_ids(sim, "binance", "btc")
    holes = Holes(ids[-60:-40])
    now = sim_now(sim)
    minute = now - now % MIN - 2 * MIN  # a closed candle
    async with ExchangeClient(binance, sim.rest_url("binance"), ClientOptions(give_up=False)) as real:
        client = RecordingClient(real)
        jobs, got = jobs_for(
            "binance", client, holes, concurrency=1, rate_per_s=100.0, server_now_ms=lambda: now
        )
        for i in range(4):
            jobs.want_snapshot(Link(i), "btc")
        jobs.want_replay("btc")
        jobs.want_kline("btc", "1m", minute)
        await run_until(jobs, lambda: len(got["snapshots"]) == 4)
    kinds = [t.split("?")[0] for t in client.sent]
    assert kinds == ["/api/v3/aggTrades", "/api/v3/klines"] + ["/api/v3/depth"] * 4, client.sent
    assert not holes.missing and holes.handed_on == ids[-60:-40]
    assert got["klines"] == [("1m", minute)]
    assert got["snapshots"] == [0, 1, 2, 3]


async def test_an_okx_hole_older_than_the_newest_500_is_paged_back_until_closed(sim):
    ids = true_ids(sim, "okx", "btc")
    wanted = ids[-2_000:-1_750]  # 250 trades, 1,750 below the newest
    holes = Holes(wanted)
    async with ExchangeClient(okx, sim.rest_url("okx"), ClientOptions(give_up=False)) as real:
        client = RecordingClient(real)
        jobs, _ = jobs_for("okx", client, holes, rate_per_s=100.0)
        jobs.want_replay("btc")
        await run_until(jobs, lambda: not jobs.replay_pending("btc"))
    assert not holes.missing and sorted(holes.handed_on) == wanted
    hi = wanted[-1]
    assert client.sent == ["/api/v5/market/trades?instId=BTC-USDT&limit=500"] + [
        f"/api/v5/market/history-trades?instId=BTC-USDT&type=1&after={after}&limit=100"
        for after in (hi + 1, hi - 99, hi - 199)
    ]


async def test_a_hole_the_exchange_cannot_serve_ends_the_replay(sim):
    """Ids below the first trade: nothing closes them; the replay stops (the feed's hold then
    makes the hole final) instead of asking forever."""
    first = true_ids(sim, "okx", "sol")[0]
    holes = Holes(range(first - 50, first - 10))
    async with ExchangeClient(okx, sim.rest_url("okx"), ClientOptions(give_up=False)) as real:
        client = RecordingClient(real)
        jobs, _ = jobs_for("okx", client, holes, rate_per_s=100.0)
        jobs.want_replay("sol")
        await run_until(jobs, lambda: not jobs.replay_pending("sol"))
    assert len(holes.missing) == 40 and len(client.sent) <= 3, client.sent


async def test_a_failed_job_waits_for_its_retry_without_holding_a_slot(sim):
    """Every Binance REST request fails (5xx) for a while: the snapshot waits to be tried again
    with nothing in flight, and once the exchange answers again it is taken."""
    control = sim.control_url
    httpx.post(control + "/faults/binance", json={"rest_5xx_every": 1}).raise_for_status()
    try:
        options = ClientOptions(give_up=False, max_attempts=1, backoff_base_s=0.01, backoff_cap_s=0.02)
        async with ExchangeClient(binance, sim.rest_url("binance"), options) as real:
            client = RecordingClient(real)
            jobs, got = jobs_for("binance", client, concurrency=1, rate_per_s=100.0)
            jobs.want_snapshot(Link(7), "btc")
            task = asyncio.ensure_future(jobs.run())
            try:
                deadline = time.monotonic() + 10
                while jobs.stats.snapshot_failures < 2:
                    assert time.monotonic() < deadline, client.sent
                    await asyncio.sleep(0.01)
                waits = 0
                for _ in range(200):  # between its tries the job holds no slot
                    await asyncio.sleep(0.005)
                    waits += jobs.in_flight == 0
                assert waits > 0
                httpx.post(control + "/faults/binance", json={"rest_5xx_every": 0}).raise_for_status()
                while got["snapshots"] != [7]:
                    assert time.monotonic() < deadline + 20, client.sent
                    await asyncio.sleep(0.02)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        httpx.post(control + "/faults/binance", json={"rest_5xx_every": 0})
    assert all(t.startswith("/api/v3/depth") for t in client.sent)
