"""The numbers p9 computes live are published at the instrument's precision, not as float noise.

Two real sources: a recorded Bybit ``orderbook.200`` snapshot and trades of BTCUSDT (the shared
exchange fixtures) and the recorded payloads of a ``p9 stream`` run against ``p9 sim``
(tests/publish/recorded_payloads.json: its ``market_context.structure`` is the real structure
document's summary, from which the document the fusion reads is rebuilt). Exact expectations are
computed with :class:`decimal.Decimal` from the exchange's decimal strings."""

from __future__ import annotations

import json
import os
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

from p9cli.fusion import position as pos
from p9cli.fusion.bookstats import BAND_KEYS, BANDS_PCT, book_figures
from p9cli.fusion.state import PairState
from p9cli.fusion.units import QUOTE_DECIMALS, RATIO_DECIMALS, Units, units_of

BYBIT = Path(os.environ["P9_FIXTURES"]) / "bybit" / "spot_ws_v5_orderbook200_publicTrade_2023-12-24.jsonl"
RECORDED = Path(__file__).resolve().parents[1] / "publish" / "recorded_payloads.json"
#: Bybit spot BTCUSDT: tickSize 0.01, basePrecision 0.000001 (the snapshot's sizes have 6 decimals)
BYBIT_DOC = {"tick": 0.01, "qty_step": 1e-06}
#: the structure document analyze wrote for the sim's binance btcusdt (tests/analysis/test_units.py)
SIM_TICK, SIM_STEP = 0.01, 1e-05

# field name -> unit, for the walk over a whole payload
PRICE = {"price", "last_price", "bid", "ask", "spread", "vwap_60s", "vwap_300s", "long", "short", "poc", "vah",
         "val", "low", "high", "level", "open", "close"}  # fmt: skip
SIZE = {
    "bid_size",
    "ask_size",
    "volume_60s",
    "buy_volume_60s",
    "sell_volume_60s",
    "delta_60s",
    "cvd",
    "volume",
}
QUOTE = {"bid_quote", "ask_quote", "quote_volume_60s"}
RATIO = {"distance_pct", "spread_bps", "imbalance", "imbalance_top", "buy_share_60s"}


def decimals(x: float) -> int:
    """Decimal places of the shortest repr of ``x`` (what a JSON encoder writes)."""
    return max(0, -Decimal(repr(x)).as_tuple().exponent)


def check_payload(obj, price_d: int, size_d: int, name: str | None = None, seen: set | None = None) -> set:
    """Every price/size/quote/ratio field of ``obj`` has at most its unit's decimals; returns the
    field names checked (so a test can assert the walk was not vacuous)."""
    seen = set() if seen is None else seen
    if isinstance(obj, dict):
        for k, v in obj.items():
            # distance_atr is a {tf: ratio} map
            check_payload(v, price_d, size_d, "distance_pct" if name == "distance_atr" else k, seen)
        return seen
    if isinstance(obj, list):
        for v in obj:
            check_payload(v, price_d, size_d, name, seen)
        return seen
    if not isinstance(obj, float) or name is None:
        return seen
    limit = (
        price_d + 1 if name == "mid" else price_d if name in PRICE else size_d if name in SIZE
        else QUOTE_DECIMALS if name in QUOTE else RATIO_DECIMALS if name in RATIO else None
    )  # fmt: skip
    if limit is not None:
        assert decimals(obj) <= limit, f"{name} = {obj!r}: more than {limit} decimals"
        seen.add(name)
    return seen


# ------------------------------------------------------------------ a real Bybit book and trades


def _bybit():
    rows = [json.loads(line) for line in BYBIT.read_text().splitlines() if line.strip()]
    book = next(r for r in rows if r.get("type") == "snapshot" and r.get("topic", "").startswith("orderbook"))
    trades = [t for r in rows if r.get("topic", "").startswith("publicTrade") for t in r["data"]]
    return book["data"], trades


