"""``p9 watch``: one or more pairs' fused live context as a Rich layout.

Pure: :func:`watch_view` turns the newest payload of each per-pair channel (``fusion_data``,
``market_context``, ``precision9_context``, ``structure``, as ``p9 stream`` publishes them) and
``now_ms`` into a renderable for a given size; :class:`WatchScreen` picks the size from the
console at render time, so a terminal resize is redrawn at the next refresh. No I/O here: the
loop (Redis SUBSCRIBE + GET) is ``p9cli/services/watch.py``.

Panels (degraded by size: a pair given fewer than :data:`MIN_FULL_HEIGHT` rows or
:data:`MIN_FULL_WIDTH` columns becomes one row of a compact table): header (price, change since
the UTC day's open, spread, bias, regime, state in words), book & flow, a ladder of the nearest
key levels / liquidity zones / value-area edges around the price (distance in % and in ATR(1h)),
trend and volatility per timeframe, the latest level events.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from p9cli.ui.numbers import fmt_age, fmt_price, fmt_qty, fmt_signed, num, price_decimals
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

FUSION_DATA = "fusion_data"
MARKET_CONTEXT = "market_context"
PRECISION9_CONTEXT = "precision9_context"
STRUCTURE = "structure"

#: no per-pair message for this long (ms) means the producer stopped: the pair is STALE
SILENT_AFTER_MS = 5_000
#: a trade older than this (ms) is called out (the stream's own stale threshold is 10 s)
TRADE_OLD_MS = 10_000
#: rows a pair needs for all panels; from MIN_MID_HEIGHT book & flow and the ladder; below that
#: (or narrower than MIN_FULL_WIDTH) every pair is one row of a compact table
MIN_FULL_HEIGHT = 16
MIN_MID_HEIGHT = 10
MIN_FULL_WIDTH = 60
#: timeframes of the trend table when it cannot show all 11
SHORT_TFS = ("1d", "4h", "1h", "15m", "5m", "1m")
#: the ATR the ladder measures distances in
LADDER_ATR_TF = "1h"


@dataclass
class PairPayloads:
    """The newest payload per channel kind of one pair (missing kinds simply absent)."""

    exchange: str
    symbol: str  # channel symbol, ``btcusdt``
    payloads: dict[str, dict] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.exchange}:{self.symbol}"


# ---------------------------------------------------------------------------------------- numbers


# ---------------------------------------------------------------------------------------- derived


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def newest_ts(pair: PairPayloads) -> int | None:
    """Production time (ms) of the newest per-pair payload (``structure`` excluded: it is rare)."""
    ts = [p.get("ts") for k, p in pair.payloads.items() if k != STRUCTURE and isinstance(p.get("ts"), int)]
    return max(ts) if ts else None


def _newest_field(pair: PairPayloads, *sources: tuple[str, tuple[str, ...]]) -> Any:
    """The value at ``path`` in the newest (by ``ts``) of the given ``(kind, path)`` sources that has one."""
    best: tuple[int, Any] | None = None
    for kind, path in sources:
        p = pair.payloads.get(kind)
        v = _get(p, *path)
        if p is not None and v is not None and (best is None or (p.get("ts") or 0) > best[0]):
            best = (p.get("ts") or 0, v)
    return None if best is None else best[1]


def live_price(pair: PairPayloads) -> float | None:
    """The newest price among fusion_data, precision9_context and market_context.live."""
    return num(_newest_field(pair, (FUSION_DATA, ("price",)), (PRECISION9_CONTEXT, ("price",)),
                              (MARKET_CONTEXT, ("live", "price"))))  # fmt: skip


def _newest_with(pair: PairPayloads, key: str, kinds: Sequence[str]) -> dict | None:
    best = None
    for kind in kinds:
        p = pair.payloads.get(kind)
        if p is not None and p.get(key) is not None and (best is None or (p.get("ts") or 0) > (best.get("ts") or 0)):
            best = p
    return best


def book_of(pair: PairPayloads) -> dict | None:
    """The newest book figures; ``None`` while the stream says the book is out of sync."""
    fd, mc = pair.payloads.get(FUSION_DATA), pair.payloads.get(MARKET_CONTEXT)
    newest = max((p for p in (fd, mc) if p), key=lambda p: p.get("ts") or 0, default=None)
    if newest is None:
        return None
    return newest.get("book") if newest is fd else _get(newest, "live", "book")


def flow_of(pair: PairPayloads) -> dict | None:
    return _newest_field(pair, (FUSION_DATA, ("flow",)), (MARKET_CONTEXT, ("live", "flow")))


def candles_of(pair: PairPayloads) -> dict:
    return _newest_field(pair, (FUSION_DATA, ("candles",)), (MARKET_CONTEXT, ("live", "candles"))) or {}


def candle_change_pct(pair: PairPayloads, tf: str, price: float | None, now_ms: int | None = None) -> float | None:
    """Change of the current ``tf`` candle in %: the live price against the previous candle's
    close (the structure document's or the stream's last closed candle, when it is the one just
    before), else against the forming candle's open (which, for a stream started mid-candle, is
    its first live trade)."""
    if price is None:
        return None
    candles = candles_of(pair).get(tf) or {}
    forming = candles.get("forming") or {}
    tf_ms = TIMEFRAME_MS[tf]
    start = forming.get("open_time")
    if start is None and now_ms is not None:
        start = now_ms // tf_ms * tf_ms
    sec = _get(pair.payloads.get(STRUCTURE), "timeframes", tf) or {}
    last = candles.get("last_closed") or {}
    base = None
    if start is not None:
        if isinstance(sec.get("last_open_ms"), int) and sec["last_open_ms"] + tf_ms == start:
            base = num(sec.get("close"))
        if base is None and isinstance(last.get("open_time"), int) and last["open_time"] + tf_ms == start:
            base = num(last.get("close"))
    if base is None:
        base = num(forming.get("open"))
    return (price - base) / base * 100 if base else None


def day_change_pct(pair: PairPayloads, price: float | None, now_ms: int | None = None) -> float | None:
    """Change of the UTC day in % (see :func:`candle_change_pct`)."""
    return candle_change_pct(pair, "1d", price, now_ms)


def atr_of(pair: PairPayloads, tf: str) -> float | None:
    for kind, path in ((PRECISION9_CONTEXT, ("atr", tf)), (MARKET_CONTEXT, ("structure", "atr", tf)),
                       (STRUCTURE, ("timeframes", tf, "volatility", "atr"))):  # fmt: skip
        v = num(_get(pair.payloads.get(kind), *path))
        if v:
            return v
    return None


def tick_of(pair: PairPayloads) -> float | None:
    return num(_get(pair.payloads.get(STRUCTURE), "tick"))


@dataclass
class State:
    """The pair's health in words: ``label`` is LIVE, STALE or NO DATA; ``reasons`` explain it."""

    label: str
    reasons: list[str]
    age_ms: int | None

    @property
    def ok(self) -> bool:
        return self.label == "LIVE"

    def words(self) -> str:
        return self.label + (": " + "; ".join(self.reasons) if self.reasons else "")


