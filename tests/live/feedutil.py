"""Helpers for the feed-layer tests: run LiveFeeds against a simulator, record what it hands
on, and check it against the simulator's ground truth (/truth/book, /truth/trades, /state)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from p9cli.config import load_settings
from p9cli.exchanges.venue import Trade
from p9cli.live import BookState, FeedEvent, FeedOptions, LiveFeeds
from p9cli.universe import EXCHANGES

#: book levels compared with the truth (Bybit streams 50, Binance snapshots 1000, OKX 400)
TOP = 20


def settings_for(handle_or_urls, **flags):
    """Settings pointing at a simulator (a SimHandle, or {exchange: (rest_url, ws_url)})."""
    values = {}
    for ex in EXCHANGES:
        if isinstance(handle_or_urls, dict):
            rest, ws = handle_or_urls[ex]
        else:
            rest, ws = handle_or_urls.rest_url(ex), handle_or_urls.ws_url(ex)
        values[f"{ex}_rest_url"] = rest
        values[f"{ex}_ws_url"] = ws
    values.update(flags)
    return load_settings(values, env={}, config_path=None)


@dataclass
class BookSample:
    exchange: str
    symbol: str
    update_id: int
    seq: int | None
    bids: list
    asks: list
    after_resync: bool


@dataclass
class Recorder:
    """The handler: keeps every trade, every book state's top levels, every feed event."""

    trades: list = field(default_factory=list)
    books: list = field(default_factory=list)
    events: list = field(default_factory=list)
    others: list = field(default_factory=list)
    _resynced: set = field(default_factory=set)

    def __call__(self, event) -> None:
        kind = type(event)
        if kind is Trade:
            self.trades.append(event)
        elif kind is BookState:
            key = (event.exchange, event.symbol)
            bids, asks = event.top(TOP)
            after = key in self._resynced
            self._resynced.discard(key)
            self.books.append(
                BookSample(event.exchange, event.symbol, event.update_id, event.seq, bids, asks, after)
            )
        elif kind is FeedEvent:
            self.events.append(event)
            if event.kind == "book_synced" and event.symbol:
                self._resynced.add((event.exchange, event.symbol))
        else:
            self.others.append(event)

    def kinds(self, exchange: str, kind: str, cause: str | None = None) -> list[FeedEvent]:
        return [
            e
            for e in self.events
            if e.exchange == exchange and e.kind == kind and (cause is None or e.cause == cause)
        ]


async def run_feeds(
    handle,
    seconds: float,
    *,
    exchanges=EXCHANGES,
    symbols=("btc",),
    options: FeedOptions | None = None,
    until=None,
    during=None,
    recorder: Recorder | None = None,
):
    """Run the feeds for ``seconds`` (or until ``until(feeds, recorder)`` is true, checked every
    0.1 s, after at least ``seconds``... at most ``4 * seconds``). ``during(feeds)`` is awaited
    concurrently (to inject faults). Returns (recorder, stats)."""
    rec = recorder or Recorder()
    settings = settings_for(handle)
    async with LiveFeeds(settings, rec, exchanges=exchanges, symbols=symbols, options=options) as feeds:
        side = asyncio.ensure_future(during(feeds)) if during is not None else None
        await feeds.wait(seconds)
        if until is not None:
            for _ in range(int(seconds * 30)):
                if until(feeds, rec):
                    break
                await feeds.wait(0.1)
        if side is not None:
            await side
        stats = feeds.stats()
    return rec, stats


def all_live(feeds, _rec=None) -> bool:
    return all(s["state"] == "live" for s in feeds.stats().values())


async def post_faults(handle, exchange: str, faults: dict) -> None:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"{handle.control_url}/faults/{exchange}", json=faults)
        assert r.status_code == 200, r.text


async def post_limits(handle, exchange: str, limits: dict) -> None:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"{handle.control_url}/limits/{exchange}", json=limits)
        assert r.status_code == 200, r.text


def _levels(rows, n):
    return [(float(p), float(q)) for p, q in rows[:n]]


