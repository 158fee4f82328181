"""Order-book figures of one in-sync book state (pure; called when a payload is built).

Input: the book's levels best-first as ``(price, size)`` pairs (strings as the exchange sent
them or floats), and the exchange's update id of that state. Output (JSON-ready):

* ``bid``, ``ask``, ``bid_size``, ``ask_size``, ``mid``, ``spread`` (price units),
  ``spread_bps`` (spread / mid * 10,000), ``update_id``;
* ``depth``: per band 0.1 %, 0.5 % and 1 % around the mid, the base-asset size and quote value
  resting on each side within the band, and ``imbalance`` = (bid - ask) / (bid + ask) of the
  sizes (-1..1; positive = more bids). ``complete`` says whether the levels we hold reach past
  the band on both sides: a book subscription of 50 levels (Bybit ``orderbook.50``) covers only
  a few ticks around the price on a liquid pair, so its 1 % band is a lower bound and flagged so;
* ``imbalance_top``: the same ratio over the best level only.

The computed numbers are rounded once, at the end, by ``units`` (:mod:`p9cli.fusion.units`):
``mid`` to the tick's decimals + 1, ``spread`` to the tick's decimals, band sizes to the quantity
step's decimals, quote values to 0.01, ``spread_bps`` and the imbalances to 6 decimals. The best
bid/ask and their sizes are the exchange's, unrounded.
"""

from __future__ import annotations

from collections.abc import Sequence

from p9cli.fusion.units import RAW, Units

BANDS_PCT = (0.1, 0.5, 1.0)


def _band_key(pct: float) -> str:
    return f"{pct:g}".replace(".", "_") + "pct"


BAND_KEYS = tuple(_band_key(p) for p in BANDS_PCT)


def book_figures(bids: Sequence, asks: Sequence, update_id: int | None, units: Units = RAW) -> dict | None:
    """Figures of a book whose best levels come first; ``None`` for a book with an empty side.
    ``units``: the instrument's increments the computed figures are rounded to."""
    if not bids or not asks:
        return None
    bid_p, bid_s = float(bids[0][0]), float(bids[0][1])
    ask_p, ask_s = float(asks[0][0]), float(asks[0][1])
    mid = (bid_p + ask_p) / 2.0
    spread = ask_p - bid_p
    depth = {}
    for pct, key in zip(BANDS_PCT, BAND_KEYS, strict=True):
        lo = mid * (1.0 - pct / 100.0)
        hi = mid * (1.0 + pct / 100.0)
        b_size, b_quote, b_done = _side_depth(bids, lambda p, lo=lo: p >= lo)
        a_size, a_quote, a_done = _side_depth(asks, lambda p, hi=hi: p <= hi)
        total = b_size + a_size
        depth[key] = {
            "bid_size": units.size(b_size),
            "ask_size": units.size(a_size),
            "bid_quote": units.quote(b_quote),
            "ask_quote": units.quote(a_quote),
            "imbalance": units.ratio((b_size - a_size) / total) if total > 0 else None,
            "complete": b_done and a_done,
        }
    top_total = bid_s + ask_s
    return {
        "bid": bid_p,
        "ask": ask_p,
        "bid_size": bid_s,
        "ask_size": ask_s,
        "mid": units.mid(mid),
        "spread": units.price(spread),
        "spread_bps": units.ratio(spread / mid * 10_000.0) if mid > 0 else None,
        "update_id": update_id,
        "imbalance_top": units.ratio((bid_s - ask_s) / top_total) if top_total > 0 else None,
        "depth": depth,
        "levels": [len(bids), len(asks)],
    }


def _side_depth(levels: Sequence, inside) -> tuple[float, float, bool]:
    """Size and quote value of the levels (best first) for which ``inside(price)`` holds, and
    whether a level outside the band was seen (so the band is fully covered)."""
    size = quote = 0.0
    for level in levels:
        p = float(level[0])
        if not inside(p):
            return size, quote, True
        s = float(level[1])
        size += s
        quote += s * p
    return size, quote, False
