"""The simulator's instrument tables and exchange-style number formatting.

Formatting is checked against real strings recorded from the exchanges
(``shared/fixtures/exchanges``): every price, quantity and quote amount of the recorded
payloads must come back byte for byte from its integer representation.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from p9cli.sim.instruments import DAY_MS, HOUR_MS, INSTRUMENTS, INTERVALS, Instrument, instrument_by_code
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAME_MS

FIXTURES = Path(os.environ["P9_FIXTURES"])  # set by tests/conftest.py


def make(exchange: str, tick: str, unit: str) -> Instrument:
    """An instrument with the given tick and quantity quantum (to hold historical strings)."""
    return Instrument(
        exchange=exchange,
        symbol="btc",
        code="BTCUSDT",
        base="BTC",
        quote="USDT",
        tick=Decimal(tick),
        lot=Decimal(unit),
        qty_unit=Decimal(unit),
        min_qty=Decimal(unit),
        min_notional=Decimal("5"),
        ref_price=Decimal("30000"),
    )


def units(text: str, quantum: Decimal) -> int:
    q = Decimal(text) / quantum
    assert q == q.to_integral_value(), (text, quantum)
    return int(q)


# ------------------------------------------------------------------------------ fixtures


def binance_kline_rows() -> list[list]:
    rows = []
    for path in sorted((FIXTURES / "binance" / "rest").glob("spot_klines_BTCUSDT_*.json")):
        rows.extend(json.loads(path.read_text()))
    assert len(rows) > 600
    return rows


def test_binance_kline_strings_round_trip():
    # BTCUSDT klines of 2019-2023: prices with tick 0.01, quantities in 0.000001 (all recorded
    # quantities have at most 6 significant decimals; tick x unit = the 8 decimals of quote volume)
    inst = make("binance", "0.01", "0.000001")
    checked = 0
    for row in binance_kline_rows():
        for price in row[1:5]:
            assert inst.price_str(units(price, inst.tick)) == price
        for qty in (row[5], row[9]):
            assert inst.qty_str(units(qty, inst.qty_unit)) == qty
        checked += 1
    assert checked > 600
    # quote volume: 8 decimals = tick (2) x unit (6)
    inst6 = make("binance", "0.01", "0.000001")
    first = json.loads(
        (FIXTURES / "binance/rest/spot_klines_BTCUSDT_1m_startTime_eq_endTime.json").read_text()
    )[0]
    assert first[1] == "8871.92000000"
    assert inst.price_str(887192) == "8871.92000000"
    assert first[7] == "423305.63773405"
    assert inst6.quote_str(42330563773405) == "423305.63773405"
    for row in binance_kline_rows():
        for quote in (row[7], row[10]):
            assert inst6.quote_str(units(quote, inst6.tick * inst6.qty_unit)) == quote


def test_bybit_strings_round_trip():
    inst = make("bybit", "0.01", "0.000001")
    seen = []
    for line in (
        (FIXTURES / "bybit/spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl").read_text().splitlines()
    ):
        msg = json.loads(line)
        if msg.get("topic", "").startswith("publicTrade"):
            for t in msg["data"]:
                assert inst.price_str(units(t["p"], inst.tick)) == t["p"]
                assert inst.qty_str(units(t["v"], inst.qty_unit)) == t["v"]
                seen.append((t["p"], t["v"]))
        elif msg.get("topic", "").startswith("orderbook"):
            for side in ("b", "a"):
                for p, q in msg["data"][side]:
                    assert inst.price_str(units(p, inst.tick)) == p
                    assert inst.qty_str(units(q, inst.qty_unit)) == q
    assert ("43774", "0.0026") in seen  # minimal form: no ".00", no trailing zeros
    kl = json.loads((FIXTURES / "bybit/spot_rest_v5_kline_BTCUSDT_15_2023-05-01.json").read_text())
    inst8 = make("bybit", "0.01", "0.000001")
    for row in kl["result"]["list"]:
        for price in row[1:5]:
            assert inst8.price_str(units(price, inst8.tick)) == price
        assert inst8.qty_str(units(row[5], inst8.qty_unit)) == row[5]
        assert inst8.quote_str(units(row[6], inst8.tick * inst8.qty_unit)) == row[6]


def test_okx_strings_round_trip():
    inst = make("okx", "0.1", "0.00000001")
    body = json.loads((FIXTURES / "okx/spot_rest_history_candles_BTC-USDT_1m_2023-05-02.json").read_text())
    for row in body["data"]:
        for price in row[1:5]:
            assert inst.price_str(units(price, inst.tick)) == price
        assert inst.qty_str(units(row[5], inst.qty_unit)) == row[5]
        for quote in row[6:8]:
            assert inst.quote_str(units(quote, inst.tick * inst.qty_unit)) == quote
    assert body["data"][0][6] == "582029.970323109"
    assert inst.quote_str(582029970323109) == "582029.970323109"
    for line in (FIXTURES / "okx/spot_ws_trades_BTC-USDT_2025-02-24.jsonl").read_text().splitlines():
        for t in json.loads(line)["data"]:
            assert inst.price_str(units(t["px"], inst.tick)) == t["px"]
            assert inst.qty_str(units(t["sz"], inst.qty_unit)) == t["sz"]


# ------------------------------------------------------------------------------ formatting rules


@pytest.mark.parametrize("key", sorted(INSTRUMENTS))
def test_formatting_is_exact_decimal(key):
    inst = INSTRUMENTS[key]
    rnd = random.Random(hash(key) & 0xFFFF)
    values = [0, 1, 9, 10, 99, 100, 101, 10**6, 10**9 + 1] + [rnd.randrange(1, 10**13) for _ in range(300)]
    for n in values:
        for text, exact in (
            (inst.price_str(n), Decimal(n) * inst.tick),
            (inst.qty_str(n), Decimal(n) * inst.qty_unit),
            (inst.quote_str(n), Decimal(n) * inst.tick * inst.qty_unit),
        ):
            assert Decimal(text) == exact
            assert "e" not in text.lower() and "-" not in text
            if inst.exchange == "binance":
                whole, frac = text.split(".")
                assert len(frac) == 8 and whole == str(int(whole))
            else:
                assert not (("." in text) and text.endswith("0")), text
                assert not text.endswith(".")
                assert text == "0" or not text.startswith("0") or text.startswith("0.")


def test_price_cache_returns_same_strings():
    inst = INSTRUMENTS[("binance", "btc")]
    first = [inst.price_str(n) for n in range(9_000_000, 9_000_500)]
    again = [inst.price_str(n) for n in range(9_000_000, 9_000_500)]
    assert first == again
    assert inst.price_str(9_000_001) == "90000.01000000"


# ------------------------------------------------------------------------------ tables


def test_table_covers_universe_with_codes():
    assert set(INSTRUMENTS) == {(e, s) for e in EXCHANGES for s in SYMBOLS}
    for (ex, sym), inst in INSTRUMENTS.items():
        assert inst.exchange == ex and inst.symbol == sym
        assert inst.base == sym.upper() and inst.quote == "USDT"
        assert inst.code == (f"{sym.upper()}-USDT" if ex == "okx" else f"{sym.upper()}USDT")
        assert instrument_by_code(ex, inst.code) is inst
        # qty_unit is a whole number of lots; min quantity is a whole number of lots
        assert (inst.qty_unit / inst.lot) == (inst.qty_unit / inst.lot).to_integral_value()
        assert (inst.min_qty / inst.lot) == (inst.min_qty / inst.lot).to_integral_value()
        assert inst.ref_price > 0 and inst.ref_ticks * inst.tick == inst.ref_price
    assert instrument_by_code("okx", "BTCUSDT") is None
    assert instrument_by_code("binance", "BTC-USDT") is None
    assert instrument_by_code("binance", "btcusdt") is None  # codes are case-sensitive
    assert instrument_by_code("kraken", "BTCUSDT") is None


def test_published_exchange_values():
    b = INSTRUMENTS[("binance", "btc")]
    assert (b.tick, b.lot) == (Decimal("0.01"), Decimal("0.00001"))
    filters = {f["filterType"]: f for f in b.binance_filters()}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert b.meta["baseAssetPrecision"] == "8" and b.meta["quotePrecision"] == "8"
    o = INSTRUMENTS[("okx", "btc")]
    assert (o.decimal_str(o.tick), o.decimal_str(o.lot), o.decimal_str(o.min_qty)) == (
        "0.1",
        "0.00000001",
        "0.00001",
    )
    y = INSTRUMENTS[("bybit", "btc")]
    assert y.decimal_str(y.tick) == "0.01" and y.meta["basePrecision"] == "0.000001"
    assert y.meta["quotePrecision"] == "0.00000001" and y.decimal_str(y.min_qty) == "0.000048"


def test_binance_quote_fits_eight_decimals():
    for (ex, _), inst in INSTRUMENTS.items():
        if ex == "binance":
            assert inst.tick_places + inst.unit_places <= 8
    with pytest.raises(ValueError):
        make("binance", "0.0001", "0.000001")


# ------------------------------------------------------------------------------ intervals


def test_standard_timeframes_present_with_utc_alignment():
    codes = {
        "binance": {tf: tf for tf in TIMEFRAME_MS},
        "bybit": dict(
            zip(TIMEFRAME_MS, ["1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D"], strict=True)
        ),
        "okx": dict(
            zip(
                TIMEFRAME_MS,
                ["1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6Hutc", "12Hutc", "1Dutc"],
                strict=True,
            )
        ),
    }
    for ex, table in codes.items():
        for tf, code in table.items():
            assert INTERVALS[ex][code] == (TIMEFRAME_MS[tf], 0), (ex, code)


def _hours_of_opens(tf_ms: int, offset_ms: int) -> set[int]:
    day0 = 20_000 * DAY_MS
    first = day0 + (offset_ms - day0) % tf_ms
    return {((t % DAY_MS) // HOUR_MS) for t in range(first, day0 + 4 * DAY_MS, tf_ms)}


def test_okx_hong_kong_alignment():
    okx = INTERVALS["okx"]
    assert _hours_of_opens(*okx["1D"]) == {16}
    assert _hours_of_opens(*okx["12H"]) == {4, 16}
    assert _hours_of_opens(*okx["6H"]) == {4, 10, 16, 22}
    assert _hours_of_opens(*okx["1Dutc"]) == {0}
    assert "1M" not in okx and okx["1m"][0] == 60_000  # case-sensitive codes
    # 1W opens Monday 00:00 Hong Kong = Sunday 16:00 UTC; 1Wutc Monday 00:00 UTC
    tf, off = okx["1W"]
    t = 20_000 * DAY_MS + (off - 20_000 * DAY_MS) % tf
    d = datetime.fromtimestamp(t / 1000, UTC)
    assert (d.weekday(), d.hour) == (6, 16)


def test_weekly_bars_open_on_monday_utc():
    for ex, code in (("binance", "1w"), ("bybit", "W"), ("okx", "1Wutc")):
        tf, off = INTERVALS[ex][code]
        t = 20_000 * DAY_MS + (off - 20_000 * DAY_MS) % tf
        d = datetime.fromtimestamp(t / 1000, UTC)
        assert (d.weekday(), d.hour, d.minute) == (0, 0, 0), ex


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
@pytest.mark.parametrize(
    ("tick", "unit"), [("0.05", "0.001"), ("5", "0.02"), ("1", "1"), ("0.00000001", "1")]
)
def test_formatting_of_unusual_ticks(exchange, tick, unit):
    inst = make(exchange, tick, unit)
    for n in [0, 1, 7, 19, 20, 99, 100, 12345, 10**12 + 3]:
        for text, exact in (
            (inst.price_str(n), Decimal(n) * inst.tick),
            (inst.qty_str(n), Decimal(n) * inst.qty_unit),
            (inst.quote_str(n), Decimal(n) * inst.tick * inst.qty_unit),
        ):
            assert Decimal(text) == exact, (text, exact)
            if exchange == "binance":
                assert len(text.split(".")[1]) == 8
            else:
                assert text == format(exact.normalize(), "f")


def test_instruments_pickle_and_copy():
    import copy
    import pickle

    inst = INSTRUMENTS[("okx", "sol")]
    for clone in (pickle.loads(pickle.dumps(inst)), copy.deepcopy(inst), copy.copy(inst)):
        assert clone == inst and clone.meta == inst.meta
        assert clone.price_str(14012) == inst.price_str(14012) == "140.12"
        assert clone.quote_str(10**9 + 1) == inst.quote_str(10**9 + 1)


@pytest.mark.parametrize("places", range(0, 10))
@pytest.mark.parametrize("mantissa", [1, 5, 25])
def test_fast_formatters_match_exact_decimal_formatting(places, mantissa):
    from p9cli.sim.instruments import _formatter

    rnd = random.Random(places * 100 + mantissa)
    values = [0, 1, 9, 10, 10**places, 10**places + 1, 10**places - 1, 10 ** (places + 3) + 10**places]
    values += [rnd.randrange(0, 10 ** rnd.randrange(1, 16)) for _ in range(400)]
    minimal = _formatter(mantissa, places, padded=False)
    padded = _formatter(mantissa, places, padded=True, cache={}) if places <= 8 else None
    for v in values:
        exact = Decimal(v * mantissa).scaleb(-places)
        assert minimal(v) == format(exact.normalize(), "f") if v else minimal(v) == "0"
        if padded is not None:
            assert padded(v) == f"{exact:.8f}"
            assert padded(v) == padded(v)  # memo hit returns the same string
