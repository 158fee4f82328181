"""Shared vocabulary of the exchange adapters: REST requests, rate buckets, candles, errors.

Everything here is plain data and pure functions. The adapters (``binance``, ``bybit``,
``okx``) build :class:`RestRequest` values and parse response bytes into :class:`KlinesPage`;
the I/O layer (``p9cli.history``, later ``p9cli.live``) sends the requests, honours the
:class:`RateBucket` limits and retries according to the error class raised.

Error classes and what a caller does with them:

==================== ============================================== =========
class                meaning                                        retry?
==================== ============================================== =========
RateLimited          over a rate limit (HTTP 429, -1003, 10006,      yes, after
                     50011); ``retry_after_s`` when the exchange      a wait
                     says how long
Banned               IP banned / blocked (Binance 418, HTTP 403)     only after
                                                                     ``retry_after_s``
ServerError          5xx or an exchange-side "system busy" code      yes
RequestTimeout       the request timed out (raised by the I/O layer) yes
GeoBlocked           the exchange refuses this location (Binance     no
                     451, Bybit 403 with a CloudFront page)
BadRequest           4xx or an error envelope that will not change   no
                     on retry (unknown symbol, bad interval, ...)
MalformedResponse    a body that cannot be parsed as the expected    yes, a few
                     payload (HTML error page, truncated JSON, ...)   times
==================== ============================================== =========
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import orjson

from p9cli.candles import Candles
from p9cli.errors import EXIT_FAILURE, ConfigError, P9Error
from p9cli.universe import INTERVAL_CODES, TIMEFRAME_MS, TIMEFRAMES

# --------------------------------------------------------------------------------------------
# Requests and rate limits


@dataclass(frozen=True, slots=True)
class RestRequest:
    """One REST call, independent of the base URL it will be sent to."""

    path: str
    """Path appended to the configured base URL, e.g. ``/api/v3/klines``."""
    params: tuple[tuple[str, str], ...]
    """Query parameters, in a stable order (the order they are sent in)."""
    bucket: str
    """Rate-limit bucket this call counts against (a :attr:`RateBucket.name`)."""
    cost: int = 1
    """Units the call takes from the bucket: Binance request weight, otherwise 1."""
    method: str = "GET"

    @property
    def query(self) -> str:
        """The query string exactly as sent (values are plain ASCII tokens, no escaping needed)."""
        return "&".join(f"{k}={v}" for k, v in self.params)

    @property
    def target(self) -> str:
        """Path plus query string: ``/api/v3/klines?symbol=BTCUSDT&...``."""
        q = self.query
        return f"{self.path}?{q}" if q else self.path


@dataclass(frozen=True, slots=True)
class RateBucket:
    """A published rate limit: at most ``capacity`` units per ``window_s`` seconds.

    ``kind`` is ``"fixed"`` for windows aligned to the clock (Binance resets its weight
    counter at the start of every UTC minute) or ``"sliding"`` for rolling windows (the safe
    reading when the exchange does not say).
    """

    name: str
    capacity: int
    window_s: float
    kind: str


# --------------------------------------------------------------------------------------------
# Klines pages


@dataclass(slots=True)
class KlinesPage:
    """An exchange's klines answer as parsed: columns, ascending by ``open_time`` with unique
    ``open_time``, the forming bar included, with the exchange's closed flag per bar.

    ``trades`` holds ``None`` where the exchange gives no trade count; ``confirmed`` holds
    ``None`` where the exchange gives no closed flag (then a bar is closed iff
    ``open_time + timeframe_ms <= server_now_ms``, see :meth:`closed_mask`). Candles leave
    the exchange layer in the one representation, :class:`p9cli.candles.Candles`, through
    :meth:`closed` (or :meth:`to_candles`).
    """

    open_time: list[int] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    volume: list[float] = field(default_factory=list)
    quote_volume: list[float] = field(default_factory=list)
    trades: list[int | None] = field(default_factory=list)
    confirmed: list[bool | None] = field(default_factory=list)

    COLUMNS = (
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "confirmed",
    )

    def __len__(self) -> int:
        return len(self.open_time)

    def columns(self) -> dict[str, list]:
        """The columns by name (the lists themselves, not copies)."""
        return {name: getattr(self, name) for name in self.COLUMNS}

    def rows(self) -> Iterator[tuple]:
        """Row tuples in :attr:`COLUMNS` order (for tests and small tools)."""
        return zip(*(getattr(self, name) for name in self.COLUMNS), strict=True)

    def closed_mask(self, timeframe_ms: int, server_now_ms: int) -> list[bool]:
        """Per bar: is it closed? The exchange's flag where it has one, else by server time."""
        out = []
        for t, flag in zip(self.open_time, self.confirmed, strict=True):
            if flag is None:
                out.append(t + timeframe_ms <= server_now_ms)
            else:
                out.append(flag)
        return out

    def take(self, indices: list[int]) -> KlinesPage:
        """A new page with the rows at ``indices`` (in that order)."""
        return KlinesPage(*([getattr(self, name)[i] for i in indices] for name in self.COLUMNS))

    def to_candles(self) -> Candles:
        """Every bar of the page (the forming one included) as :class:`p9cli.candles.Candles`."""
        return Candles.from_arrays(
            self.open_time, self.open, self.high, self.low, self.close, self.volume, self.quote_volume,
            trades=self.trades,
        )  # fmt: skip

    def closed(self, timeframe_ms: int, server_now_ms: int) -> Candles:
        """The closed bars (see :meth:`closed_mask`) as :class:`p9cli.candles.Candles`."""
        return self.closed_only(timeframe_ms, server_now_ms).to_candles()

    def closed_only(self, timeframe_ms: int, server_now_ms: int) -> KlinesPage:
        """Only the closed bars (see :meth:`closed_mask`)."""
        mask = self.closed_mask(timeframe_ms, server_now_ms)
        if all(mask):
            return self
        return self.take([i for i, ok in enumerate(mask) if ok])


