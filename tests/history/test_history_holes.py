"""Holes: bars an exchange does not have are asked for again, then reported and recorded in
the file metadata, never filled in, and not asked for on every later run.

The simulator has no holes in its market, so the exchange's answer is thinned on the way:
a real HTTP transport to the simulator that removes chosen rows from Binance klines bodies
(everything else - request building, paging, limits, parsing - runs for real)."""

from __future__ import annotations

from dataclasses import replace

import httpx
import orjson
from history_helpers import counters, quick_options, run_fetch, sim_settings, truth

from p9cli.history.planner import wanted_range
from p9cli.store import DataStore, StoredSeries

H = 3_600_000


class LackingExchange(httpx.AsyncBaseTransport):
    """Forwards to the simulator; drops kline rows whose open time is in ``lacks``."""

    def __init__(self, lacks: set[int]):
        self.inner = httpx.AsyncHTTPTransport()
        self.lacks = lacks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        if request.url.path == "/api/v3/klines" and response.status_code == 200:
            rows = [r for r in orjson.loads(body) if r[0] not in self.lacks]
            body = orjson.dumps(rows)
        headers = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


def options_lacking(lacks: set[int]):
    o = quick_options()
    o.transport_for = lambda exchange: LackingExchange(lacks) if exchange == "binance" else None
    return o


async def test_holes_are_re_requested_reported_recorded_and_not_asked_again(shared_sim, tmp_path):
    handle = shared_sim
    settings = sim_settings(
        handle, tmp_path, exchanges="binance", symbols="btc", timeframes="1h", candles=300
    )
    store = DataStore(settings.data_dir)

    def load() -> StoredSeries:
        return store.read_series("binance", "btc", "1h")

    def times() -> list[int]:
        return load().candles.open_time.tolist()

    def write(meta) -> None:
        store.write_series("binance", "btc", "1h", StoredSeries(load().candles, meta))

    now = truth(handle, "binance", "btc", "1h", 0, 0)["now_ms"]
    first, last = wanted_range(now, H, 300)
    inner = {first + 10 * H, first + 200 * H}
    lacks = inner | {last}  # the newest closed bar is late too
    stats, run, out = await run_fetch(settings, options=options_lacking(lacks))
    (s,) = stats
    assert s.ok and s.holes == 3 and s.new_candles == 297
    assert s.requests == 2  # the page, then one request covering the three missing bars
    assert "binance/btc/1h: 3 candles missing at the exchange after asking twice (3 holes" in out
    stored = load()
    assert stored.meta.holes == sorted(inner)  # the trailing one is not a hole yet: asked next run
    assert not (lacks & set(times()))
    assert len(times()) == 297 and times()[0] == first and times()[-1] == last - H

    # next run, the exchange still lacks them: only the late bar is asked for (twice)
    base = counters(handle, "binance")
    stats, run, out = await run_fetch(settings, options=options_lacking(lacks))
    (s,) = stats
    assert s.ok and s.requests == 2 and s.new_candles == 0 and s.new_holes == 1
    assert counters(handle, "binance")["rest.requests"] - base["rest.requests"] == 3  # + server time

    # the late bar arrives; the recorded holes are not asked for again
    stats, run, out = await run_fetch(settings)
    (s,) = stats
    assert s.ok and s.requests == 1 and s.new_candles == 1 and s.holes == 2 and s.new_holes == 0
    assert "missing at the exchange" not in out  # known holes: in the summary, no new line
    stored = load()
    assert times()[-1] == last and stored.meta.holes == sorted(inner) and len(times()) == 298

    # a day later the recorded holes are asked for again (once): still lacking -> kept, quietly
    day_old = replace(stored.meta, gaps_checked_ms=stored.meta.gaps_checked_ms - 25 * H)
    write(day_old)
    stats, run, out = await run_fetch(settings, options=options_lacking(inner))
    (s,) = stats
    # one window spans both holes; an answer without its end bars is followed up once (it may be
    # a short page), and the still-missing bars are asked for once more: 2 x 2 requests
    assert s.ok and s.requests == 4 and s.holes == 2 and s.new_holes == 0
    assert "missing at the exchange" not in out
    rechecked = load().meta
    assert rechecked.holes == sorted(inner) and rechecked.gaps_checked_ms > day_old.gaps_checked_ms

    # and when the exchange has backfilled them, the next daily check fills them in
    write(day_old)
    stats, run, out = await run_fetch(settings)
    (s,) = stats
    assert s.ok and s.holes == 0 and s.new_candles == 2
    assert load().meta.holes == [] and len(times()) == 300

    # --full asks for everything again: the exchange has them now, the holes are gone
    stats, run, out = await run_fetch(settings, full=True)
    (s,) = stats
    assert s.ok and s.holes == 0 and s.redownloaded == 300 and s.new_candles == 0
    assert load().meta.holes == [] and len(times()) == 300
