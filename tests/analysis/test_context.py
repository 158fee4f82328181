"""The ``p9.structure/2`` document: validates against the shipped JSON Schema on simulator,
recorded and degenerate data; never carries NaN/inf; single-timeframe recompute for stream."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import orjson
import pytest
from analysis_candles import KLINES_1D, KLINES_1H, recorded_klines, simulator_candles, synthetic_candles
from jsonschema import Draft202012Validator

from p9cli.analysis.candles import Candles, tick_size
from p9cli.analysis.context import SCHEMA, analyze_timeframe, build_structure, finite, to_json
from p9cli.universe import TIMEFRAMES


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    text = resources.files("p9cli.schemas").joinpath("structure.schema.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def sim_frames() -> dict[str, Candles]:
    return {tf: simulator_candles("eth", tf, 400, exchange="okx") for tf in TIMEFRAMES}


def roundtrip(doc: dict) -> dict:
    """What a bot reads: the bytes written to disk, parsed by a strict JSON parser."""
    data = to_json(doc)
    assert b"NaN" not in data and b"Infinity" not in data
    return json.loads(data, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def assert_valid(validator, doc) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{e.json_path}: {e.message[:200]}" for e in errors[:10])


def test_simulator_document_validates_and_is_complete(validator, sim_frames):
    doc = roundtrip(build_structure("okx", "eth", sim_frames, now_ms=1_767_225_600_123))
    assert_valid(validator, doc)
    assert doc["schema"] == SCHEMA == "p9.structure/2"
    assert (doc["exchange"], doc["symbol"], doc["base"], doc["exchange_symbol"]) == (
        "okx",
        "ethusdt",
        "eth",
        "ETH-USDT",
    )
    assert doc["ts"] == 1_767_225_600_123
    assert list(doc["timeframes"]) == list(TIMEFRAMES)  # longest first
    assert doc["event_ts"] == max(d["last_close_ms"] for d in doc["timeframes"].values())
    assert doc["last_price"] == sim_frames["1m"].close[-1] and doc["last_price_timeframe"] == "1m"
    assert doc["tick"] == 0.01  # OKX ETH-USDT in the simulator
    for tf, d in doc["timeframes"].items():
        assert d["candles"] == len(sim_frames[tf])
        assert d["volatility"]["atr"] > 0 and d["trend"]["adx"] is not None
        assert d["trend"]["ema"]["200"]["value"] is not None
    assert -1 <= doc["alignment"]["score"] <= 1
    assert sorted(doc["alignment"]["up"] + doc["alignment"]["down"] + doc["alignment"]["range"]) == sorted(
        TIMEFRAMES
    )
    # the price sections are present and sane
    assert doc["levels"] and doc["composite_profile"]["val"] <= doc["composite_profile"]["vah"]
    assert doc["atr_timeframe"] == "1h" and doc["qty_step"] > 0
    day = doc["sessions"]["day"]
    # these candles end on a UTC midnight: the developing day has no candle yet
    assert doc["event_ts"] % 86_400_000 == 0 and day["developing"] is None
    assert day["previous"]["complete"] and day["previous"]["end_ms"] == doc["event_ts"]
    week = doc["sessions"]["week"]
    for s in (day["previous"], week["previous"], week["developing"]):
        assert s["val"] <= s["poc"] <= s["vah"] and s["low"] <= s["val"] and s["vah"] <= s["high"]
    assert doc["floor_pivots"]["from_open_ms"] == int(sim_frames["1d"].open_time[-1])


def test_document_is_compact(sim_frames):
    size = len(to_json(build_structure("okx", "eth", sim_frames, now_ms=0)))
    assert size < 200_000, size


def test_recorded_binance_candles_validate(validator):
    frames = {"1d": recorded_klines(KLINES_1D), "1h": recorded_klines(KLINES_1H)}
    doc = roundtrip(build_structure("binance", "btc", frames, now_ms=0))
    assert_valid(validator, doc)
    assert doc["tick"] == 0.01  # BTCUSDT prices are quoted to the cent
    assert doc["last_price_timeframe"] == "1h" and list(doc["timeframes"]) == ["1d", "1h"]
    # 176 hourly candles: EMA200 is still warming up -> null, never NaN
    assert doc["timeframes"]["1h"]["trend"]["ema"]["200"]["value"] is None


@pytest.mark.parametrize("count", [1, 2, 5, 16, 30])
def test_short_histories_give_nulls_and_still_validate(validator, count):
    frames = {tf: synthetic_candles(tf, count, seed=i) for i, tf in enumerate(("1d", "4h", "1h"))}
    doc = roundtrip(build_structure("bybit", "sol", frames, now_ms=0))
    assert_valid(validator, doc)
    one = doc["timeframes"]["1h"]
    assert one["candles"] == count
    if count < 15:
        assert one["volatility"]["atr"] is None and doc["composite_profile"] is None and doc["levels"] == []


def test_flat_market_never_produces_nan(validator):
    n = 300
    t = np.arange(n, dtype=np.int64) * 3_600_000
    flat = np.full(n, 100.0)
    frames = {"1h": Candles.from_arrays(t, flat, flat, flat, flat, np.zeros(n))}
    doc = roundtrip(build_structure("binance", "bnb", frames, now_ms=0))
    assert_valid(validator, doc)
    d = doc["timeframes"]["1h"]
    # +DI/-DI are 0/0 (undefined -> null); ADX counts undefined DX as 0, as TA-Lib does
    assert d["trend"]["plus_di"] is None and d["trend"]["minus_di"] is None
    assert d["trend"]["adx"] == 0.0 and d["trend"]["label"] == "range"
    assert d["volume"]["relative"] is None and d["volume"]["zscore"] is None
    assert d["volatility"]["realized"]["close_to_close"]["annualized_pct"] == 0.0


def test_finite_replaces_every_non_finite_number():
    src = {
        "a": math.nan,
        "b": [1.0, math.inf, {"c": -math.inf}],
        "d": np.float64(2.5),
        "e": np.int64(3),
        "f": "x",
        "g": True,
    }
    out = finite(src)
    assert out == {"a": None, "b": [1.0, None, {"c": None}], "d": 2.5, "e": 3, "f": "x", "g": True}
    assert type(out["d"]) is float and type(out["e"]) is int
    orjson.dumps(out)  # plain Python types only


def test_tick_size_from_the_data():
    assert tick_size(recorded_klines(KLINES_1H)) == 0.01
    xrp = synthetic_candles("1m", 500, seed=2, start_price=0.6, tick=0.0001)
    assert tick_size(xrp) == 0.0001
    assert tick_size(Candles.from_arrays([], [], [], [], [], [])) is None


def test_single_timeframe_recompute_matches_a_full_rebuild(sim_frames):
    """What stream does on a candle close: append the candle to one timeframe, recompute that
    section, reuse the others; the document equals a rebuild from scratch."""
    frames = dict(sim_frames)
    sections = {tf: analyze_timeframe(c, tf) for tf, c in frames.items()}
    tf = "15m"
    nxt = simulator_candles("eth", tf, 401, exchange="okx", later_ms=15 * 60_000)
    assert int(nxt.open_time[-2]) == int(frames[tf].open_time[-1])  # the simulator's next candle
    frames[tf] = nxt.tail(400)
    sections[tf] = analyze_timeframe(frames[tf], tf)
    incremental = build_structure("okx", "eth", frames, per_timeframe=sections, now_ms=1)
    rebuilt = build_structure("okx", "eth", frames, now_ms=1)
    assert incremental == rebuilt
    assert incremental["timeframes"][tf]["last_open_ms"] == int(nxt.open_time[-1])


def test_analyze_timeframe_rejects_empty_input():
    with pytest.raises(ValueError):
        analyze_timeframe(Candles.from_arrays([], [], [], [], [], []), "1h")
    with pytest.raises(ValueError):
        build_structure("binance", "btc", {})


def test_candles_from_a_dataframe_like_the_parquet():
    import pandas as pd

    c = recorded_klines(KLINES_1H)
    df = pd.DataFrame(
        {
            "open_time": pd.to_datetime(c.open_time, unit="ms", utc=True),
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": c.volume,
            "quote_volume": c.quote_volume,
        }
    )
    back = Candles.from_mapping(df)
    assert back.open_time.dtype == np.int64 and (back.open_time == c.open_time).all()
    assert analyze_timeframe(back, "1h") == analyze_timeframe(c, "1h")


def test_last_price_comes_from_the_most_recent_candle():
    hourly = synthetic_candles("1h", 100, seed=1, end_ms=1_767_225_600_000)
    stale_minutes = synthetic_candles("1m", 100, seed=2, end_ms=1_767_225_600_000 - 3 * 3_600_000)
    doc = build_structure("binance", "btc", {"1h": hourly, "1m": stale_minutes}, now_ms=0)
    assert doc["last_price_timeframe"] == "1h" and doc["last_price"] == hourly.close[-1]
    assert doc["event_ts"] == 1_767_225_600_000
    fresh_minutes = synthetic_candles("1m", 100, seed=2, end_ms=1_767_225_600_000)
    doc = build_structure("binance", "btc", {"1h": hourly, "1m": fresh_minutes}, now_ms=0)
    assert doc["last_price_timeframe"] == "1m" and doc["last_price"] == fresh_minutes.close[-1]


def test_the_schema_rejects_broken_documents(validator):
    """The schema is not vacuous: each mutation below must be caught."""
    frames = {"1d": recorded_klines(KLINES_1D), "1h": recorded_klines(KLINES_1H)}
    good = roundtrip(build_structure("binance", "btc", frames, now_ms=0))
    assert validator.is_valid(good)

    def broken(mutate) -> bool:
        doc = json.loads(json.dumps(good))
        mutate(doc)
        return not validator.is_valid(doc)

    assert broken(lambda d: d.update(schema="p9.structure/1"))
    assert broken(lambda d: d.pop("alignment"))
    assert broken(lambda d: d.update(extra=1))
    assert broken(lambda d: d["timeframes"].update({"7m": d["timeframes"]["1h"]}))
    assert broken(lambda d: d["timeframes"]["1h"]["volatility"].update(atr="12.5"))
    assert broken(lambda d: d["timeframes"]["1h"]["trend"].update(label="sideways"))
    assert broken(lambda d: d["timeframes"]["1h"]["trend"].update(strength=1.5))
    assert broken(
        lambda d: d["timeframes"]["1h"]["volatility"]["realized"]["parkinson"].update(percentile_pct=101)
    )
    assert broken(lambda d: d["alignment"].update(score=-1.01))
    assert broken(lambda d: d["levels"][0].update(kind="pivot"))
    assert broken(lambda d: d["composite_profile"].pop("poc"))
    assert broken(lambda d: d.update(data_ts=d["event_ts"]))  # the v1 name
    assert broken(lambda d: d["levels"][0].update(last_touch_time=d["levels"][0]["last_touch_ms"]))
    assert broken(lambda d: d["levels"][0].update(strength=1.2))
    assert broken(lambda d: d["sessions"]["day"].pop("previous"))
    assert broken(
        lambda d: (
            d["liquidity_zones"].extend([d["liquidity_zones"][0]] * 5)
            if d["liquidity_zones"]
            else d.update(x=1)
        )
    )


def test_floor_pivots_come_from_the_last_closed_daily_candle(sim_frames):
    """Stored history: the last daily candle (closed by construction). A live caller whose
    daily candle is still forming passes ``closed_by_ms`` and gets the day before's pivots."""
    day = sim_frames["1d"]
    last_open = int(day.open_time[-1])
    stored = build_structure("okx", "eth", sim_frames, now_ms=0)
    assert stored["floor_pivots"]["from_open_ms"] == last_open
    h, lo, c = float(day.high[-1]), float(day.low[-1]), float(day.close[-1])
    assert stored["floor_pivots"]["P"] == pytest.approx((h + lo + c) / 3, abs=0.005)  # on the tick
    # the same candles seen an hour before that daily candle closed: it is still forming
    forming = build_structure("okx", "eth", sim_frames, now_ms=0, closed_by_ms=last_open + 82_800_000)
    assert forming["floor_pivots"]["from_open_ms"] == last_open - 86_400_000
    h, lo, c = float(day.high[-2]), float(day.low[-2]), float(day.close[-2])
    assert forming["floor_pivots"]["P"] == pytest.approx((h + lo + c) / 3, abs=0.005)
    # once it has closed, it is the one
    closed = build_structure("okx", "eth", sim_frames, now_ms=0, closed_by_ms=last_open + 86_400_000)
    assert closed["floor_pivots"] == stored["floor_pivots"]
