"""Volume profile: volume traded per price row, its point of control, value area and nodes.

Pure functions over numpy arrays / pandas DataFrames (no I/O).

Conventions used throughout this module:

* A profile is a :class:`VolumeProfile`: rows of equal height ``row_size`` on a grid anchored
  at integer multiples of ``row_size`` (so profiles built with the same row size from
  different data line up row for row). Row ``i`` covers the half-open price interval
  ``[origin + i * row_size, origin + (i + 1) * row_size)``; its price is its mid point.
* Each candle's volume is spread uniformly over its ``[low, high]`` range: the share that
  lands in a row is the length of the overlap divided by ``high - low``. A candle with
  ``high == low`` puts all of its volume in the row holding that price. No volume is ever
  dropped, so ``profile.volume.sum()`` equals the input volume sum (up to float rounding,
  ~1e-12 relative).
* Volumes are in the unit of the input column (base asset for ``volume``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from p9cli.universe import TIMEFRAME_MS

# A relative epsilon used when turning a price into a row index: a price that sits on a row
# edge up to float noise (e.g. 3 * 0.1 computed as 0.30000000000000004) lands in the row that
# starts at that edge.
_EDGE_EPS = 1e-9


@dataclass(frozen=True)
class VolumeProfile:
    """Volume per price row.

    Attributes:
        origin: lower edge of row 0 (a multiple of ``row_size``), in price units.
        row_size: height of every row, in price units (> 0).
        volume: float64 array, ``volume[i]`` is the volume traded in row ``i``.
        sources: for composite profiles, which candles were used: a tuple of
            ``(timeframe, first_open_ms, last_open_ms, candles)``, finest timeframe first;
            empty for single-frame profiles.
    """

    origin: float
    row_size: float
    volume: np.ndarray
    sources: tuple[tuple[str, int, int, int], ...] = field(default=())

    @property
    def n_rows(self) -> int:
        return int(self.volume.shape[0])

    @property
    def total(self) -> float:
        return float(self.volume.sum())

    @property
    def price_low(self) -> float:
        """Lower edge of the lowest row."""
        return self.origin

    @property
    def price_high(self) -> float:
        """Upper edge of the highest row."""
        return self.origin + self.n_rows * self.row_size

    def edges(self) -> np.ndarray:
        """``n_rows + 1`` row edges, ascending."""
        return self.origin + np.arange(self.n_rows + 1) * self.row_size

    def centers(self) -> np.ndarray:
        """``n_rows`` row mid prices, ascending."""
        return self.origin + (np.arange(self.n_rows) + 0.5) * self.row_size

    def row_low(self, i: int) -> float:
        return self.origin + i * self.row_size

    def row_high(self, i: int) -> float:
        return self.origin + (i + 1) * self.row_size

    def row_mid(self, i: int) -> float:
        return self.origin + (i + 0.5) * self.row_size

    def row_of(self, price: float) -> int:
        """Index of the row holding ``price`` (may be outside ``0..n_rows-1``)."""
        return int(math.floor((price - self.origin) / self.row_size + _EDGE_EPS))

    def volume_between(self, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray | float:
        """Volume inside ``[low, high]`` (vectorised), counting partial rows pro rata.

        Uses the same uniform-within-row assumption as the profile itself: the cumulative
        volume is piecewise linear between row edges.
        """
        cum = np.concatenate(([0.0], np.cumsum(self.volume)))
        edges = self.edges()
        lo = np.interp(low, edges, cum)
        hi = np.interp(high, edges, cum)
        return np.maximum(hi - lo, 0.0)


# --------------------------------------------------------------------------- input


def column(frame: Any, name: str) -> np.ndarray:
    """Column ``name`` of a candle frame as a numpy array.

    A "frame" is any of: a pandas DataFrame with the Parquet columns (``open_time`` as int64
    ms or as a datetime, tz-aware or naive UTC), a :class:`p9cli.analysis.candles.Candles`
    (attributes), or a mapping of arrays. ``open_time`` comes back as int64 epoch ms,
    everything else as float64.
    """
    if isinstance(frame, pd.DataFrame):
        values = frame[name]
    else:
        values = getattr(frame, name, None)
        if values is None:
            values = frame[name]
    if isinstance(values, np.ndarray) and values.dtype == (np.int64 if name == "open_time" else np.float64):
        return values  # already the right type (Candles): no conversion, no copy
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)  # the Parquet timestamp[ms, UTC]
    arr = np.asarray(values)
    if name == "open_time":
        if np.issubdtype(arr.dtype, np.datetime64):
            arr = arr.astype("datetime64[ms]").astype(np.int64)
        return arr.astype(np.int64, copy=False)
    return arr.astype(np.float64, copy=False)


# --------------------------------------------------------------------------- building


def row_size_for(
    tick: float,
    atr: float,
    *,
    rows_per_atr: float = 10.0,
    price_range: float | None = None,
    max_rows: int = 2000,
) -> float:
    """Row height for a volume profile, tied to the tick size and the ATR.

    Rule: ``row = max(1, round(atr / rows_per_atr / tick)) * tick`` -- one ATR spans about
    ``rows_per_atr`` rows (10 by default, so a row is ~0.1 ATR), and a row is always a whole
    number of ticks (at least one). If ``price_range`` is given and would need more than
    ``max_rows`` rows, the row is enlarged to ``ceil(price_range / max_rows / tick) * tick``.

    Args:
        tick: the instrument's price increment (> 0), e.g. 0.01 for BTCUSDT.
        atr: average true range of the timeframe being profiled (price units, >= 0; a
            non-finite or zero ATR falls back to one tick per row).
        rows_per_atr: how many rows one ATR should span.
        price_range: optional ``high.max() - low.min()`` of the data to bound the row count.
        max_rows: upper bound on the number of rows when ``price_range`` is given.

    Returns:
        the row size in price units (a multiple of ``tick``).
    """
    if not (tick > 0 and math.isfinite(tick)):
        raise ValueError(f"tick must be a positive number, got {tick!r}")
    ticks = 1
    if math.isfinite(atr) and atr > 0:
        ticks = max(1, round(atr / rows_per_atr / tick))
    if price_range is not None and math.isfinite(price_range) and price_range > 0 and max_rows > 0:
        ticks = max(ticks, math.ceil(price_range / max_rows / tick - _EDGE_EPS))
    return ticks * tick


def volume_profile(
    high: np.ndarray | Sequence[float],
    low: np.ndarray | Sequence[float],
    volume: np.ndarray | Sequence[float],
    row_size: float,
    price_min: float | None = None,
    price_max: float | None = None,
) -> VolumeProfile:
    """Spread each candle's volume uniformly over its high-low range into price rows.

    Args:
        high, low, volume: equal-length 1-D arrays, one entry per candle. Candles with a
            non-finite high/low/volume or a negative volume are ignored; zero-volume candles
            still extend the grid. If ``high < low`` (bad data) the two are swapped.
        row_size: row height in price units (> 0), e.g. from :func:`row_size_for`.
        price_min, price_max: optional range the profile must cover; the profile always
            also covers every candle, so no volume is dropped (a wider range only adds
            empty rows).

    Returns:
        a :class:`VolumeProfile` whose grid origin is ``floor(lowest / row_size) *
        row_size``. An input with no usable candle gives a one-row empty profile (at
        ``price_min`` or 0).

    Cost: O(candles + rows), fully vectorised (bincount + a difference array).
    """
    if not (row_size > 0 and math.isfinite(row_size)):
        raise ValueError(f"row_size must be a positive number, got {row_size!r}")
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    v = np.asarray(volume, dtype=np.float64)
    if not (h.shape == lo.shape == v.shape) or h.ndim != 1:
        raise ValueError("high, low and volume must be 1-D arrays of equal length")
    ok = np.isfinite(h) & np.isfinite(lo) & np.isfinite(v) & (v >= 0)
    if not ok.all():
        h, lo, v = h[ok], lo[ok], v[ok]
    h, lo = np.maximum(h, lo), np.minimum(h, lo)

    bounds_lo = [x for x in (price_min,) if x is not None and math.isfinite(x)]
    bounds_hi = [x for x in (price_max,) if x is not None and math.isfinite(x)]
    if h.size:
        bounds_lo.append(float(lo.min()))
        bounds_hi.append(float(h.max()))
    if not bounds_lo and not bounds_hi:
        return VolumeProfile(origin=0.0, row_size=float(row_size), volume=np.zeros(1))
    pmin = min(bounds_lo) if bounds_lo else min(bounds_hi)
    pmax = max(bounds_hi) if bounds_hi else pmin
    origin = math.floor(pmin / row_size + _EDGE_EPS) * row_size
    n_rows = int(math.floor((pmax - origin) / row_size + _EDGE_EPS)) + 1
    if h.size == 0:
        return VolumeProfile(origin=origin, row_size=float(row_size), volume=np.zeros(n_rows))

    a = np.floor((lo - origin) / row_size + _EDGE_EPS).astype(np.int64)
    b = np.floor((h - origin) / row_size + _EDGE_EPS).astype(np.int64)
    np.clip(a, 0, n_rows - 1, out=a)
    np.clip(b, a, n_rows - 1, out=b)

    out = np.zeros(n_rows, dtype=np.float64)
    single = a == b
    if single.any():
        out += np.bincount(a[single], weights=v[single], minlength=n_rows)
    multi = ~single
    if multi.any():
        am, bm, hm, lm, vm = a[multi], b[multi], h[multi], lo[multi], v[multi]
        density = vm / (hm - lm)  # volume per price unit
        first_part = density * (origin + (am + 1) * row_size - lm)  # bottom row, partial
        middle = density * row_size * (bm - am - 1)  # full rows in between
        last_part = vm - first_part - middle  # top row: the remainder (conserves exactly)
        out += np.bincount(am, weights=first_part, minlength=n_rows)
        out += np.bincount(bm, weights=last_part, minlength=n_rows)
        # full rows a+1 .. b-1 each get density * row_size: a difference array over rows
        inner = bm - am > 1
        if inner.any():
            diff = np.bincount(am[inner] + 1, weights=density[inner], minlength=n_rows + 1)
            diff -= np.bincount(bm[inner], weights=density[inner], minlength=n_rows + 1)
            out += np.cumsum(diff[:n_rows]) * row_size
    # tiny negative values can only come from float cancellation
    np.maximum(out, 0.0, out=out)
    return VolumeProfile(origin=origin, row_size=float(row_size), volume=out)


def frame_profile(
    df: Any,
    row_size: float,
    *,
    price_min: float | None = None,
    price_max: float | None = None,
    volume_column: str = "volume",
) -> VolumeProfile:
    """:func:`volume_profile` of a candle frame (DataFrame or Candles, see :func:`column`) using
    its ``high``, ``low`` and ``volume_column``."""
    return volume_profile(
        column(df, "high"),
        column(df, "low"),
        column(df, volume_column),
        row_size,
        price_min,
        price_max,
    )


def composite_chain(timeframes: Sequence[str]) -> list[str]:
    """Timeframes used by :func:`composite_profile`, finest first.

    Starting from the finest timeframe, the next one is the shortest coarser timeframe whose
    bar length is a whole multiple of the current one. Every timeframe in the chain then
    nests in the next (its bars never straddle the next one's bar boundaries), which is what
    makes an exact hand-over possible. With the full universe this gives
    1m, 3m, 15m, 30m, 1h, 2h, 4h, 12h, 1d (5m does not nest in 3m, 6h not in 4h: those
    periods are covered by their neighbours, at a slightly different resolution).
    """
    tfs = sorted({tf for tf in timeframes if tf in TIMEFRAME_MS}, key=TIMEFRAME_MS.__getitem__)
    if not tfs:
        return []
    chain = [tfs[0]]
    for tf in tfs[1:]:
        if TIMEFRAME_MS[tf] % TIMEFRAME_MS[chain[-1]] == 0:
            chain.append(tf)
    return chain


def composite_slices(frames: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """Which candles of which timeframe cover which period, without overlap.

    Walks :func:`composite_chain` from the finest timeframe back in time. Let ``C`` be the
    open time of the earliest candle used so far. For the next (coarser) timeframe of bar
    length ``W`` the hand-over point is ``B = ceil(C / W) * W``: coarse candles whose whole
    interval ends at or before ``B`` are used, and finer candles opening before ``E``, the
    close of the last coarse candle used (``E == B`` unless the coarse data stops early),
    are dropped because that coarse candle already covers them. Finer bar lengths divide
    ``W``, so ``E`` is also on every finer grid and each moment is counted exactly once
    (a coarse file that stops early leaves a gap, never an overlap).

    Returns:
        ``[(timeframe, start_index, stop_index), ...]`` finest first: rows
        ``start_index:stop_index`` (positional) of ``frames[timeframe]`` are used.
    """
    chain = composite_chain([tf for tf, df in frames.items() if len(df) > 0])
    slices: list[list] = []
    covered_from: int | None = None
    for tf in chain:
        ot = column(frames[tf], "open_time")
        width = TIMEFRAME_MS[tf]
        if covered_from is None:
            slices.append([tf, 0, len(ot)])
            covered_from = int(ot[0])
            continue
        boundary = -(-covered_from // width) * width  # ceil to the coarse grid
        stop = int(np.searchsorted(ot + width, boundary, side="right"))  # ends <= boundary
        if stop == 0:
            continue
        handover = int(ot[stop - 1]) + width
        for s in slices:  # drop finer candles the last coarse candle already covers
            fot = column(frames[s[0]], "open_time")
            s[1] = max(s[1], int(np.searchsorted(fot, handover, side="left")))
        slices.append([tf, 0, stop])
        covered_from = int(ot[0])
    return [(tf, a, b) for tf, a, b in slices if b > a]


def composite_profile(
    frames: Mapping[str, Any],
    row_size: float,
    *,
    price_min: float | None = None,
    price_max: float | None = None,
) -> VolumeProfile:
    """One volume profile across timeframes, each period counted once, at its finest timeframe.

    The candles used are given by :func:`composite_slices` (finest timeframe for the recent
    past, then coarser timeframes further back, handing over on a bar boundary shared by
    both). Volumes are then spread exactly as in :func:`volume_profile`.

    Args:
        frames: timeframe -> candles (DataFrame or Candles, see :func:`column`; needs
            ``open_time``, ``high``, ``low``, ``volume``; ascending, closed candles). Unknown
            timeframe keys are ignored.
        row_size: row height in price units (e.g. ``row_size_for(tick, atr_of_1d)``).
        price_min, price_max: as in :func:`volume_profile`.

    Returns:
        a :class:`VolumeProfile` with ``sources`` listing ``(timeframe, first_open_ms,
        last_open_ms, candles)`` for each timeframe used.
    """
    slices = composite_slices(frames)
    highs, lows, vols, sources = [], [], [], []
    for tf, a, b in slices:
        df = frames[tf]
        highs.append(column(df, "high")[a:b])
        lows.append(column(df, "low")[a:b])
        vols.append(column(df, "volume")[a:b])
        ot = column(df, "open_time")
        sources.append((tf, int(ot[a]), int(ot[b - 1]), b - a))
    if highs:
        prof = volume_profile(
            np.concatenate(highs), np.concatenate(lows), np.concatenate(vols), row_size, price_min, price_max
        )
    else:
        prof = volume_profile(np.zeros(0), np.zeros(0), np.zeros(0), row_size, price_min, price_max)
    return VolumeProfile(prof.origin, prof.row_size, prof.volume, tuple(sources))


# --------------------------------------------------------------------------- reading


def poc_index(profile: VolumeProfile) -> int:
    """Row index of the point of control: the row with the most volume.

    Ties (several rows with exactly the maximum volume) are broken toward the middle of the
    profile's range: the tied row whose index is closest to ``(n_rows - 1) / 2``; if two
    are equally close, the lower one.
    """
    vol = profile.volume
    top = np.flatnonzero(vol == vol.max())
    if top.size == 1:
        return int(top[0])
    mid = (profile.n_rows - 1) / 2.0
    dist = np.abs(top - mid)
    return int(top[np.argmin(dist)])  # argmin takes the first (lowest) of equal distances


def point_of_control(profile: VolumeProfile) -> float:
    """Mid price of the point-of-control row (see :func:`poc_index` for ties)."""
    return profile.row_mid(poc_index(profile))


@dataclass(frozen=True)
class ValueArea:
    """Result of :func:`value_area`.

    Attributes:
        poc_row, low_row, high_row: row indices (inclusive range ``low_row..high_row``).
        poc: mid price of the POC row.
        val: value area low = lower edge of ``low_row`` (price units).
        vah: value area high = upper edge of ``high_row`` (price units).
        volume: volume inside the value area.
        share: ``volume / total`` (>= the requested pct unless the profile is empty).
    """

    poc_row: int
    low_row: int
    high_row: int
    poc: float
    val: float
    vah: float
    volume: float
    share: float


def value_area(profile: VolumeProfile, pct: float = 0.70) -> ValueArea:
    """Value area by the standard CBOT expansion (two rows at a time).

    Start with the POC row (:func:`poc_index`). While the value area holds less than
    ``pct`` of the total volume: sum the next two rows above it and the next two rows below
    it (only rows that exist: near an edge a "pair" is one row, past an edge it is empty
    and that side is no longer considered); add the pair with the larger sum. On a tie the
    pair above is added (Investor/RT "Method A", as in Dalton, *Mind Over Markets*, App. 1).
    Both rows of the pair are added even if the first would have been enough, so the
    share usually ends slightly above ``pct``.

    Args:
        profile: a :class:`VolumeProfile`.
        pct: the fraction of volume to enclose, in (0, 1].

    Returns:
        a :class:`ValueArea`.
    """
    if not (0.0 < pct <= 1.0):
        raise ValueError(f"value area pct must be in (0, 1], got {pct!r}")
    vol = profile.volume.tolist()
    n = len(vol)
    total = float(sum(vol))
    poc = poc_index(profile)
    lo = hi = poc
    acc = vol[poc]
    target = pct * total
    while acc < target and (lo > 0 or hi < n - 1):
        up = vol[hi + 1] if hi + 1 < n else 0.0
        up += vol[hi + 2] if hi + 2 < n else 0.0
        down = vol[lo - 1] if lo - 1 >= 0 else 0.0
        down += vol[lo - 2] if lo - 2 >= 0 else 0.0
        can_up, can_down = hi < n - 1, lo > 0
        if can_up and (not can_down or up >= down):
            acc += up
            hi = min(hi + 2, n - 1)
        else:
            acc += down
            lo = max(lo - 2, 0)
    share = acc / total if total > 0 else 0.0
    return ValueArea(
        poc_row=poc,
        low_row=lo,
        high_row=hi,
        poc=profile.row_mid(poc),
        val=profile.row_low(lo),
        vah=profile.row_high(hi),
        volume=float(acc),
        share=float(share),
    )


def smooth_profile(volume: np.ndarray, half_width: int = 2) -> np.ndarray:
    """Triangular moving average (weights 1, 2, .., k+1, .., 2, 1), zero padded at the edges.

    ``half_width=0`` returns a copy. Length is preserved.
    """
    v = np.asarray(volume, dtype=np.float64)
    if half_width <= 0:
        return v.copy()
    k = half_width
    kernel = np.concatenate((np.arange(1, k + 2), np.arange(k, 0, -1))).astype(np.float64)
    kernel /= kernel.sum()
    return np.convolve(v, kernel, mode="same")


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encode: (start index, stop index exclusive, value) of each run of equal values."""
    change = np.flatnonzero(np.diff(values) != 0) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [values.size]))
    return starts, stops, values[starts]


