"""p9cli.candles.Candles, the one candle representation: its converters and combinations."""

from __future__ import annotations

import numpy as np
import pytest

from p9cli.candles import Candles, concat

H = 3_600_000


def rows(times, base=100.0, trades=None):
    return {
        t: (base + i, base + i + 2, base + i - 1, base + i + 1, 1.0 + i, (1.0 + i) * base, trades)
        for i, t in enumerate(times)
    }


def test_rows_round_trip_with_and_without_trade_counts():
    r = rows([3 * H, H, 2 * H], trades=None) | {4 * H: (1.0, 2.0, 0.5, 1.5, 3.0, 4.5, 17)}
    c = Candles.from_rows(r)
    assert c.open_time.tolist() == [H, 2 * H, 3 * H, 4 * H]  # sorted
    assert c.rows() == r and c.trade_counts() == [None, None, None, 17]
    assert c.open_time.dtype == np.int64 and c.close.dtype == np.float64 and np.isnan(c.trades[0])
    assert len(Candles.from_rows({})) == 0 and Candles.empty().rows() == {}


def test_merge_later_wins_and_selections():
    a = Candles.from_rows(rows([H, 2 * H, 3 * H], base=100.0))
    b = Candles.from_rows(rows([3 * H, 4 * H], base=500.0))
    m = a.merge(b)
    assert m.open_time.tolist() == [H, 2 * H, 3 * H, 4 * H]
    assert m.rows()[3 * H] == b.rows()[3 * H] and m.rows()[H] == a.rows()[H]
    assert concat([a, b]).equals(m) and a.merge(Candles.empty()) is a
    assert m.between(2 * H, 3 * H).open_time.tolist() == [2 * H, 3 * H]
    assert m.between(5 * H, 9 * H).rows() == {}
    assert m.take(m.open_time % (2 * H) == 0).open_time.tolist() == [2 * H, 4 * H]
    assert m.tail(2).open_time.tolist() == [3 * H, 4 * H] and len(m.tail(0)) == 0 and m.tail(9) is m
    assert a.append(Candles.from_rows(rows([9 * H]))).open_time.tolist() == [H, 2 * H, 3 * H, 9 * H]
    assert not a.equals(m) and a.equals(Candles.from_rows(a.rows()))  # NaN trades compare equal


def test_construction_defaults_and_checks():
    c = Candles.from_arrays(
        np.array(["2026-01-01T00:00", "2026-01-01T01:00"], dtype="datetime64[ms]"),
        [1, 2], [2, 3], [0.5, 1.5], [1.5, 2.5], [10, 20],
    )  # fmt: skip
    assert c.open_time.tolist() == [1_767_225_600_000, 1_767_229_200_000]
    assert c.quote_volume.tolist() == [15.0, 50.0]  # volume x close when not given
    assert c.trade_counts() == [None, None]
    seven = Candles(
        *(getattr(c, f) for f in ("open_time", "open", "high", "low", "close", "volume", "quote_volume"))
    )
    assert seven.equals(c)  # the analytics' 7-column construction still works
    with pytest.raises(ValueError, match="3 trade counts for 2 candles"):
        Candles(
            *(getattr(c, f) for f in ("open_time", "open", "high", "low", "close", "volume", "quote_volume")),
            np.zeros(3),
        )