def pair_state(pair: PairPayloads, now_ms: int) -> State:
    """LIVE, or STALE with the reasons (producer silent, exchange data old, book out of sync,
    no structure), or NO DATA. Ages are carried forward from the payload to ``now_ms``."""
    ts = newest_ts(pair)
    if ts is None:
        return State("NO DATA", ["nothing published for this pair"], None)
    age = now_ms - ts
    reasons: list[str] = []
    if age > SILENT_AFTER_MS:
        reasons.append(f"no message from p9 stream for {fmt_age(age)} (stopped?)")
    fresh_src = _newest_with(pair, "freshness", (FUSION_DATA, PRECISION9_CONTEXT, MARKET_CONTEXT))
    fresh = (fresh_src or {}).get("freshness") or {}
    since = now_ms - ((fresh_src or {}).get("ts") or now_ms)
    sources = set(fresh.get("stale_sources") or [])
    trade_age = num(fresh.get("trade_age_ms"))
    if "trades" in sources or (trade_age is not None and trade_age + since > TRADE_OLD_MS):
        reasons.append("no trade yet" if trade_age is None else f"last trade {fmt_age(trade_age + since)} ago")
    if "book" in sources or fresh.get("book_valid") is False:
        reasons.append("book out of sync")
    if "structure" in sources:
        reasons.append("no structure (run p9 analyze)")
    stale_flag = any(p.get("stale") for k, p in pair.payloads.items() if k != STRUCTURE)
    if stale_flag and not reasons:
        reasons.append("the stream marks its data stale")
    return State("STALE" if reasons else "LIVE", reasons, age)