def _prominences(pos: list[int], val: list[float], peaks: list[int]) -> list[float]:
    """Topographic prominence of each peak (as ``scipy.signal.peak_prominences``).

    ``pos``/``val`` are the positions and values of every local extremum of the signal plus
    its two end points, in order; ``peaks`` index into them. A peak's prominence is its
    height above the higher of the two lowest points reached on each side before meeting a
    strictly higher point (or the end). The lowest point of such a stretch is always a local
    minimum or an end point, so walking the extrema alone is exact.
    """
    out = []
    n = len(val)
    for j in peaks:
        h = val[j]
        lmin = h
        k = j - 1
        while k >= 0 and val[k] <= h:
            if val[k] < lmin:
                lmin = val[k]
            k -= 1
        rmin = h
        k = j + 1
        while k < n and val[k] <= h:
            if val[k] < rmin:
                rmin = val[k]
            k += 1
        out.append(h - max(lmin, rmin))
    return out


def _extent(s: list[float], i: int, level: float, above: bool) -> tuple[int, int]:
    """Rows around ``i`` where ``s >= level`` (above) or ``s <= level`` (below), contiguous."""
    lo, hi, n = i, i, len(s)
    if above:
        while lo > 0 and s[lo - 1] >= level:
            lo -= 1
        while hi < n - 1 and s[hi + 1] >= level:
            hi += 1
    else:
        while lo > 0 and s[lo - 1] <= level:
            lo -= 1
        while hi < n - 1 and s[hi + 1] <= level:
            hi += 1
    return lo, hi