def test_book_figures_of_a_real_200_level_book_are_exact_decimals():
    data, _ = _bybit()
    bids, asks = data["b"], data["a"]
    fig = book_figures(bids, asks, data["u"], units_of(BYBIT_DOC))
    # the exchange's values pass through untouched
    assert (fig["bid"], fig["bid_size"]) == (float(bids[0][0]), float(bids[0][1]))
    assert (fig["ask"], fig["ask_size"]) == (float(asks[0][0]), float(asks[0][1]))
    bid, ask = Decimal(bids[0][0]), Decimal(asks[0][0])
    assert fig["mid"] == float((bid + ask) / 2)  # a half tick kept: one decimal more than the tick
    assert fig["spread"] == float(ask - bid)
    mid = (bid + ask) / 2
    raw_noise = False
    for pct, key in zip(BANDS_PCT, BAND_KEYS, strict=True):
        lo, hi = mid * (1 - Decimal(str(pct)) / 100), mid * (1 + Decimal(str(pct)) / 100)
        inside_b = [(Decimal(p), Decimal(s)) for p, s in bids if Decimal(p) >= lo]
        inside_a = [(Decimal(p), Decimal(s)) for p, s in asks if Decimal(p) <= hi]
        band = fig["depth"][key]
        for side, levels in (("bid", inside_b), ("ask", inside_a)):
            exact_size = sum((s for _, s in levels), Decimal(0))
            exact_quote = sum((p * s for p, s in levels), Decimal(0))
            assert band[f"{side}_size"] == float(exact_size), (key, side)
            assert decimals(band[f"{side}_size"]) <= 6
            assert abs(Decimal(repr(band[f"{side}_quote"])) - exact_quote) <= Decimal("0.005"), (key, side)
            assert band[f"{side}_quote"] == float(exact_quote.quantize(Decimal("0.01"), ROUND_HALF_EVEN))
            raw_noise |= sum(float(s) for _, s in levels) != float(exact_size)
    # the float sums these replace were noisy (the test is not vacuous)
    assert raw_noise
    # without a structure document (no tick known) the noise is still gone: 8 decimals
    raw = book_figures(bids, asks, data["u"])
    assert raw["depth"]["1pct"]["bid_size"] == fig["depth"]["1pct"]["bid_size"]


def test_fusion_data_of_real_trades_and_book_has_no_float_noise():
    data, trades = _bybit()
    st = PairState("bybit", "BTCUSDT", "btcusdt", structure=dict(BYBIT_DOC))
    st.on_book(data["b"], data["a"], data["u"], data["seq"], trades[0]["T"], None)
    for t in trades:
        st.on_trade(int(t["T"]), float(t["p"]), float(t["v"]), t["S"] == "Buy", None)
    now = int(trades[-1]["T"]) + 2_000
    fd = st.fusion_fields(now)
    assert fd["price"] == float(trades[-1]["p"])  # the exchange's trade price, untouched
    seen = check_payload(fd, 2, 6)
    assert {
        "bid",
        "mid",
        "spread",
        "bid_size",
        "bid_quote",
        "imbalance",
        "cvd",
        "vwap_60s",
        "delta_60s",
    } <= seen
    flow = fd["flow"]
    sizes = [Decimal(t["v"]) * (1 if t["S"] == "Buy" else -1) for t in trades]
    assert flow["cvd"] == float(sum(sizes, Decimal(0)))
    assert flow["delta_60s"] == flow["cvd"]  # every trade is in the last 60 s


# ------------------------------------------------------------------ the recorded structure document


def _recorded():
    return json.loads(RECORDED.read_text())["payloads"]


def _recorded_doc() -> dict:
    """The structure document of the recorded run, rebuilt from the market_context summary."""
    s = _recorded()["market_context"]["structure"]
    return {
        "tick": SIM_TICK,
        "qty_step": SIM_STEP,
        "alignment": s["alignment"],
        "timeframes": {
            tf: {"trend": s["trend"][tf], "volatility": {"atr": s["atr"][tf], "atr_pct": s["atr_pct"][tf]}}
            for tf in s["atr"]
        },
        "levels": s["levels"],
        "sessions": {"day": {"previous": s["value_area"]}},
        "liquidity_zones": s["liquidity_zones"],
    }