# ---------------------------------------------------------------------------------------- ladder


@dataclass
class Rung:
    price: float  # the edge nearest to the live price (zones) or the level's price
    label: str
    detail: str
    kind: str  # support | resistance | zone | va | price
    low: float | None = None
    high: float | None = None


def ladder(pair: PairPayloads, price: float | None, above: int, below: int) -> list[Rung]:
    """The ``above`` nearest key levels / zones / value-area edges above the price and the
    ``below`` nearest below it, highest first, with the price itself as a rung between them."""
    if price is None:
        return []
    doc = pair.payloads.get(STRUCTURE) or {}
    summary = _get(pair.payloads.get(MARKET_CONTEXT), "structure") or {}
    levels = doc.get("levels") or summary.get("levels") or []
    zones = doc.get("liquidity_zones") or summary.get("liquidity_zones") or []
    position = _get(pair.payloads.get(FUSION_DATA), "position") or _get(pair.payloads.get(MARKET_CONTEXT), "fusion")
    rungs: dict[float, Rung] = {}

    def add_level(lv: Mapping, note: str = "") -> None:
        p = num(lv.get("price"))
        if p is None:
            return
        kind = str(lv.get("kind") or "level")
        tfs = lv.get("timeframes") or []
        bits = [note] if note else []
        if lv.get("touches"):
            bits.append(f"{lv['touches']}×")
        if tfs:
            bits.append(f"{tfs[0]}" + (f"–{tfs[-1]}" if len(tfs) > 1 else ""))
        if note:
            side = note.split()[-1]
            label = note + ("" if kind == side else f" ({kind})")
            rungs[p] = Rung(p, label, " ".join(bits[1:]), side)
        elif p not in rungs:
            rungs[p] = Rung(p, kind, " ".join(bits), kind)

    for lv in levels:
        if isinstance(lv, Mapping):
            add_level(lv)
    for side in ("support", "resistance"):
        lv = _get(position, side)
        if isinstance(lv, Mapping):
            add_level(lv, f"nearest {side}")
    for z in zones:
        lo, hi = num(_get(z, "low")), num(_get(z, "high"))
        if lo is None or hi is None:
            continue
        edge = lo if lo > price else hi if hi < price else price
        kind = str(z.get("kind") or "zone").replace("_", " ")
        detail = f"{z.get('timeframe') or ''} {'inside' if lo <= price <= hi else ''}".strip()
        rungs.setdefault(edge + 1e-12 * (hi - lo), Rung(edge, kind, detail, "zone", lo, hi))
    va = summary.get("value_area") or _get(pair.payloads.get(PRECISION9_CONTEXT), "value_area") or {}
    for key, label in (("vah", "VA high"), ("poc", "POC"), ("val", "VA low")):
        p = num(va.get(key))
        if p is not None and p not in rungs:
            rungs[p] = Rung(p, label, "prev. day", "va")
    up = sorted((r for r in rungs.values() if r.price > price), key=lambda r: r.price)[:above]
    down = sorted((r for r in rungs.values() if r.price <= price), key=lambda r: r.price, reverse=True)[:below]
    return [*reversed(up), Rung(price, "price", "", "price"), *down]


# ---------------------------------------------------------------------------------------- panels

_KIND_STYLE = {"support": "green", "resistance": "red", "zone": "cyan", "va": "magenta", "price": "bold reverse"}


def _arrow(x: float | None) -> str:
    return "" if x is None else "▲" if x > 0 else "▼" if x < 0 else "="


def _signed_style(x: float | None) -> str:
    return "" if x is None or x == 0 else "green" if x > 0 else "red"