def volume_nodes(
    profile: VolumeProfile,
    *,
    smooth: int = 2,
    min_prominence: float = 0.10,
) -> dict[str, list[dict]]:
    """High- and low-volume nodes of a profile.

    Method: smooth the row volumes with a triangular kernel of half-width ``smooth`` rows
    (:func:`smooth_profile`; zero padded, so the profile's ends count as low ground). Runs of
    equal smoothed values are treated as one point placed at the run's middle row.

    * HVN: a local maximum whose prominence (as ``scipy.signal.peak_prominences``) is at
      least ``min_prominence * max(smoothed)``.
    * LVN: a local minimum with volume on both sides (not touching either end of the profile)
      whose depth -- prominence of the minimum in the negated profile -- is at least
      ``min_prominence * max(smoothed)``.

    Each node is a dict:
        ``price``: mid price of the node's row; ``row``: its index;
        ``low``, ``high``: price extent -- the contiguous rows around the node where the
        smoothed volume stays above (HVN) / below (LVN) the half-prominence level, as row
        edges; ``volume``: raw profile volume inside ``low..high``; ``share``: that volume
        over the profile total; ``prominence``: prominence over ``max(smoothed)`` (0..1).

    Returns:
        ``{"hvn": [...], "lvn": [...]}``, each list ordered by price ascending.
    """
    vol = profile.volume
    out: dict[str, list[dict]] = {"hvn": [], "lvn": []}
    if vol.size < 3 or profile.total <= 0:
        if vol.size and profile.total > 0:
            i = poc_index(profile)
            out["hvn"].append(_node(profile, i, 0, vol.size - 1, 1.0))
        return out
    s = smooth_profile(vol, smooth)
    s_max = float(s.max())
    threshold = min_prominence * s_max
    starts, stops, vals = _runs(s)
    m = vals.size
    if m == 1:
        return out
    centers = (starts + stops - 1) // 2
    prev = np.concatenate(([-np.inf], vals[:-1]))
    nxt = np.concatenate((vals[1:], [-np.inf]))
    is_max = (vals > prev) & (vals > nxt)  # a rising end counts as a peak
    prev[0] = nxt[-1] = np.inf
    is_min = (vals < prev) & (vals < nxt)
    keep = is_max | is_min
    keep[0] = keep[-1] = True  # the ends bound every stretch
    pos = centers[keep].tolist()
    val = vals[keep].tolist()
    kmax = is_max[keep].tolist()
    kmin = is_min[keep].tolist()
    s_list = s.tolist()
    last = len(val) - 1

    # a peak's prominence never exceeds its height (volumes are >= 0): skip hopeless ones
    peaks = [j for j in range(len(val)) if kmax[j] and val[j] >= threshold]
    for j, pr in zip(peaks, _prominences(pos, val, peaks), strict=True):
        if pr >= threshold:
            lo, hi = _extent(s_list, pos[j], val[j] - pr / 2.0, above=True)
            out["hvn"].append(_node(profile, pos[j], lo, hi, pr / s_max))

    neg = [-x for x in val]
    # volume on both sides; a trough's depth never exceeds max - its value
    troughs = [j for j in range(1, last) if kmin[j] and val[j] <= s_max - threshold]
    for j, d in zip(troughs, _prominences(pos, neg, troughs), strict=True):
        if d >= threshold:
            lo, hi = _extent(s_list, pos[j], val[j] + d / 2.0, above=False)
            out["lvn"].append(_node(profile, pos[j], lo, hi, d / s_max))
    return out