async def check_books_against_truth(control_url: str, samples: list[BookSample], per_book: int = 12) -> int:
    """Every resync's first state, plus up to ``per_book`` spread-out states per book, equal the
    simulator's true book at the id they report (Bybit: its cross sequence ``seq``, the
    simulator's engine id; others: ``update_id``). Returns how many were checked."""
    by_book = defaultdict(list)
    for s in samples:
        by_book[(s.exchange, s.symbol)].append(s)
    chosen = []
    for items in by_book.values():
        step = max(1, len(items) // per_book)
        picked = {id(x): x for x in items[::step]}
        picked.update({id(x): x for x in items if x.after_resync})
        picked[id(items[-1])] = items[-1]
        chosen.extend(picked.values())
    checked = 0
    async with httpx.AsyncClient(timeout=10) as c:
        for s in chosen:
            uid = s.seq if s.seq is not None else s.update_id
            r = await c.get(
                f"{control_url}/truth/book",
                params={"exchange": s.exchange, "symbol": s.symbol, "update_id": uid},
            )
            assert r.status_code == 200, (s.exchange, s.symbol, uid, r.text)
            truth = r.json()
            n = min(TOP, len(truth["bids"]))
            assert _levels(s.bids, n) == _levels(truth["bids"], n), (s.exchange, s.symbol, uid, "bids")
            n = min(TOP, len(truth["asks"]))
            assert _levels(s.asks, n) == _levels(truth["asks"], n), (s.exchange, s.symbol, uid, "asks")
            checked += 1
    return checked


async def check_trades_exactly_once(
    control_url: str, trades: list, exchange: str, symbol: str, missing: int
) -> int:
    """Trades handed on for (exchange, symbol): no id twice; each one is a true trade with the
    true time/price/size/side; every true trade the simulator SENT in the covered interval was
    handed on, except at most ``missing`` (the count the feed reported as not replayable).
    Returns how many true sent trades were checked."""
    mine = [t for t in trades if t.exchange == exchange and t.symbol == symbol]
    assert mine, f"no {exchange} {symbol} trades"
    ids = [t.trade_id for t in mine]
    assert len(ids) == len(set(ids)), "a trade was handed on twice"
    # from the first trade handed on to the last one's millisecond (excluded: a trade sent in the
    # same millisecond after the last one handed on is not yet known to be missing)
    start = min(t.ts_ms for t in mine)
    end = max(t.ts_ms for t in mine)
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.get(
            f"{control_url}/truth/trades",
            params={"exchange": exchange, "symbol": symbol, "start": start, "end": end},
        )
        assert r.status_code == 200, r.text
        truth = {str(t["id"]): t for t in r.json()["trades"]}
        for t in mine:
            if t.ts_ms >= end:
                continue
            true = truth.get(t.trade_id)
            assert true is not None, f"{exchange} trade {t.trade_id} is not a true trade"
            assert (t.ts_ms, t.price, t.size, t.side) == (
                int(true["time"]),
                float(true["price"]),
                float(true["qty"]),
                true["taker_side"],
            ), (t, true)
        got = set(ids)
        lost = 0
        for tid, true in truth.items():
            if tid in got:
                continue
            t0 = int(true["time"])
            r = await c.get(
                f"{control_url}/truth/trades",
                params={"exchange": exchange, "symbol": symbol, "start": t0, "end": t0 + 1},
            )
            if r.json()["sent"]:
                lost += 1
    assert lost <= missing, f"{exchange}: {lost} sent trades never handed on, {missing} reported missing"
    return len(truth)


class AsyncReplay:
    """A transport over an async generator of frames (the test may move a clock or sleep
    between frames); closed by the peer when the generator ends."""

    def __init__(self, frames):
        self.frames = frames
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def recv(self):
        from p9cli.live.transport import TransportClosed

        try:
            return await self.frames.__anext__()
        except StopAsyncIteration:
            raise TransportClosed("closed by the peer") from None

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        pass
