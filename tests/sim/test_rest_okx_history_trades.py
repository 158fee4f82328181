"""The simulator's OKX ``GET /api/v5/market/history-trades``: paging by tradeId (``type=1``,
the default) and by timestamp (``type=2``), limits, OKX's errors, its own 20 / 2 s window,
injected faults, and agreement with ``/truth/trades``.

OKX docs (Get trades history): ``type`` 1 tradeId / 2 timestamp, default 1; ``after`` records
earlier than the tradeId or ts; ``before`` records newer than the tradeId ("Do not support
timestamp for pagination"; "the latest data will be returned when using before
individually"); ``limit`` maximum and default 100; 20 requests per 2 s per IP.
"""

from __future__ import annotations

import json

import httpx
import pytest
from resthelp import FIXTURES
from simutil import FROZEN_SPEED, start_sim

PATH = "/api/v5/market/history-trades"
MIN = 60_000
#: simulated minutes of trading before the tests look (BTC-USDT: ~350 trades a minute)
RUN_MS = 30 * MIN
ROW_KEYS = ["instId", "side", "sz", "px", "source", "tradeId", "ts"]


@pytest.fixture(scope="module")
def tape():
    """A REST-only simulator without rate limits whose clock stands still after 30 minutes."""
    thread, handle = start_sim(speed=FROZEN_SPEED, with_ws=False, with_feed=False, rate_limits=False)
    try:
        httpx.post(handle.control_url + "/clock/advance", json={"ms": RUN_MS}).raise_for_status()
        yield handle
    finally:
        thread.stop()


def get(handle, path: str = PATH, **params) -> httpx.Response:
    return httpx.get(handle.rest_url("okx") + path, params=params, timeout=30)


