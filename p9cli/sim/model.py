"""The simulated market: one deterministic 1-minute path per symbol, seen by three exchanges.

Contract used by the REST, WS and control parts of the simulator
-----------------------------------------------------------------
All values are integers: times in epoch ms, prices in ticks of the instrument
(``Instrument.tick``), quantities in the instrument's ``qty_unit``; quote volume in
``tick * qty_unit`` units. Formatting to exchange strings is done with the ``Instrument``
methods (``price_str``, ``qty_str``, ``quote_str``), never with floats.

    Bars(open_time, open, high, low, close, volume, quote, trades, closed,  # int64 arrays, closed bool
         taker_buy_volume, taker_buy_quote)
    Trades(id, time, price, qty, taker_buy)                                 # int64 arrays, taker_buy bool

    model = MarketModel(seed, clock, instruments=INSTRUMENTS)
    model.live_start_ms      # first live minute: the minute containing clock.start_ms
    model.history_start_ms   # first minute that exists (00:00 UTC, 1100 days before the start's day)
    model.bars(exchange, symbol, tf_ms, offset_ms, first_open_ms, last_open_ms, now_ms) -> Bars
    model.trades(exchange, symbol, start_ms, end_ms) -> Trades     # start_ms <= time < end_ms
    model.last_trade_price(exchange, symbol, now_ms) -> int        # ticks
    model.minute(exchange, symbol, minute_ms) -> (o, h, l, c, volume, quote, trades)  # whole minute
    model.first_trade_id(exchange, symbol) -> int                  # id of the first live trade
    model.trade_minute(exchange, symbol, trade_id) -> int          # open time of its minute
    model.trades_from_id(exchange, symbol, from_id, limit, end_ms) -> Trades  # id >= from_id
    model.warm_up()          # precompute history aggregates (run in a thread at start)

* ``exchange`` / ``symbol`` are the canonical names (``'binance'``, ``'btc'``); an unknown
  name raises ``KeyError`` (the servers validate codes first, with ``instrument_by_code``).
* ``bars``: every bar with ``first_open_ms <= open_time <= last_open_ms``, ``open_time %
  tf_ms == offset_ms``, ``open_time <= now_ms`` and ``open_time >= history_start_ms``
  (``tf_ms``/``offset_ms`` whole minutes, e.g. from ``instruments.INTERVALS``). The bar that
  contains ``now_ms`` is forming: ``closed=False``, aggregate of the trades with ``time <=
  now_ms`` (a minute that has just opened and has no trade yet counts as o=h=l=c=its open,
  volume 0). The arrays are fresh copies. Keep ranges bounded (the servers ask for at most
  their page size): a bar costs work in proportion to the minutes it covers only for
  ``1m``/``3m`` and for the live days.
* ``trades``: not filtered by the clock: the trades of the future are already decided, so a
  caller (the live feed) asks for ``[cursor, now + 1)``. ``taker_buy`` is True when the
  aggressor bought (Binance ``m`` = not taker_buy, Bybit ``S`` = Buy/Sell, OKX ``side``).
  Trade ids are consecutive per (exchange, symbol) in time order from ``live_start_ms``
  (within a UTC week; each Monday 00:00 UTC they jump to the next week's stride), and a
  trade's id does not depend on when the simulator started: ``_TRADE_ID_BASE[exchange] +
  symbol index * _TRADE_ID_SYM_STEP[exchange] + weeks since 2000-01-03 * 1e8 + trades of
  the week before it`` (Binance ~1.4e11, Bybit 19 digits, OKX ~1.4e11 in 2026), so a
  restarted simulator continues the ids. Several trades may share a millisecond.
* Thread safety: ``warm_up`` runs in a background thread while the servers call the other
  methods; everything computed is a pure function of (seed, time), so a race at worst
  computes the same numbers twice.

How the market is made
----------------------
Everything is a pure function of ``seed`` and the absolute time: the path of a minute does not
depend on when the simulator was started, nor on which requests came first. Random numbers
come from counter-based generators keyed by (seed, day, stream) (numpy ``Philox`` with the
day in its counter) and, for trades, from a splitmix64 hash of (seed, exchange, symbol,
minute, trade or slot index; seed, symbol, minute for where the extremes fall) evaluated
with integer-only numpy code, so that one minute generated
alone and the same minute generated in a batch of a whole day are identical to the bit.

* Daily level, per symbol: log price ``x[d]`` (relative to ``ref_price``) with weak mean
  reversion, a common market factor (betas) and AR(1) log volatility (clustering),
  anchored at 2026-01-01 (``x = 0``: the day closes at ``ref_price``) and extended forward
  and backward from there with the same recursion, one day at a time.
* Within a day, jointly for the five symbols: a 1440-step Brownian bridge from the
  previous day's close to the day's close, on a clock that runs faster in the busy hours
  (Asia/Europe opens, the US session), with correlated increments.
* Per exchange: ``price = path * exp(basis)``; the basis is a few bps, slowly varying (AR(1)
  at the daily level, interpolated within the day) plus a small per-minute jitter; rounded to
  the exchange's tick. Exchange-specific volume shares and noise.
* Minute candle (ticks / qty units, int64): ``open`` = previous minute's close; ``high`` /
  ``low`` extend beyond max/min(open, close) by a random excursion; volume ``V`` and trade
  count ``n`` (``n >= MIN_TRADES``, ``V >= n``) from the volume pattern and the size of the move.
* Minutes before ``live_start_ms`` are *historical*: their quote volume is
  ``V * ((o + h + l + c + 2) // 4)`` (V times the rounded mean price). Minutes from
  ``live_start_ms`` on are *live*: their ``n`` trades exist one by one (times strictly inside
  the minute, first price = open, last = close, max = high, min = low, quantities > 0
  summing to V) and the quote volume is ``sum(price * qty)``. A live minute's candle,
  including the forming one, is exactly the aggregate of its trades with ``time <= now``.
* The tape (``_generate_trades``): Binance BTC prints several hundred to a few thousand
  trades a minute (the others fewer, Bybit about 0.45x and OKX 0.35x of Binance, never
  fewer than ``MIN_TRADES``), following the intraday pattern and the size of the move;
  arrivals are stratified into 2-3 s slots that each hold a trade (no silence longer than
  two slots) with clustered counts, bursts and fills sharing a millisecond; prices walk in
  ticks through open, the two extremes (at a time of the minute common to the exchanges)
  and close, half the trades repeating the previous price; sizes are heavy-tailed.
* A bar of any (tf_ms, offset_ms) is the exact aggregate of its minutes.

Trade ids are consecutive per (exchange, symbol) within a UTC week, assigned in time order,
and the same in every run whatever its start (see ``_first_live_ids``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from p9cli.sim.instruments import DAY_MS, INSTRUMENTS, Instrument
from p9cli.universe import EXCHANGES, MINUTE_MS, SYMBOLS

# ----------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Bars:
    """Candles, ascending by ``open_time``. All int64 arrays except ``closed`` (bool).

    ``taker_buy_volume`` / ``taker_buy_quote`` (qty units / tick*qty_unit units, what Binance
    publishes as taker buy base / quote volume): in live minutes the sums over the trades
    whose taker bought; in historical minutes a share of the volume that leans with the
    minute's move, quote = that volume times the minute's rounded mean price."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote: np.ndarray
    trades: np.ndarray
    closed: np.ndarray
    taker_buy_volume: np.ndarray
    taker_buy_quote: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)


