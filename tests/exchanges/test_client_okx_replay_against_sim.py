"""The OKX trade replay (``VENUE.trade_replay_request`` + ``parse_trade_replay``) against the
simulator: real HTTP on loopback, requests built by the adapter, answers parsed by it and
compared with the simulator's ``/truth/trades``.

The replay is driven the way the live layer drives it (``p9cli.live.rest_jobs``): ask for
page 0, keep the trades inside the hole's span, shrink the span, ask for the next page while
the span is open and the answer moved it.
"""

from __future__ import annotations

import httpx
import pytest

from p9cli.exchanges import okx
from p9cli.exchanges.base import BadRequest, RateLimited, RestRequest, ServerError
from p9cli.exchanges.venue import Trade, get_venue
from p9cli.sim.testing import SimThread

START_MS = 1_767_616_496_789  # 2026-01-05 12:34:56.789 UTC
FROZEN = 1e-9
MIN = 60_000
VENUE = get_venue("okx")


def send(client: httpx.Client, base: str, req: RestRequest) -> httpx.Response:
    return client.request(req.method, base + req.path, params=list(req.params))


def call(client: httpx.Client, base: str, req: RestRequest) -> bytes:
    resp = send(client, base, req)
    okx.check_response(resp.status_code, resp.headers, resp.content)
    return resp.content


@pytest.fixture(scope="module")
def sim():
    """REST only, no rate limits, 30 simulated minutes of trading, then a clock that stands still."""
    thread = SimThread(
        seed=9,
        start_ms=START_MS,
        speed=FROZEN,
        warm_up=False,
        with_ws=False,
        with_feed=False,
        rate_limits=False,
    )
    handle = thread.start()
    try:
        httpx.post(handle.control_url + "/clock/advance", json={"ms": 30 * MIN}).raise_for_status()
        yield handle
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=30) as c:
        yield c


def newest_id(client, sim, symbol: str) -> int:
    trades = VENUE.parse_trade_replay(
        call(client, sim.rest_url("okx"), VENUE.trade_replay_request(symbol, 0, 0, 0)), symbol
    )
    return trades[-1].id_last


def truth_by_id(sim, symbol: str, lo_id: int, hi_id: int) -> list[tuple]:
    """True trades ``lo_id..hi_id`` as (id, ts, price, size, side), from ``/truth/trades``."""
    now = int(httpx.get(sim.control_url + "/health", timeout=10).json()["now_ms"])
    r = httpx.get(
        sim.control_url + "/truth/trades",
        params={"exchange": "okx", "symbol": symbol, "start": START_MS - MIN, "end": now + 1},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return [
        (int(t["id"]), t["time"], float(t["price"]), float(t["qty"]), t["taker_side"])
        for t in r.json()["trades"]
        if lo_id <= int(t["id"]) <= hi_id
    ]


def replay(
    client, sim, symbol: str, from_id: int, to_id: int, max_pages: int = 100
) -> tuple[list[Trade], list[str]]:
    """Close the hole ``from_id..to_id`` page by page; the trades got and the requests sent."""
    got: dict[int, Trade] = {}
    sent: list[str] = []
    span: tuple[int, int] | None = (from_id, to_id)
    page = 0
    while span is not None and page < max_pages:
        req = VENUE.trade_replay_request(symbol, span[0], span[1], page)
        sent.append(req.target)
        trades = VENUE.parse_trade_replay(call(client, sim.rest_url("okx"), req), symbol)
        for t in trades:
            if from_id <= t.id_last <= to_id:
                got[t.id_last] = t
        missing = [i for i in range(from_id, to_id + 1) if i not in got]
        after = (missing[0], missing[-1]) if missing else None
        if after is None or not trades or (after == span and page > 0):
            span = after
            break
        span, page = after, page + 1
    assert span is None, f"hole left open: {span}"
    return [got[i] for i in sorted(got)], sent


def as_tuple(t: Trade) -> tuple:
    return (t.id_last, t.ts_ms, t.price, t.size, t.side)


def test_a_recent_hole_is_closed_by_market_trades_alone(sim, client):
    top = newest_id(client, sim, "btc")
    trades, sent = replay(client, sim, "btc", top - 300, top - 250)
    assert sent == ["/api/v5/market/trades?instId=BTC-USDT&limit=500"]
    assert [as_tuple(t) for t in trades] == truth_by_id(sim, "btc", top - 300, top - 250)
    assert all(t.id_first == t.id_last and t.fills == 1 and t.symbol == "btc" for t in trades)


def test_a_hole_older_than_the_newest_500_is_reached_through_history_trades(sim, client):
    top = newest_id(client, sim, "btc")
    lo, hi = top - 2_000, top - 1_751  # 250 trades, 1,751 below the newest
    trades, sent = replay(client, sim, "btc", lo, hi)
    assert [as_tuple(t) for t in trades] == truth_by_id(sim, "btc", lo, hi)
    assert sent[0] == "/api/v5/market/trades?instId=BTC-USDT&limit=500"
    # then 100 below the top of what is still missing, each page exactly the next 100 down
    assert sent[1:] == [
        f"/api/v5/market/history-trades?instId=BTC-USDT&type=1&after={after}&limit=100"
        for after in (hi + 1, hi - 99, hi - 199)
    ]


def test_a_hole_at_the_start_of_the_tape_ends_at_the_oldest_trade(sim, client):
    """Ids below the first trade do not exist: a page below the top of the span ends at the
    first trade, and asking below it answers an empty page (the rest of the hole stays open for
    the caller to declare final)."""
    base = sim.rest_url("okx")
    first = truth_by_id(sim, "sol", 0, 10**15)[0][0]
    got = VENUE.parse_trade_replay(
        call(client, base, VENUE.trade_replay_request("sol", first - 50, first + 4, 1)), "sol"
    )
    assert [as_tuple(t) for t in got] == truth_by_id(sim, "sol", first, first + 4)
    assert VENUE.parse_trade_replay(call(client, base, okx.history_trades_request("sol", first)), "sol") == []


def test_errors_of_history_trades_are_classified(client):
    thread = SimThread(
        seed=9,
        start_ms=START_MS,
        speed=FROZEN,
        warm_up=False,
        with_ws=False,
        with_feed=False,
        faults={"okx": {"rest_5xx_every": 3}},
    )
    handle = thread.start()
    try:
        base = handle.rest_url("okx")
        req = VENUE.trade_replay_request("btc", 1, 2, 1)
        outcomes = []
        for _ in range(33):  # every 3rd is a 5xx; the other 22 meet the 20 / 2 s window
            try:
                VENUE.parse_trade_replay(call(client, base, req), "btc")
                outcomes.append("ok")
            except RateLimited as exc:
                assert exc.code == "50011" and exc.status == 429
                outcomes.append("limited")
            except ServerError as exc:
                assert exc.code == "50001" and exc.status in (502, 503, 504)
                outcomes.append("5xx")
        assert [o for i, o in enumerate(outcomes, 1) if i % 3 == 0] == ["5xx"] * 11
        assert [o for i, o in enumerate(outcomes, 1) if i % 3] == ["ok"] * 20 + ["limited"] * 2
        httpx.post(handle.control_url + "/clock/advance", json={"ms": 2_000}).raise_for_status()
        bad = RestRequest(
            okx.HISTORY_TRADES_PATH, (("instId", "BTC-USDT"), ("type", "9")), okx.HISTORY_TRADES_BUCKET
        )
        with pytest.raises(BadRequest) as info:  # the 34th request: no injected fault
            call(client, base, bad)
        assert info.value.code == "51000" and not info.value.retryable
    finally:
        thread.stop()
