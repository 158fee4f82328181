"""The universe p9 covers: symbols, exchanges, timeframes and each exchange's codes for them.

Canonical names are lower case: a symbol is its base asset (``btc``), quoted in USDT; the
channel symbol published to Redis is ``btcusdt`` on every exchange.

The simulator (``p9cli.sim``) may import only the canonical part of this module (``SYMBOLS``,
``EXCHANGES``, ``TIMEFRAMES``, ``TIMEFRAME_MS``, ``MINUTE_MS``, ``QUOTE``): it writes its own exchange codes
so that a wrong code here cannot be hidden by the simulator agreeing with it.
"""

from __future__ import annotations

QUOTE = "usdt"

SYMBOLS: tuple[str, ...] = ("btc", "eth", "sol", "bnb", "xrp")
EXCHANGES: tuple[str, ...] = ("binance", "bybit", "okx")
#: How each exchange writes its own name (help texts, reports).
EXCHANGE_TITLES: dict[str, str] = {"binance": "Binance", "bybit": "Bybit", "okx": "OKX"}

#: The 11 timeframes, longest first (the order used in reports and documents).
TIMEFRAMES: tuple[str, ...] = ("1d", "12h", "6h", "4h", "2h", "1h", "30m", "15m", "5m", "3m", "1m")

MINUTE_MS = 60_000
TIMEFRAME_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}

#: Exchange interval codes per canonical timeframe. OKX 6h/12h/1d use the UTC-aligned bars
#: (the plain ``6H``/``12H``/``1D`` open on Hong Kong, UTC+8, boundaries).
INTERVAL_CODES: dict[str, dict[str, str]] = {
    "binance": {tf: tf for tf in TIMEFRAMES},
    "bybit": {
        "1m": "1",
        "3m": "3",
        "5m": "5",
        "15m": "15",
        "30m": "30",
        "1h": "60",
        "2h": "120",
        "4h": "240",
        "6h": "360",
        "12h": "720",
        "1d": "D",
    },
    "okx": {
        "1m": "1m",
        "3m": "3m",
        "5m": "5m",
        "15m": "15m",
        "30m": "30m",
        "1h": "1H",
        "2h": "2H",
        "4h": "4H",
        "6h": "6Hutc",
        "12h": "12Hutc",
        "1d": "1Dutc",
    },
}


def exchange_symbol(exchange: str, symbol: str) -> str:
    """The exchange's instrument code: ``BTCUSDT`` (Binance, Bybit) or ``BTC-USDT`` (OKX)."""
    base = symbol.upper()
    if exchange == "okx":
        return f"{base}-{QUOTE.upper()}"
    if exchange in ("binance", "bybit"):
        return f"{base}{QUOTE.upper()}"
    raise ValueError(f"unknown exchange {exchange!r}")


def channel_symbol(symbol: str) -> str:
    """The symbol as it appears in Redis channel names: ``btcusdt``."""
    return f"{symbol}{QUOTE}"


def interval_code(exchange: str, timeframe: str) -> str:
    return INTERVAL_CODES[exchange][timeframe]
