"""The simulator's OKX V5 public REST against the recorded payloads and the model's truth."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from resthelp import FIXTURES as ALL_FIXTURES
from resthelp import shape as json_shape
from resthelp import truth_candles

FIXTURES = ALL_FIXTURES / "okx"
MIN = 60_000
HOUR = 3_600_000

MINIMAL = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")
MS = re.compile(r"^\d{13}$")


def _okx_str(value: str) -> str:
    if value in ("0", "1"):
        return "flag"
    if MS.match(value):
        return "ms"
    return "num" if MINIMAL.match(value) else "str"


def shape(value):
    return json_shape(value, _okx_str)


def get(handle, path: str, **params) -> httpx.Response:
    return httpx.get(handle.rest_url("okx") + path, params=params, timeout=10)


def now_ms(handle) -> int:
    return int(get(handle, "/api/v5/public/time").json()["data"][0]["ts"])


def truth(handle, symbol: str, interval: str, start: int, end: int) -> list[dict]:
    return truth_candles(handle, "okx", symbol, interval, start, end)


def test_history_candles_have_the_recorded_layout(sim):
    recorded = json.loads((FIXTURES / "spot_rest_history_candles_BTC-USDT_1m_2023-05-02.json").read_text())
    after = (now_ms(sim) // MIN - 5000) * MIN
    body = get(
        sim, "/api/v5/market/history-candles", instId="BTC-USDT", bar="1m", after=after, limit=2
    ).json()
    assert list(body) == list(recorded) == ["code", "msg", "data"]
    assert body["code"] == "0" and body["msg"] == ""
    assert shape(body["data"]) == shape(recorded["data"])
    assert [int(r[0]) for r in body["data"]] == [after - MIN, after - 2 * MIN]  # after is exclusive
    assert all(r[6] == r[7] for r in body["data"])  # spot: volCcy == volCcyQuote


def test_candles_newest_first_with_the_forming_bar_unconfirmed(sim):
    before = now_ms(sim)
    rows = get(sim, "/api/v5/market/candles", instId="ETH-USDT", bar="1m", limit=5).json()["data"]
    assert len(rows) == 5
    opens = [int(r[0]) for r in rows]
    assert opens == sorted(opens, reverse=True)
    assert opens[0] >= before // MIN * MIN
    assert rows[0][8] == "0" and {r[8] for r in rows[1:]} == {"1"}
    assert len(get(sim, "/api/v5/market/candles", instId="ETH-USDT").json()["data"]) == 100
    assert len(get(sim, "/api/v5/market/candles", instId="ETH-USDT", limit=1000).json()["data"]) == 300


def test_after_and_before_are_exclusive(sim):
    base = (now_ms(sim) // HOUR - 50) * HOUR
    rows = get(
        sim, "/api/v5/market/candles", instId="BTC-USDT", bar="1H", after=base, before=base - 5 * HOUR
    ).json()["data"]
    assert [int(r[0]) for r in rows] == [base - i * HOUR for i in range(1, 5)]
    only_before = get(
        sim, "/api/v5/market/candles", instId="BTC-USDT", bar="1H", before=base, limit=3
    ).json()["data"]
    assert int(only_before[-1][0]) > base and len(only_before) == 3  # newest 3 bars newer than `before`


def test_candles_serve_only_the_newest_1440_bars(sim_factory):
    sim = sim_factory(speed=1e-9)  # a clock that stands still: no minute boundary mid-test
    newest = now_ms(sim) // MIN * MIN
    oldest_served = newest - 1439 * MIN
    rows = get(
        sim, "/api/v5/market/candles", instId="BTC-USDT", bar="1m", after=oldest_served + MIN, limit=5
    ).json()["data"]
    assert [int(r[0]) for r in rows] == [oldest_served]
    assert (
        get(sim, "/api/v5/market/candles", instId="BTC-USDT", bar="1m", after=oldest_served, limit=5).json()[
            "data"
        ]
        == []
    )
    hist = get(
        sim, "/api/v5/market/history-candles", instId="BTC-USDT", bar="1m", after=oldest_served, limit=5
    ).json()["data"]
    assert [int(r[0]) for r in hist] == [oldest_served - i * MIN for i in range(1, 6)]


def test_paging_across_the_candles_boundary_yields_exactly_the_models_bars(sim_factory):
    handle = sim_factory(speed=1e-9)
    newest = now_ms(handle) // MIN * MIN
    want = 2000
    got: list[list[str]] = []
    after = None
    endpoint = "/api/v5/market/candles"
    while len(got) < want:
        params = {"instId": "SOL-USDT", "bar": "1m", "limit": 300}
        if after is not None:
            params["after"] = after
        page = get(handle, endpoint, **params).json()["data"]
        if not page:
            assert endpoint.endswith("/candles"), "history-candles ran dry"
            endpoint = "/api/v5/market/history-candles"
            continue
        got.extend(page)
        after = int(page[-1][0])
    got = got[:want]
    expected = truth(handle, "sol", "1m", newest - (want - 1) * MIN, newest)
    assert got == [c["row"] for c in expected][::-1]
    assert [int(r[0]) for r in got] == [newest - i * MIN for i in range(want)]


def test_hong_kong_and_utc_daily_bars(sim):
    utc = get(sim, "/api/v5/market/candles", instId="BTC-USDT", bar="1Dutc", limit=3).json()["data"]
    hk = get(sim, "/api/v5/market/candles", instId="BTC-USDT", bar="1D", limit=3).json()["data"]
    assert all(int(r[0]) % 86_400_000 == 0 for r in utc)
    assert all(int(r[0]) % 86_400_000 == 16 * HOUR for r in hk)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "50014"),
        ({"instId": "BTC-USD"}, 200, "51001"),
        ({"instId": "BTC-USDT-SWAP"}, 200, "51001"),
        ({"instId": "BTC-USDT", "bar": "1h"}, 400, "51000"),
        ({"instId": "BTC-USDT", "after": "soon"}, 400, "51000"),
        ({"instId": "BTC-USDT", "limit": "x"}, 400, "51000"),
    ],
)
def test_bad_parameters_answer_the_okx_error(sim, params, status, code):
    r = get(sim, "/api/v5/market/candles", **params)
    assert r.status_code == status
    body = r.json()
    assert list(body) == ["code", "msg", "data"] and body["code"] == code and body["data"] == []
    assert isinstance(body["msg"], str) and body["msg"]


def test_missing_inst_id_message(sim):
    assert get(sim, "/api/v5/market/history-candles").json()["msg"] == "Parameter instId can not be empty."


def test_unknown_path_is_a_404(sim):
    assert get(sim, "/api/v5/market/nothing").status_code == 404


def test_books_layout(sim):
    body = get(sim, "/api/v5/market/books", instId="BTC-USDT", sz=20).json()
    assert body["code"] == "0" and len(body["data"]) == 1
    book = body["data"][0]
    assert list(book) == ["asks", "bids", "ts", "seqId"]  # seqId: OKX changelog 2026-02-12
    assert isinstance(book["seqId"], int) and isinstance(book["ts"], str)
    assert len(book["asks"]) == len(book["bids"]) == 20
    for level in book["asks"] + book["bids"]:
        assert shape(level[:2]) == ["num", "num"] and level[2] == "0" and level[3].isdigit()
    bids = [float(lv[0]) for lv in book["bids"]]
    asks = [float(lv[0]) for lv in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    assert len(get(sim, "/api/v5/market/books", instId="BTC-USDT").json()["data"][0]["asks"]) == 1
    deep = get(sim, "/api/v5/market/books", instId="BTC-USDT", sz=1000, source=0).json()["data"][0]
    assert len(deep["asks"]) == len(deep["bids"]) == 400  # sz max 400
    bad = get(sim, "/api/v5/market/books", instId="BTC-USDT", source=7)
    assert bad.status_code == 400 and bad.json()["code"] == "51000"


def test_trades_newest_first(sim):
    rows = get(sim, "/api/v5/market/trades", instId="BTC-USDT", limit=10).json()["data"]
    assert rows and list(rows[0]) == ["instId", "side", "sz", "px", "source", "tradeId", "ts"]
    ids = [int(r["tradeId"]) for r in rows]
    assert ids == sorted(ids, reverse=True)
    assert {r["side"] for r in rows} <= {"buy", "sell"}


def test_instruments(sim):
    spot = get(sim, "/api/v5/public/instruments", instType="SPOT").json()
    assert spot["code"] == "0"
    assert [i["instId"] for i in spot["data"]] == ["BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT", "XRP-USDT"]
    btc = spot["data"][0]
    assert list(btc) == sorted(btc)  # OKX writes instrument keys alphabetically
    assert btc["tickSz"] == "0.1" and btc["lotSz"] == "0.00000001" and btc["minSz"] == "0.00001"
    assert btc["baseCcy"] == "BTC" and btc["quoteCcy"] == "USDT" and btc["state"] == "live"
    for inst_type in ("MARGIN", "SWAP", "FUTURES"):
        assert get(sim, "/api/v5/public/instruments", instType=inst_type).json() == {
            "code": "0",
            "msg": "",
            "data": [],
        }
    assert get(sim, "/api/v5/public/instruments", instType="OPTION").json()["code"] == "50014"
    assert (
        get(sim, "/api/v5/public/instruments", instType="OPTION", instFamily="BTC-USD").json()["data"] == []
    )
    assert get(sim, "/api/v5/public/instruments").json()["code"] == "50014"
    assert get(sim, "/api/v5/public/instruments", instType="SPOTS").json()["code"] == "51000"


def test_server_time(sim):
    body = get(sim, "/api/v5/public/time").json()
    assert body["code"] == "0" and list(body["data"][0]) == ["ts"] and body["data"][0]["ts"].isdigit()


def test_candle_window_equals_the_documented_rule_by_brute_force():
    import random

    from p9cli.sim.rest_okx import candle_window

    rng = random.Random(7)
    tf, offset = 86_400_000, 57_600_000  # Hong Kong days: open at 16:00 UTC
    oldest, newest = 300 * tf + offset, 340 * tf + offset
    opens = list(range(oldest, newest + tf, tf))
    for _ in range(3000):
        after = rng.choice([None, rng.randrange(oldest - 3 * tf, newest + 3 * tf)])
        before = rng.choice([None, rng.randrange(oldest - 3 * tf, newest + 3 * tf)])
        limit = rng.randrange(1, 50)
        chosen = [t for t in opens if (after is None or t < after) and (before is None or t > before)]
        expected = chosen[-limit:]
        got = candle_window(after, before, limit, tf, offset, oldest, newest)
        assert (list(range(got[0], got[1] + tf, tf)) if got else []) == expected, (after, before, limit)