def node_core(
    profile: VolumeProfile, node: Mapping[str, Any], max_width: float, *, smooth: int = 2
) -> tuple[float, float]:
    """The price extent of a volume node, narrowed to at most ``max_width``.

    A node from :func:`volume_nodes` spans the rows around it above half its prominence; a
    broad plateau can make that very wide. If so, the extent is taken at a quarter, then an
    eighth of the prominence below the peak (for an HVN; above the trough for an LVN) and,
    if still too wide, cut to ``max_width`` centred on the node's row. Returns ``(low, high)``
    as row edges (price units).
    """
    low, high = float(node["low"]), float(node["high"])
    if high - low <= max_width:
        return low, high
    s = smooth_profile(profile.volume, smooth)
    row = int(node["row"])
    prom = float(node["prominence"]) * float(s.max())
    above = s[row] >= np.median(s)  # a peak (HVN) or a trough (LVN)
    s_list = s.tolist()
    for frac in (0.25, 0.125):
        level = s_list[row] - frac * prom if above else s_list[row] + frac * prom
        lo, hi = _extent(s_list, row, level, above=above)
        low, high = profile.row_low(lo), profile.row_high(hi)
        if high - low <= max_width:
            return low, high
    half_rows = max(0, int(max_width / profile.row_size / 2))
    return profile.row_low(row - half_rows), profile.row_high(row + half_rows)