@dataclass(frozen=True)
class Trades:
    """Trades ascending by (time, id). ``id``/``time``/``price``/``qty`` int64, ``taker_buy`` bool."""

    id: np.ndarray
    time: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    taker_buy: np.ndarray

    def __len__(self) -> int:
        return len(self.id)


_I64 = np.int64
_EMPTY_I = np.zeros(0, dtype=_I64)
_EMPTY_B = np.zeros(0, dtype=bool)


def _empty_bars() -> Bars:
    return Bars(*([_EMPTY_I] * 8), _EMPTY_B, _EMPTY_I, _EMPTY_I)


def _empty_trades() -> Trades:
    return Trades(_EMPTY_I, _EMPTY_I, _EMPTY_I, _EMPTY_I, _EMPTY_B)


#: The per-minute series the model keeps, in this order everywhere (``_Day.arrays``, the
#: aggregate stores, units): how each aggregates into a longer bar.
SERIES = ("open", "high", "low", "close", "volume", "quote", "trades", "buy_volume", "buy_quote")
N_SERIES = len(SERIES)


def _aggregate(cols: tuple[np.ndarray, ...], idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """Aggregate units into groups starting at ``idx`` (ascending, idx[0] == 0, the last group
    runs to the end): open of the first, max high, min low, close of the last, sums."""
    o, h, lo, c = cols[:4]
    last = np.empty_like(idx)
    last[:-1] = idx[1:] - 1
    last[-1] = len(o) - 1
    return (
        o[idx],
        np.maximum.reduceat(h, idx),
        np.minimum.reduceat(lo, idx),
        c[last],
        *(np.add.reduceat(x, idx) for x in cols[4:]),
    )


# ----------------------------------------------------------------------------------- parameters

MINUTES_PER_DAY = 1440
#: Resolutions (minutes) of the aggregate stores of historical days: a bar is assembled from
#: the coarsest one that divides both its length and its offset.
STORE_MINUTES = (1440, 60, 15, 5)
#: The model's reference day: 2026-01-01 closes at each instrument's ``ref_price``.
ANCHOR_DAY = 20454  # 2026-01-01 as days since the epoch
HISTORY_DAYS = 1100

SYM_INDEX = {s: i for i, s in enumerate(SYMBOLS)}
EX_INDEX = {e: i for i, e in enumerate(EXCHANGES)}
N_SYM = len(SYMBOLS)
N_EX = len(EXCHANGES)

# daily volatility, beta to the market factor
_SIGMA = {"btc": 0.025, "eth": 0.032, "sol": 0.045, "bnb": 0.025, "xrp": 0.040}
_BETA = {"btc": 0.90, "eth": 0.85, "sol": 0.75, "bnb": 0.70, "xrp": 0.70}
SIGMA = np.array([_SIGMA[s] for s in SYMBOLS])
BETA = np.array([_BETA[s] for s in SYMBOLS])
IDIO = np.sqrt(1.0 - BETA**2)
#: Mean reversion per day towards ref_price, stronger far from it: kappa(x) = A + B * x**2 for a
#: log deviation x (half-life ~8 months near ref, ~2 months at 2x or 0.5x, weeks beyond 3x).
MEAN_REVERSION = 0.003
MEAN_REVERSION_FAR = 0.012
VOL_PERSISTENCE = 0.98  # AR(1) of daily log volatility
VOL_OF_VOL = 0.35  # stationary std of daily log volatility
# exchange basis (relative, a few bps): constant mean, AR(1) daily, per-minute jitter
_BASIS_MEAN = {"binance": 0.0, "bybit": 0.3e-4, "okx": -0.4e-4}
BASIS_MEAN = np.array([_BASIS_MEAN[e] for e in EXCHANGES])
BASIS_PERSISTENCE = 0.9
BASIS_STD = 1.0e-4
BASIS_JITTER = 0.4e-4
# base volume per day (base asset) and mean trades per minute, per exchange and symbol
_DAILY_VOLUME = {"btc": 12_000, "eth": 250_000, "sol": 2_500_000, "bnb": 150_000, "xrp": 120_000_000}
#: Mean trades per minute on Binance (real BTCUSDT spot prints about 1-3 million trades a day,
#: i.e. several hundred to a few thousand a minute; the others fewer), scaled per exchange.
_TRADES_PER_MIN = {"btc": 1000, "eth": 600, "sol": 450, "bnb": 150, "xrp": 300}
_EX_SHARE = {"binance": 1.0, "bybit": 0.35, "okx": 0.25}
_EX_TRADE_SHARE = {"binance": 1.0, "bybit": 0.45, "okx": 0.35}
#: Fewest trades in a minute: enough for every arrival slot of the minute to hold a trade.
MIN_TRADES = 40
#: Arrival slots per minute: ``clip(n // 2, 1, MAX_SLOTS)`` slots of equal length (2 s for n >=
#: 60, 3 s at MIN_TRADES), each holding at least one trade, so that the tape is never silent
#: for more than two slots; the remaining trades cluster (heavy-tailed slot intensities that
#: spill over into the next slot, heavy-tailed gaps within a slot, bursts in one millisecond).
MAX_SLOTS = 30
#: Live minutes get their trade-based quote volumes in blocks of this many minutes (a busy
#: series has ~100k trades an hour: a block costs a few ms, not tens).
LIVE_BLOCK = 10
#: Trade ids per exchange: base + symbol offset + a stride per UTC week (weeks from
#: :data:`_ID_WEEK_ANCHOR_DAY`) + the trades of that week before it. A trade's id is therefore a
#: function of the seed and the trade alone, not of when the simulator started: a simulator
#: restarted mid-run gives every trade the id it had (ids continue; see ``_first_live_ids``).
_TRADE_ID_BASE = {"binance": 5_000_000_000, "bybit": 2_290_000_000_090_000_000, "okx": 670_000_000}
_TRADE_ID_SYM_STEP = {"binance": 400_000_000, "bybit": 10_000_000_000, "okx": 30_000_000}
#: more than any series trades in a week (Binance BTC: ~12 million at the busiest)
_TRADE_ID_WEEK_STRIDE = 100_000_000
_ID_WEEK_ANCHOR_DAY = 10_959  # 2000-01-03, a Monday (days since the epoch)
#: per-day trade counts (N_EX, N_SYM) by (seed, day) for the default instruments, shared by
#: every model of the process (a restart-stable first id costs up to 6 day generations)
_DAY_TRADE_COUNTS: dict[tuple[int, int], np.ndarray] = {}

# random streams
_S_DAILY, _S_INTRADAY, _S_EXCHANGE, _S_TRADES, _S_PATH = 1, 2, 3, 4, 5
_DAY_BLOCK = 64  # daily shocks are drawn in blocks of 64 days
_DAILY_K = 1 + N_SYM + N_EX * N_SYM + 1  # market factor, idiosyncratic, basis, vol


def _intraday_patterns() -> tuple[np.ndarray, np.ndarray]:
    """Per-minute variance weights (sum 1) and volume weights (sum 1) over a UTC day."""
    m = np.arange(MINUTES_PER_DAY, dtype=float)

    def bump(center: float, width: float) -> np.ndarray:
        d = (m - center + 720) % 1440 - 720  # circular distance
        return np.exp(-0.5 * (d / width) ** 2)

    activity = (
        1.0
        + 0.35 * bump(0, 90)  # daily close / Asia open (U shape around 00:00 UTC)
        + 0.25 * bump(120, 60)  # Asia morning
        + 0.30 * bump(8 * 60, 60)  # Europe open
        + 0.90 * bump(14 * 60 + 30, 75)  # US open
        + 0.40 * bump(17 * 60, 120)  # US session
    )
    var_w = activity / activity.sum()
    vol_w = activity**1.5
    vol_w /= vol_w.sum()
    return var_w, vol_w


VAR_W, VOL_W = _intraday_patterns()
TAU = np.cumsum(VAR_W)
TAU[-1] = 1.0
SQRT_VAR_W = np.sqrt(VAR_W)
TAU_LIN = np.arange(1, MINUTES_PER_DAY + 1, dtype=float) / MINUTES_PER_DAY

# ----------------------------------------------------------------------------------- hashing

_M64 = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15


def _mix_int(z: int) -> int:
    """splitmix64 finaliser on a Python int."""
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _key(*parts: int) -> int:
    h = 0x243F6A8885A308D3
    for p in parts:
        h = _mix_int(h ^ (int(p) & _M64)) + _GOLD
    return _mix_int(h)


_U30, _U27, _U31 = np.uint64(30), np.uint64(27), np.uint64(31)
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_UGOLD = np.uint64(_GOLD)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arrays wrap silently)."""
    z = z ^ (z >> _U30)
    z = z * _C1
    z = z ^ (z >> _U27)
    z = z * _C2
    return z ^ (z >> _U31)


def _philox(seed: int, stream: int, a: int, b: int = 0) -> np.random.Generator:
    key = [seed & _M64, _key(seed, stream)]
    return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, a & _M64, b & _M64]))


# ----------------------------------------------------------------------------------- daily level


_SIGMA_T, _BETA_T, _IDIO_T = tuple(SIGMA.tolist()), tuple(BETA.tolist()), tuple(IDIO.tolist())
_BASIS_MEAN_T = tuple(float(BASIS_MEAN[e]) for e in range(N_EX) for _ in range(N_SYM))
_VOL_INNOVATION = VOL_OF_VOL * math.sqrt(1 - VOL_PERSISTENCE**2)
_BASIS_INNOVATION = BASIS_STD * math.sqrt(1 - BASIS_PERSISTENCE**2)


class _DailyTable:
    """Daily closes of every series, computed by recursion from ANCHOR_DAY outwards.

    Per day ``d``: ``x[d, s]`` log price relative to ref (the close of day d), ``vm[d]`` the
    volatility multiplier of day d, ``basis[d, e, s]`` and ``close[d, e, s]`` in ticks. Values
    for a day never depend on which range was computed (same recursion, same shocks)."""

    def __init__(self, seed: int, ref_ticks: np.ndarray):
        self.seed = seed
        self.ref_ticks = ref_ticks  # (N_EX, N_SYM) float
        self.lo = self.hi = ANCHOR_DAY  # computed days: lo..hi inclusive
        self.x: dict[int, list[float]] = {ANCHOR_DAY: [0.0] * N_SYM}
        self.g: dict[int, float] = {ANCHOR_DAY: 0.0}
        self.b: dict[int, list[float]] = {ANCHOR_DAY: list(BASIS_MEAN.repeat(N_SYM))}
        self._close: dict[int, np.ndarray] = {}
        self._blocks: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _shocks(self, day: int) -> np.ndarray:
        blk = day // _DAY_BLOCK
        arr = self._blocks.get(blk)
        if arr is None:
            arr = _philox(self.seed, _S_DAILY, blk).standard_normal((_DAY_BLOCK, _DAILY_K))
            self._blocks[blk] = arr
        return arr[day % _DAY_BLOCK]

    def close(self, day: int) -> np.ndarray:
        """Close of day ``day`` in ticks, (N_EX, N_SYM) int64 (computed once, on demand)."""
        got = self._close.get(day)
        if got is None:
            self.ensure(day, day)
            got = self._close.setdefault(day, self._close_ticks(day))
        return got

    def _close_ticks(self, day: int) -> np.ndarray:
        x, b = self.x[day], self.b[day]
        out = np.empty((N_EX, N_SYM), dtype=_I64)
        for e in range(N_EX):
            for s in range(N_SYM):
                v = self.ref_ticks[e, s] * math.exp(x[s] + b[e * N_SYM + s])
                out[e, s] = max(1, int(round(v)))
        return out

    def _step(self, src: int, dst: int, shock_day: int) -> None:
        """One day of the recursion from ``src`` to its neighbour ``dst`` (either direction)."""
        z = self._shocks(shock_day).tolist()
        g = VOL_PERSISTENCE * self.g[src] + _VOL_INNOVATION * z[-1]
        # the return of shock_day uses that day's volatility
        g_ret = g if dst == shock_day else self.g[src]
        vm = math.exp(g_ret - 0.5 * VOL_OF_VOL**2)
        f = z[0]
        xs = self.x[src]
        sign = 1.0 if dst > src else -1.0
        x = [
            (1 - MEAN_REVERSION - MEAN_REVERSION_FAR * xi * xi) * xi
            + sign * sig * vm * (beta * f + idio * zi)
            for xi, sig, beta, idio, zi in zip(xs, _SIGMA_T, _BETA_T, _IDIO_T, z[1 : 1 + N_SYM], strict=True)
        ]
        bs = self.b[src]
        b = [
            mean + BASIS_PERSISTENCE * (bk - mean) + _BASIS_INNOVATION * zk
            for mean, bk, zk in zip(_BASIS_MEAN_T, bs, z[1 + N_SYM : 1 + N_SYM + N_EX * N_SYM], strict=True)
        ]
        self.g[dst], self.x[dst], self.b[dst] = g, x, b

    def ensure(self, lo: int, hi: int) -> None:
        if self.lo <= lo and hi <= self.hi:
            return
        with self._lock:
            while self.hi < hi:
                self._step(self.hi, self.hi + 1, self.hi + 1)
                self.hi += 1
            while self.lo > lo:
                self._step(self.lo, self.lo - 1, self.lo)
                self.lo -= 1

    def vol_mult(self, day: int) -> float:
        return math.exp(self.g[day] - 0.5 * VOL_OF_VOL**2)


# ----------------------------------------------------------------------------------- one day


class _Day:
    """All minutes of one UTC day for every (exchange, symbol): ``arrays`` = int64 arrays
    (N_EX, N_SYM, 1440) in ``SERIES`` order (``open`` ... ``trades`` also as attributes).

    ``quote`` / ``buy_volume`` / ``buy_quote`` hold the historical formulas until the live
    minutes' values are filled in from their trades (per block of minutes, on demand);
    ``live_blocks[e, s, b]`` says which blocks of ``LIVE_BLOCK`` minutes are done."""

    __slots__ = (
        "day",
        "arrays",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trades",
        "live_from",
        "live_blocks",
    )

    def __init__(self, day: int, arrays: tuple[np.ndarray, ...], live_from: int):
        self.day = day
        self.arrays = arrays
        self.open, self.high, self.low, self.close, self.volume, _, self.trades = arrays[:7]
        self.live_from = live_from  # first live minute index in the day (1440 = none)
        self.live_blocks = np.zeros((N_EX, N_SYM, MINUTES_PER_DAY // LIVE_BLOCK), dtype=bool)
        if live_from < MINUTES_PER_DAY:
            self.live_blocks[:, :, : live_from // LIVE_BLOCK] = True  # blocks wholly historical


def _generate_day(
    seed: int,
    daily: _DailyTable,
    day: int,
    ref_ticks: np.ndarray,
    daily_units: np.ndarray,
    trades_per_min: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The minute candles of one day for all series: int64 arrays (N_EX, N_SYM, 1440) of
    open, high, low, close, volume, quote (historical formula), trades. Fixed shapes and
    operations, so a day is bit-identical whenever and wherever it is generated."""
    daily.ensure(day - 1, day)
    x0 = np.array(daily.x[day - 1])[:, None]  # (N_SYM, 1)
    x1 = np.array(daily.x[day])[:, None]
    b0 = np.array(daily.b[day - 1]).reshape(N_EX, N_SYM, 1)
    b1 = np.array(daily.b[day]).reshape(N_EX, N_SYM, 1)
    vm = daily.vol_mult(day)
    rng = _philox(seed, _S_INTRADAY, day)
    f = rng.standard_normal(MINUTES_PER_DAY)
    eps = rng.standard_normal((N_SYM, MINUTES_PER_DAY))
    z = BETA[:, None] * f[None, :] + IDIO[:, None] * eps  # (N_SYM, 1440) correlated across symbols
    inc = z * (SIGMA * vm)[:, None] * SQRT_VAR_W[None, :]
    w = np.cumsum(inc, axis=1)
    path = x0 + TAU[None, :] * (x1 - x0) + w - TAU[None, :] * w[:, -1:]  # Brownian bridge (N_SYM, 1440)

    rng_e = _philox(seed, _S_EXCHANGE, day)
    noise = rng_e.standard_normal((6, N_EX, N_SYM, MINUTES_PER_DAY))  # jitter, hi, lo, volume, trades, buy
    jitter = noise[0] * BASIS_JITTER
    jitter[:, :, -1] = 0.0
    basis = b0 + TAU_LIN[None, None, :] * (b1 - b0) + jitter  # (N_EX, N_SYM, 1440)
    price = ref_ticks[:, :, None] * np.exp(path[None, :, :] + basis)  # ticks, float
    close = np.rint(price).astype(_I64)
    np.maximum(close, 1, out=close)
    close[:, :, -1] = daily.close(day)
    open_ = np.empty_like(close)
    open_[:, :, 1:] = close[:, :, :-1]
    open_[:, :, 0] = daily.close(day - 1)

    # excursions beyond the body: about half a minute's sigma, in ticks
    half_sigma = price * ((0.5 * vm) * SIGMA)[None, :, None] * SQRT_VAR_W[None, None, :]
    high = np.maximum(open_, close)
    high += (np.abs(noise[1]) * half_sigma).astype(_I64)  # truncation = floor (non-negative)
    low = np.minimum(open_, close)
    low -= (np.abs(noise[2]) * half_sigma).astype(_I64)
    np.maximum(low, 1, out=low)

    # volume and trades: pattern x activity x |move| x exchange noise
    move = 0.55 + 0.45 * np.abs(z)  # (N_SYM, 1440)
    vexp = daily_units[:, :, None] * (VOL_W * vm**0.7)[None, None, :] * move[None, :, :]
    volume = (vexp * np.exp(0.35 * noise[3] - 0.06125)).astype(_I64)
    texp = trades_per_min[:, :, None] * (VOL_W * (MINUTES_PER_DAY * vm**0.5))[None, None, :]
    trades = (texp * move[None, :, :] * np.exp(0.25 * noise[4] - 0.03125)).astype(_I64)
    np.maximum(trades, MIN_TRADES, out=trades)
    np.maximum(volume, trades, out=volume)
    mean_price = (open_ + high + low + close + 2) // 4
    quote = volume * mean_price
    # taker buy share: leans with the minute's move, plus noise
    share = np.clip(0.5 + 0.15 * np.tanh(z)[None, :, :] + 0.08 * noise[5], 0.02, 0.98)
    buy_volume = (volume * share).astype(_I64)
    buy_quote = buy_volume * mean_price
    return open_, high, low, close, volume, quote, trades, buy_volume, buy_quote