def candles_from_rows(
    rows: list,
    exchange: str,
    *,
    min_fields: int,
    quote_volume: list[float] | int,
    trades_at: int | None = None,
    confirmed: list[bool | None] | None = None,
) -> KlinesPage:
    """Kline rows ``[open_time, open, high, low, close, volume, ...]`` (any order) -> ascending
    :class:`KlinesPage`. ``quote_volume`` is the row position of the quote volume, or the column
    itself when it differs between rows; ``trades_at`` the position of the trade count (None:
    the exchange gives none); ``confirmed`` the closed flags (None: the exchange has none).
    A row that is not an array of at least ``min_fields`` numbers-as-strings is malformed."""
    try:
        for r in rows:
            if type(r) is not list or len(r) < min_fields:
                raise ValueError(f"short or non-array row {r!r:.80}")
        n = len(rows)
        if isinstance(quote_volume, int):
            quote_volume = [float(r[quote_volume]) for r in rows]
        candles = KlinesPage(
            open_time=[int(r[0]) for r in rows],
            open=[float(r[1]) for r in rows],
            high=[float(r[2]) for r in rows],
            low=[float(r[3]) for r in rows],
            close=[float(r[4]) for r in rows],
            volume=[float(r[5]) for r in rows],
            quote_volume=quote_volume,
            trades=[int(r[trades_at]) for r in rows] if trades_at is not None else [None] * n,
            confirmed=confirmed if confirmed is not None else [None] * n,
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise MalformedResponse(f"klines: bad row ({exc})", exchange=exchange) from None
    return normalize_order(candles)


def normalize_order(c: KlinesPage) -> KlinesPage:
    """Return ``c`` ascending by open time with unique open times (the last copy wins).

    Free when ``c`` is already strictly ascending (the normal case after a parser has
    reversed a newest-first list).
    """
    t = c.open_time
    if all(t[i] < t[i + 1] for i in range(len(t) - 1)):
        return c
    last_index: dict[int, int] = {}
    for i, v in enumerate(t):
        last_index[v] = i
    return c.take([last_index[v] for v in sorted(last_index)])


# --------------------------------------------------------------------------------------------
# Errors


class ExchangeError(P9Error):
    """Something an exchange answered (or failed to answer) that the caller must handle.

    ``exchange`` names the exchange, ``status`` is the HTTP status (``None`` when not from
    HTTP), ``code`` the exchange's own error code as a string (``"-1121"``, ``"10006"``,
    ``"50011"``) when it gave one. ``retryable`` says whether the same request may succeed
    later; ``retry_after_s`` how long to wait when the exchange said so.
    """

    retryable = False
    exit_code = EXIT_FAILURE

    def __init__(
        self,
        message: str,
        *,
        exchange: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ):
        self.message = message
        self.exchange = exchange
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s
        super().__init__(_one_line(message, exchange, status, code))


def _one_line(message: str, exchange: str, status: int | None, code: str | None) -> str:
    parts = []
    if exchange:
        parts.append(f"{exchange}:")
    if status is not None:
        parts.append(f"HTTP {status}")
    if code is not None:
        parts.append(f"code {code}")
    text = " ".join(message.split())  # one line, whatever the exchange sent
    if len(text) > 300:
        text = text[:297] + "..."
    if text:
        parts.append(("- " if status is not None or code is not None else "") + text)
    return " ".join(parts)


class RateLimited(ExchangeError):
    """Over a rate limit; wait ``retry_after_s`` (when given) before trying again."""

    retryable = True

    def __init__(self, retry_after_s: float | None = None, message: str = "rate limited", **kw):
        super().__init__(message, retry_after_s=retry_after_s, **kw)


class Banned(ExchangeError):
    """The IP is banned or blocked; do not send anything before ``retry_after_s`` has passed."""

    retryable = True

    def __init__(self, retry_after_s: float | None = None, message: str = "IP banned", **kw):
        super().__init__(message, retry_after_s=retry_after_s, **kw)


class ServerError(ExchangeError):
    """The exchange failed (HTTP 5xx or a "system busy" code); the request may be retried."""

    retryable = True


class RequestTimeout(ExchangeError):
    """No answer in time (raised by the I/O layer); the request may be retried."""

    retryable = True


class GeoBlocked(ExchangeError):
    """The exchange refuses requests from this location (Binance HTTP 451 "restricted location",
    Bybit HTTP 403 with a CloudFront page for the US / Mainland China): permanent for this IP,
    so it is reported once and never retried."""

    retryable = False

    def __init__(self, status: int, *, exchange: str, detail: str = ""):
        hint = f"; run p9 from an allowed location or leave {exchange} out (--exchanges / P9_EXCHANGES)"
        super().__init__(
            f"geo-blocked: {exchange} refuses requests from this location{hint}"
            + (f" ({detail})" if detail else ""),
            exchange=exchange,
            status=status,
        )


class BadRequest(ExchangeError):
    """The exchange rejected the request itself (unknown symbol, bad parameter): do not retry."""

    retryable = False


class MalformedResponse(ExchangeError):
    """A body that is not the expected payload (HTML error page, truncated JSON, wrong shape)."""

    retryable = True


# --------------------------------------------------------------------------------------------
# Small shared helpers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup over any mapping (httpx, aiohttp, or a plain dict)."""
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return v
    return None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds (the delta-seconds form; an HTTP date is ignored)."""
    raw = header(headers, "Retry-After")
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def status_error(
    exchange: str,
    status: int,
    msg: str,
    code: str | None,
    retry_after_s: float | None,
    client_error: ExchangeError | None = None,
) -> ExchangeError:
    """The error of a non-2xx answer that no exchange-specific rule settled (the exchanges
    handle their ban statuses, 403/418, first): 429 -> RateLimited, 408 -> RequestTimeout,
    5xx -> ServerError, other 4xx -> ``client_error`` (the classified error body) or
    BadRequest, anything else -> MalformedResponse."""
    kw = {"exchange": exchange, "status": status, "code": code}
    if status == 429:
        return RateLimited(retry_after_s, msg or "too many requests", **kw)
    if status == 408:
        return RequestTimeout(msg or "request timeout", **kw)
    if status >= 500:
        return ServerError(msg or "server error", retry_after_s=retry_after_s, **kw)
    if 400 <= status < 500:
        return client_error if client_error is not None else BadRequest(msg or "client error", **kw)
    return MalformedResponse(f"unexpected HTTP status: {msg}", exchange=exchange, status=status)


def body_snippet(body: bytes, limit: int = 120) -> str:
    """A short printable excerpt of a body for error messages."""
    text = body[: limit * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def bars_in_window(first_open_ms: int, last_open_ms: int, timeframe_ms: int) -> int:
    """How many bar open times ``t`` (multiples of ``timeframe_ms``) satisfy first <= t <= last."""
    if last_open_ms < first_open_ms:
        return 0
    first_bar = -(-first_open_ms // timeframe_ms)  # ceil
    last_bar = last_open_ms // timeframe_ms
    return max(0, last_bar - first_bar + 1)


def limit_param(limit: int | None, window_bars: int, default_limit: int, max_limit: int) -> int | None:
    """The ``limit`` to send: the caller's, else the window size when the exchange default is
    too small for it, else ``None`` (leave the parameter out, as the recorded requests do)."""
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        return min(limit, max_limit)
    if window_bars > default_limit:
        return min(window_bars, max_limit)
    return None


def load_json(body: bytes, exchange: str) -> object:
    """Parse a JSON body; anything unparseable (HTML error page, truncation) is malformed."""
    try:
        return orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise MalformedResponse(f"not JSON: {body_snippet(body)!r}", exchange=exchange) from exc


def check_timeframe(timeframe: str) -> int:
    """The timeframe's length in ms; ``ConfigError`` (one line, exit 2) for an unknown one."""
    try:
        return TIMEFRAME_MS[timeframe]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown timeframe {timeframe!r}; valid: {', '.join(TIMEFRAMES)}") from None


def check_symbol(symbol: str) -> str:
    """A canonical symbol is a lower-case alphanumeric base asset (``btc``); ``ConfigError`` else."""
    if (
        not isinstance(symbol, str)
        or not symbol.isascii()
        or not symbol.isalnum()
        or symbol != symbol.lower()
    ):
        raise ConfigError(f"invalid symbol {symbol!r}; expected a lower-case base asset such as 'btc'")
    return symbol


def try_json(body: bytes) -> object | None:
    """The parsed body, or ``None`` when it is not JSON (for error bodies that may be HTML)."""
    try:
        return orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError):
        return None


# --------------------------------------------------------------------------------------------
# Symbols and interval codes of the live side (events: p9cli.exchanges.venue)


def canonical_symbol(exchange_code: str) -> str | None:
    """``BTCUSDT`` / ``BTC-USDT`` / ``btcusdt`` -> ``btc``; ``None`` for non-USDT spot codes."""
    code = exchange_code.upper()
    if code.endswith("-USDT"):
        base = code[:-5]
    elif code.endswith("USDT") and "-" not in code:
        base = code[:-4]
    else:
        return None
    return base.lower() if base.isalnum() else None


def timeframe_of(exchange: str, code: str) -> str | None:
    """The canonical timeframe of an exchange interval code (``"60"`` on Bybit -> ``"1h"``)."""
    for tf, c in INTERVAL_CODES[exchange].items():
        if c == code:
            return tf
    return None
