"""Structure chart: candles of one timeframe with the document's key levels (labelled by their
strongest evidence), a few liquidity zones, the session value areas (previous and developing
day: POC, VAH, VAL), naked POCs, floor pivots, a volume pane and a side volume profile of the
visible candles, written as a PNG.

The only module of ``p9cli.analysis`` that does I/O (it writes the file, through the one
atomic writer :func:`p9cli.fsutil.write_atomic`). matplotlib is imported lazily with the Agg
backend, through ``matplotlib.figure.Figure`` (no pyplot global state, safe in threads).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from p9cli.analysis.profile import column, row_size_for, value_area, volume_profile
from p9cli.fsutil import write_atomic
from p9cli.universe import TIMEFRAME_MS

UP = "#26a69a"
DOWN = "#ef5350"
SUPPORT = "#1b8a5a"
RESISTANCE = "#c62828"
ZONE = "#5c6bc0"
POC = "#ff8f00"
VALUE_AREA = "#90a4ae"
OUTSIDE_VA = "#cfd8dc"
PIVOT = "#757575"
PRICE = "#212121"
SESSION = "#6a1b9a"
NAKED = "#ad1457"


def _section(doc: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in doc and doc[name] is not None:
            return doc[name]
    return None


def _levels_of(doc: Mapping[str, Any]) -> list[dict]:
    lv = _section(doc, "levels", "key_levels")
    if isinstance(lv, Mapping):
        lv = lv.get("levels")
    return [x for x in (lv or []) if isinstance(x, Mapping) and "price" in x]


def _zones_of(doc: Mapping[str, Any]) -> list[dict]:
    zs = _section(doc, "liquidity_zones", "zones")
    if isinstance(zs, Mapping):
        zs = zs.get("zones")
    return [z for z in (zs or []) if isinstance(z, Mapping) and "low" in z and "high" in z]


def _sessions_of(doc: Mapping[str, Any]) -> list[tuple[str, Mapping]]:
    """(short name, profile) of the previous and developing day and the previous week."""
    ses = _section(doc, "sessions")
    out = []
    if isinstance(ses, Mapping):
        for kind, which, short in (
            ("day", "previous", "pd"),
            ("day", "developing", "dd"),
            ("week", "previous", "pw"),
        ):
            prof = (ses.get(kind) or {}).get(which)
            if isinstance(prof, Mapping) and prof.get("poc") is not None:
                out.append((short, prof))
    return out


def _level_label(lv: Mapping[str, Any]) -> str:
    """``R 56,481 · 37×, 2.6 ATR`` / ``S 55,017 · vol 1.5×`` / ``R 56,845 · 1d..1m``: the
    level's price and its strongest evidence."""
    tag = "S" if lv.get("kind") == "support" else "R"
    text = f"{tag} {_fmt_price(float(lv['price']))}"
    ev = lv.get("evidence")
    tfs = lv.get("timeframes") or []
    if ev == "volume" and lv.get("volume_ratio") is not None:
        text += f" · vol {float(lv['volume_ratio']):.1f}×"
    elif ev == "timeframes" and tfs:
        text += f" · {tfs[0]}" + (f"..{tfs[-1]} ({len(tfs)} tf)" if len(tfs) > 1 else "")
    elif lv.get("touches") is not None:
        text += f" · {int(lv['touches'])}×"
        if lv.get("reaction_mean_atr") is not None:
            text += f", {float(lv['reaction_mean_atr']):.1f} ATR"
    if lv.get("strength") is not None:
        text += f" · {float(lv['strength']):.2f}"
    return text


def _fmt_price(x: float) -> str:
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.1f}"
    if ax >= 10:
        return f"{x:.2f}"
    if ax >= 1:
        return f"{x:.4f}"
    return f"{x:.5g}"


