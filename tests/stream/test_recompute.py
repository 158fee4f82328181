"""A closed candle joins the in-memory history and its timeframe's structure is recomputed
(analyze_timeframe + build_structure(per_timeframe=...)); the other timeframes' sections are kept."""

from __future__ import annotations

import numpy as np

from p9cli.candles import Candles
from p9cli.services.stream import History

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def _candles(tf_ms: int, n: int, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0, 0.5, n))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) + 0.2
    low = np.minimum(open_, close) - 0.2
    ot = T0 + tf_ms * np.arange(n)
    return Candles.from_arrays(ot, open_, high, low, close, np.full(n, 3.0))


def test_closed_candle_recomputes_only_its_timeframe():
    candles = {"1m": _candles(60_000, 400, 1), "1h": _candles(3_600_000, 200, 2)}
    h = History("binance", "btc", dict(candles), None)
    first = h.recompute({"1m", "1h"}, T0 + 400 * 60_000)
    assert first is not None and set(first["timeframes"]) == {"1m", "1h"}
    h.doc = first

    last = candles["1m"]
    ot = int(last.open_time[-1]) + 60_000
    new = Candles.from_arrays([ot], [last.close[-1]], [150.0], [last.close[-1] - 1], [149.0], [50.0])
    h.add_closed("1m", new)
    assert h.dirty == {"1m"} and len(h.candles["1m"]) == 401
    second = h.recompute({"1m"}, ot + 60_000)
    assert second["timeframes"]["1h"] == first["timeframes"]["1h"]  # kept as it was
    assert second["timeframes"]["1m"] != first["timeframes"]["1m"]  # recomputed with the new candle
    # the same closed candle again (a repeat) does not duplicate the row
    h.add_closed("1m", new)
    assert len(h.candles["1m"]) == 401