# ----------------------------------------------------------------------------------- trades


def _segment_cumsum(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at each segment (exact for int64)."""
    c = np.cumsum(values)
    before = np.zeros(len(starts), dtype=c.dtype)
    before[1:] = c[starts[1:] - 1]
    return c - np.repeat(before, lengths)


def _trade_times(mkey: np.ndarray, minute_ms: np.ndarray, n: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Times of the trades (see ``_generate_trades``): stratified slots with clustered counts,
    clustered times inside a slot; strictly inside the minute, ascending. ``base``: the
    per-trade hashes."""
    m = len(n)
    h_time = _mix(base ^ np.uint64(0x1111111111111111))
    k = np.clip(n // 2, 1, MAX_SLOTS)
    sstarts = np.zeros(m, dtype=_I64)
    np.cumsum(k[:-1], out=sstarts[1:])
    srep = np.repeat(np.arange(m), k)
    si = np.arange(int(k.sum()), dtype=_I64) - sstarts[srep]  # slot index within the minute
    skey = mkey[srep] ^ np.uint64(0x7777777777777777)
    hs = _mix(skey + (si.astype(np.uint64) + np.uint64(2)) * _UGOLD)
    hs_prev = _mix(skey + (si.astype(np.uint64) + np.uint64(1)) * _UGOLD)  # hs of slot si - 1

    def intensity(x: np.ndarray) -> np.ndarray:  # 255 .. 16384, P(w > y) ~ 1/y
        return (1 << 20) // (64 + (x >> np.uint64(50)).astype(_I64))

    w = 1024 + intensity(hs) + intensity(hs_prev) // 2
    cw = _segment_cumsum(w, sstarts, k)
    ks = k[srep]
    rest = (n - k)[srep]
    alloc = (rest * cw) // cw[sstarts + k - 1][srep]
    cnt = np.empty_like(alloc)
    cnt[0:] = alloc
    cnt[1:] -= alloc[:-1]
    cnt[sstarts] = alloc[sstarts]
    cnt += 1  # sums to n per minute
    tstarts = np.zeros(len(cnt), dtype=_I64)
    np.cumsum(cnt[:-1], out=tstarts[1:])
    tslot = np.repeat(np.arange(len(cnt)), cnt)
    slot_lo = (si * MINUTE_MS) // ks
    slot_len = ((si + 1) * MINUTE_MS) // ks - slot_lo
    gaps = (1 << 22) // (256 + (h_time >> np.uint64(44)).astype(_I64))  # 256 .. 16384
    burst = (h_time & np.uint64(0xFF)).astype(_I64) < 85
    burst[tstarts] = False  # a slot's first trade is never glued to the slot's start
    gaps[burst] = 0
    cum = _segment_cumsum(gaps, tstarts, cnt)
    last_gap = (1 << 22) // (256 + (hs >> np.uint64(44)).astype(_I64))
    span = cum[tstarts + cnt - 1] + last_gap
    time = (minute_ms.astype(_I64)[srep] + slot_lo + 1)[tslot] + (cum * (slot_len - 2)[tslot]) // span[tslot]
    return time


def _generate_trades(
    series_key: int,
    path_key: int,
    minute_ms: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    n: np.ndarray,
    with_times: bool = True,
) -> tuple[np.ndarray | None, ...]:
    """Trades of the given minutes of one series. Integer-only: the result for a minute is
    the same whether it is generated alone or in a batch.

    Returns (time, price, qty, taker_buy, starts) with ``starts[i]`` the index of minute i's
    first trade; each minute has exactly ``n[i]`` trades (``n >= 4``). ``with_times=False``
    leaves the times out (``None``): prices, sizes and sides do not depend on them.

    * Times: the minute is cut into ``k = clip(n // 2, 1, MAX_SLOTS)`` equal slots; each slot
      gets one trade plus a share of the other ``n - k`` proportional to a heavy-tailed
      intensity that spills half over into the next slot (clusters, Hawkes-like); within a
      slot, heavy-tailed gaps, a third of them zero (several fills of one taker order share a
      millisecond). Strictly inside the minute, ascending.
    * Prices: open -> first extreme -> other extreme -> close, piecewise linear in the trade
      index, plus a lazy random walk (two steps in three are zero) bridged to zero at those four points, clipped to [low, high]:
      the price moves in ticks through the minute's path and touches high and low exactly;
      about half the trades repeat the previous trade's price.
    * Quantities: Pareto-like (tail index about 1) integer weights over a 65536:1 range (many
      small trades, a few large), an exact split of V into n positive parts.
    * Side: up-tick buys, down-tick sells, otherwise a coin flip."""
    n = n.astype(_I64)
    m = len(n)
    total = int(n.sum())
    starts = np.zeros(m, dtype=_I64)
    np.cumsum(n[:-1], out=starts[1:])
    last = starts + n - 1
    rep = np.repeat(np.arange(m), n)
    j = np.arange(total, dtype=_I64) - starts[rep]  # index within the minute
    mkey = _mix(np.uint64(series_key) ^ (minute_ms.astype(np.uint64) * _UGOLD))  # per minute
    base = _mix(mkey[rep] + (j.astype(np.uint64) + np.uint64(1)) * _UGOLD)  # per trade
    # disjoint bit fields of two hashes: price (walk step 0-15 and 48-63, lazy 20-27, hold
    # 28-35), size (44-63) and side (0)
    h_price = base
    h_qty = _mix(base ^ np.uint64(0x3333333333333333))

    time = _trade_times(mkey, minute_ms, n, base) if with_times else None
    # ---- prices: piecewise-linear path through the extremes plus a bridged random walk
    # where in the minute the extremes come is common to the exchanges (one market, arbitraged)
    h_path = _mix(np.uint64(path_key) ^ (minute_ms.astype(np.uint64) * _UGOLD))
    u_hi = (h_path & np.uint64(0xFFFF)).astype(_I64)
    u_lo = ((h_path >> np.uint64(16)) & np.uint64(0xFFFF)).astype(_I64)
    i_hi = 1 + ((n - 2) * u_hi >> 16)  # 1 .. n-2
    i_lo = 1 + ((n - 3) * u_lo >> 16)  # 1 .. n-3, then skip i_hi
    i_lo = i_lo + (i_lo >= i_hi)
    a1, a2 = np.minimum(i_hi, i_lo), np.maximum(i_hi, i_lo)
    hi_first = i_hi < i_lo
    p1, p2 = np.where(hi_first, h, lo), np.where(hi_first, lo, h)
    A1, A2 = a1[rep], a2[rep]
    leg0, leg1 = j <= A1, j <= A2
    ja = np.where(leg0, 0, np.where(leg1, A1, A2))
    jb = np.where(leg0, A1, np.where(leg1, A2, (n - 1)[rep]))
    pa = np.where(leg0, o[rep], np.where(leg1, p1[rep], p2[rep]))
    pb = np.where(leg0, p1[rep], np.where(leg1, p2[rep], c[rep]))
    dj = jb - ja
    # two trades in three leave the walk where it was (a tape repeats prices)
    steps = (h_price & np.uint64(0xFFFF)).astype(_I64) - (h_price >> np.uint64(48)).astype(_I64)
    steps[(h_price >> np.uint64(20) & np.uint64(0xFF)).astype(_I64) < 171] = 0
    walk = _segment_cumsum(steps, starts, n)
    wa, wb = walk[starts[rep] + ja], walk[starts[rep] + jb]
    bridge = walk - wa - ((wb - wa) * (j - ja)) // dj
    amp = (h - lo)[rep]
    denom = (53_510 * np.maximum(np.sqrt(n.astype(float)).astype(_I64), 1))[rep]
    price = pa + ((pb - pa) * (j - ja)) // dj + (bridge * amp) // denom
    np.clip(price, lo[rep], h[rep], out=price)
    price[starts] = o
    price[last] = c
    price[starts + i_hi] = h
    price[starts + i_lo] = lo
    # about half the trades print at the previous trade's price (the same resting level)
    moves = (h_price >> np.uint64(28) & np.uint64(0xFF)).astype(_I64) >= 128
    moves[starts] = moves[last] = moves[starts + i_hi] = moves[starts + i_lo] = True
    price = price[np.maximum.accumulate(np.where(moves, np.arange(total, dtype=_I64), 0))]

    # ---- quantities: Pareto-like integer weights (1024 .. 2^26, median about twice the
    # smallest, mean about 11 times), exact split of V into n positive parts
    u = (h_qty >> np.uint64(44)).astype(_I64)  # 0 .. 2^20-1
    weights = (1 << 30) // (16 + u)
    # keep (V - n) * sum(weights) inside int64 for huge minutes: fewer weight bits where
    # (V - n) * n * 2^26 would pass 2^61 (a per-minute decision, exact)
    bits = np.log2((v - n).astype(float) + 1.0) + np.log2(n.astype(float)) + (26.0 - 61.0)
    if (bits > 0).any():
        shift = np.clip(np.ceil(bits), 0, 26).astype(_I64)
        weights = (weights >> shift[rep]) + (shift > 0)[rep]
    cw = _segment_cumsum(weights, starts, n)
    extra = (v - n)[rep]
    cq = (extra * cw) // cw[last][rep]
    qty = np.empty(total, dtype=_I64)
    qty[0:] = cq
    qty[1:] -= cq[:-1]
    qty[starts] = cq[starts]
    qty += 1

    # ---- taker side: up-tick buys, down-tick sells, otherwise a coin flip
    coin = (h_qty & np.uint64(1)).astype(bool)
    prev = np.empty(total, dtype=_I64)
    prev[1:] = price[:-1]
    prev[starts] = price[starts]
    taker_buy = np.where(price > prev, True, np.where(price < prev, False, coin))
    return time, price, qty, taker_buy, starts


# ----------------------------------------------------------------------------------- the model


class MarketModel:
    """The deterministic market of the simulator (see the module docstring)."""

    def __init__(self, seed: int, clock, instruments: dict[tuple[str, str], Instrument] = INSTRUMENTS):
        self.seed = int(seed)
        self.clock = clock
        self.instruments = instruments
        start = int(clock.start_ms)
        self.live_start_ms = start - start % MINUTE_MS
        self.history_start_ms = (start // DAY_MS - HISTORY_DAYS) * DAY_MS
        self._live_day = self.live_start_ms // DAY_MS
        self._hist_day0 = self.history_start_ms // DAY_MS

        ref = np.zeros((N_EX, N_SYM))
        units = np.zeros((N_EX, N_SYM))
        tpm = np.zeros((N_EX, N_SYM))
        for (ex, sym), inst in instruments.items():
            e, s = EX_INDEX[ex], SYM_INDEX[sym]
            ref[e, s] = float(inst.ref_price / inst.tick)
            units[e, s] = float(_DAILY_VOLUME[sym] * _EX_SHARE[ex] / float(inst.qty_unit))
            tpm[e, s] = _TRADES_PER_MIN[sym] * _EX_TRADE_SHARE[ex]
        self._ref_ticks = ref
        self._daily_units = units
        self._trades_per_min = tpm
        self._series_key = {
            (ex, sym): _key(self.seed, _S_TRADES, EX_INDEX[ex], SYM_INDEX[sym]) for ex, sym in instruments
        }
        self._path_key = {sym: _key(self.seed, _S_PATH, SYM_INDEX[sym]) for sym in SYMBOLS}
        base = np.zeros((N_EX, N_SYM), dtype=_I64)
        for ex, sym in instruments:
            base[EX_INDEX[ex], SYM_INDEX[sym]] = _TRADE_ID_BASE[ex] + SYM_INDEX[sym] * _TRADE_ID_SYM_STEP[ex]
        self._series_id_base = base
        self._first_ids: dict[int, np.ndarray] = {}  # day -> id of its first trade per series

        self._daily = _DailyTable(self.seed, ref)
        self._daily.ensure(self._hist_day0 - 1, self._live_day + 1)

        self._lock = threading.RLock()
        self._days: OrderedDict[int, _Day] = OrderedDict()  # LRU of historical days
        self._live_days: dict[int, _Day] = {}  # days >= live day: kept
        self._lru_size = 48
        # aggregates of the historical days [hist_day0, live_day) at each STORE_MINUTES resolution,
        # day-major (day, exchange, symbol, unit of the day): filling a day touches one
        # contiguous block, so memory is committed only as days are filled
        nd = self._live_day - self._hist_day0
        self._stores = {
            r: tuple(np.zeros((nd, N_EX, N_SYM, MINUTES_PER_DAY // r), dtype=_I64) for _ in range(N_SERIES))
            for r in STORE_MINUTES
        }
        self._agg_done = np.zeros(nd, dtype=bool)
        # the trades of recently asked forming minutes (time, price, qty), for partial candles
        self._minute_trades: dict[tuple[int, int, int, int], tuple[np.ndarray, ...]] = {}

    # ------------------------------------------------------------------ days
    def _make_day(self, day: int) -> _Day:
        arrays = _generate_day(
            self.seed, self._daily, day, self._ref_ticks, self._daily_units, self._trades_per_min
        )
        if day < self._live_day:
            live_from = MINUTES_PER_DAY
        elif day == self._live_day:
            live_from = (self.live_start_ms - day * DAY_MS) // MINUTE_MS
        else:
            live_from = 0
        return _Day(day, arrays, live_from)

    def _day_first_ids(self, day: int) -> np.ndarray:
        """Id of the first trade of ``day`` per series (N_EX, N_SYM), as if every minute of it
        were live: the series base, the week's stride (weeks from 2000-01-03) and the trades of
        the week (from Monday 00:00 UTC) before ``day``. A function of the seed and ``day``."""
        got = self._first_ids.get(day)
        if got is None:
            week, into_week = divmod(day - _ID_WEEK_ANCHOR_DAY, 7)
            got = self._series_id_base + week * _TRADE_ID_WEEK_STRIDE
            for d in range(day - into_week, day):
                got = got + self._day_trade_counts(d)
            self._first_ids[day] = got
        return got

    def _day_trade_counts(self, day: int) -> np.ndarray:
        """Trades per series in the whole (historical) ``day``."""
        shared = self.instruments is INSTRUMENTS
        key = (self.seed, day)
        got = _DAY_TRADE_COUNTS.get(key) if shared else None
        if got is None:
            got = self._day(day).trades.sum(axis=2, dtype=_I64)
            if shared:
                _DAY_TRADE_COUNTS[key] = got
        return got

    def _day(self, day: int) -> _Day:
        if day >= self._live_day:
            d = self._live_days.get(day)
            if d is None:
                d = self._make_day(day)
                with self._lock:
                    d = self._live_days.setdefault(day, d)
            return d
        with self._lock:
            d = self._days.get(day)
            if d is not None:
                self._days.move_to_end(day)
                return d
        d = self._make_day(day)
        with self._lock:
            self._days[day] = d
            while len(self._days) > self._lru_size:
                self._days.popitem(last=False)
        return d

    def _fill_agg(self, day: int, d: _Day | None = None) -> None:
        """Aggregates of a historical day at every store resolution."""
        i = day - self._hist_day0
        if self._agg_done[i]:
            return
        if d is None:
            d = self._day(day)
        for r, store in self._stores.items():
            shp = (N_EX, N_SYM, MINUTES_PER_DAY // r, r)
            blocks = [x.reshape(shp) for x in d.arrays]
            store[0][i] = blocks[0][..., 0]
            store[1][i] = blocks[1].max(axis=3)
            store[2][i] = blocks[2].min(axis=3)
            store[3][i] = blocks[3][..., -1]
            for k in range(4, N_SERIES):
                store[k][i] = blocks[k].sum(axis=3)
        self._agg_done[i] = True

    def _ensure_live_quotes(self, d: _Day, e: int, s: int, m_end: int) -> None:
        """Fill in the trade-based quote and taker-buy volumes of the live minutes
        [live_from, m_end) of a day (whole blocks of LIVE_BLOCK minutes at a time)."""
        blocks = np.nonzero(~d.live_blocks[e, s, : (m_end + LIVE_BLOCK - 1) // LIVE_BLOCK])[0]
        if len(blocks) == 0:
            return
        ex, sym = EXCHANGES[e], SYMBOLS[s]
        m0 = max(int(blocks[0]) * LIVE_BLOCK, d.live_from)
        m1 = min(int(blocks[-1]) * LIVE_BLOCK + LIVE_BLOCK, MINUTES_PER_DAY)
        idx = np.arange(m0, m1)
        _, price, qty, buy, starts = self._gen(ex, sym, d, idx, with_times=False)
        pq = price * qty
        q = np.add.reduceat(pq, starts)
        bv = np.add.reduceat(np.where(buy, qty, 0), starts)
        bq = np.add.reduceat(np.where(buy, pq, 0), starts)
        with self._lock:
            d.arrays[5][e, s, m0:m1] = q
            d.arrays[7][e, s, m0:m1] = bv
            d.arrays[8][e, s, m0:m1] = bq
            d.live_blocks[e, s, int(blocks[0]) : int(blocks[-1]) + 1] = True

    def _gen(self, ex: str, sym: str, d: _Day, idx: np.ndarray, with_times: bool = True) -> tuple:
        e, s = EX_INDEX[ex], SYM_INDEX[sym]
        minute_ms = d.day * DAY_MS + idx.astype(_I64) * MINUTE_MS
        return _generate_trades(
            self._series_key[(ex, sym)],
            self._path_key[sym],
            minute_ms,
            d.open[e, s, idx],
            d.high[e, s, idx],
            d.low[e, s, idx],
            d.close[e, s, idx],
            d.volume[e, s, idx],
            d.trades[e, s, idx],
            with_times,
        )

    # ------------------------------------------------------------------ minutes -> units
    def _minute_units(self, e: int, s: int, start: int, end: int, now_ms: int) -> tuple[np.ndarray, ...]:
        """1-minute units (``SERIES``) for [start, end) (ms, minute aligned, end <= now's
        minute + 1): full minutes, except the minute containing now_ms, which is the partial
        aggregate of its trades with time <= now_ms."""
        parts = []
        day = start // DAY_MS
        now_minute = now_ms - now_ms % MINUTE_MS
        while day * DAY_MS < end:
            a = max(start, day * DAY_MS)
            b = min(end, (day + 1) * DAY_MS)
            d = self._day(day)
            ma, mb = (a - day * DAY_MS) // MINUTE_MS, (b - day * DAY_MS) // MINUTE_MS
            if d.live_from < mb:
                self._ensure_live_quotes(d, e, s, mb)
            arrs = [x[e, s, ma:mb] for x in d.arrays]
            if a <= now_minute < b:
                k = (now_minute - a) // MINUTE_MS
                arrs = [x.copy() for x in arrs]
                partial = self._partial_minute(EXCHANGES[e], SYMBOLS[s], d, ma + k, now_ms)
                for x, val in zip(arrs, partial, strict=True):
                    x[k] = val
            parts.append(arrs)
            day += 1
        if len(parts) == 1:
            return tuple(parts[0])
        return tuple(np.concatenate(col) for col in zip(*parts, strict=True))

    def _partial_minute(self, ex: str, sym: str, d: _Day, m: int, now_ms: int) -> tuple[int, ...]:
        """``SERIES`` of minute m: the aggregate of its trades with time <= now_ms (live
        minute), or the full minute if it is historical."""
        e, s = EX_INDEX[ex], SYM_INDEX[sym]
        if m < d.live_from:
            return tuple(int(x[e, s, m]) for x in d.arrays)
        key = (e, s, d.day, m)
        got = self._minute_trades.get(key)
        if got is None:
            got = self._gen(ex, sym, d, np.array([m]))[:4]
            with self._lock:
                if len(self._minute_trades) >= 64:
                    self._minute_trades.pop(next(iter(self._minute_trades)))
                self._minute_trades[key] = got
        time, price, qty, buy = got
        k = int(np.searchsorted(time, now_ms, side="right"))
        o = int(d.open[e, s, m])
        if k == 0:
            return o, o, o, o, 0, 0, 0, 0, 0
        p, q, b = price[:k], qty[:k], buy[:k]
        pq = p * q
        return (
            o,
            int(p.max()),
            int(p.min()),
            int(p[-1]),
            int(q.sum()),
            int(pq.sum()),
            k,
            int(q[b].sum()),
            int(pq[b].sum()),
        )

    def _units(self, e: int, s: int, r: int, start: int, end: int, now_ms: int) -> tuple[np.ndarray, ...]:
        """Units of ``r`` minutes (a store resolution) for [start, end): start is r-aligned,
        the last unit may be partial. Whole units of historical days come from the store,
        the rest (live days, a partial tail) from minutes."""
        unit_ms = r * MINUTE_MS
        cols: list[list[np.ndarray]] = [[] for _ in range(N_SERIES)]
        split = min(end, self._live_day * DAY_MS)
        split -= (split - start) % unit_ms
        if start < split:
            d0, d1 = start // DAY_MS, (split - 1) // DAY_MS
            done = self._agg_done[d0 - self._hist_day0 : d1 - self._hist_day0 + 1]
            if not done.all():
                for day in range(d0, d1 + 1):
                    self._fill_agg(day)
            per_day = MINUTES_PER_DAY // r
            i0 = (start - self._hist_day0 * DAY_MS) // unit_ms  # unit indices since hist_day0
            i1 = (split - self._hist_day0 * DAY_MS) // unit_ms
            da, db = i0 // per_day, (i1 - 1) // per_day + 1
            a, b = i0 - da * per_day, i1 - da * per_day
            for col, arr in zip(cols, self._stores[r], strict=True):
                col.append(arr[da:db, e, s, :].reshape(-1)[a:b])
        split = max(split, start)
        if split < end:
            mins = self._minute_units(e, s, split, end, now_ms)
            agg = _aggregate(mins, np.arange(0, len(mins[0]), r))
            for col, a in zip(cols, agg, strict=True):
                col.append(a)
        return tuple(col[0] if len(col) == 1 else np.concatenate(col) for col in cols)

    # ------------------------------------------------------------------ public API
    def bars(
        self,
        exchange: str,
        symbol: str,
        tf_ms: int,
        offset_ms: int,
        first_open_ms: int,
        last_open_ms: int,
        now_ms: int,
    ) -> Bars:
        """Every bar with first_open_ms <= open_time <= last_open_ms, open_time % tf_ms ==
        offset_ms, open_time <= now_ms and open_time >= history_start_ms. The bar containing
        now_ms is forming (closed=False, aggregate of trades with time <= now_ms)."""
        tf_ms, offset_ms = int(tf_ms), int(offset_ms) % int(tf_ms)
        if tf_ms <= 0 or tf_ms % MINUTE_MS or offset_ms % MINUTE_MS:
            raise ValueError("tf_ms and offset_ms must be whole minutes")
        e, s = EX_INDEX[exchange], SYM_INDEX[symbol]
        first = max(int(first_open_ms), self.history_start_ms)
        t0 = first + (offset_ms - first) % tf_ms
        last = min(int(last_open_ms), int(now_ms))
        t1 = last - (last - offset_ms) % tf_ms
        if t1 < t0:
            return _empty_bars()
        nbars = (t1 - t0) // tf_ms + 1
        now_minute_end = int(now_ms) - int(now_ms) % MINUTE_MS + MINUTE_MS
        span_end = min(t1 + tf_ms, now_minute_end)
        self._daily.ensure(self._hist_day0 - 1, span_end // DAY_MS + 1)
        r = next(
            (r for r in STORE_MINUTES if (tf_ms % (r * MINUTE_MS) == 0 and offset_ms % (r * MINUTE_MS) == 0)),
            1,
        )
        if r > 1:
            units = self._units(e, s, r, t0, span_end, now_ms)
        else:
            units = self._minute_units(e, s, t0, span_end, now_ms)
        idx = np.arange(nbars, dtype=_I64) * (tf_ms // (r * MINUTE_MS))
        o, h, lo, c, v, q, n, bv, bq = _aggregate(units, idx)
        open_time = t0 + np.arange(nbars, dtype=_I64) * tf_ms
        closed = open_time + tf_ms <= now_ms
        return Bars(open_time, o, h, lo, c, v, q, n, closed, bv, bq)

    def minute(self, exchange: str, symbol: str, minute_ms: int) -> tuple[int, ...]:
        """The complete candle of one minute (o, h, l, c, volume, quote, trades, taker buy
        volume, taker buy quote), whether or not it has happened yet (live minutes: from their
        trades)."""
        m = int(minute_ms) - int(minute_ms) % MINUTE_MS
        if m < self.history_start_ms:
            raise ValueError("minute before history start")
        day = m // DAY_MS
        self._daily.ensure(day - 1, day)
        b = self._minute_units(EX_INDEX[exchange], SYM_INDEX[symbol], m, m + MINUTE_MS, m + MINUTE_MS)
        return tuple(int(x[0]) for x in b)

    def trades(self, exchange: str, symbol: str, start_ms: int, end_ms: int) -> Trades:
        """Every trade with start_ms <= time < end_ms (only live minutes have trades)."""
        start = max(int(start_ms), self.live_start_ms)
        end = int(end_ms)
        if end <= start:
            return _empty_trades()
        e, s = EX_INDEX[exchange], SYM_INDEX[symbol]
        m_first = start - start % MINUTE_MS
        m_last = (end - 1) - (end - 1) % MINUTE_MS
        self._daily.ensure(self._live_day - 1, m_last // DAY_MS + 1)
        parts = []
        day = m_first // DAY_MS
        while day * DAY_MS <= m_last:
            d = self._day(day)
            ma = max(m_first, day * DAY_MS) - day * DAY_MS
            mb = min(m_last + MINUTE_MS, (day + 1) * DAY_MS) - day * DAY_MS
            idx = np.arange(ma // MINUTE_MS, mb // MINUTE_MS)
            time, price, qty, buy, starts = self._gen(exchange, symbol, d, idx)
            counts = d.trades[e, s]
            first_id = int(self._day_first_ids(day)[e, s]) + int(counts[: idx[0]].sum())
            ids = first_id + np.arange(len(time), dtype=_I64)
            sel = slice(int(np.searchsorted(time, start, "left")), int(np.searchsorted(time, end, "left")))
            parts.append((ids[sel], time[sel], price[sel], qty[sel], buy[sel]))
            day += 1
        if len(parts) == 1:
            return Trades(*parts[0])
        return Trades(*(np.concatenate(col) for col in zip(*parts, strict=True)))

    def first_trade_id(self, exchange: str, symbol: str) -> int:
        """Id of the first live trade of (exchange, symbol) (ids before it do not exist)."""
        e, s = EX_INDEX[exchange], SYM_INDEX[symbol]
        d = self._day(self._live_day)
        return int(self._day_first_ids(self._live_day)[e, s]) + int(d.trades[e, s, : d.live_from].sum())

    def trade_minute(self, exchange: str, symbol: str, trade_id: int) -> int:
        """Open time of the minute that holds trade ``trade_id`` (an id before the first live
        trade maps to the live start; an id in the unused range at the end of a week to the
        next day). Cost: a few days of counts, not the trades."""
        e, s = EX_INDEX[exchange], SYM_INDEX[symbol]
        trade_id = int(trade_id)
        if trade_id <= self.first_trade_id(exchange, symbol):
            return self.live_start_ms
        day = self._live_day
        last = day + 3 * 366  # ids beyond a few years ahead: stop there
        while day < last and int(self._day_first_ids(day + 1)[e, s]) <= trade_id:
            day += 1
        within = trade_id - int(self._day_first_ids(day)[e, s])
        counts = np.cumsum(self._day(day).trades[e, s])
        m = int(np.searchsorted(counts, within, side="right"))
        if m >= MINUTES_PER_DAY:
            return (day + 1) * DAY_MS
        return day * DAY_MS + m * MINUTE_MS

    def trades_from_id(self, exchange: str, symbol: str, from_id: int, limit: int, end_ms: int) -> Trades:
        """The first ``limit`` trades with ``id >= from_id`` and ``time < end_ms`` (ascending):
        Binance ``fromId``, OKX ``history-trades`` by id. Starts at the right minute directly."""
        if limit <= 0:
            return _empty_trades()
        t = self.trade_minute(exchange, symbol, from_id)
        parts, got, step = [], 0, 10 * MINUTE_MS
        while t < end_ms and got < limit:
            tr = self.trades(exchange, symbol, t, min(t + step, end_ms))
            lo = int(np.searchsorted(tr.id, int(from_id), "left"))
            hi = min(len(tr), lo + limit - got)
            if hi > lo:
                parts.append(
                    (tr.id[lo:hi], tr.time[lo:hi], tr.price[lo:hi], tr.qty[lo:hi], tr.taker_buy[lo:hi])
                )
                got += hi - lo
            t += step
            step = min(step * 2, 6 * 60 * MINUTE_MS)
        if not parts:
            return _empty_trades()
        return Trades(*(np.concatenate(col) for col in zip(*parts, strict=True)))

    def trades_newest(
        self,
        exchange: str,
        symbol: str,
        end_ms: int,
        limit: int,
        below_id: int | None = None,
        above_id: int | None = None,
    ) -> Trades:
        """The newest ``limit`` trades with ``time < end_ms`` and ``above_id < id < below_id``
        (a bound of ``None`` is open), ascending: OKX ``history-trades`` (``after`` =
        ``below_id`` / a timestamp as ``end_ms``, ``before`` = ``above_id``). Starts at the
        minute of trade ``below_id - 1`` and walks back in doubling windows, stopping at the
        live start or once it has passed ``above_id``."""
        hi = int(end_ms)
        floor = self.live_start_ms
        if limit <= 0 or hi <= floor:
            return _empty_trades()
        if below_id is not None:
            below_id = int(below_id)
            if below_id <= self.first_trade_id(exchange, symbol):
                return _empty_trades()
            end_day = (hi - 1) // DAY_MS
            self._daily.ensure(self._live_day - 1, end_day + 1)
            e, s = EX_INDEX[exchange], SYM_INDEX[symbol]
            # an id from a later day than end_ms bounds nothing (and would cost days of counts)
            if below_id <= int(self._day_first_ids(end_day + 1)[e, s]):
                hi = min(hi, self.trade_minute(exchange, symbol, below_id - 1) + MINUTE_MS)
        parts: list[tuple] = []
        got, step = 0, MINUTE_MS
        while hi > floor and got < limit:
            lo = max(floor, hi - step)
            tr = self.trades(exchange, symbol, lo, hi)
            a = 0 if above_id is None else int(np.searchsorted(tr.id, int(above_id), "right"))
            b = len(tr) if below_id is None else int(np.searchsorted(tr.id, below_id, "left"))
            first = max(a, b - (limit - got))
            if b > first:
                parts.append(
                    (
                        tr.id[first:b],
                        tr.time[first:b],
                        tr.price[first:b],
                        tr.qty[first:b],
                        tr.taker_buy[first:b],
                    )
                )
                got += b - first
            if a > 0:
                break
            hi = lo
            step = min(step * 2, 6 * 60 * MINUTE_MS)
        if not parts:
            return _empty_trades()
        parts.reverse()
        return Trades(*(np.concatenate(col) for col in zip(*parts, strict=True)))

    def last_trade_price(self, exchange: str, symbol: str, now_ms: int) -> int:
        """Price (ticks) of the last trade at or before now_ms; before any live trade, the
        close of the last historical minute."""
        now_ms = max(int(now_ms), self.live_start_ms)
        m = now_ms - now_ms % MINUTE_MS
        day = m // DAY_MS
        self._daily.ensure(day - 1, day)
        d = self._day(day)
        return self._partial_minute(exchange, symbol, d, (m - day * DAY_MS) // MINUTE_MS, now_ms)[3]

    def warm_up(self) -> None:
        """Compute the aggregate stores (1d, 1h, 15m, 5m) of every historical day, all series,
        and the live values of the current day, so that any ``bars()`` call is fast."""
        for day in range(self._hist_day0, self._live_day):
            i = day - self._hist_day0
            if self._agg_done[i]:
                continue
            arrays = _generate_day(
                self.seed, self._daily, day, self._ref_ticks, self._daily_units, self._trades_per_min
            )
            self._fill_agg(day, _Day(day, arrays, MINUTES_PER_DAY))
        now = self.clock.now_ms()
        d = self._day(now // DAY_MS)
        m_end = (now - (now // DAY_MS) * DAY_MS) // MINUTE_MS + 1
        for e in range(N_EX):
            for s in range(N_SYM):
                self._ensure_live_quotes(d, e, s, min(m_end, MINUTES_PER_DAY))
