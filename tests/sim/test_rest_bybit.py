"""The simulator's Bybit V5 market REST against the recorded payloads and the model's truth."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from resthelp import FIXTURES as ALL_FIXTURES
from resthelp import shape as json_shape
from resthelp import truth_candles

FIXTURES = ALL_FIXTURES / "bybit"
MIN = 60_000

MINIMAL = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")  # no exponent, no trailing zeros
MS = re.compile(r"^\d{13}$")


def _bybit_str(value: str) -> str:
    if MS.match(value):
        return "ms"
    return "num" if MINIMAL.match(value) else "str"


def shape(value):
    return json_shape(value, _bybit_str)


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def get(handle, path: str, **params) -> httpx.Response:
    return httpx.get(handle.rest_url("bybit") + path, params=params, timeout=10)


def now_ms(handle) -> int:
    return get(handle, "/v5/market/time").json()["time"]


def truth(handle, symbol: str, interval: str, start: int, end: int) -> list[dict]:
    return truth_candles(handle, "bybit", symbol, interval, start, end)


def test_kline_envelope_and_rows_have_the_recorded_layout(sim):
    recorded = fixture("spot_rest_v5_kline_BTCUSDT_15_2023-05-01.json")
    end = (now_ms(sim) // (15 * MIN) - 3) * 15 * MIN
    r = get(
        sim,
        "/v5/market/kline",
        category="spot",
        symbol="BTCUSDT",
        interval="15",
        start=end - 15 * MIN,
        end=end,
    )
    assert r.status_code == 200
    body = r.json()
    assert list(body) == list(recorded) == ["retCode", "retMsg", "result", "retExtInfo", "time"]
    assert list(body["result"]) == list(recorded["result"]) == ["category", "symbol", "list"]
    assert body["retCode"] == 0 and body["retMsg"] == "OK" and body["retExtInfo"] == {}
    assert isinstance(body["time"], int)
    assert shape(body["result"]["list"]) == shape(recorded["result"]["list"])
    assert [int(r[0]) for r in body["result"]["list"]] == [end, end - 15 * MIN]  # newest first


def test_unaligned_start_includes_the_containing_bar(sim):
    # recorded: start 8 s into a minute, end 76 s later -> the bars opening at the minute and the next
    recorded = fixture("spot_rest_v5_kline_BTCUSDT_1_unaligned_start_2023-05-08.json")
    minute = (now_ms(sim) // MIN - 100) * MIN
    body = get(
        sim,
        "/v5/market/kline",
        category="spot",
        symbol="BTCUSDT",
        interval="1",
        start=minute + 8000,
        end=minute + 76_000,
    ).json()
    rows = body["result"]["list"]
    assert len(rows) == len(recorded["result"]["list"]) == 2
    assert [int(r[0]) for r in rows] == [minute + MIN, minute]
    assert shape(rows) == shape(recorded["result"]["list"])


@pytest.mark.parametrize("symbol", ["BTCUSDT", "XRPUSDT"])
def test_klines_equal_the_models_bars(sim, symbol):
    end = (now_ms(sim) // 3600_000 - 1) * 3600_000
    start = end - 199 * 3600_000
    rows = get(
        sim, "/v5/market/kline", category="spot", symbol=symbol, interval="60", start=start, end=end
    ).json()["result"]["list"]
    expected = [c["row"] for c in truth(sim, symbol, "60", start, end)]
    assert rows == expected[::-1]


def test_window_larger_than_limit_returns_its_newest_bars(sim):
    end = (now_ms(sim) // MIN - 10) * MIN
    rows = get(
        sim,
        "/v5/market/kline",
        category="spot",
        symbol="ETHUSDT",
        interval="1",
        start=end - 500 * MIN,
        end=end,
        limit=10,
    ).json()["result"]["list"]
    assert [int(r[0]) for r in rows] == [end - i * MIN for i in range(10)]


def test_default_limit_and_the_forming_bar(sim):
    before = now_ms(sim)
    rows = get(sim, "/v5/market/kline", category="spot", symbol="SOLUSDT", interval="5").json()["result"][
        "list"
    ]
    assert len(rows) == 200
    assert int(rows[0][0]) == before // (5 * MIN) * 5 * MIN or int(rows[0][0]) > before - 5 * MIN
    assert (
        len(
            get(sim, "/v5/market/kline", category="spot", symbol="SOLUSDT", interval="5", limit=5000).json()[
                "result"
            ]["list"]
        )
        == 1000
    )


def test_daily_bars_are_utc_aligned(sim):
    rows = get(sim, "/v5/market/kline", category="spot", symbol="BNBUSDT", interval="D", limit=3).json()[
        "result"
    ]["list"]
    assert all(int(r[0]) % 86_400_000 == 0 for r in rows)


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        ({"symbol": "BTCUSDT", "interval": "1"}, "Not supported symbols"),  # category defaults to linear
        ({"category": "spot", "symbol": "BTCUSD", "interval": "1"}, "Not supported symbols"),
        ({"category": "spot", "symbol": "btcusdt", "interval": "1"}, "Not supported symbols"),
        ({"category": "spot", "symbol": "BTCUSDT", "interval": "2"}, "Invalid period!"),
        ({"category": "swap", "symbol": "BTCUSDT", "interval": "1"}, "Illegal category"),
        ({"category": "spot", "symbol": "BTCUSDT", "interval": "1", "start": "x"}, None),
    ],
)
def test_bad_parameters_answer_retcode_10001_with_http_200(sim, params, msg):
    r = get(sim, "/v5/market/kline", **params)
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["retCode", "retMsg", "result", "retExtInfo", "time"]
    assert body["retCode"] == 10001 and body["result"] == {}
    if msg:
        assert body["retMsg"] == msg


def test_unknown_path_is_a_404(sim):
    assert get(sim, "/v5/market/nothing").status_code == 404


def test_orderbook_matches_the_recorded_layout(sim):
    recorded = fixture("testnet_spot_rest_v5_orderbook_2023-12-23.json")
    body = get(sim, "/v5/market/orderbook", category="spot", symbol="BTCUSDT", limit=50).json()
    assert list(body) == list(recorded)
    result = body["result"]
    # the 2023 capture has s, a, b, ts, u; current docs append seq and cts
    assert list(result)[: len(recorded["result"])] == list(recorded["result"])
    assert list(result)[len(recorded["result"]) :] == ["seq", "cts"]
    assert shape(result["a"][0]) == shape(recorded["result"]["a"][0]) == ["num", "num"]
    assert all(shape(lv) == ["num", "num"] for lv in result["a"] + result["b"])
    assert len(result["a"]) == len(result["b"]) == 50
    bids = [float(p) for p, _ in result["b"]]
    asks = [float(p) for p, _ in result["a"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    assert isinstance(result["u"], int) and isinstance(result["seq"], int) and isinstance(result["ts"], int)
    default = get(sim, "/v5/market/orderbook", category="spot", symbol="BTCUSDT").json()["result"]
    assert len(default["a"]) == len(default["b"]) == 1


def test_recent_trades_match_the_recorded_layout_newest_first(sim):
    recorded = fixture("testnet_spot_rest_v5_recent_trade_2023-12-23.json")
    body = get(sim, "/v5/market/recent-trade", category="spot", symbol="BTCUSDT", limit=5).json()
    assert list(body["result"]) == list(recorded["result"]) == ["category", "list"]
    rows = body["result"]["list"]
    assert 1 <= len(rows) <= 5
    rec = recorded["result"]["list"][0]
    assert list(rows[0])[: len(rec)] == list(rec)
    assert {k: shape(rows[0][k]) for k in rec} == {k: shape(v) for k, v in rec.items()}
    times = [int(t["time"]) for t in rows]
    assert times == sorted(times, reverse=True)
    assert {t["side"] for t in rows} <= {"Buy", "Sell"}
    assert (
        len(get(sim, "/v5/market/recent-trade", category="spot", symbol="BTCUSDT").json()["result"]["list"])
        <= 60
    )


def test_instruments_info_spot_and_empty_categories(sim):
    spot = get(sim, "/v5/market/instruments-info", category="spot").json()
    assert spot["retCode"] == 0
    assert [i["symbol"] for i in spot["result"]["list"]] == [
        "BTCUSDT",
        "ETHUSDT",
        "SOLUSDT",
        "BNBUSDT",
        "XRPUSDT",
    ]
    btc = spot["result"]["list"][0]
    assert btc["priceFilter"] == {"tickSize": "0.01"} and btc["lotSizeFilter"]["basePrecision"] == "0.000001"
    one = get(sim, "/v5/market/instruments-info", category="spot", symbol="XRPUSDT").json()["result"]["list"]
    assert [i["symbol"] for i in one] == ["XRPUSDT"]
    for category in ("linear", "inverse", "option"):
        body = get(sim, "/v5/market/instruments-info", category=category).json()
        assert (
            body["retCode"] == 0 and body["result"]["category"] == category and body["result"]["list"] == []
        )
    assert get(sim, "/v5/market/instruments-info").json()["retCode"] == 10001


def test_server_time(sim):
    body = get(sim, "/v5/market/time").json()
    result = body["result"]
    assert list(result) == ["timeSecond", "timeNano"]
    assert int(result["timeSecond"]) == int(result["timeNano"]) // 1_000_000_000
    assert abs(int(result["timeSecond"]) * 1000 - body["time"]) < 1000


def test_rest_orderbook_u_and_seq_agree_with_the_1000_level_stream(sim_factory):
    import asyncio

    import aiohttp

    handle = sim_factory(speed=1e-9)  # the book stands still: stream and REST see one state

    async def snapshot_frame() -> dict:
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(handle.ws_url("bybit") + "/v5/public/spot") as ws,
        ):
            await ws.send_str(json.dumps({"op": "subscribe", "args": ["orderbook.1000.BTCUSDT"]}))
            while True:
                msg = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                if msg.get("topic") == "orderbook.1000.BTCUSDT" and msg.get("type") == "snapshot":
                    rest = get(
                        handle, "/v5/market/orderbook", category="spot", symbol="BTCUSDT", limit=1000
                    ).json()
                    return msg, rest["result"]

    frame, rest = asyncio.run(snapshot_frame())
    assert rest["u"] == frame["data"]["u"] and rest["seq"] == frame["data"]["seq"]
    assert rest["b"] == frame["data"]["b"] and rest["a"] == frame["data"]["a"]


def test_kline_window_equals_the_documented_rule_by_brute_force():
    import random

    from p9cli.sim.rest_bybit import kline_window

    rng = random.Random(6)
    tf = 900_000
    oldest, newest = 2_000 * tf, 2_050 * tf
    opens = list(range(oldest, newest + tf, tf))
    for _ in range(3000):
        start = rng.choice([None, rng.randrange(oldest - 5 * tf, newest + 5 * tf)])
        end = rng.choice([None, rng.randrange(oldest - 5 * tf, newest + 5 * tf)])
        limit = rng.randrange(1, 70)
        # bars overlapping [start, end] (the bar containing start counts); start only: the
        # oldest `limit` of them (anchored at start), otherwise the newest `limit`
        chosen = [t for t in opens if (start is None or t + tf > start) and (end is None or t <= end)]
        expected = chosen[:limit] if start is not None and end is None else chosen[-limit:]
        got = kline_window(start, end, limit, tf, 0, oldest, newest)
        assert (list(range(got[0], got[1] + tf, tf)) if got else []) == expected, (start, end, limit)
