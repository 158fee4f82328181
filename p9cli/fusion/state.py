"""One pair's live state (flow, book figures, live candles, level events, structure) and the
three payloads built from it as plain dicts. No I/O: the stream service feeds events in and
offers the payloads to the publisher. The numbers computed live are rounded when a payload is
built, to the increments of the current structure document (:mod:`p9cli.fusion.units`)."""

from __future__ import annotations

import math

from p9cli.fusion import position as pos
from p9cli.fusion.bookstats import book_figures
from p9cli.fusion.flow import TradeFlow
from p9cli.fusion.level_events import LevelEvents, distances
from p9cli.fusion.units import Units, units_of

#: depth read from the live book per state (levels per side)
BOOK_LEVELS = 200
#: a feed silent this long (ms, exchange time vs wall clock) marks the payloads stale
STALE_AFTER_MS = 10_000
#: the structure document is stale when a candle of one of its timeframes closed this long ago
#: (ms) and is not in it yet (a recompute normally follows a close within seconds)
STRUCTURE_GRACE_MS = 60_000


def structure_as_of(doc: dict | None) -> int | None:
    """The exchange time (ms) a structure document reflects: its ``event_ts`` (the newest candle
    close in it), else the newest ``timeframes.{tf}.last_close_ms``."""
    if not doc:
        return None
    t = doc.get("event_ts")
    if isinstance(t, int) and not isinstance(t, bool) and t > 0:
        return t
    closes = [sec.get("last_close_ms") for sec in (doc.get("timeframes") or {}).values()]
    closes = [c for c in closes if isinstance(c, int) and not isinstance(c, bool)]
    return max(closes) if closes else None


def structure_stale(doc: dict | None, now_ms: int) -> bool:
    """True when the document is older than its timeframes allow: for some timeframe, the candle
    after the document's last one (``last_open_ms``) closed more than :data:`STRUCTURE_GRACE_MS`
    ago (``now > last_open_ms + 2 * tf + grace``: for 1m, the newest 1m candle in it closed
    more than 2 minutes ago), or it says nothing about any timeframe."""
    from p9cli.universe import TIMEFRAME_MS

    if not doc:
        return True
    seen = False
    for tf, sec in (doc.get("timeframes") or {}).items():
        last = (sec or {}).get("last_open_ms")
        length = TIMEFRAME_MS.get(tf)
        if not isinstance(last, int) or length is None:
            continue
        seen = True
        if now_ms > last + 2 * length + STRUCTURE_GRACE_MS:
            return True
    return not seen


def candle_dict(c) -> dict | None:
    """A LiveCandle as the payload's candle (``None`` while it holds no trade yet). ``complete``:
    False when the bar lacks part of its interval (the feed's first, partial bar; trades missed)
    and, for a closed one, was handed on without the exchange's own candle."""
    if c is None:
        return None
    vals = (c.open, c.high, c.low, c.close, c.volume)
    if not all(math.isfinite(v) for v in vals):
        return None
    return {
        "open_time": c.open_time,
        "open": c.open,
        "high": c.high,
        "low": c.low,
        "close": c.close,
        "volume": c.volume,
        "closed": bool(c.closed),
        "complete": bool(c.complete),
    }