def header(pair: PairPayloads, now_ms: int, compact: bool = False) -> Text:
    """Line 1: pair, price, change, spread, bias, regime; line 2: the state in words."""
    price = live_price(pair)
    dec = price_decimals(price, tick_of(pair))
    chg = day_change_pct(pair, price, now_ms)
    book = book_of(pair) or {}
    p9 = pair.payloads.get(PRECISION9_CONTEXT) or {}
    t = Text()
    t.append(pair.name.upper(), style="bold")
    t.append("  ")
    t.append(fmt_price(price, dec), style="bold")
    t.append("  ")
    t.append(f"{_arrow(chg)} {fmt_signed(chg, 2, '%')} 1d", style=_signed_style(chg))
    spread = num(book.get("spread"))
    bps = num(book.get("spread_bps"))
    t.append(f"  spread {fmt_price(spread, dec)} ({'–' if bps is None else f'{bps:.2f}'} bp)")
    bias = p9.get("bias") or _get(pair.payloads.get(MARKET_CONTEXT), "fusion", "bias") or {}
    sign = bias.get("sign")
    if sign is not None and not compact:
        word = "bullish" if sign > 0 else "bearish" if sign < 0 else "neutral"
        conf = num(bias.get("confidence"))
        t.append(f"  bias {word}" + (f" {conf * 100:.0f}%" if conf is not None else ""), style=_signed_style(sign))
    regime = p9.get("regime") or _get(pair.payloads.get(MARKET_CONTEXT), "fusion", "regime") or {}
    if regime.get("label") and not compact:
        t.append(f"  vol {regime['label']}")
    st = pair_state(pair, now_ms)
    t.append("\n")
    style = "bold green" if st.ok else "bold white on red" if st.label == "STALE" else "bold yellow"
    t.append(f" {st.label} ", style=style)
    if st.reasons:
        t.append(" " + "; ".join(st.reasons), style="red" if st.label == "STALE" else "yellow")
    elif st.age_ms is not None:
        t.append(f" updated {fmt_age(st.age_ms)} ago", style="dim")
    return t


def book_flow_table(pair: PairPayloads) -> Table:
    price = live_price(pair)
    dec = price_decimals(price, tick_of(pair))
    book = book_of(pair)
    flow = flow_of(pair) or {}
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim", no_wrap=True, min_width=10)
    t.add_column(no_wrap=True, overflow="ellipsis")
    if book:
        t.add_row("bid", Text(f"{fmt_price(book.get('bid'), dec)} × {fmt_qty(book.get('bid_size'))}", style="green"))
        t.add_row("ask", Text(f"{fmt_price(book.get('ask'), dec)} × {fmt_qty(book.get('ask_size'))}", style="red"))
        imb = num(book.get("imbalance_top"))
        depth = book.get("depth") or {}
        bands = " ".join(
            f"{label} {fmt_signed(_get(depth, key, 'imbalance'), 2)}"
            for key, label in (("0_1pct", "0.1%"), ("0_5pct", "0.5%"), ("1pct", "1%"))
            if _get(depth, key, "imbalance") is not None
        )
        t.add_row("imbalance", Text(f"top {fmt_signed(imb, 2)}", style=_signed_style(imb)))
        if bands:
            t.add_row("depth imb.", bands)
    else:
        t.add_row("book", Text("out of sync (no valid book)", style="bold red"))
    t.add_row("trades/s", f"{_n1(flow.get('trades_per_s_1s'))} 1s  {_n1(flow.get('trades_per_s_10s'))} 10s  "
                          f"{_n1(flow.get('trades_per_s_60s'))} 60s")  # fmt: skip
    t.add_row("buy/sell", f"{fmt_qty(flow.get('buy_volume_60s'))}/{fmt_qty(flow.get('sell_volume_60s'))} 60s"
                              + (f" {flow['buy_share_60s'] * 100:.0f}% buy" if num(flow.get('buy_share_60s')) is not None else ""))  # fmt: skip
    d60, cvd = num(flow.get("delta_60s")), num(flow.get("cvd"))
    t.add_row("Δ 60s", Text(_sq(d60), style=_signed_style(d60)))
    t.add_row("cum. Δ", Text(_sq(cvd), style=_signed_style(cvd)))
    vwap = num(flow.get("vwap_60s"))
    if vwap is not None:
        t.add_row("vwap 60s", fmt_price(vwap, dec))
    return t


def _n1(x: Any) -> str:
    v = num(x)
    return "–" if v is None else f"{v:.1f}"


def _sq(x: float | None) -> str:
    return "–" if x is None else ("+" if x > 0 else "") + fmt_qty(x)


