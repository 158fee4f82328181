"""Precision of the numbers the live payloads compute (pure; applied when a payload is built).

The instrument's increments are those of the structure document (``tick`` and ``qty_step``,
what ``p9 analyze`` saw in the data) and the rounding is the structure's own
(:mod:`p9cli.analysis.units`: :func:`~p9cli.analysis.units.decimals_of`,
:func:`~p9cli.analysis.units.round_to`), applied once to each final value, never to an
intermediate one:

* a price p9 derives and a bot may place an order at (the ``hints.stop`` prices) -> the nearest
  multiple of ``tick``, as the structure's prices;
* other computed prices and price differences (``vwap_*``, ``spread``) -> ``tick``'s decimals;
  ``mid`` -> one decimal more (the mid of a one-tick spread is a half tick, kept exactly);
* base-asset sizes and volumes summed or differenced live (depth band sizes, ``volume_60s``,
  buy/sell volumes, ``delta_60s``, ``cvd``) -> ``qty_step``'s decimals;
* quote values (``*_quote``, ``quote_volume_60s``) -> :data:`QUOTE_DECIMALS` (0.01, the
  structure's ``*_quote`` unit: a notional in USDT, where a fraction of a cent means nothing);
* ratios of noisy price or size differences (``distance_pct``, ``distance_atr``, ``spread_bps``,
  ``imbalance*``, ``buy_share_60s``) -> :data:`RATIO_DECIMALS` decimal places.

Without a structure document (no tick / step known) prices and sizes are rounded to
:data:`FALLBACK_DECIMALS`, as the structure does without a step. Values the exchange gave (best
bid/ask and their sizes, trade prices, live candles) are never rounded here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from p9cli.analysis.units import decimals_of, round_to

FALLBACK_DECIMALS = 8
QUOTE_DECIMALS = 2
RATIO_DECIMALS = 6


def _step(x) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0:
        return float(x)
    return None


@dataclass(frozen=True, slots=True)
class Units:
    """The increments of one instrument (``None``: unknown) and their decimals."""

    tick: float | None = None
    step: float | None = None

    @property
    def price_decimals(self) -> int:
        return decimals_of(self.tick) if self.tick else FALLBACK_DECIMALS

    @property
    def size_decimals(self) -> int:
        return decimals_of(self.step) if self.step else FALLBACK_DECIMALS

    def on_tick(self, x: float | None) -> float | None:
        """A price to place an order at: the nearest multiple of the tick."""
        if x is None or not math.isfinite(x):
            return None
        return round_to(x, self.tick) if self.tick else round(x, FALLBACK_DECIMALS)

    def price(self, x: float | None) -> float | None:
        """A computed price or price difference: the tick's decimals."""
        return None if x is None or not math.isfinite(x) else round(x, self.price_decimals)

    def mid(self, x: float | None) -> float | None:
        """A mid of two prices: one decimal more than the tick (a half tick is exact)."""
        return None if x is None or not math.isfinite(x) else round(x, self.price_decimals + 1)

    def size(self, x: float | None) -> float | None:
        """A base-asset size or volume: the quantity step's decimals."""
        return None if x is None or not math.isfinite(x) else round(x, self.size_decimals)

    @staticmethod
    def quote(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else round(x, QUOTE_DECIMALS)

    @staticmethod
    def ratio(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else round(x, RATIO_DECIMALS)


#: unknown increments (no structure document)
RAW = Units()


def units_of(doc: dict | None) -> Units:
    """The increments a structure document states (``tick``, ``qty_step``)."""
    if not doc:
        return RAW
    return Units(_step(doc.get("tick")), _step(doc.get("qty_step")))
