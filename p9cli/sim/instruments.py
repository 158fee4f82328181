"""The simulator's own instrument and interval tables for Binance, Bybit and OKX spot.

The simulator is an independent witness: it does NOT use the client's exchange codes from
``p9cli.universe`` (only the canonical ``SYMBOLS`` / ``EXCHANGES`` / ``TIMEFRAME_MS``), so a
wrong code on the client side cannot be hidden by the simulator agreeing with it.

Integer units used by the whole simulator (``model.py``, ``book.py``, the servers):

* prices are integers in ticks of the instrument (``Instrument.tick``);
* quantities are integers in ``Instrument.qty_unit`` (a multiple of the exchange's lot);
* quote volumes are integers in ``tick * qty_unit``.

Formatting to exchange strings happens only here, with integer arithmetic (never floats):
Binance pads every decimal to 8 places (``"8871.92000000"``), Bybit and OKX write the
minimal form (``"43774"``, ``"0.0026"``, ``"582029.970323109"``) without exponent or
trailing zeros.

Sources of the instrument values (current public exchange metadata, as recorded by public
projects): Binance ``GET /api/v3/exchangeInfo`` (BTCUSDT tick 0.01 / step 0.00001, ETHUSDT
0.01 / 0.0001, SOLUSDT 0.01 / 0.001, BNBUSDT 0.01 / 0.001, XRPUSDT 0.0001 / 0.1; NOTIONAL
min 5); Bybit ``GET /v5/market/instruments-info?category=spot`` (BTCUSDT basePrecision
0.000001, quotePrecision 0.00000001, minOrderQty 0.000048, minOrderAmt 1, tickSize 0.01;
ETHUSDT 0.00001 / 0.0000001 / 0.00062; SOLUSDT 0.001 / 0.00001 / 0.023; XRPUSDT 0.01 /
0.000001 / 2.63 / tick 0.0001; BNBUSDT estimated); OKX
``GET /api/v5/public/instruments?instType=SPOT`` (BTC-USDT tickSz 0.1, lotSz 0.00000001,
minSz 0.00001). Values not confirmed from a recorded payload (Binance maxQty/MARKET_LOT_SIZE
of SOL/BNB/XRP, Bybit BNBUSDT, OKX ETH/SOL/BNB/XRP sizes) are estimates in the exchange's
own style; the clients must read them from the endpoints, never assume them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from decimal import Decimal

from p9cli.universe import EXCHANGES, MINUTE_MS, SYMBOLS

HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
#: 1970-01-01 was a Thursday: weekly bars that open on Monday 00:00 UTC have this offset.
MONDAY_OFFSET_MS = 4 * DAY_MS
#: Hong Kong time is UTC+8: a bar opening at 00:00 HKT opens at 16:00 UTC the day before.
HK_SHIFT_MS = 8 * HOUR_MS


def _hk_offset(tf_ms: int, utc_offset_ms: int = 0) -> int:
    """Offset (``open_time % tf_ms``) of bars that open on UTC+8 boundaries."""
    return (utc_offset_ms - HK_SHIFT_MS) % tf_ms


#: exchange -> interval code -> (tf_ms, offset_ms) where ``open_time % tf_ms == offset_ms``.
#: Codes are case-sensitive (OKX ``1m`` is a minute, ``1M`` a month).
#:
#: Binance also has ``1s`` and ``1M`` (calendar month); Bybit ``M``; OKX ``1s`` (history
#: only), ``1M``/``3M`` (+``utc``): calendar intervals are not modelled and omitted here.
#: ``1w`` / ``W`` / ``1Wutc`` bars open on Monday 00:00 UTC (Binance's documented kline example
#: 1499040000000 is a Monday), OKX ``1W`` on Monday 00:00 HKT. ASSUMED, not confirmed by a
#: recorded payload: Binance ``3d`` and OKX ``2D``/``3D`` aligned on the Unix epoch in their
#: time zone (UTC; HK for the plain OKX codes).
INTERVALS: dict[str, dict[str, tuple[int, int]]] = {
    "binance": {
        "1m": (MINUTE_MS, 0),
        "3m": (3 * MINUTE_MS, 0),
        "5m": (5 * MINUTE_MS, 0),
        "15m": (15 * MINUTE_MS, 0),
        "30m": (30 * MINUTE_MS, 0),
        "1h": (HOUR_MS, 0),
        "2h": (2 * HOUR_MS, 0),
        "4h": (4 * HOUR_MS, 0),
        "6h": (6 * HOUR_MS, 0),
        "8h": (8 * HOUR_MS, 0),
        "12h": (12 * HOUR_MS, 0),
        "1d": (DAY_MS, 0),
        "3d": (3 * DAY_MS, 0),
        "1w": (WEEK_MS, MONDAY_OFFSET_MS),
    },
    "bybit": {
        "1": (MINUTE_MS, 0),
        "3": (3 * MINUTE_MS, 0),
        "5": (5 * MINUTE_MS, 0),
        "15": (15 * MINUTE_MS, 0),
        "30": (30 * MINUTE_MS, 0),
        "60": (HOUR_MS, 0),
        "120": (2 * HOUR_MS, 0),
        "240": (4 * HOUR_MS, 0),
        "360": (6 * HOUR_MS, 0),
        "720": (12 * HOUR_MS, 0),
        "D": (DAY_MS, 0),
        "W": (WEEK_MS, MONDAY_OFFSET_MS),
    },
    "okx": {
        "1m": (MINUTE_MS, 0),
        "3m": (3 * MINUTE_MS, 0),
        "5m": (5 * MINUTE_MS, 0),
        "15m": (15 * MINUTE_MS, 0),
        "30m": (30 * MINUTE_MS, 0),
        "1H": (HOUR_MS, 0),
        "2H": (2 * HOUR_MS, 0),
        "4H": (4 * HOUR_MS, 0),
        "6H": (6 * HOUR_MS, _hk_offset(6 * HOUR_MS)),
        "12H": (12 * HOUR_MS, _hk_offset(12 * HOUR_MS)),
        "1D": (DAY_MS, _hk_offset(DAY_MS)),
        "2D": (2 * DAY_MS, _hk_offset(2 * DAY_MS)),
        "3D": (3 * DAY_MS, _hk_offset(3 * DAY_MS)),
        "1W": (WEEK_MS, _hk_offset(WEEK_MS, MONDAY_OFFSET_MS)),
        "6Hutc": (6 * HOUR_MS, 0),
        "12Hutc": (12 * HOUR_MS, 0),
        "1Dutc": (DAY_MS, 0),
        "2Dutc": (2 * DAY_MS, 0),
        "3Dutc": (3 * DAY_MS, 0),
        "1Wutc": (WEEK_MS, MONDAY_OFFSET_MS),
    },
}


def _decimal_parts(value: Decimal) -> tuple[int, int]:
    """``value == mantissa * 10**-places`` with the fewest places (``0.0100`` -> (1, 2))."""
    sign, digits, exponent = value.normalize().as_tuple()
    if sign or not isinstance(exponent, int):
        raise ValueError(f"expected a positive finite decimal, got {value}")
    mantissa = int("".join(map(str, digits)))
    if exponent >= 0:
        return mantissa * 10**exponent, 0
    return mantissa, -exponent


def _minimal(n: int, places: int) -> str:
    """``n * 10**-places`` in minimal form: no exponent, no trailing zeros (``43774``)."""
    if places == 0:
        return str(n)
    if n < 0:
        return "-" + _minimal(-n, places)
    whole, frac = divmod(n, 10**places)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{places}d}".rstrip("0")


def _padded(n: int, places: int, width: int) -> str:
    """``n * 10**-places`` with exactly ``width`` decimals (``width >= places``)."""
    if n < 0:
        return "-" + _padded(-n, places, width)
    whole, frac = divmod(n, 10**places)
    return f"{whole}.{frac * 10 ** (width - places):0{width}d}"


@functools.cache
def _decimals_table(digits: int, style: str) -> tuple[str, ...]:
    """Strings for every ``r`` in ``0 .. 10**digits - 1`` written with ``digits`` decimals:
    ``dot`` ".05", ``dotmin`` ".05" / ".5" / "" (trailing zeros dropped), ``digits`` "05",
    ``digitsmin`` "05" -> "05", "50" -> "5"; ``pad<N>`` appends N zeros to ``digits``."""
    out = []
    for r in range(10**digits):
        d = f"{r:0{digits}d}"
        if style == "dot":
            out.append("." + d)
        elif style == "dotmin":
            out.append(("." + d.rstrip("0")) if r else "")
        elif style == "digitsmin":
            out.append(d.rstrip("0"))
        else:  # pad<N>
            out.append(d + "0" * int(style[3:]))
    return tuple(out)


def _formatter(mantissa: int, places: int, padded: bool, cache: dict | None = None):
    """A fast ``int -> str`` for ``v * mantissa * 10**-places`` (no float, no Decimal): one
    integer divmod, then the decimals come from precomputed tables of up to 10^4 strings
    (two tables for 5..8 places). Optional bounded memo for values that repeat (prices).
    Negative values (never produced by the model) take the slow exact path."""
    k = places
    if padded and k > 8:
        raise ValueError("more than 8 decimals cannot be padded to 8")
    div = 10**k
    if k == 0:
        if padded:

            def fmt(v: int) -> str:
                n = int(v) * mantissa
                return f"{n}.00000000" if n >= 0 else _padded(n, 0, 8)

        else:

            def fmt(v: int) -> str:
                return str(int(v) * mantissa)

    elif k <= 4:
        if padded:
            table = tuple(t + "0" * (8 - k) for t in _decimals_table(k, "dot"))
        else:
            table = _decimals_table(k, "dotmin")
        slow = _padded if padded else _minimal

        def fmt(v: int) -> str:
            n = int(v) * mantissa
            if n < 0:
                return slow(n, k, 8) if padded else slow(n, k)
            w, r = divmod(n, div)
            return f"{w}{table[r]}"

    elif k <= 8:
        hk = k - 4  # digits of the high part of the decimals (1..4)
        if padded:
            hi_tab = _decimals_table(hk, "dot")
            lo_tab = _decimals_table(4, f"pad{8 - k}")

            def fmt(v: int) -> str:
                n = int(v) * mantissa
                if n < 0:
                    return _padded(n, k, 8)
                w, r = divmod(n, div)
                rh, rl = divmod(r, 10_000)
                return f"{w}{hi_tab[rh]}{lo_tab[rl]}"

        else:
            hi_min = _decimals_table(hk, "dotmin")
            hi_full = _decimals_table(hk, "dot")
            lo_min = _decimals_table(4, "digitsmin")

            def fmt(v: int) -> str:
                n = int(v) * mantissa
                if n < 0:
                    return _minimal(n, k)
                w, r = divmod(n, div)
                rh, rl = divmod(r, 10_000)
                if rl:
                    return f"{w}{hi_full[rh]}{lo_min[rl]}"
                return f"{w}{hi_min[rh]}"

    else:

        def fmt(v: int) -> str:
            n = int(v) * mantissa
            if n < 0:
                return _minimal(n, k)
            d = str(n)
            if len(d) <= k:
                d = d.zfill(k + 1)
            frac = d[-k:].rstrip("0")
            return f"{d[:-k]}.{frac}" if frac else d[:-k]

    base = fmt
    if cache is None:
        return base
    get = cache.get

    def memo(v: int) -> str:
        s = get(v)
        if s is None:
            s = base(v)
            if len(cache) >= 100_000:
                cache.clear()
            cache[v] = s
        return s

    return memo


@dataclass(frozen=True)
class Instrument:
    """One spot instrument on one exchange, with the metadata its endpoints publish.

    ``price_str(ticks)``, ``qty_str(units)`` and ``quote_str(v)`` format integers of the
    simulator's units (ticks, ``qty_unit``, ``tick * qty_unit``) the way this exchange does.
    """

    exchange: str
    symbol: str  # canonical, 'btc'
    code: str  # 'BTCUSDT' (binance, bybit) / 'BTC-USDT' (okx)
    base: str  # 'BTC'
    quote: str  # 'USDT'
    tick: Decimal  # price tick
    lot: Decimal  # the exchange's quantity step
    qty_unit: Decimal  # quantum of simulated quantities (a multiple of lot)
    min_qty: Decimal
    min_notional: Decimal
    ref_price: Decimal  # price on the model's reference day (2026-01-01)
    #: Exchange-specific published values, as the exchange writes them (strings). Binance:
    #: baseAssetPrecision / quotePrecision / quoteAssetPrecision ("8"), maxPrice, maxQty,
    #: marketMaxQty, maxNotional (see ``binance_filters()``). Bybit: basePrecision,
    #: quotePrecision, maxOrderQty, maxOrderAmt. OKX: maxLmtSz, maxMktSz, maxLmtAmt, maxMktAmt.
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    # derived (computed in __post_init__)
    tick_int: int = field(init=False, repr=False, compare=False)
    tick_places: int = field(init=False, repr=False, compare=False)
    unit_int: int = field(init=False, repr=False, compare=False)
    unit_places: int = field(init=False, repr=False, compare=False)
    lot_units: int = field(init=False, repr=False, compare=False)  # how many lots make one qty_unit
    _price_cache: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        tick_int, tick_places = _decimal_parts(self.tick)
        unit_int, unit_places = _decimal_parts(self.qty_unit)
        ratio = self.qty_unit / self.lot
        if ratio != ratio.to_integral_value() or ratio < 1:
            raise ValueError(f"{self.exchange} {self.code}: qty_unit must be a multiple of lot")
        if self.exchange == "binance" and tick_places + unit_places > 8:
            raise ValueError(f"{self.code}: quote volume would need more than 8 decimals")
        object.__setattr__(self, "tick_int", tick_int)
        object.__setattr__(self, "tick_places", tick_places)
        object.__setattr__(self, "unit_int", unit_int)
        object.__setattr__(self, "unit_places", unit_places)
        object.__setattr__(self, "lot_units", int(ratio))
        object.__setattr__(self, "_price_cache", {})
        padded = self.exchange == "binance"
        object.__setattr__(self, "price_str", _formatter(tick_int, tick_places, padded, self._price_cache))
        object.__setattr__(self, "qty_str", _formatter(unit_int, unit_places, padded))
        object.__setattr__(
            self, "quote_str", _formatter(tick_int * unit_int, tick_places + unit_places, padded)
        )

    # ------------------------------------------------------------------ formatting
    def __reduce__(self):
        # the per-instance formatters are closures: rebuild them instead of pickling them
        args = (self.exchange, self.symbol, self.code, self.base, self.quote, self.tick, self.lot)
        args += (self.qty_unit, self.min_qty, self.min_notional, self.ref_price, dict(self.meta))
        return (Instrument, args)

    # price_str / qty_str / quote_str are replaced per instance by fast closures (see
    # __post_init__); these definitions document them and serve as the reference.
    def price_str(self, ticks: int) -> str:
        """A price of ``ticks`` ticks as this exchange writes it."""
        n = int(ticks) * self.tick_int
        return (
            _padded(n, self.tick_places, 8) if self.exchange == "binance" else _minimal(n, self.tick_places)
        )

    def qty_str(self, units: int) -> str:
        """A base quantity of ``units`` qty units as this exchange writes it."""
        n = int(units) * self.unit_int
        return (
            _padded(n, self.unit_places, 8) if self.exchange == "binance" else _minimal(n, self.unit_places)
        )

    def quote_str(self, v: int) -> str:
        """A quote amount of ``v`` units of ``tick * qty_unit`` as this exchange writes it."""
        n = int(v) * self.tick_int * self.unit_int
        places = self.tick_places + self.unit_places
        return _padded(n, places, 8) if self.exchange == "binance" else _minimal(n, places)

    def decimal_str(self, value: Decimal) -> str:
        """Any exact decimal (filters, limits) in this exchange's style."""
        n, places = _decimal_parts(value) if value else (0, 0)
        if self.exchange == "binance":
            return _padded(n, places, 8)
        return _minimal(n, places)

    # ------------------------------------------------------------------ conversions
    def price_value(self, ticks: int) -> Decimal:
        return Decimal(int(ticks)) * self.tick

    def qty_value(self, units: int) -> Decimal:
        return Decimal(int(units)) * self.qty_unit

    def quote_value(self, v: int) -> Decimal:
        return Decimal(int(v)) * self.tick * self.qty_unit

    @property
    def ref_ticks(self) -> int:
        return int((self.ref_price / self.tick).to_integral_value())

    # ------------------------------------------------------------------ exchange metadata
    def binance_filters(self) -> list[dict]:
        """The ``filters`` of this symbol in ``GET /api/v3/exchangeInfo``, in Binance's order
        and with its value styles (decimals as 8-place strings, counts as ints)."""
        f = self.decimal_str
        meta = self.meta
        return [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": f(self.tick),
                "maxPrice": f(Decimal(meta.get("maxPrice", "1000000"))),
                "tickSize": f(self.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": f(self.min_qty),
                "maxQty": f(Decimal(meta.get("maxQty", "9000"))),
                "stepSize": f(self.lot),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": f(Decimal(meta.get("marketMaxQty", meta.get("maxQty", "9000")))),
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": f(self.min_notional),
                "applyMinToMarket": True,
                "maxNotional": f(Decimal(meta.get("maxNotional", "9000000"))),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ]


def _inst(
    exchange: str,
    symbol: str,
    tick: str,
    lot: str,
    qty_unit: str,
    min_qty: str,
    min_notional: str,
    ref_price: str,
    **meta: str,
) -> Instrument:
    base = symbol.upper()
    code = f"{base}-USDT" if exchange == "okx" else f"{base}USDT"
    return Instrument(
        exchange=exchange,
        symbol=symbol,
        code=code,
        base=base,
        quote="USDT",
        tick=Decimal(tick),
        lot=Decimal(lot),
        qty_unit=Decimal(qty_unit),
        min_qty=Decimal(min_qty),
        min_notional=Decimal(min_notional),
        ref_price=Decimal(ref_price),
        meta=dict(meta),
    )


#: Reference prices on 2026-01-01 (the model's anchor day).
REF_PRICES: dict[str, str] = {"btc": "90000", "eth": "3000", "sol": "140", "bnb": "850", "xrp": "2.2"}

_B = dict(baseAssetPrecision="8", quotePrecision="8", quoteAssetPrecision="8")
_OKX = dict(maxLmtSz="9999999999", maxMktSz="1000000", maxLmtAmt="20000000", maxMktAmt="1000000")

# fmt: off
_TABLE: list[Instrument] = [
    # exchange, symbol, tick, lot, qty_unit, min_qty, min_notional, ref_price, **meta
    # ---- Binance spot (exchangeInfo: PRICE_FILTER tickSize, LOT_SIZE stepSize/minQty/maxQty, NOTIONAL).
    #      marketMaxQty (MARKET_LOT_SIZE.maxQty) is dynamic on Binance; BTC/ETH values as recorded.
    _inst("binance", "btc", "0.01", "0.00001", "0.00001", "0.00001", "5", REF_PRICES["btc"],
          maxPrice="1000000", maxQty="9000", marketMaxQty="83.52167869", maxNotional="9000000", **_B),
    _inst("binance", "eth", "0.01", "0.0001", "0.0001", "0.0001", "5", REF_PRICES["eth"],
          maxPrice="1000000", maxQty="9000", marketMaxQty="1701.08445", maxNotional="9000000", **_B),
    _inst("binance", "sol", "0.01", "0.001", "0.001", "0.001", "5", REF_PRICES["sol"],
          maxPrice="10000", maxQty="9000000", marketMaxQty="50000", maxNotional="9000000", **_B),
    _inst("binance", "bnb", "0.01", "0.001", "0.001", "0.001", "5", REF_PRICES["bnb"],
          maxPrice="100000", maxQty="900000", marketMaxQty="3000", maxNotional="9000000", **_B),
    _inst("binance", "xrp", "0.0001", "0.1", "0.1", "0.1", "5", REF_PRICES["xrp"],
          maxPrice="1000", maxQty="92141578", marketMaxQty="1500000", maxNotional="9000000", **_B),
    # ---- Bybit spot (instruments-info: lotSizeFilter.basePrecision/quotePrecision/minOrderQty/
    #      minOrderAmt/maxOrderQty/maxOrderAmt, priceFilter.tickSize). Quantities are multiples of
    #      basePrecision (BTC: of 10 x basePrecision, to keep weekly quote volumes far from the
    #      int64 limit). BTC/ETH/SOL/XRP as recorded; BNB estimated in the same style.
    _inst("bybit", "btc", "0.01", "0.000001", "0.00001", "0.000048", "1", REF_PRICES["btc"],
          basePrecision="0.000001", quotePrecision="0.00000001", maxOrderQty="71.73956243", maxOrderAmt="4000000"),
    _inst("bybit", "eth", "0.01", "0.00001", "0.00001", "0.00062", "1", REF_PRICES["eth"],
          basePrecision="0.00001", quotePrecision="0.0000001", maxOrderQty="1229.2336343", maxOrderAmt="4000000"),
    _inst("bybit", "sol", "0.01", "0.001", "0.001", "0.023", "1", REF_PRICES["sol"],
          basePrecision="0.001", quotePrecision="0.00001", maxOrderQty="148148.14815", maxOrderAmt="4000000"),
    _inst("bybit", "bnb", "0.1", "0.001", "0.001", "0.003", "1", REF_PRICES["bnb"],
          basePrecision="0.001", quotePrecision="0.00001", maxOrderQty="2000", maxOrderAmt="2000000"),
    _inst("bybit", "xrp", "0.0001", "0.01", "0.01", "2.63", "1", REF_PRICES["xrp"],
          basePrecision="0.01", quotePrecision="0.000001", maxOrderQty="8011215.701983", maxOrderAmt="4000000"),
    # ---- OKX spot (public/instruments: tickSz, lotSz, minSz; OKX has no min notional). lotSz is
    #      tiny, so the simulated quantity quantum is a multiple of it (int64 quote volumes).
    _inst("okx", "btc", "0.1", "0.00000001", "0.000001", "0.00001", "0", REF_PRICES["btc"], **_OKX),
    _inst("okx", "eth", "0.01", "0.000001", "0.000001", "0.0001", "0", REF_PRICES["eth"], **_OKX),
    _inst("okx", "sol", "0.01", "0.000001", "0.0001", "0.001", "0", REF_PRICES["sol"], **_OKX),
    _inst("okx", "bnb", "0.01", "0.000001", "0.0001", "0.001", "0", REF_PRICES["bnb"], **_OKX),
    _inst("okx", "xrp", "0.0001", "0.000001", "0.001", "0.1", "0", REF_PRICES["xrp"], **_OKX),
]
# fmt: on

INSTRUMENTS: dict[tuple[str, str], Instrument] = {(i.exchange, i.symbol): i for i in _TABLE}
_BY_CODE: dict[tuple[str, str], Instrument] = {(i.exchange, i.code): i for i in _TABLE}

assert set(INSTRUMENTS) == {(e, s) for e in EXCHANGES for s in SYMBOLS}


def instrument_by_code(exchange: str, code: str) -> Instrument | None:
    """The instrument an exchange calls ``code`` (exact, case-sensitive), or None."""
    return _BY_CODE.get((exchange, code))
