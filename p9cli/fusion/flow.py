"""Trade flow of one (exchange, symbol): a small state machine fed every normalized trade.

The hot path (:meth:`TradeFlow.add`) only touches the newest one-second bucket; the windows
(1 s, 10 s, 60 s, 5 min) are summed when a payload is built (at most a few times a second), so
a trade costs a few hundred nanoseconds whatever the windows.

Buckets are keyed by the trade's EXCHANGE time (whole seconds), so the figures describe the
market, not our receive jitter. The newest bucket is the second of the newest trade; "now" for
the windows is the caller's estimate of the exchange clock (so a quiet market shows 0 trades/s
instead of the last busy second).

Figures (all in base-asset units unless named ``quote``):

* ``last_price``; ``vwap_60s``/``vwap_300s``: volume-weighted price of the window's trades;
* ``trades_per_s_{1s,10s,60s}``: trades in the window divided by its length (the current,
  incomplete second is not counted, so 1 s means the last complete second);
* ``buy_volume_60s``/``sell_volume_60s`` by aggressor side, ``delta_60s`` = buy - sell;
* ``cvd``: cumulative volume delta since the flow started (buys minus sells);
* ``realized_vol_300s_pct``: annualised (365-day year) standard deviation of one-second log
  returns of the last price over the last 300 complete seconds, in percent; seconds without a
  trade repeat the previous price (return 0), as a one-second candle series would.
"""

from __future__ import annotations

import math
from collections import deque

from p9cli.fusion.units import RAW, Units

SECOND_MS = 1000
#: buckets kept: the longest window plus a margin.
KEEP_SECONDS = 330
WINDOWS_S = (1, 10, 60)
VOL_WINDOW_S = 300
SECONDS_PER_YEAR = 365 * 86_400

# bucket layout (a list, mutated in place on the hot path)
_SEC, _COUNT, _VOL, _QUOTE, _BUY, _SELL, _LAST = range(7)


class TradeFlow:
    """Rolling trade statistics of one symbol (see the module docstring)."""

    __slots__ = ("buckets", "cvd", "last_price", "last_ts_ms", "tick_high", "tick_low", "trades")

    def __init__(self) -> None:
        self.buckets: deque[list] = deque()
        self.cvd = 0.0
        self.last_price: float | None = None
        self.last_ts_ms: int | None = None
        self.trades = 0
        self.tick_low = math.inf
        self.tick_high = -math.inf

    def add(self, ts_ms: int, price: float, size: float, is_buy: bool) -> None:
        """One trade (exchange time ``ts_ms``)."""
        sec = ts_ms // SECOND_MS
        buckets = self.buckets
        if buckets and buckets[-1][_SEC] >= sec:
            # same second, or a print a little older than the newest (kept in the newest bucket:
            # its second has gone by for the windows anyway)
            b = buckets[-1]
        else:
            b = [sec, 0, 0.0, 0.0, 0.0, 0.0, price]
            buckets.append(b)
            while buckets[0][_SEC] <= sec - KEEP_SECONDS:
                buckets.popleft()
        b[_COUNT] += 1
        b[_VOL] += size
        b[_QUOTE] += size * price
        if is_buy:
            b[_BUY] += size
            self.cvd += size
        else:
            b[_SELL] += size
            self.cvd -= size
        if self.last_ts_ms is None or ts_ms >= self.last_ts_ms:
            b[_LAST] = price
            self.last_price = price
            self.last_ts_ms = ts_ms
        self.trades += 1
        if price < self.tick_low:
            self.tick_low = price
        if price > self.tick_high:
            self.tick_high = price

    def take_range(self) -> tuple[float, float] | None:
        """Lowest and highest price traded since the previous call (``None``: no trade), then
        start a new range (the level events are evaluated over it at each fusion tick)."""
        if self.tick_low > self.tick_high:
            return None
        out = (self.tick_low, self.tick_high)
        self.tick_low = math.inf
        self.tick_high = -math.inf
        return out

    def _window(self, now_sec: int, seconds: int) -> tuple[int, float, float, float, float]:
        """count, volume, quote volume, buy and sell volume of the complete seconds
        ``[now_sec - seconds, now_sec)``."""
        lo = now_sec - seconds
        n = vol = quote = buy = sell = 0.0
        for b in reversed(self.buckets):
            s = b[_SEC]
            if s >= now_sec:
                continue
            if s < lo:
                break
            n += b[_COUNT]
            vol += b[_VOL]
            quote += b[_QUOTE]
            buy += b[_BUY]
            sell += b[_SELL]
        return int(n), vol, quote, buy, sell

    def realized_vol_pct(self, now_sec: int, seconds: int = VOL_WINDOW_S) -> float | None:
        """Annualised volatility of one-second log returns over the last ``seconds`` complete
        seconds, in percent; ``None`` with fewer than 30 seconds of history."""
        lo = now_sec - seconds
        closes: list[tuple[int, float]] = [
            (b[_SEC], b[_LAST]) for b in self.buckets if lo - 1 <= b[_SEC] < now_sec
        ]
        if len(closes) < 2:
            return None
        first_sec = closes[0][0]
        span = (now_sec - 1) - first_sec
        if span < 30:
            return None
        sum_sq = 0.0
        prev = closes[0][1]
        for _, price in closes[1:]:
            r = math.log(price / prev)
            sum_sq += r * r
            prev = price
        # every second of the span contributes a return (0 where nothing traded); the mean
        # one-second return is taken as 0, as is usual for very short horizons
        variance = sum_sq / span
        return 100.0 * math.sqrt(variance * SECONDS_PER_YEAR)

    def snapshot(self, now_ms: int, units: Units = RAW) -> dict:
        """The flow figures at exchange time ``now_ms`` (JSON-ready), rounded by ``units``."""
        now_sec = now_ms // SECOND_MS
        out: dict = {"last_price": self.last_price, "last_trade_ms": self.last_ts_ms, "trades": self.trades}
        for w in WINDOWS_S:
            n, *_ = self._window(now_sec, w)
            out[f"trades_per_s_{w}s"] = n / w
        n60, vol60, quote60, buy60, sell60 = self._window(now_sec, 60)
        _, vol300, quote300, _, _ = self._window(now_sec, 300)
        out["volume_60s"] = units.size(vol60)
        out["quote_volume_60s"] = units.quote(quote60)
        out["vwap_60s"] = units.price(quote60 / vol60) if vol60 > 0 else None
        out["vwap_300s"] = units.price(quote300 / vol300) if vol300 > 0 else None
        out["buy_volume_60s"] = units.size(buy60)
        out["sell_volume_60s"] = units.size(sell60)
        out["delta_60s"] = units.size(buy60 - sell60)
        out["buy_share_60s"] = units.ratio(buy60 / vol60) if vol60 > 0 else None
        out["cvd"] = units.size(self.cvd)
        out["realized_vol_300s_pct"] = self.realized_vol_pct(now_sec)
        return out