def plot_structure(
    doc: Mapping[str, Any],
    candles: Any,
    timeframe: str,
    out_path: str | os.PathLike[str],
    *,
    title: str | None = None,
    max_candles: int = 180,
    max_levels: int = 10,
    max_zones: int = 3,
    dpi: int = 110,
) -> Path:
    """Draw the structure chart of one (exchange, symbol) and write it as a PNG.

    Args:
        doc: the structure document (``p9.structure/2``) or any mapping with the sections
            this chart reads, all optional: ``levels``, ``liquidity_zones``, ``sessions``,
            ``naked_pocs``, ``floor_pivots``, ``exchange``, ``symbol``, ``alignment``. Missing
            sections are simply not drawn.
        candles: candles of ``timeframe`` (DataFrame or Candles; ascending); the last
            ``max_candles`` are drawn.
        timeframe: the candles' timeframe, e.g. "4h" (for the axis and the title).
        out_path: PNG path, written atomically (:func:`p9cli.fsutil.write_atomic`); parent
            directories are created.
        title: overrides the default title "EXCHANGE SYMBOL · timeframe · last candle time".
        max_levels: at most this many levels are drawn (the strongest inside the view).
        max_zones: at most this many liquidity zones are drawn (the nearest to the price inside
            the view).

    What is drawn: levels as lines (width by strength) labelled on the right by their
    strongest evidence (touches and mean reaction, volume ratio, or confirming timeframes) and
    their strength; zones as light bands labelled on the left; the previous day's (pd) and the
    developing day's (dd) POC (solid), the previous day's VAH/VAL (dashed), the previous week's POC (pw);
    naked POCs as diamonds on the right edge; floor pivots dotted, labelled on the left; a
    volume pane under the candles; the side panel is the volume profile of the visible candles
    with its value area shaded and its POC in orange.

    Returns:
        the path written.

    Raises:
        ValueError: no candles to draw.
        OSError: the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ot_all = column(candles, "open_time")
    n_all = ot_all.size
    if n_all == 0:
        raise ValueError(f"{timeframe}: no candles to plot")
    start = max(0, n_all - max_candles)
    ot = ot_all[start:]
    o = column(candles, "open")[start:]
    h = column(candles, "high")[start:]
    lo = column(candles, "low")[start:]
    c = column(candles, "close")[start:]
    v = column(candles, "volume")[start:]
    n = ot.size
    x = np.arange(n)

    view_lo, view_hi = float(np.nanmin(lo)), float(np.nanmax(h))
    span = max(view_hi - view_lo, abs(view_hi) * 1e-6, 1e-12)
    y_lo, y_hi = view_lo - 0.06 * span, view_hi + 0.06 * span
    last_close = float(c[-1])
    gap = (y_hi - y_lo) * 0.03

    fig = Figure(figsize=(15, 8.5), dpi=dpi, facecolor="white")
    gs = fig.add_gridspec(
        2,
        2,
        width_ratios=(5.2, 1.0),
        height_ratios=(4.2, 1.0),
        wspace=0.02,
        hspace=0.04,
        left=0.06,
        right=0.93,
        top=0.9,
        bottom=0.08,
    )
    ax = fig.add_subplot(gs[0, 0])
    axv = fig.add_subplot(gs[1, 0], sharex=ax)
    axp = fig.add_subplot(gs[0, 1], sharey=ax)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlim(-1, n + max(8, int(n * 0.24)))  # room on the right for level labels
    ax.set_facecolor("#fbfbfb")
    ax.grid(True, color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    left_labels: list[tuple[float, str, str, bool]] = []
    right_labels: list[tuple[float, str, str, bool]] = [(last_close, _fmt_price(last_close), PRICE, True)]

    # --- liquidity zones (behind everything): the few nearest the price inside the view
    zones = [z for z in _zones_of(doc) if z["high"] >= y_lo and z["low"] <= y_hi]
    zones = sorted(zones, key=lambda z: abs((z["low"] + z["high"]) / 2 - last_close))[:max_zones]
    for z in zones:
        ax.axhspan(
            z["low"],
            z["high"],
            color=ZONE,
            alpha=0.13 * _band_fade(z["low"], z["high"], y_lo, y_hi),
            lw=0,
            zorder=0.5,
        )
        label = "HVN zone" if z.get("kind") == "hvn_cluster" else "consolidation"
        if z.get("timeframe"):
            label += f" ({z['timeframe']})"
        vis_lo, vis_hi = max(z["low"], y_lo), min(z["high"], y_hi)
        left_labels.append(((vis_lo + vis_hi) / 2, label, ZONE, False))

    # --- key levels
    levels = [lv for lv in _levels_of(doc) if y_lo <= lv["price"] <= y_hi]
    levels = sorted(levels, key=lambda lv: -float(lv.get("strength") or 0))[:max_levels]
    for lv in levels:
        col = SUPPORT if lv.get("kind") == "support" else RESISTANCE
        st = float(lv.get("strength") or 0.0)
        ax.axhline(lv["price"], color=col, lw=0.6 + 1.8 * st, alpha=0.5 + 0.45 * st, zorder=2)
        right_labels.append((float(lv["price"]), _level_label(lv), col, False))

    # --- session value areas and naked POCs
    for short, prof in _sessions_of(doc):
        for key, ls, lw in (("poc", "-", 1.3), ("vah", (0, (5, 3)), 0.8), ("val", (0, (5, 3)), 0.8)):
            if short != "pd" and key != "poc":  # VAH/VAL of the previous day only: fewer lines
                continue
            p = prof.get(key)
            if p is None or not (y_lo <= p <= y_hi):
                continue
            alpha = 0.9 if short == "pd" else 0.6
            ax.axhline(p, color=SESSION, lw=lw, ls=ls, alpha=alpha, zorder=2.2)
            right_labels.append((float(p), f"{short} {key.upper()} {_fmt_price(float(p))}", SESSION, False))
    for nk in _section(doc, "naked_pocs") or []:
        p = nk.get("poc") if isinstance(nk, Mapping) else None
        if p is None or not (y_lo <= p <= y_hi):
            continue
        ax.plot([n - 0.5], [p], marker="D", color=NAKED, ms=6, zorder=6)
        when = dt.datetime.fromtimestamp(int(nk.get("start_ms", 0)) / 1000, tz=dt.UTC).strftime("%m-%d")
        right_labels.append((float(p), f"naked {nk.get('session', '')} POC {when}", NAKED, False))

    # --- floor pivots
    fp = _section(doc, "floor_pivots")
    if isinstance(fp, Mapping):
        for name in ("S3", "S2", "S1", "P", "R1", "R2", "R3"):
            p = fp.get(name)
            if p is None or not (y_lo <= p <= y_hi):
                continue
            ax.axhline(p, color=PIVOT, lw=0.8, ls=(0, (1, 2)), zorder=1.5)
            left_labels.append((float(p), f"{name} {_fmt_price(float(p))}", PIVOT, False))

    # --- candles
    up = c >= o
    colors = np.where(up, UP, DOWN)
    ax.vlines(x, lo, h, colors=colors, linewidth=0.8, zorder=3)
    body_lo = np.minimum(o, c)
    body_h = np.maximum(np.abs(c - o), span * 0.0015)
    ax.bar(x, body_h, bottom=body_lo, width=0.7, color=colors, edgecolor=colors, linewidth=0.4, zorder=4)
    ax.axhline(last_close, color=PRICE, lw=0.8, ls="--", zorder=4.5)
    for y, text, col, filled in _fit(_spread_labels(right_labels, gap=gap), gap, y_lo, y_hi):
        box = {
            "boxstyle": "round,pad=0.18",
            "fc": col if filled else "white",
            "ec": col,
            "lw": 0.5,
            "alpha": 0.95,
        }
        ax.text(
            n + 0.8,
            y,
            text,
            color="white" if filled else col,
            fontsize=7.5,
            va="center",
            ha="left",
            zorder=7,
            bbox=box,
        )
    for y, text, col, _ in _fit(_spread_labels(left_labels, gap=gap), gap, y_lo, y_hi):
        box = {"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.8}
        ax.text(0.0, y, text, color=col, fontsize=7, va="center", ha="left", zorder=6, bbox=box)

    # --- volume pane
    axv.bar(x, v, width=0.7, color=colors, alpha=0.7, lw=0)
    axv.set_ylabel("volume", fontsize=8)
    axv.tick_params(axis="y", labelsize=7)
    axv.grid(True, axis="y", color="#eeeeee", lw=0.5)
    axv.set_facecolor("#fbfbfb")
    ax.tick_params(axis="x", labelbottom=False)

    # --- time axis: a handful of dated ticks
    n_ticks = min(8, n)
    tick_x = np.unique(np.linspace(0, n - 1, n_ticks).round().astype(int))
    tf_ms = TIMEFRAME_MS.get(timeframe, 0)
    fmt = "%Y-%m-%d" if tf_ms >= 86_400_000 else "%m-%d %H:%M"
    axv.set_xticks(tick_x)
    axv.set_xticklabels(
        [dt.datetime.fromtimestamp(int(ot[i]) / 1000, tz=dt.UTC).strftime(fmt) for i in tick_x], fontsize=8
    )
    ax.tick_params(axis="y", labelsize=8)
    axv.set_xlabel("UTC", fontsize=8)

    # --- side volume profile of the visible candles
    rng_mean = float(np.nanmean(h - lo)) if n else 0.0
    rs = row_size_for(_tick_for(span), rng_mean, rows_per_atr=2.5, price_range=span, max_rows=120)
    rs = max(rs, span / 120)
    prof = volume_profile(h, lo, v, rs)
    va = value_area(prof, 0.70)
    centers = prof.centers()
    in_va = (np.arange(prof.n_rows) >= va.low_row) & (np.arange(prof.n_rows) <= va.high_row)
    bar_colors = np.where(in_va, VALUE_AREA, OUTSIDE_VA).astype(object)
    bar_colors[va.poc_row] = POC
    axp.barh(centers, prof.volume, height=prof.row_size * 0.92, color=list(bar_colors), lw=0)
    vmax = float(prof.volume.max()) if prof.total > 0 else 1.0
    axp.set_xlim(0, vmax * 1.3)
    axp.set_title(f"profile of the {n} × {timeframe} shown", fontsize=8.5)
    axp.tick_params(axis="y", labelleft=False, labelright=True, labelsize=8)
    axp.set_xticks([])
    axp.set_xlabel(f"orange POC · grey value area {va.share:.0%}", fontsize=8)
    axp.grid(True, axis="y", color="#eeeeee", lw=0.5)

    # --- title and legend
    if title is None:
        ex = str(doc.get("exchange", "")).upper()
        sym = str(doc.get("symbol", "")).upper()
        last_t = dt.datetime.fromtimestamp(int(ot[-1]) / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")
        title = f"{ex} {sym} · {timeframe} · last candle {last_t} UTC".strip()
        align = doc.get("alignment")
        if isinstance(align, Mapping) and align.get("score") is not None:
            title += f" · trend alignment {float(align['score']):+.2f}"
    fig.suptitle(title, fontsize=12, x=0.06, ha="left")
    handles = [
        Line2D([], [], color=SUPPORT, lw=2, label="support / resistance (width: strength)"),
        Line2D([], [], color=RESISTANCE, lw=2, label="label: touches×, mean reaction · strength"),
        Patch(color=ZONE, alpha=0.3, label="liquidity zone"),
        Line2D([], [], color=SESSION, lw=1.3, label="session POC (pd/dd/pw), pd VAH/VAL dashed"),
        Line2D([], [], color=NAKED, marker="D", lw=0, label="naked POC"),
        Line2D([], [], color=PIVOT, lw=0.8, ls=(0, (1, 2)), label="floor pivots"),
    ]
    ax.legend(
        handles=handles, loc="upper left", fontsize=7.5, framealpha=0.9, ncol=6, bbox_to_anchor=(0.0, 1.05)
    )

    def draw(fh) -> None:
        fig.savefig(fh, format="png", dpi=dpi)

    return write_atomic(Path(out_path), draw)


def _band_fade(low: float, high: float, y_lo: float, y_hi: float) -> float:
    """Opacity factor for a horizontal band: 1 up to 6% of the view's height, then fading so
    that bands wider than the view (a daily zone on a 1-minute chart) do not paint it over."""
    frac = (high - low) / max(y_hi - y_lo, 1e-300)
    return 1.0 if frac <= 0.06 else max(0.15, 0.06 / frac)


def _spread_labels(
    labels: list[tuple[float, str, str, bool]], gap: float
) -> list[tuple[float, str, str, bool]]:
    """Move label y positions apart (at least ``gap``) with as little displacement as possible:
    labels are placed in price order, each pushed up past the previous one, then the whole
    stack of every overlapping group is re-centred on its members' mean."""
    items = sorted(labels, key=lambda t: t[0])
    groups: list[list] = []
    for y, *rest in items:
        groups.append([[y, *rest]])
        # merge groups while they overlap
        while len(groups) > 1:
            a, b = groups[-2], groups[-1]
            top_a = _group_pos(a, gap)[-1]
            bottom_b = _group_pos(b, gap)[0]
            if bottom_b - top_a >= gap:
                break
            groups[-2:] = [a + b]
    out = []
    for g in groups:
        for item, y in zip(g, _group_pos(g, gap), strict=True):
            out.append((y, item[1], item[2], item[3]))
    return out


def _fit(labels: list[tuple], gap: float, lo: float, hi: float) -> list[tuple]:
    """Labels (already spread, in price order) pushed inside ``[lo + gap/2, hi - gap/2]`` keeping
    at least ``gap`` between neighbours where the room allows."""
    ys = [t[0] for t in labels]
    for i in range(len(ys)):
        ys[i] = max(ys[i], lo + gap / 2 if i == 0 else ys[i - 1] + gap)
    for i in range(len(ys) - 1, -1, -1):
        ys[i] = min(ys[i], hi - gap / 2 if i == len(ys) - 1 else ys[i + 1] - gap)
    return [(y, *t[1:]) for y, t in zip(ys, labels, strict=True)]


def _group_pos(group: list, gap: float) -> list[float]:
    centre = sum(it[0] for it in group) / len(group)
    first = centre - gap * (len(group) - 1) / 2.0
    return [first + k * gap for k in range(len(group))]


def _tick_for(span: float) -> float:
    """A display row quantum: a power of ten about 1e-4 of the visible span."""
    if not (span > 0 and math.isfinite(span)):
        return 1e-8
    return 10.0 ** math.floor(math.log10(span * 1e-4))


__all__: Sequence[str] = ("plot_structure",)