def _node(profile: VolumeProfile, row: int, lo: int, hi: int, prominence: float) -> dict:
    low, high = profile.row_low(lo), profile.row_high(hi)
    v = float(profile.volume[lo : hi + 1].sum())
    total = profile.total
    return {
        "price": profile.row_mid(row),
        "row": int(row),
        "low": low,
        "high": high,
        "volume": v,
        "share": v / total if total > 0 else 0.0,
        "prominence": float(prominence),
    }


def densest_window(profile: VolumeProfile, low: float, high: float, width: float) -> tuple[float, float]:
    """The ``width``-wide sub-range of ``[low, high]`` holding the most profile volume (the
    whole range when it is no wider). Candidate windows start at ``low`` and at every row edge
    inside the range; ties go to the window nearest the middle of the range."""
    if high - low <= width or width <= 0:
        return low, high
    edges = profile.edges()
    starts = edges[(edges > low) & (edges < high - width)]
    starts = np.concatenate(([low], starts, [high - width]))
    vols = np.asarray(profile.volume_between(starts, starts + width), dtype=np.float64)
    best = np.flatnonzero(vols >= vols.max() * (1 - 1e-12))
    centre = (low + high - width) / 2.0
    s = float(starts[best[np.argmin(np.abs(starts[best] - centre))]])
    return s, s + width