def _recorded_state() -> tuple[PairState, int]:
    rec = _recorded()
    fd = rec["fusion_data"]
    doc = _recorded_doc()
    st = PairState("binance", "BTCUSDT", "btcusdt")
    st.set_structure(doc, fd["ts"])
    b = fd["book"]
    st.on_book(
        [(b["bid"], b["bid_size"])], [(b["ask"], b["ask_size"])], b["update_id"], None, fd["event_ts"], None
    )
    st.on_trade(fd["flow"]["last_trade_ms"], fd["price"], 0.00123, True, None)
    return st, fd["ts"]


def test_stop_hints_are_on_the_tick_exactly():
    st, now = _recorded_state()
    p9 = st.precision9_fields(now)
    rec = _recorded()["precision9_context"]
    assert p9["levels"]["support"]["price"] == rec["levels"]["support"]["price"] == 56879.0
    assert p9["levels"]["resistance"]["price"] == rec["levels"]["resistance"]["price"] == 57322.38
    atr = _recorded_doc()["timeframes"]["1h"]["volatility"]["atr"]
    assert atr == 585.8083
    # 57322.38 + 2 x 585.8083 = 58493.9966 and 56879.0 - 2 x 585.8083 = 55707.3834, on the 0.01 tick
    assert p9["hints"]["stop"] == {"atr_mult": 2.0, "atr_timeframe": "1h", "long": 55707.38, "short": 58494.0}
    # an ATR whose float sum is noisy: 57322.38 + 2 x 560.1 = 58442.579999999994 in floats
    doc = _recorded_doc()
    doc["timeframes"]["1h"]["volatility"]["atr"] = 560.1
    assert 57322.38 + 2 * 560.1 == 58442.579999999994
    sup, res = pos.nearest_levels(doc, 56892.28)
    assert pos.hints(doc, sup, res, None)["stop"]["short"] == 58442.58
    # a tick that is not a power of ten: the stop is a multiple of it
    doc["tick"] = 0.05
    assert pos.hints(doc, sup, res, None)["stop"]["short"] == 58442.6


def test_every_payload_of_the_recorded_run_publishes_prices_at_the_tick():
    st, now = _recorded_state()
    fd, p9, mc = st.fusion_fields(now), st.precision9_fields(now), st.market_context_fields(now)
    seen = set()
    for payload in (fd, p9, mc):
        seen |= check_payload(payload, 2, 5)
    assert {
        "price",
        "bid",
        "mid",
        "long",
        "short",
        "poc",
        "low",
        "high",
        "distance_pct",
        "spread_bps",
    } <= seen
    support = p9["levels"]["support"]
    exact = (Decimal("56879.0") - Decimal("56892.28")) / Decimal("56892.28") * 100
    assert support["distance_pct"] == float(exact.quantize(Decimal("0.000001")))
    assert support["distance_atr"]["1h"] == round((56879.0 - 56892.28) / 585.8083, 6)


def test_units_come_from_the_structure_document_only():
    assert units_of(None) == Units() and units_of({"tick": 0.01, "qty_step": 1e-5}) == Units(0.01, 1e-5)
    assert units_of({"tick": None, "qty_step": True}) == Units()
    u = Units(0.5, 1.0)
    assert (u.on_tick(100.26), u.price(0.30000000000000004), u.mid(100.25), u.size(2.0000000001)) == (
        100.5,
        0.3,
        100.25,
        2.0,
    )
    assert u.on_tick(float("nan")) is None and u.ratio(None) is None


@pytest.mark.parametrize("tick", [0.01, 0.1, 1.0, 0.5, 0.0001])
def test_the_mid_of_a_one_tick_spread_is_exact(tick):
    u = Units(tick, 1.0)
    bid = 12345 * tick
    for k in range(1, 4):
        ask = (12345 + k) * tick
        mid = u.mid((bid + ask) / 2)
        d = Decimal(str(tick))
        assert Decimal(repr(mid)) == (12345 * d + (12345 + k) * d) / 2