def rows(handle, **params) -> list[dict]:
    r = get(handle, instId=params.pop("instId", "BTC-USDT"), **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["code", "msg", "data"] and body["code"] == "0" and body["msg"] == ""
    return body["data"]


def ids(data: list[dict]) -> list[int]:
    return [int(r["tradeId"]) for r in data]


def now_ms(handle) -> int:
    return int(get(handle, "/api/v5/public/time").json()["data"][0]["ts"])


def truth(handle, start: int, end: int, symbol: str = "btc") -> list[dict]:
    r = httpx.get(
        handle.control_url + "/truth/trades",
        params={"exchange": "okx", "symbol": symbol, "start": start, "end": end},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["trades"]


def as_truth(row: dict) -> dict:
    """A REST row in ``/truth/trades``' form."""
    return {
        "id": row["tradeId"],
        "time": int(row["ts"]),
        "price": row["px"],
        "qty": row["sz"],
        "taker_side": row["side"],
    }


def newest_id(handle) -> int:
    return int(rows(handle, limit=1)[0]["tradeId"])


# ------------------------------------------------------------------------------------ shape


def test_defaults_type_1_newest_100_like_market_trades(tape):
    data = rows(tape)
    assert len(data) == 100  # default limit 100
    assert all(list(r) == ROW_KEYS for r in data)
    got = ids(data)
    assert got == list(range(got[0], got[0] - 100, -1))  # newest first, contiguous
    assert data == get(tape, "/api/v5/market/trades", instId="BTC-USDT", limit=100).json()["data"]
    assert rows(tape, type=1) == data  # type 1 is the default
    assert {r["side"] for r in data} <= {"buy", "sell"} and {r["source"] for r in data} == {"0"}


def test_values_have_the_recorded_okx_trade_formats(tape):
    """No recorded REST trades body exists (fixtures/exchanges/SOURCES.md); the field values
    follow the recorded 2025 ``trades`` frame: every value a string, ms timestamps, plain
    decimals, lower-case sides."""
    line = (FIXTURES / "okx" / "spot_ws_trades_BTC-USDT_2025-02-24.jsonl").read_text().splitlines()[0]
    recorded = json.loads(line)["data"][0]
    (row,) = rows(tape, limit=1)
    for key in ("instId", "tradeId", "px", "sz", "side", "ts"):
        assert isinstance(row[key], str) and isinstance(recorded[key], str)
    assert row["instId"] == recorded["instId"] == "BTC-USDT"
    assert len(row["ts"]) == len(recorded["ts"]) == 13 and row["tradeId"].isdigit()
    for key in ("px", "sz"):
        assert float(row[key]) > 0 and "e" not in row[key].lower() and not row[key].endswith(".")


# ----------------------------------------------------------------------------- by trade id


def test_after_pages_back_by_id_without_gap_or_overlap(tape):
    top = newest_id(tape)
    seen: list[int] = []
    after = top + 1
    for _ in range(30):  # 3,000 trades, well past market/trades' newest 500
        page = ids(rows(tape, after=after))
        assert page == list(range(after - 1, after - 101, -1))  # after is exclusive
        seen += page
        after = page[-1]
    assert seen == list(range(top, top - 3000, -1))


def test_after_limit_and_exclusive_bounds(tape):
    top = newest_id(tape)
    x = top - 1234
    assert ids(rows(tape, after=x, limit=3)) == [x - 1, x - 2, x - 3]
    assert ids(rows(tape, before=x, after=x + 4)) == [x + 3, x + 2, x + 1]  # strictly between
    assert rows(tape, before=x, after=x + 1) == []
    assert rows(tape, before=x + 5, after=x) == []
    # both: the newest `limit` of the window
    assert ids(rows(tape, before=x, after=x + 500, limit=2)) == [x + 499, x + 498]
    # an id above the newest trade bounds nothing
    assert ids(rows(tape, after=top + 10**6, limit=2)) == [top, top - 1]


def test_before_alone_returns_the_latest_trades_newer_than_it(tape):
    top = newest_id(tape)
    assert ids(rows(tape, before=top - 5)) == [top, top - 1, top - 2, top - 3, top - 4]
    assert ids(rows(tape, before=top - 1000, limit=3)) == [top, top - 1, top - 2]  # latest, not the next up
    assert rows(tape, before=top) == []


def test_after_below_the_oldest_trade_answers_an_empty_list(tape):
    oldest = ids(rows(tape, type=2, after=tape.simulator.model.live_start_ms + 1000))[-1]
    assert ids(rows(tape, after=oldest + 3)) == [oldest + 2, oldest + 1, oldest]
    assert rows(tape, after=oldest) == []
    assert rows(tape, after=1) == []
    assert rows(tape, after=0) == []


def test_only_trades_that_happened(sim_factory):
    handle = sim_factory(speed=FROZEN_SPEED, with_ws=False, with_feed=False, rate_limits=False)
    httpx.post(handle.control_url + "/clock/advance", json={"ms": 5 * MIN}).raise_for_status()
    now = now_ms(handle)
    served = rows(handle, limit=5)
    future = truth(handle, now + 1, now + 10 * MIN)
    assert future and int(served[0]["ts"]) <= now < future[0]["time"]
    assert int(served[0]["tradeId"]) + 1 == int(future[0]["id"])  # the next trade is the first unserved
    assert rows(handle, after=int(future[5]["id"])) == rows(handle)  # ids from the future bound nothing
    assert rows(handle, type=2, after=now + 10 * MIN, limit=5) == served
    httpx.post(handle.control_url + "/clock/advance", json={"ms": MIN}).raise_for_status()
    x = int(served[0]["tradeId"])
    assert ids(rows(handle, before=x, after=x + 4)) == [x + 3, x + 2, x + 1]  # they happened now
    assert len(rows(handle, before=x)) == 100


# ------------------------------------------------------------------------------ by timestamp


def test_type_2_pages_back_by_time(tape):
    top = rows(tape, limit=100)
    t = int(top[50]["ts"])
    page = rows(tape, type=2, after=t, limit=100)
    assert page and all(int(r["ts"]) < t for r in page)  # earlier than ts, exclusive
    assert ids(page) == list(range(ids(page)[0], ids(page)[0] - len(page), -1))
    # the newest trade before t is the first one of page: every trade from it up to t is at >= t
    first = int(page[0]["tradeId"])
    assert all(int(r["ts"]) >= t for r in top if int(r["tradeId"]) > first)
    assert rows(tape, type=2) == rows(tape)  # no bound: the newest
    start = tape.simulator.model.live_start_ms
    assert rows(tape, type=2, after=start) == []
    assert rows(tape, type=2, after=start - MIN) == []


# ------------------------------------------------------------------------------- truth


def test_paging_a_window_by_id_yields_exactly_the_truth(tape):
    now = now_ms(tape)
    start, end = now - 12 * MIN, now - 9 * MIN
    want = truth(tape, start, end)
    assert len(want) > 300
    got: list[dict] = []
    page = rows(tape, type=2, after=end)  # the first page found by time, then by id
    while page:
        got += [r for r in page if int(r["ts"]) >= start]
        if int(page[-1]["ts"]) < start:
            break
        page = rows(tape, after=page[-1]["tradeId"])
    assert [as_truth(r) for r in reversed(got)] == want


def test_other_symbols_agree_with_the_truth(tape):
    now = now_ms(tape)
    for symbol, code in (("eth", "ETH-USDT"), ("bnb", "BNB-USDT")):
        page = rows(tape, instId=code, type=2, after=now - 20 * MIN)
        assert len(page) == 100
        lo, hi = int(page[-1]["ts"]), int(page[0]["ts"])
        want = [t for t in truth(tape, lo, hi + 1, symbol)]
        # trades of the oldest millisecond may continue below the page
        want = want[len(want) - len(page) :]
        assert [as_truth(r) for r in reversed(page)] == want
        assert all(r["instId"] == code for r in page)


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("params", "status", "code", "msg"),
    [
        ({}, 400, "50014", "Parameter instId can not be empty."),
        ({"instId": "BTC-USD"}, 200, "51001", "Instrument ID or Spread ID doesn't exist."),
        ({"instId": "BTC-USDT", "type": "3"}, 400, "51000", "Parameter type error"),
        ({"instId": "BTC-USDT", "type": "x"}, 400, "51000", "Parameter type error"),
        ({"instId": "BTC-USDT", "after": "soon"}, 400, "51000", "Parameter after error"),
        ({"instId": "BTC-USDT", "after": "-5"}, 400, "51000", "Parameter after error"),
        ({"instId": "BTC-USDT", "before": "1.5"}, 400, "51000", "Parameter before error"),
        ({"instId": "BTC-USDT", "limit": "0"}, 400, "51000", "Parameter limit error"),
        ({"instId": "BTC-USDT", "limit": "x"}, 400, "51000", "Parameter limit error"),
        (
            {"instId": "BTC-USDT", "type": "2", "before": "1767616496789"},
            400,
            "51000",
            "Parameter before error",
        ),
    ],
)
def test_bad_parameters_answer_the_okx_error(tape, params, status, code, msg):
    r = get(tape, **params)
    assert r.status_code == status
    assert r.json() == {"code": code, "msg": msg, "data": []}


def test_limit_is_capped_at_100(tape):
    assert len(rows(tape, limit=1)) == 1
    assert len(rows(tape, limit=100)) == 100
    assert len(rows(tape, limit=500)) == 100


# ------------------------------------------------------------------- rate limit and faults


def test_own_window_of_20_per_2s(sim_factory):
    handle = sim_factory(speed=FROZEN_SPEED, with_ws=False, with_feed=False)
    base = handle.rest_url("okx")
    params = {"instId": "BTC-USDT", "limit": 1}
    with httpx.Client(timeout=10) as c:
        codes = [c.get(base + PATH, params=params).status_code for _ in range(21)]
        assert codes == [200] * 20 + [429]
        over = c.get(base + PATH, params=params)
        assert over.status_code == 429 and over.json() == {"msg": "Too Many Requests", "code": "50011"}
        # market/trades has its own window (100 / 2 s)
        assert c.get(base + "/api/v5/market/trades", params=params).status_code == 200
        httpx.post(handle.control_url + "/clock/advance", json={"ms": 2_000}).raise_for_status()
        assert c.get(base + PATH, params=params).status_code == 200
    assert handle.sim.exchanges["okx"].counters["limit.violations"] == 2


def test_injected_faults_hit_history_trades_like_any_endpoint(sim_factory):
    handle = sim_factory(
        speed=FROZEN_SPEED,
        with_ws=False,
        with_feed=False,
        rate_limits=False,
        faults={"okx": {"rest_5xx_every": 3, "rest_429_every": 4, "rest_drop_every": 5}},
    )
    url = handle.rest_url("okx") + PATH
    with httpx.Client(timeout=10) as c:
        answers = []
        for _ in range(6):
            try:
                r = c.get(url, params={"instId": "BTC-USDT", "limit": 1})
                answers.append((r.status_code, r.json()["code"]))
            except httpx.HTTPError:
                answers.append("dropped")
    assert answers == [(200, "0"), (200, "0"), (503, "50001"), (429, "50011"), "dropped", (502, "50001")]
    counters = handle.sim.exchanges["okx"].counters
    assert (counters["fault.rest_5xx_every"], counters["fault.rest_429_every"]) == (2, 1)
    assert counters["fault.rest_drop_every"] == 1


def test_timeout_fault_hangs_history_trades(sim_factory):
    handle = sim_factory(
        speed=FROZEN_SPEED,
        with_ws=False,
        with_feed=False,
        faults={"okx": {"rest_timeout_every": 2, "rest_timeout_seconds": 0.5}},
    )
    url = handle.rest_url("okx") + PATH
    with httpx.Client(timeout=5) as c:
        assert c.get(url, params={"instId": "BTC-USDT"}).status_code == 200
        with pytest.raises(httpx.HTTPError):
            c.get(url, params={"instId": "BTC-USDT"})
    assert handle.sim.exchanges["okx"].counters["fault.rest_timeout_every"] == 1
