"""Structure chart: candles of one timeframe with key levels, liquidity zones, floor pivots
and a side volume profile (POC and value area), written as a PNG.

The only module of ``p9cli.analysis`` that does I/O (it writes the file). matplotlib is
imported lazily with the Agg backend, through ``matplotlib.figure.Figure`` (no pyplot global
state, safe in threads).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from p9cli.analysis.profile import column, row_size_for, value_area, volume_profile
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


def _composite_of(doc: Mapping[str, Any]) -> Mapping | None:
    vp = _section(doc, "volume_profile", "profile")
    if isinstance(vp, Mapping):
        comp = vp.get("composite", vp)
        if isinstance(comp, Mapping) and "poc" in comp:
            return comp
    return None


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
    max_zones: int = 5,
    dpi: int = 110,
) -> Path:
    """Draw the structure chart of one (exchange, symbol) and write it as a PNG.

    Args:
        doc: the structure document (``p9.structure/1``) or any mapping with the sections
            this chart reads, all optional: ``levels`` (list of :func:`key_levels` dicts:
            price, zone_low, zone_high, kind, strength, touches, timeframes),
            ``liquidity_zones`` (list of :func:`liquidity_zones` dicts: low, high, kind,
            timeframes), ``floor_pivots`` ({"P", "R1".."S3"}), ``volume_profile`` (with a
            ``composite`` summary holding poc/val/vah), ``exchange``, ``symbol``,
            ``alignment`` ({"score"}). Missing sections are simply not drawn.
        candles: candles of ``timeframe`` (DataFrame or Candles; ascending); the last
            ``max_candles`` are drawn.
        timeframe: the candles' timeframe, e.g. "4h" (for the axis and the title).
        out_path: PNG path. Written atomically (temporary file in the same directory, then
            renamed): a failed run never leaves a half-written PNG. Parent directories are
            created.
        title: overrides the default title "EXCHANGE SYMBOL · timeframe · last candle time".
        max_levels: at most this many levels are drawn (the strongest inside the view).
        max_zones: at most this many liquidity zones are drawn (the strongest inside the view).

    The side panel is the volume profile of the visible candles (rows of about a tenth of
    the visible candles' average range, see :func:`row_size_for`) with its value area (70%,
    CBOT expansion) shaded and its POC in orange; the composite profile's POC/VAH/VAL from
    ``doc`` are marked on the panel's edge when inside the view.

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

    fig = Figure(figsize=(15, 8.5), dpi=dpi, facecolor="white")
    gs = fig.add_gridspec(
        1, 2, width_ratios=(5.2, 1.0), wspace=0.02, left=0.06, right=0.93, top=0.9, bottom=0.1
    )
    ax = fig.add_subplot(gs[0, 0])
    axp = fig.add_subplot(gs[0, 1], sharey=ax)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlim(-1, n + max(6, int(n * 0.2)))  # room on the right for level labels
    ax.set_facecolor("#fbfbfb")
    ax.grid(True, color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)

    # --- liquidity zones (behind everything)
    zones = [z for z in _zones_of(doc) if z["high"] >= y_lo and z["low"] <= y_hi]
    zones = sorted(zones, key=lambda z: -float(z.get("strength") or 0))[:max_zones]
    zone_labels: list[tuple[float, str, str, bool]] = []
    for z in zones:
        hatch = "////" if z.get("kind") == "consolidation" else None
        ax.axhspan(
            z["low"],
            z["high"],
            color=ZONE,
            alpha=0.10 * _band_fade(z["low"], z["high"], y_lo, y_hi),
            lw=0,
            zorder=0.5,
        )
        if hatch:
            ax.axhspan(
                z["low"],
                z["high"],
                facecolor="none",
                edgecolor=ZONE,
                alpha=0.25,
                hatch=hatch,
                lw=0,
                zorder=0.6,
            )
        label = "HVN zone" if z.get("kind") == "hvn_cluster" else "consolidation"
        tfs = z.get("timeframes") or []
        if tfs:
            label += f" ({tfs[0]}" + (f"…{tfs[-1]})" if len(tfs) > 1 else ")")
        # middle of the zone's visible part, kept clear of the frame
        vis_lo, vis_hi = max(z["low"], y_lo), min(z["high"], y_hi)
        margin = 0.015 * (y_hi - y_lo)
        ymid = min(max((vis_lo + vis_hi) / 2, y_lo + margin), y_hi - margin)
        zone_labels.append((ymid, label, ZONE, False))
    for y, text, col, _ in _spread_labels(zone_labels, gap=(y_hi - y_lo) * 0.03):
        box = {"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75}
        ax.text(
            max(2.0, 0.035 * n), y, text, color=col, fontsize=7, va="center", ha="left", zorder=5, bbox=box
        )

    # --- key levels
    levels = [lv for lv in _levels_of(doc) if y_lo <= lv["price"] <= y_hi]
    levels = sorted(levels, key=lambda lv: -float(lv.get("strength") or 0))[:max_levels]
    labels: list[tuple[float, str, str, bool]] = [(last_close, _fmt_price(last_close), PRICE, True)]
    for lv in levels:
        col = SUPPORT if lv.get("kind") == "support" else RESISTANCE
        s = float(lv.get("strength") or 0.0)
        zl, zh = lv.get("zone_low", lv["price"]), lv.get("zone_high", lv["price"])
        ax.axhspan(
            zl, zh, color=col, alpha=(0.03 + 0.07 * s) * _band_fade(zl, zh, y_lo, y_hi), lw=0, zorder=1
        )
        ax.axhline(lv["price"], color=col, lw=0.6 + 1.4 * s, alpha=0.85, zorder=2)
        tfs = lv.get("timeframes") or []
        tag = "S" if lv.get("kind") == "support" else "R"
        text = f"{tag} {_fmt_price(lv['price'])} · {s:.2f}"
        if tfs:
            text += f" · {tfs[0]}"
        labels.append((float(lv["price"]), text, col, False))

    # --- floor pivots
    fp = _section(doc, "floor_pivots")
    if isinstance(fp, Mapping):
        for name in ("S3", "S2", "S1", "P", "R1", "R2", "R3"):
            p = fp.get(name)
            if p is None or not (y_lo <= p <= y_hi):
                continue
            ax.axhline(p, color=PIVOT, lw=0.7, ls=(0, (2, 3)), zorder=1.5)
            ax.text(-0.5, p, name, color=PIVOT, fontsize=7, va="bottom", ha="left", zorder=6)

    # --- candles
    up = c >= o
    colors = np.where(up, UP, DOWN)
    ax.vlines(x, lo, h, colors=colors, linewidth=0.8, zorder=3)
    body_lo = np.minimum(o, c)
    body_h = np.maximum(np.abs(c - o), span * 0.0015)
    ax.bar(x, body_h, bottom=body_lo, width=0.7, color=colors, edgecolor=colors, linewidth=0.4, zorder=4)
    ax.axhline(last_close, color=PRICE, lw=0.8, ls="--", zorder=4.5)
    for y, text, col, filled in _spread_labels(labels, gap=(y_hi - y_lo) * 0.028):
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

    # --- time axis: a handful of dated ticks
    n_ticks = min(8, n)
    tick_x = np.unique(np.linspace(0, n - 1, n_ticks).round().astype(int))
    tf_ms = TIMEFRAME_MS.get(timeframe, 0)
    fmt = "%Y-%m-%d" if tf_ms >= 86_400_000 else "%m-%d %H:%M"
    ax.set_xticks(tick_x)
    ax.set_xticklabels(
        [dt.datetime.fromtimestamp(int(ot[i]) / 1000, tz=dt.UTC).strftime(fmt) for i in tick_x], fontsize=8
    )
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("UTC", fontsize=8)

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
    axp.axhline(va.poc, color=POC, lw=1.0)
    axp.axhline(va.vah, color=VALUE_AREA, lw=0.8, ls="--")
    axp.axhline(va.val, color=VALUE_AREA, lw=0.8, ls="--")
    ax.axhline(va.poc, color=POC, lw=0.9, ls=(0, (6, 3)), alpha=0.8, zorder=2.5)
    vmax = float(prof.volume.max()) if prof.total > 0 else 1.0
    axp.set_xlim(0, vmax * 1.45)
    axp.text(vmax * 1.43, va.poc, "POC", color=POC, fontsize=7.5, va="bottom", ha="right")
    axp.text(vmax * 1.43, va.vah, "VAH", color="#546e7a", fontsize=7, va="bottom", ha="right")
    axp.text(vmax * 1.43, va.val, "VAL", color="#546e7a", fontsize=7, va="top", ha="right")
    comp = _composite_of(doc)
    if comp is not None:
        for key, mark in (("poc", "◆ cPOC"), ("vah", "▲ cVAH"), ("val", "▼ cVAL")):
            p = comp.get(key)
            if p is not None and y_lo <= p <= y_hi:
                axp.annotate(
                    mark,
                    (0, p),
                    xytext=(2, 0),
                    textcoords="offset points",
                    fontsize=6.5,
                    color="#37474f",
                    va="center",
                )
    axp.set_title(f"volume profile ({n} × {timeframe})", fontsize=8.5)
    axp.tick_params(axis="y", labelleft=False, labelright=True, labelsize=8)
    axp.set_xticks([])
    axp.set_xlabel(f"volume · value area {va.share:.0%}", fontsize=8)
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
        Line2D([], [], color=SUPPORT, lw=2, label="support (label: price · strength · top timeframe)"),
        Line2D([], [], color=RESISTANCE, lw=2, label="resistance"),
        Patch(color=ZONE, alpha=0.25, label="liquidity zone (hatched: consolidation)"),
        Line2D([], [], color=POC, lw=1.2, ls=(0, (6, 3)), label="POC (visible range)"),
        Line2D([], [], color=PIVOT, lw=0.8, ls=(0, (2, 3)), label="floor pivots"),
    ]
    ax.legend(
        handles=handles, loc="upper left", fontsize=7.5, framealpha=0.9, ncol=5, bbox_to_anchor=(0.0, 1.045)
    )

    return _save_atomic(fig, Path(out_path), dpi)


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


def _group_pos(group: list, gap: float) -> list[float]:
    centre = sum(it[0] for it in group) / len(group)
    first = centre - gap * (len(group) - 1) / 2.0
    return [first + k * gap for k in range(len(group))]


def _tick_for(span: float) -> float:
    """A display row quantum: a power of ten about 1e-4 of the visible span."""
    if not (span > 0 and math.isfinite(span)):
        return 1e-8
    return 10.0 ** math.floor(math.log10(span * 1e-4))


def _save_atomic(fig: Any, path: Path, dpi: int) -> Path:
    """Render to a new file next to ``path`` (created with the usual umask-governed mode, like
    any other output file), then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 stale temporary files with our pid
        raise FileExistsError(f"cannot create a temporary file next to {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


__all__: Sequence[str] = ("plot_structure",)