class PairState:
    def __init__(self, exchange: str, symbol: str, channel_symbol: str, structure: dict | None = None):
        self.exchange = exchange
        self.symbol = symbol
        self.channel_symbol = channel_symbol
        self.flow = TradeFlow()
        self._book_src = None  # the newest in-sync BookState (its ``book`` is the live book)
        self._book_fig: dict | None = None  # figures of the newest state they were built for
        self._book_fig_src = None
        self._book_fig_units: Units | None = None
        self.book_seq: int | None = None
        self.book_recv_ms: int | None = None
        self.book_ts_ms: int | None = None
        self.events = LevelEvents()
        self.forming: dict[str, dict | None] = {}
        self.last_closed: dict[str, dict | None] = {}
        self.structure = structure
        #: the instrument's increments (the structure document's tick and qty_step)
        self.units: Units = units_of(structure)
        self.structure_ms: int | None = None
        #: the structure document is older than its timeframes allow (set by the stream service)
        self.structure_stale = False
        self.event_ts = 0
        #: receive time (ms) of the newest input not yet published in fusion_data
        self.pending_recv_ms: int | None = None
        self._last_fusion_key: tuple | None = None
        self._snap_cache: tuple = (None, None)
        self._bias_cache: tuple = (None, None)

    # ------------------------------------------------------------------ inputs
    def on_trade(self, ts_ms: int, price: float, size: float, is_buy: bool, recv_ms: int | None) -> None:
        self.flow.add(ts_ms, price, size, is_buy)
        self.event_ts = max(self.event_ts, ts_ms)
        if recv_ms is not None and self.pending_recv_ms is None:
            self.pending_recv_ms = recv_ms

    def on_book(self, bids, asks, update_id, seq, ts_ms: int | None, recv_ms: int | None) -> None:
        """A book state as plain levels (best first): the figures are built at once."""
        fig = book_figures(bids, asks, update_id, self.units)
        if fig is None:
            return
        if seq is not None:
            fig["seq"] = seq
        self._book_src = self._book_fig_src = object()
        self._book_fig = fig
        self._book_fig_units = self.units
        self._on_book_times(ts_ms, recv_ms)

    def on_book_state(self, state) -> None:
        """The hot path: a :class:`p9cli.live.BookState` is only referenced; its figures
        (200 levels per side) are built when a payload is (:attr:`book`)."""
        self._book_src = state
        self._on_book_times(state.ts_ms, state.recv_ms)

    def _on_book_times(self, ts_ms, recv_ms) -> None:
        self.book_ts_ms = ts_ms
        self.book_recv_ms = recv_ms
        if ts_ms and ts_ms > self.event_ts:
            self.event_ts = ts_ms
        if recv_ms is not None and self.pending_recv_ms is None:
            self.pending_recv_ms = recv_ms

    @property
    def book(self) -> dict | None:
        """Figures of the newest in-sync book state, or ``None`` while the book is out of sync."""
        src = self._book_src
        if src is None:
            return None
        # rebuilt for a new state, or for new units (a new structure document) when the state
        # holds its book (the plain levels of on_book are not kept)
        if src is not self._book_fig_src or (self._book_fig_units != self.units and hasattr(src, "book")):
            live = src.book
            bid, ask = live.bids.best(), live.asks.best()
            # the live book is the handed-on state until the feed hands on the next one; if it
            # moved on without one (a connection switchover), keep the last consistent figures
            if (
                bid is None
                or ask is None
                or (float(bid[0]), float(bid[1]), float(ask[0]), float(ask[1]))
                != (src.bid, src.bid_size, src.ask, src.ask_size)
            ):
                return self._book_fig
            fig = book_figures(
                live.bids.top(BOOK_LEVELS), live.asks.top(BOOK_LEVELS), src.update_id, self.units
            )
            if fig is not None and src.seq is not None:
                fig["seq"] = src.seq
            self._book_fig, self._book_fig_src, self._book_fig_units = fig, src, self.units
        return self._book_fig

    def set_structure(self, doc: dict | None, now_ms: int) -> None:
        """A (new) structure document: its age counts from the exchange time it reflects."""
        self.structure = doc
        self.units = units_of(doc)
        as_of = structure_as_of(doc)
        self.structure_ms = None if doc is None else (as_of if as_of is not None else now_ms)
        self.structure_stale = doc is not None and structure_stale(doc, now_ms)

    def book_invalid(self) -> None:
        """The book is out of sync until the next BookState: publish ``book: null``."""
        self._book_src = self._book_fig = self._book_fig_src = None
        self.book_recv_ms = None

    def on_candle(self, c) -> None:
        if c.closed:
            self.last_closed[c.timeframe] = candle_dict(c)
            cur = self.forming.get(c.timeframe)
            if cur is not None and cur["open_time"] <= c.open_time:
                self.forming[c.timeframe] = None
        else:
            self.forming[c.timeframe] = candle_dict(c)

    def on_forming(self, forming: dict) -> None:
        for tf, c in forming.items():
            self.forming[tf] = candle_dict(c)

    def on_forming_rows(self, rows: dict) -> None:
        """``CandleBuilder.forming_rows()``: the forming candles as plain tuples."""
        fin = math.isfinite
        for tf, r in rows.items():
            if r is None or not all(fin(x) for x in r[1:6]):
                self.forming[tf] = None
            else:
                self.forming[tf] = {
                    "open_time": r[0],
                    "open": r[1],
                    "high": r[2],
                    "low": r[3],
                    "close": r[4],
                    "volume": r[5],
                    "closed": False,
                    "complete": bool(r[6]),
                }

    def tick_levels(self, now_ms: int) -> None:
        """Advance the level-event machine by the range traded since the previous tick."""
        rng = self.flow.take_range()
        price = self.flow.last_price
        doc = self.structure
        if price is None or not doc:
            return
        d = distances(pos.atr_of(doc, "1h"), self.units.tick)
        if d is None:
            return
        low, high = rng if rng else (price, price)
        self.events.update(doc.get("levels") or [], low, high, price, d[0], d[1], now_ms)

    # ------------------------------------------------------------------ payload parts
    def stale_sources(self, now_ms: int) -> list[str]:
        out = []
        last_trade = self.flow.last_ts_ms
        if last_trade is None or now_ms - last_trade > STALE_AFTER_MS:
            out.append("trades")
        if self._book_src is None:
            out.append("book")
        if self.structure is None or self.structure_stale:
            out.append("structure")
        return out

    def freshness(self, now_ms: int) -> dict:
        lt = self.flow.last_ts_ms
        return {
            "trade_age_ms": None if lt is None else int(now_ms - lt),
            "book_age_ms": None if self.book_recv_ms is None else int(now_ms - self.book_recv_ms),
            "structure_age_ms": None
            if self.structure_ms is None
            else max(0, int(now_ms - self.structure_ms)),
            "book_valid": self._book_src is not None,
            "stale_sources": self.stale_sources(now_ms),
        }

    def candles(self) -> dict:
        tfs = set(self.forming) | set(self.last_closed)
        return {tf: {"forming": self.forming.get(tf), "last_closed": self.last_closed.get(tf)} for tf in tfs}

    def position(self) -> dict | None:
        price = self.flow.last_price
        if not self.structure or price is None:
            return None
        support, resistance = pos.nearest_levels(self.structure, price)
        va = pos.value_area(self.structure, price)
        return {
            "support": support,
            "resistance": resistance,
            "value_area": va["position"] if va else None,
            "above_poc": va["above_poc"] if va else None,
            "zone": pos.zone_at(self.structure, price),
        }

    def _snapshot(self, now_ms: int) -> dict:
        """The flow figures at ``now_ms`` (computed once per instant and trade count: the payloads
        built together share them). A fresh dict each call: payloads own their parts."""
        key = (now_ms, self.flow.trades, self.units)
        if self._snap_cache[0] != key:
            self._snap_cache = (key, self.flow.snapshot(now_ms, self.units))
        return dict(self._snap_cache[1])

    def _bias(self, price: float | None) -> dict:
        """``position.bias`` with the live price, once per (document, price)."""
        doc, (key, b) = self.structure, self._bias_cache
        if key is None or key[0] is not doc or key[1] != price:
            b = pos.bias(doc, price)
            self._bias_cache = ((doc, price), b)
        return {**b, "tf_alignment": dict(b["tf_alignment"])}

    # ------------------------------------------------------------------ payloads
    def fusion_fields(self, now_ms: int) -> dict | None:
        """The fusion_data fields, or ``None`` when nothing changed since the last call."""
        book = self.book
        key = (
            self.flow.trades,
            book["update_id"] if book else None,
            tuple(
                (tf, (c or {}).get("close"), (c or {}).get("volume"))
                for tf, c in sorted(self.forming.items())
            ),
            tuple((tf, (c or {}).get("open_time")) for tf, c in sorted(self.last_closed.items())),
            self.structure_ms,
        )
        if key == self._last_fusion_key:
            return None
        self._last_fusion_key = key
        return {
            "price": self.flow.last_price,
            "book": book,
            "flow": self._snapshot(now_ms),
            "candles": self.candles(),
            "position": self.position(),
            "events": self.events.recent(),
            "freshness": self.freshness(now_ms),
        }

    def market_context_fields(self, now_ms: int) -> dict:
        doc = self.structure
        summary = None
        if doc:
            summary = {
                "trend": {tf: (sec.get("trend") or {}) for tf, sec in (doc.get("timeframes") or {}).items()},
                "alignment": doc.get("alignment"),
                "atr": pos.atrs(doc),
                "atr_pct": pos.atr_pcts(doc),
                "levels": (doc.get("levels") or [])[:20],
                "value_area": ((doc.get("sessions") or {}).get("day") or {}).get("previous"),
                "liquidity_zones": (doc.get("liquidity_zones") or [])[:10],
            }
        flow = self._snapshot(now_ms)
        price = self.flow.last_price
        rv = flow.get("realized_vol_300s_pct")
        fusion = None
        if doc:
            fusion = {
                **(self.position() or {}),
                "regime": pos.regime(doc, rv),
                "bias": self._bias(price),
                "events": self.events.recent(),
            }
        return {
            "structure": summary,
            "live": {"price": price, "flow": flow, "book": self.book, "candles": self.candles()},
            "fusion": fusion,
            "freshness": self.freshness(now_ms),
        }

    def precision9_fields(self, now_ms: int) -> dict:
        doc = self.structure
        price = self.flow.last_price
        rv = self._snapshot(now_ms).get("realized_vol_300s_pct")
        support, resistance = pos.nearest_levels(doc, price)
        return {
            "price": price,
            "bias": self._bias(price),
            "atr": pos.atrs(doc),
            "atr_pct": pos.atr_pcts(doc),
            "regime": pos.regime(doc, rv),
            "levels": {"support": support, "resistance": resistance},
            "value_area": pos.value_area(doc, price),
            "zone": pos.zone_at(doc, price),
            "hints": pos.hints(doc, support, resistance, rv),
            "freshness": self.freshness(now_ms),
        }
