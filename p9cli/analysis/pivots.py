"""Confirmed fractal swing pivots: the one pivot rule of the analysis (swing structure in
:mod:`p9cli.analysis.trend`, key levels in :mod:`p9cli.analysis.levels`, and the level evaluation
in ``scripts/eval_levels.py`` all use :func:`fractal_pivots`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fractal_pivots(
    high: np.ndarray | Sequence[float],
    low: np.ndarray | Sequence[float],
    left: int = 2,
    right: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Confirmed fractal (Williams / Bill Williams-style) swing pivots.

    A pivot high at bar ``i`` needs ``high[i]`` strictly above each of the ``left`` bars
    before it and at or above each of the ``right`` bars after it; a pivot low mirrors this
    with ``low``. So in a flat top (equal highs) the first bar of the plateau is the pivot,
    and there is exactly one pivot per plateau: ties are resolved deterministically toward
    the earliest bar.

    No repainting: whether ``i`` is a pivot depends only on bars ``i - left .. i + right``,
    so the last ``right`` bars never hold a pivot and a pivot, once reported, never changes
    as later bars arrive. Bars with a non-finite value are never pivots.

    Args:
        high, low: equal-length 1-D arrays, oldest first.
        left, right: bars each side (>= 1).

    Returns:
        ``(high_idx, low_idx)``: ascending int64 arrays of bar indices.
    """
    if left < 1 or right < 1:
        raise ValueError(f"left and right must be >= 1, got left={left} right={right}")
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    n = h.size
    if lo.size != n:
        raise ValueError("high and low must have the same length")
    if n < left + right + 1:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    stop = n - right
    hc = h[left:stop]
    lc = lo[left:stop]
    is_high = np.isfinite(hc)
    is_low = np.isfinite(lc)
    for k in range(1, left + 1):
        is_high &= hc > h[left - k : stop - k]
        is_low &= lc < lo[left - k : stop - k]
    for k in range(1, right + 1):
        is_high &= hc >= h[left + k : stop + k]
        is_low &= lc <= lo[left + k : stop + k]
    return np.flatnonzero(is_high) + left, np.flatnonzero(is_low) + left
