"""Done-when of the live feeds: against `p9 sim` with OKX in its 2026 mode (checksum 0, no
in-band book snapshot), the simulator killed (SIGKILL) and restarted on the same ports
mid-run: all three exchanges' books and trades resume on their own, and what they hand on
after the restart is the new simulator's truth."""

from __future__ import annotations

import asyncio
import signal

import httpx
from feedutil import (
    Recorder,
    check_books_against_truth,
    check_trades_exactly_once,
    settings_for,
)

from p9cli.config import sim_endpoints
from p9cli.live import FeedOptions, LiveFeeds
from p9cli.sim.testing import free_port_base, sim_subprocess, wait_listening
from p9cli.universe import EXCHANGES

START_MS = 1_767_616_496_789
ARGS = ["--speed", "3", "--okx-no-books-snapshot"]


def _start(port_base: int, start_ms: int):
    proc = sim_subprocess(port_base, [*ARGS, "--start", str(start_ms)])
    for off in range(4):
        assert wait_listening("127.0.0.1", port_base + off, 20), proc.stderr.read() if proc.poll() else "slow"
    return proc


async def _until(feeds, pred, timeout: float) -> None:
    for _ in range(int(timeout * 10)):
        if pred(feeds.stats()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out: {feeds.stats()}")


def _all_live(stats) -> bool:
    return all(s["state"] == "live" for s in stats.values())


async def test_sim_killed_and_restarted_on_the_same_ports_all_feeds_resume():
    port_base = free_port_base()
    urls = {ex: (v["rest"], v["ws"]) for ex, v in sim_endpoints("127.0.0.1", port_base).items()}
    control = f"http://127.0.0.1:{port_base}"
    proc = _start(port_base, START_MS)
    rec = Recorder()
    opts = FeedOptions(backoff_base_s=0.1, backoff_cap_s=1.0, snapshot_rate_per_s=20)
    try:
        async with LiveFeeds(settings_for(urls), rec, symbols=("btc", "eth"), options=opts) as feeds:
            await _until(feeds, _all_live, 15)
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient() as c:
                now_ms = (await c.get(control + "/state")).json()["clock"]["now_ms"]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            await _until(feeds, lambda st: all(s["state"] != "live" for s in st.values()), 10)
            await asyncio.sleep(0.5)  # the feeds keep retrying against nothing
            restart_ms = now_ms + 5_000
            proc = _start(port_base, restart_ms)
            books_before = len(rec.books)
            await _until(
                feeds,
                lambda st: _all_live(st) and all(s["reconnects"] >= 1 for s in st.values()),
                20,
            )
            await asyncio.sleep(1.5)
            stats = feeds.stats()
        for ex in EXCHANGES:
            s = stats[ex]
            assert s["state"] == "live" and s["books_valid"] == 2 and s["reconnects"] >= 1, s
            assert s["book_resyncs"].get("disconnect", 0) >= 2, s
        after = rec.books[books_before:]
        assert {(b.exchange, b.symbol) for b in after} == {
            (ex, s) for ex in EXCHANGES for s in ("btc", "eth")
        }
        assert await check_books_against_truth(control, after, per_book=4) >= 6
        trades_after = [t for t in rec.trades if t.ts_ms >= restart_ms]
        for ex in EXCHANGES:
            await check_trades_exactly_once(control, trades_after, ex, "btc", missing=0)
    finally:
        proc.kill()
        proc.wait(10)
