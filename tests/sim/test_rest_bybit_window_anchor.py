"""Which `limit` bars Bybit's kline answers when the window holds more than `limit` bars.

`start` only: the OLDEST `limit` bars from `start` (pybit issue #186: `start=9999&limit=1`
answers the earliest candle; ccxt and freqtrade page forward with start-only requests), still
sorted newest first. `end` or no bounds: the NEWEST `limit` bars.
"""

from __future__ import annotations

import httpx

MIN = 60_000


def kline(handle, **params):
    params = {"category": "spot", "symbol": "ETHUSDT", "interval": "1", **params}
    r = httpx.get(handle.rest_url("bybit") + "/v5/market/kline", params=params, timeout=10)
    assert r.status_code == 200 and r.json()["retCode"] == 0, r.text
    return [int(row[0]) for row in r.json()["result"]["list"]]


def test_start_only_is_anchored_at_start(sim):
    now = httpx.get(sim.rest_url("bybit") + "/v5/market/time", timeout=10).json()["time"]
    start = (now // MIN - 2000) * MIN + 17_000  # unaligned: the bar containing it is included
    opens = kline(sim, start=start, limit=300)
    assert opens == sorted(opens, reverse=True)
    assert opens[-1] == start - 17_000 and opens[0] == start - 17_000 + 299 * MIN
    assert len(opens) == 300


def test_end_or_no_bounds_give_the_newest_bars(sim):
    now = httpx.get(sim.rest_url("bybit") + "/v5/market/time", timeout=10).json()["time"]
    end = (now // MIN - 10) * MIN
    opens = kline(sim, start=end - 2000 * MIN, end=end, limit=100)
    assert opens[0] == end and opens[-1] == end - 99 * MIN
    latest = kline(sim, limit=5)
    # the forming bar (a new minute may have begun between the two requests)
    assert latest[0] in (now // MIN * MIN, now // MIN * MIN + MIN) and len(latest) == 5
