"""One unit convention over every field of a real ``p9.structure/2`` document: each number's
schema node declares its unit (``x-unit``), the field's name agrees with it (``_ms``, ``_pct``,
``_share``, ``_atr``, price and quantity names), and the value is rounded as the unit says
(prices on the tick, quantities on the step). Walked field by field, schema and document
together."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from analysis_candles import KLINES_1D, KLINES_1H, recorded_klines, simulator_candles

from p9cli.analysis.candles import Candles
from p9cli.analysis.context import build_structure, to_json
from p9cli.analysis.units import FINE_PRICE_FIELDS, PRICE_FIELDS, QTY_FIELDS, apply_units, qty_step, round_to
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume")

SCHEMA = json.loads(resources.files("p9cli.schemas").joinpath("structure.schema.json").read_text())
DOCS = Path(__file__).resolve().parents[2] / "docs" / "structure.md"


def expected_unit(name: str) -> str | None:
    """The unit a field's name declares, or None when the name alone does not say."""
    if name in ("ts", "event_ts") or name.endswith("_ms"):
        return "ms"
    if name.endswith("_pct"):
        return "pct"
    if name.endswith("_share"):
        return "share"
    if name.endswith("_atr"):
        return "atr"
    if name.endswith("_quote"):
        return "quote"
    if name in PRICE_FIELDS:
        return "price"
    if name in FINE_PRICE_FIELDS:
        return "price_fine"
    if name in QTY_FIELDS:
        return "qty"
    return None


def on_grid(value: float, step: float) -> bool:
    q = value / step
    return abs(q - round(q)) < max(1e-6, abs(q) * 1e-12)  # float resolution of large values


def walk(value, schema, name, path, tick, step, seen):
    if "oneOf" in schema:
        if value is None:
            return
        schema = next(s for s in schema["oneOf"] if s.get("type") != "null")
    if isinstance(value, dict):
        for k, v in value.items():
            sub = schema.get("properties", {}).get(k) or schema.get("additionalProperties")
            assert isinstance(sub, dict), f"{path}.{k}: not in the schema"
            walk(v, sub, k, f"{path}.{k}", tick, step, seen)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            walk(v, schema.get("items", {}), name, f"{path}[{i}]", tick, step, seen)
        return
    if value is None or isinstance(value, bool | str):
        return
    unit = schema.get("x-unit")
    assert unit, f"{path}: a number without x-unit"
    seen.add(unit)
    want = expected_unit(name)
    if want is not None:
        assert unit == want, f"{path}: named like {want}, declared {unit}"
    else:
        assert unit in ("count", "score", "ratio", "index", "unit"), f"{path}: {unit} needs a unit name"
    if unit in ("ms", "count"):
        assert isinstance(value, int), f"{path}: {value!r} is not an integer"
    elif unit == "price":
        assert on_grid(value, tick), f"{path}: {value} is not a multiple of the tick {tick}"
    elif unit == "price_fine":
        assert on_grid(value, tick / 100), f"{path}: {value} not rounded to tick/100"
    elif unit == "qty":
        assert on_grid(value, step), f"{path}: {value} is not a multiple of the step {step}"
    elif unit == "quote":
        assert on_grid(value, 0.01), f"{path}: {value}"
    elif unit == "share":
        assert 0.0 <= value <= 1.0, f"{path}: share {value} outside 0..1"
    if unit in ("pct", "share", "atr", "score", "ratio", "index"):
        assert round(value, 4) == value, f"{path}: {value} has float noise"


def check_document(doc):
    seen: set[str] = set()
    walk(doc, SCHEMA, None, "$", doc["tick"], doc["qty_step"], seen)
    return seen


@pytest.fixture(scope="module")
def sim_doc():
    # the candles closed by 19:30 UTC of the model's last day: a developing day too
    end = 1_767_225_600_000 - 4 * 3_600_000 - 1_800_000
    frames = {}
    for tf in TIMEFRAMES:
        c = simulator_candles("btc", tf, 400, exchange="binance")
        k = int(np.searchsorted(c.open_time + TIMEFRAME_MS[tf], end, side="right"))
        frames[tf] = Candles.from_arrays(*(getattr(c, f)[:k] for f in COLUMNS))
    doc = json.loads(to_json(build_structure("binance", "btc", frames, now_ms=1_767_225_600_123)))
    assert doc["sessions"]["day"]["developing"] is not None and doc["naked_pocs"] is not None
    return doc