def ladder_table(pair: PairPayloads, rows: int) -> Table:
    price = live_price(pair)
    dec = price_decimals(price, tick_of(pair))
    atr = atr_of(pair, LADDER_ATR_TF)
    n = max(1, rows - 1)
    rungs = ladder(pair, price, n // 2, n - n // 2)
    t = Table(box=None, padding=(0, 1), collapse_padding=True, expand=True, show_edge=False, header_style="dim")
    t.add_column("price", justify="right", no_wrap=True)
    t.add_column("what", no_wrap=True, overflow="ellipsis", ratio=1)
    t.add_column("dist", justify="right", no_wrap=True)
    t.add_column(f"ATR{LADDER_ATR_TF}", justify="right", no_wrap=True)
    if price is None:
        t.add_row("–", "no price yet", "", "")
        return t
    for r in rungs:
        style = _KIND_STYLE.get(r.kind, "")
        if r.kind == "price":
            t.add_row(Text(fmt_price(price, dec), style=style), Text("◀ price", style="bold"), "", "")
            continue
        d_pct = (r.price - price) / price * 100
        d_atr = (r.price - price) / atr if atr else None
        what = f"{r.label} {r.detail}".strip()
        dist, dist_atr = fmt_signed(d_pct, 2 if abs(d_pct) >= 0.1 else 3, "%"), fmt_signed(d_atr, 2)
        if r.kind == "zone" and r.low is not None and r.high is not None:
            what = f"{r.label} {fmt_price(r.low, dec)}–{fmt_price(r.high, dec)}"
            if r.low <= price <= r.high:
                dist, dist_atr = "inside", ""
        t.add_row(Text(fmt_price(r.price, dec), style=style), Text(what, style=style), dist, dist_atr)
    return t


def trend_table(pair: PairPayloads, rows: int, width: int = 80, now_ms: int | None = None) -> Table:
    """Trend and volatility per timeframe (all 11 when ``rows`` allow, else SHORT_TFS); columns
    str/ADX only when ``width`` (inside the panel) has room."""
    tfs = TIMEFRAMES if rows >= len(TIMEFRAMES) else SHORT_TFS[: max(1, rows)]
    doc = pair.payloads.get(STRUCTURE) or {}
    summary = _get(pair.payloads.get(MARKET_CONTEXT), "structure") or {}
    price = live_price(pair)
    t = Table(box=None, padding=(0, 1), collapse_padding=True, expand=True, show_edge=False, header_style="dim")
    cols = [("tf", "left"), ("trend", "left"), ("str", "right"), ("ADX", "right"), ("ATR%", "right"),
            ("pctl", "right"), ("live", "right")]
    drop = set() if width >= 52 else {"ADX"} if width >= 44 else {"ADX", "str"}
    for name, just in cols:
        if name not in drop:
            t.add_column(name, justify=just, no_wrap=True)
    for tf in tfs:
        trend = _get(summary, "trend", tf) or _get(doc, "timeframes", tf, "trend") or {}
        label = trend.get("label")
        score = num(trend.get("score"))
        vol = _get(doc, "timeframes", tf, "volatility") or {}
        atr_pct = num(_get(summary, "atr_pct", tf)) or num(vol.get("atr_pct"))
        pctl = num(vol.get("atr_percentile_pct"))
        live = candle_change_pct(pair, tf, price, now_ms)
        cells = {
            "tf": tf,
            "trend": Text(f"{_arrow(score) if label in ('up', 'down') else '↔'} {label or '–'}",
                          style=_signed_style(score)),
            "str": _pct0(trend.get("strength")),
            "ADX": _n1(trend.get("adx")),
            "ATR%": "–" if atr_pct is None else f"{atr_pct:.2f}",
            "pctl": _pct0(None if pctl is None else pctl / 100),
            "live": Text(fmt_signed(live, 2, "%"), style=_signed_style(live)),
        }  # fmt: skip
        t.add_row(*(v for k, v in cells.items() if k not in drop))
    return t


def _pct0(x: Any) -> str:
    v = num(x)
    return "–" if v is None else f"{v * 100:.0f}%"


def events_table(pair: PairPayloads, rows: int, now_ms: int) -> RenderableType:
    fd = pair.payloads.get(FUSION_DATA)
    events = (fd or {}).get("events")
    if events is None:
        events = _get(pair.payloads.get(MARKET_CONTEXT), "fusion", "events") or []
    price = live_price(pair)
    dec = price_decimals(price, tick_of(pair))
    lines = Text()
    p9 = pair.payloads.get(PRECISION9_CONTEXT) or {}
    zone = p9.get("zone")
    va = p9.get("value_area") or {}
    if va.get("position"):
        lines.append(f"value area: {va['position']} prev. day (POC {fmt_price(va.get('poc'), dec)})\n", style="magenta")
    if zone:
        lines.append(f"inside {str(zone.get('kind', 'zone')).replace('_', ' ')} "
                     f"{fmt_price(zone.get('low'), dec)}–{fmt_price(zone.get('high'), dec)}\n", style="cyan")  # fmt: skip
    stop = _get(p9, "hints", "stop") or {}
    if stop.get("long") is not None:
        lines.append(f"stop hint: long {fmt_price(stop.get('long'), dec)} · short {fmt_price(stop.get('short'), dec)}\n",
                     style="dim")  # fmt: skip
    if not events:
        lines.append("no level event yet", style="dim")
    for ev in events[: max(1, rows)]:
        ts = num(ev.get("event_ts"))
        when = time.strftime("%H:%M:%S", time.gmtime(ts / 1000)) if ts else "--:--:--"
        ago = f" ({fmt_age(now_ms - ts)} ago)" if ts else ""
        d = ev.get("direction")
        lines.append(f"{when} {ev.get('type', '?')} {d or ''} {fmt_price(ev.get('level'), dec)}{ago}\n",
                     style="green" if d == "up" else "red" if d == "down" else "")  # fmt: skip
    lines.rstrip()
    return lines


def _panel(body: RenderableType, title: str, style: str = "blue") -> Panel:
    return Panel(body, title=title, title_align="left", border_style=style, box=box.ROUNDED, padding=(0, 1))


def full_pair(pair: PairPayloads, now_ms: int, width: int, height: int) -> Layout:
    """One pair in ``width`` × ``height`` (height ≥ MIN_MID_HEIGHT): header, book & flow and the
    ladder; from MIN_FULL_HEIGHT rows also trend/volatility and context/events."""
    root = Layout(name=pair.name)
    head = Layout(header(pair, now_ms, compact=width < 90), size=2, name="header")
    body = Layout(name="body")
    root.split_column(head, body)
    bh = height - 2
    border = "blue" if pair_state(pair, now_ms).ok else "red"
    left_w = width // 2 + 2
    ladder_title = f"levels (distance % and ATR {LADDER_ATR_TF})" if left_w >= 44 else f"levels (ATR {LADDER_ATR_TF})"
    if height < MIN_FULL_HEIGHT:  # mid: book & flow beside the ladder
        body.split_row(
            Layout(_panel(book_flow_table(pair), "book & flow", border), name="book", size=left_w - 4),
            Layout(_panel(ladder_table(pair, bh - 3), ladder_title, border), name="ladder"),
        )
        return root
    book_h = min(max(bh // 2, 7), 10)
    if width >= 78:
        left, right = Layout(name="left", size=left_w), Layout(name="right")
        body.split_row(left, right)
        left.split_column(
            Layout(_panel(book_flow_table(pair), "book & flow", border), size=book_h, name="book"),
            Layout(_panel(ladder_table(pair, bh - book_h - 3), ladder_title, border), name="ladder"),
        )
        trend_rows = len(TIMEFRAMES) if bh >= len(TIMEFRAMES) + 3 + 6 else len(SHORT_TFS)
        trend_h = min(trend_rows + 3, bh - 4)
        right.split_column(
            Layout(_panel(trend_table(pair, trend_h - 3, width - left_w - 4, now_ms), "trend & volatility", border),
                   size=trend_h, name="trend"),
            Layout(_panel(events_table(pair, bh - trend_h - 2, now_ms), "context & level events", border),
                   name="events"),
        )  # fmt: skip
    else:
        body.split_column(
            Layout(_panel(book_flow_table(pair), "book & flow", border), size=book_h, name="book"),
            Layout(_panel(ladder_table(pair, bh - book_h - 3), ladder_title, border), name="ladder"),
        )
    return root


def compact_table(pairs: Sequence[PairPayloads], now_ms: int, width: int = 80) -> RenderableType:
    """One row per pair (small terminals, many pairs); the reasons of a STALE pair in words below."""
    t = Table(box=box.SIMPLE_HEAD, padding=(0, 1), expand=True, header_style="dim", show_edge=False)
    cols = [("pair", "left"), ("price", "right"), ("1d", "right"), ("spread bp", "right"), ("imb", "right"),
            ("tr/s", "right"), ("Δ60s", "right"), ("support", "right"), ("resist.", "right"), ("state", "left")]
    drop = set() if width >= 110 else {"support", "resist."} if width >= 70 else {"support", "resist.", "imb", "Δ60s"}
    for name, just in cols:
        if name not in drop:
            t.add_column(name, justify=just, no_wrap=True, overflow="ellipsis", min_width=15 if name == "pair" else None)
    notes = Text()
    for pair in pairs:
        price = live_price(pair)
        dec = price_decimals(price, tick_of(pair))
        chg = day_change_pct(pair, price, now_ms)
        book = book_of(pair) or {}
        flow = flow_of(pair) or {}
        rungs = ladder(pair, price, 1, 1)
        above = next((r for r in rungs if price is not None and r.price > price), None)
        below = next((r for r in rungs if r.kind != "price" and price is not None and r.price <= price), None)
        st = pair_state(pair, now_ms)
        d60 = num(flow.get("delta_60s"))
        cells = {
            "pair": pair.name,
            "price": fmt_price(price, dec),
            "1d": Text(fmt_signed(chg, 2, "%"), style=_signed_style(chg)),
            "spread bp": "–" if num(book.get("spread_bps")) is None else f"{book['spread_bps']:.2f}",
            "imb": fmt_signed(book.get("imbalance_top"), 2),
            "tr/s": _n1(flow.get("trades_per_s_10s")),
            "Δ60s": Text(_sq(d60), style=_signed_style(d60)),
            "support": fmt_price(below.price if below else None, dec),
            "resist.": fmt_price(above.price if above else None, dec),
            "state": Text(st.label, style="bold green" if st.ok else "bold red"),
        }
        t.add_row(*(v for k, v in cells.items() if k not in drop))
        if not st.ok:
            notes.append(f"{pair.name} {st.words()}\n", style="red")
    notes.rstrip()
    return Group(t, notes) if notes else t


def watch_view(pairs: Sequence[PairPayloads], now_ms: int, width: int, height: int,
               note: str | None = None) -> RenderableType:  # fmt: skip
    """The whole screen for ``width`` × ``height``: each pair with its panels when it gets at
    least MIN_MID_HEIGHT rows, else a compact table of all pairs. ``note`` (Redis trouble) is
    shown on the first line, in words."""
    footer_h = 1 if height >= 12 else 0
    note_h = 1 if note else 0
    avail = height - footer_h - note_h
    root = Layout(name="root")
    parts: list[Layout] = []
    if note:
        parts.append(Layout(Text(f" {note} ", style="bold white on red", no_wrap=True, overflow="ellipsis"),
                            size=1, name="note"))  # fmt: skip
    n = max(1, len(pairs))
    per = avail // n
    if per >= MIN_MID_HEIGHT and width >= MIN_FULL_WIDTH:
        for i, pair in enumerate(pairs):
            h = per if i < n - 1 else avail - per * (n - 1)
            parts.append(Layout(full_pair(pair, now_ms, width, h), size=h, name=pair.name))
    else:
        body: list[RenderableType] = [compact_table(pairs, now_ms, width)]
        if len(pairs) == 1 and avail >= 6:
            body.insert(0, header(pairs[0], now_ms, compact=True))
        parts.append(Layout(Group(*body), name="compact"))
    if footer_h:
        when = time.strftime("%H:%M:%S", time.gmtime(now_ms / 1000))
        parts.append(Layout(Text(f"p9 watch · {when} UTC · Ctrl-C quits", style="dim", no_wrap=True,
                                 overflow="ellipsis"), size=1, name="footer"))  # fmt: skip
    root.split_column(*parts)
    return root


class WatchScreen:
    """``watch_view`` at the console's current size (so a resized terminal is redrawn to fit)."""

    def __init__(self, pairs: Sequence[PairPayloads], now_ms: int, note: str | None = None):
        self.pairs = pairs
        self.now_ms = now_ms
        self.note = note

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        height = options.height or console.height
        yield watch_view(self.pairs, self.now_ms, width, height, self.note)
