"""The live price against a structure document (pure functions of p9cli.fusion.position)."""

from __future__ import annotations

from p9cli.fusion import position as pos

DOC = {
    "levels": [
        {"price": 90.0, "kind": "swing_low", "strength": 0.5},
        {"price": 98.0, "kind": "poc", "strength": 0.9},
        {"price": 103.0, "kind": "swing_high", "strength": 0.7},
        {"price": 110.0, "kind": "pivot", "strength": 0.2},
    ],
    "sessions": {"day": {"previous": {"poc": 99.0, "vah": 101.0, "val": 97.0}}},
    "liquidity_zones": [{"low": 99.5, "high": 100.5}],
    "timeframes": {
        "1h": {"volatility": {"atr": 2.0, "atr_pct": 2.0, "atr_percentile_pct": 80.0}, "trend": {"score": 0.4}},
        "4h": {"volatility": {"atr": 4.0, "atr_pct": 4.0, "atr_percentile_pct": 10.0}, "trend": {"score": -0.2}},
        "1d": {"volatility": {"atr": None}, "trend": {"score": None}},
    },
    "alignment": {"score": 0.3},
}


def test_nearest_levels_with_distances_in_pct_and_atr():
    sup, res = pos.nearest_levels(DOC, 100.0)
    assert sup["price"] == 98.0 and sup["kind"] == "poc"
    assert res["price"] == 103.0
    assert sup["distance_pct"] == -2.0 and res["distance_pct"] == 3.0
    assert sup["distance_atr"] == {"1h": -1.0, "4h": -0.5, "1d": None}
    assert pos.nearest_levels(DOC, 80.0)[0] is None
    assert pos.nearest_levels(None, 100.0) == (None, None)


def test_value_area_zone_regime_bias_hints():
    assert pos.value_area(DOC, 100.0) == {"position": "inside", "poc": 99.0, "vah": 101.0, "val": 97.0,
                                          "above_poc": True}
    assert pos.value_area(DOC, 102.0)["position"] == "above"
    assert pos.value_area(DOC, 96.0)["position"] == "below"
    assert pos.zone_at(DOC, 100.0)["low"] == 99.5 and pos.zone_at(DOC, 101.0) is None
    assert pos.regime(DOC, 40.0) == {"label": "high", "rv_pct": 40.0, "percentile_pct": 80.0}
    assert pos.regime(DOC, None, tf="4h")["label"] == "low"
    b = pos.bias(DOC)
    assert (b["sign"], b["confidence"]) == (1, 0.3)
    assert b["tf_alignment"] == {"1h": 1, "4h": -1, "1d": None}
    sup, res = pos.nearest_levels(DOC, 100.0)
    h = pos.hints(DOC, sup, res, 25.0)
    assert h["stop"] == {"atr_mult": 2.0, "atr_timeframe": "1h", "long": 94.0, "short": 107.0}
    assert h["size"]["scalar"] == 2.0  # min(2, 50 / 25)
    assert pos.hints(None, None, None, None) == {"stop": None, "size": None}