def test_every_field_of_a_simulator_document_follows_the_convention(sim_doc):
    seen = check_document(sim_doc)
    # the walk met every kind of unit, so none of the checks above is vacuous
    assert {"ms", "pct", "share", "atr", "price", "price_fine", "qty", "quote", "count"} <= seen
    assert sim_doc["tick"] == 0.01 and sim_doc["qty_step"] == pytest.approx(1e-5)


def test_every_field_of_a_recorded_binance_document_follows_the_convention():
    frames = {"1d": recorded_klines(KLINES_1D), "1h": recorded_klines(KLINES_1H)}
    doc = json.loads(to_json(build_structure("binance", "btc", frames, now_ms=0)))
    check_document(doc)
    assert doc["qty_step"] is not None and doc["qty_step"] <= 1e-6  # BTCUSDT sizes: 1e-6 .. 1e-8


def test_the_walk_catches_a_broken_convention(sim_doc):
    bad = json.loads(json.dumps(sim_doc))
    bad["levels"][0]["price"] += 0.003  # off the tick
    with pytest.raises(AssertionError, match="not a multiple of the tick"):
        check_document(bad)
    bad = json.loads(json.dumps(sim_doc))
    bad["timeframes"]["1h"]["volume"]["last"] += 1e-7  # off the step
    with pytest.raises(AssertionError, match="not a multiple of the step"):
        check_document(bad)
    bad = json.loads(json.dumps(sim_doc))
    bad["timeframes"]["1h"]["volatility"]["atr_pct"] = 1.0000000001
    with pytest.raises(AssertionError, match="float noise"):
        check_document(bad)


def test_every_schema_field_is_named_in_the_docs():
    text = DOCS.read_text()
    names: set[str] = set()

    def collect(node):
        if isinstance(node, dict):
            for k, v in node.get("properties", {}).items():
                names.add(k)
                collect(v)
            for key in ("additionalProperties", "items"):
                if isinstance(node.get(key), dict):
                    collect(node[key])
            for branch in node.get("oneOf", []):
                collect(branch)

    collect(SCHEMA)
    missing = sorted(n for n in names if not re.search(rf"`[^`]*\b{re.escape(n)}\b[^`]*`", text))
    assert not missing, f"docs/structure.md does not describe: {missing}"


def test_rounding_helpers():
    assert qty_step(recorded_klines(KLINES_1H)) is not None
    assert round_to(55606.19999999999, 0.01) == 55606.2
    assert round_to(0.30000000000000004, 0.1) == 0.3
    assert round_to(1.23456, 0.5) == 1.0
    doc = apply_units(
        {"price": 1.0049999, "volume": 2.0000049, "atr": 1.234567, "x_pct": 1.234567, "last_quote": 3.14159},
        0.01,
        1e-5,
    )
    assert doc == {"price": 1.0, "volume": 2.0, "atr": 1.2346, "x_pct": 1.2346, "last_quote": 3.14}


def test_the_simulator_document_meets_the_issue_bounds(sim_doc):
    """Zones within their width bound, at most 4; level strengths spread over 0..1; the previous
    and developing day's POC within a few ATR of the price."""
    assert len(sim_doc["liquidity_zones"]) <= 4
    for z in sim_doc["liquidity_zones"]:
        assert z["high"] - z["low"] <= z["max_width"] + sim_doc["tick"] and z["width_atr"] <= 1.0
    strengths = sorted(lv["strength"] for lv in sim_doc["levels"])
    assert strengths[0] == 0.0 and strengths[-1] == 1.0 and len(strengths) >= 5
    for which in ("previous", "developing"):
        assert abs(sim_doc["sessions"]["day"][which]["poc_distance_atr"]) <= 5
