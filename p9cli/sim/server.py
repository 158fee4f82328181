"""The ``p9 sim`` process: builds the simulator, serves the control API and the three
exchanges on loopback, and runs until SIGINT/SIGTERM.

Ports: control API on ``port_base``, Binance on ``+1``, Bybit on ``+2``, OKX on ``+3``;
REST and WebSocket share each exchange's port, under the exchange's real paths.

Reusable API (tests, scripts, other code)::

    async with running_sim(seed=9, start_ms=..., speed=1.0, port_base=0,
                           faults={"binance": {"rest_429_every": 5}},
                           limits={"okx": {"okx_candles_per_2s": 5}}) as handle:
        handle.rest_url("binance"), handle.ws_url("okx"), handle.control_url, handle.sim

``port_base=0`` binds every server to a free port of its own (tests); the synchronous
counterpart (a simulator in a background thread) is :class:`p9cli.sim.testing.SimThread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import math
import signal
import sys
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from p9cli.errors import ConfigError, P9Error
from p9cli.sim.state import MAX_SPEED, ExchangeState, FaultSettings, LimitSettings, SimClock, Simulator
from p9cli.universe import EXCHANGES

log = logging.getLogger("p9cli.sim")

PORT_OFFSETS: dict[str, int] = {"control": 0, "binance": 1, "bybit": 2, "okx": 3}
ALL = ("all", "*")

FAULT_HELP: dict[str, str] = {
    "ws_drop_every_messages": "close each WebSocket (abort, no close frame) after N frames sent",
    "ws_drop_every_seconds": "close each WebSocket T wall seconds after it opened",
    "ws_stall_after_messages": "after N frames, send nothing more (socket stays open)",
    "ws_malformed_every": "every Nth data frame is sent truncated (invalid JSON)",
    "depth_gap_every": "every Nth book update skips a sequence id (Binance U/u, Bybit u, OKX seqId)",
    "okx_bad_checksum_every": "every Nth OKX books update carries a wrong checksum (legacy checksum mode only)",
    "bybit_reset_every_seconds": "Bybit: send a u=1 snapshot (service restart) every T seconds",
    "okx_seq_reset_every_seconds": "OKX books: the seqId sequence restarts lower every T s (seqId < prevSeqId, chain kept)",
    "binance_server_shutdown_every_seconds": "Binance: serverShutdown event T s after each connection opened",
    "binance_server_shutdown_grace_seconds": "Binance: close the connection this long after serverShutdown",
    "okx_notice_every_seconds": "OKX: notice 64008 (service upgrade) T s after each connection opened",
    "okx_notice_grace_seconds": "OKX: close the connection this long after the notice",
    "rest_429_every": "every Nth REST request answers the exchange's rate-limit error (not counted as a violation)",
    "rest_5xx_every": "every Nth REST request answers HTTP 503 (then 502, 504, rotating)",
    "rest_timeout_every": "every Nth REST request hangs rest_timeout_seconds, then the connection drops",
    "rest_timeout_seconds": "how long a rest_timeout_every request hangs",
    "rest_drop_every": "every Nth REST request: connection closed without a response",
    "rest_geo_block": "every REST request gets the geo-block answer: Binance HTTP 451, Bybit HTTP 403 CloudFront page (OKX: none documented)",
    "latency_ms": "added to every REST response and every WebSocket frame",
    "ws_reply_latency_ms": "WebSocket acks/pongs/errors leave after this delay (default 20: a network round trip; 0 = at once)",
}
LIMIT_HELP: dict[str, str] = {
    "rate_limits": "enforce the REST rate limits below (--no-rate-limits turns them off)",
    "binance_weight_per_minute": "Binance REQUEST_WEIGHT per minute (429 over it, 418 ban if the client keeps going)",
    "binance_raw_requests_per_5m": "Binance RAW_REQUESTS per 5 minutes",
    "binance_ban_seconds": "first 418 ban; doubles on each further ban (max 3 days)",
    "binance_klines_max_limit": "largest /api/v3/klines limit (bigger values are capped)",
    "binance_klines_default_limit": "/api/v3/klines rows without limit",
    "bybit_requests_per_5s": "Bybit requests per IP in any 5 s (403 over it)",
    "bybit_block_seconds": "how long Bybit blocks the IP after a 403",
    "bybit_kline_max_limit": "largest /v5/market/kline limit",
    "bybit_kline_default_limit": "/v5/market/kline rows without limit",
    "okx_candles_per_2s": "OKX /market/candles requests per 2 s (429 / 50011 over it)",
    "okx_history_candles_per_2s": "OKX /market/history-candles requests per 2 s",
    "okx_books_per_2s": "OKX /market/books requests per 2 s",
    "okx_instruments_per_2s": "OKX /public/instruments requests per 2 s",
    "okx_time_per_2s": "OKX /public/time requests per 2 s",
    "okx_candles_max_limit": "largest OKX /market/candles limit",
    "okx_history_candles_max_limit": "largest OKX /market/history-candles limit",
    "okx_candles_default_limit": "OKX candles rows without limit",
    "okx_candles_window": "/market/candles only reaches the newest N bars",
    "okx_legacy_checksum": "OKX books: real CRC32 checksum (legacy, before 2026-06-23) instead of 0",
    "okx_books_snapshot": "OKX books: send the in-band snapshot on subscribe (false: REST /market/books + seqId)",
}


# ---------------------------------------------------------------------------------- settings


#: --start range: the model's history reaches ~3 years back; years must stay printable
START_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
START_MAX_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z


def parse_start(start: str | int | None) -> int | None:
    """``--start``: epoch ms (digits) or ISO 8601 (UTC unless an offset is given)."""
    if start is None or start == "":
        return None
    if isinstance(start, int):
        return start
    text = start.strip()
    if text.isdigit():
        ms = int(text)
    else:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"--start {start!r} is neither epoch milliseconds nor an ISO 8601 time (e.g. 2026-01-05T12:00:00Z)"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = int(dt.timestamp() * 1000)
    if not START_MIN_MS <= ms < START_MAX_MS:
        hint = (
            " (epoch seconds? --start takes milliseconds)" if START_MIN_MS <= ms * 1000 < START_MAX_MS else ""
        )
        raise ConfigError(f"--start {start!r}: must be a time from 2000-01-01 to 2199-12-31 UTC{hint}")
    return ms


def _exchanges_of(name: str, option: str, item: str) -> tuple[str, ...]:
    if name in ALL:
        return EXCHANGES
    if name not in EXCHANGES:
        raise ConfigError(f"{option} {item!r}: unknown exchange {name!r}; valid: {', '.join(EXCHANGES)}, all")
    return (name,)


def parse_overrides(items: Sequence[str], cls: type, option: str) -> dict[str, dict[str, Any]]:
    """``["binance:rest_429_every=5", "all:latency_ms=20"]`` -> ``{exchange: {name: value}}``,
    each value converted and checked against the field's type (ConfigError on any mistake)."""
    valid = [f.name for f in fields(cls)]
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        ex, colon, name = head.partition(":")
        if not sep or not colon or not name.strip():
            raise ConfigError(
                f"{option} {item!r}: expected EXCHANGE:NAME=VALUE; valid names: {', '.join(valid)}"
            )
        name = name.strip()
        if name not in valid:
            raise ConfigError(f"{option} {item!r}: unknown name {name!r}; valid names: {', '.join(valid)}")
        probe = cls()
        try:
            probe.set(name, value.strip())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{option} {item!r}: {exc}") from None
        checked = getattr(probe, name)
        for exchange in _exchanges_of(ex.strip().lower(), option, item):
            out.setdefault(exchange, {})[name] = checked
    return out


def _normalise(spec: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{exchange|"all": {name: value}}`` (the API form) -> ``{exchange: {name: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, values in (spec or {}).items():
        for exchange in _exchanges_of(str(key).lower(), "settings", str(key)):
            out.setdefault(exchange, {}).update(values)
    return out


def build_simulator(
    seed: int = 9,
    start_ms: int | None = None,
    speed: float = 1.0,
    faults: Mapping[str, Mapping[str, Any]] | None = None,
    limits: Mapping[str, Mapping[str, Any]] | None = None,
    rate_limits: bool = True,
    host: str = "127.0.0.1",
    port_base: int = 0,
) -> Simulator:
    """A :class:`Simulator` with its clock, market model and one state per exchange."""
    try:
        clock = SimClock(start_ms, speed)
    except ValueError as exc:
        raise ConfigError(f"--speed {speed}: {exc}") from None
    try:
        from p9cli.sim.model import MarketModel
    except ImportError as exc:
        raise P9Error(f"the simulator's market model is not available ({exc})") from None
    model = MarketModel(seed, clock)
    sim = Simulator(clock=clock, model=model, seed=seed, host=host, port_base=port_base)
    fault_spec, limit_spec = _normalise(faults), _normalise(limits)
    for exchange in EXCHANGES:
        state = ExchangeState(exchange, FaultSettings(), LimitSettings())
        state.limits.rate_limits = bool(rate_limits)
        for name, value in fault_spec.get(exchange, {}).items():
            try:
                state.faults.set(name, value)
            except (KeyError, ValueError, TypeError) as exc:
                raise ConfigError(f"fault {exchange}:{name}={value!r}: {exc}") from None
        for name, value in limit_spec.get(exchange, {}).items():
            try:
                state.limits.set(name, value)
            except (KeyError, ValueError, TypeError) as exc:
                raise ConfigError(f"limit {exchange}:{name}={value!r}: {exc}") from None
        sim.exchanges[exchange] = state
    return sim


# ---------------------------------------------------------------------------------- serving


@dataclass
class SimHandle:
    """A running simulator: where it listens and its shared state."""

    sim: Simulator
    host: str
    ports: dict[str, int] = field(default_factory=dict)
    ws_available: bool = False
    warm_up: threading.Thread | None = None
    tls: Any = None  # p9cli.sim.tls.TlsFiles when serving TLS too (--tls)

    def _hostport(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    def rest_url(self, exchange: str) -> str:
        return f"http://{self._hostport(self.ports[exchange])}"

    def ws_url(self, exchange: str) -> str:
        return f"ws://{self._hostport(self.ports[exchange])}"

    def https_url(self, exchange: str) -> str:
        """The same port over TLS (only with ``tls=True``)."""
        return f"https://{self._hostport(self.ports[exchange])}"

    def wss_url(self, exchange: str) -> str:
        return f"wss://{self._hostport(self.ports[exchange])}"

    @property
    def control_url(self) -> str:
        return f"http://{self._hostport(self.ports['control'])}"

    @property
    def simulator(self) -> Simulator:
        return self.sim

    def env(self) -> dict[str, str]:
        """``P9_*`` variables that point p9 (or any client) at this simulator."""
        out = {"P9_ENDPOINTS": "sim"}
        for ex in EXCHANGES:
            out[f"P9_{ex.upper()}_REST_URL"] = self.rest_url(ex)
            out[f"P9_{ex.upper()}_WS_URL"] = self.ws_url(ex)
        return out


def _ws_module(exchange: str):
    """``p9cli.sim.ws_<exchange>`` or None when that module does not exist (yet)."""
    name = f"p9cli.sim.ws_{exchange}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def build_exchange_app(sim: Simulator, exchange: str, with_ws: bool = True) -> tuple[web.Application, bool]:
    """The aiohttp app of one exchange: REST routes (+ WebSocket routes when available)."""
    app = web.Application(handler_args={"max_field_size": 16384})
    state = sim.exchanges[exchange]
    rest = importlib.import_module(f"p9cli.sim.rest_{exchange}")
    rest.setup(app, sim, state)
    ws = _ws_module(exchange) if with_ws else None
    if ws is not None:
        ws.setup(app, sim, state)
    return app, ws is not None


def _listen_error(exc: OSError, host: str, port: int, what: str) -> P9Error:
    if exc.errno == errno.EADDRINUSE:
        return P9Error(
            f"port {port} ({what}) on {host} is already in use; stop the other process or pick --port-base"
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
        return P9Error(f"cannot listen on {host}:{port} ({what}): {exc.strerror}")
    return P9Error(f"cannot listen on {host}:{port} ({what}): {exc}")


async def _start_site(runner: web.AppRunner, host: str, port: int, what: str) -> int:
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        raise _listen_error(exc, host, port, what) from None
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return sockets[0].getsockname()[1] if sockets else port


def _start_dual_site(
    runner: web.AppRunner, host: str, port: int, what: str, ssl_context: Any
) -> tuple[int, Any]:
    """Plain and TLS on one port (``--tls``): see ``p9cli.sim.tls``."""
    from p9cli.sim.tls import DualListener

    listener = DualListener(runner.server, ssl_context)
    try:
        bound = listener.bind(host, port)
    except OSError as exc:
        raise _listen_error(exc, host, port, what) from None
    listener.start()
    return bound, listener


def _warm_up(model: Any) -> None:
    try:
        model.warm_up()
    except Exception:  # noqa: BLE001 - warm-up only saves time later; never fatal
        log.exception("sim: market model warm-up failed")


@asynccontextmanager
async def running_sim(
    seed: int = 9,
    start_ms: int | None = None,
    speed: float = 1.0,
    host: str = "127.0.0.1",
    port_base: int = 0,
    faults: Mapping[str, Mapping[str, Any]] | None = None,
    limits: Mapping[str, Mapping[str, Any]] | None = None,
    rate_limits: bool = True,
    with_ws: bool = True,
    with_feed: bool = True,
    warm_up: bool = True,
    sim: Simulator | None = None,
    tls: bool = False,
    tls_dir: str | Path | None = None,
) -> AsyncIterator[SimHandle]:
    """Run a simulator in the current event loop for the duration of the ``async with``.

    ``faults`` / ``limits``: ``{exchange or "all": {field: value}}``. ``port_base=0``: every
    server on its own free port. ``with_ws`` / ``with_feed`` False serve REST only (depth
    endpoints then answer 503: there is no book without the feed). ``tls``: every exchange
    port also speaks TLS (``https://``/``wss://``) with a certificate from ``tls_dir``
    (generated when needed; ``handle.tls`` names the files, see ``p9cli.sim.tls``).
    """
    if sim is None:
        sim = build_simulator(seed, start_ms, speed, faults, limits, rate_limits, host, port_base)
    from p9cli.sim import control

    handle = SimHandle(sim=sim, host=host)
    runners: list[web.AppRunner] = []
    listeners: list[Any] = []
    feed_started = False
    ssl_context = None
    if tls:
        from p9cli.sim.tls import ensure_tls_files

        try:
            handle.tls = ensure_tls_files(tls_dir, host)
            ssl_context = handle.tls.server_context()
        except (OSError, ValueError) as exc:
            raise P9Error(
                f"--tls: cannot prepare the certificate in {tls_dir or 'the cache folder'}: {exc}"
            ) from None
    try:
        if with_feed:
            try:
                from p9cli.sim.feed import LiveFeed
            except ModuleNotFoundError as exc:
                log.warning("sim: live feed not available (%s); WebSocket and order books are off", exc)
            else:
                sim.feed = LiveFeed(sim)
                await sim.feed.start()
                feed_started = True
        apps: list[tuple[str, web.Application]] = [("control", control.build_app(sim, handle))]
        ws_ok = True
        for exchange in EXCHANGES:
            app, has_ws = build_exchange_app(sim, exchange, with_ws=with_ws and feed_started)
            ws_ok = ws_ok and has_ws
            apps.append((exchange, app))
        handle.ws_available = ws_ok
        for what, app in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            runners.append(runner)
            port = port_base + PORT_OFFSETS[what] if port_base else 0
            if ssl_context is not None and what != "control":
                handle.ports[what], listener = _start_dual_site(runner, host, port, what, ssl_context)
                listeners.append(listener)
            else:
                handle.ports[what] = await _start_site(runner, host, port, what)
        sim.port_base = port_base if port_base else handle.ports["control"]
        if warm_up and hasattr(sim.model, "warm_up"):
            # a daemon thread, not the loop's executor: shutdown must not wait for it
            handle.warm_up = threading.Thread(
                target=_warm_up, args=(sim.model,), name="p9-sim-warm-up", daemon=True
            )
            handle.warm_up.start()
        yield handle
    finally:
        for listener in listeners:
            with contextlib.suppress(Exception):
                await listener.close()
        if feed_started:
            with contextlib.suppress(Exception):
                await sim.feed.stop()
        # all servers at once: each may wait up to its shutdown timeout for open requests
        await asyncio.gather(*(runner.cleanup() for runner in reversed(runners)), return_exceptions=True)


# ---------------------------------------------------------------------------------- the CLI


def list_faults_text() -> str:
    faults, limits = FaultSettings(), LimitSettings()
    lines = ["Faults (--fault EXCHANGE:NAME=VALUE; EXCHANGE is binance, bybit, okx or all; 0 = off):"]
    for name, value in faults.as_dict().items():
        lines.append(f"  {name:<28} default {value!s:<8} {FAULT_HELP.get(name, '')}")
    lines.append("")
    lines.append(
        "Limits and protocol options (--limit EXCHANGE:NAME=VALUE; defaults are the exchanges' published values):"
    )
    for name, value in limits.as_dict().items():
        lines.append(f"  {name:<28} default {value!s:<8} {LIMIT_HELP.get(name, '')}")
    lines.append("")
    lines.append(
        "Both can be changed while running: POST /faults/{exchange}, POST /limits/{exchange} on the control port."
    )
    return "\n".join(lines)


def _banner(handle: SimHandle) -> str:
    sim = handle.sim
    start = datetime.fromtimestamp(sim.clock.start_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lines = [
        f"p9 sim: seed {sim.seed}, speed {sim.clock.speed:g}x, simulated start {start[:-4]}Z",
        f"  control API  {handle.control_url}  (GET /health, /state, /truth/...; POST /faults/..., /limits/..., /clock/advance)",
    ]
    for ex in EXCHANGES:
        ws = handle.ws_url(ex) if handle.ws_available else "(WebSocket not available)"
        lines.append(f"  {ex:<8}     REST {handle.rest_url(ex)}   WS {ws}")
    if handle.tls is not None:
        tls = handle.tls
        how = "generated now" if tls.generated else "reused"
        lines.append(f"  TLS on the same ports: https:// and wss:// (certificate {how}, CA {tls.ca})")
        for ex in EXCHANGES:
            lines.append(f"  {ex:<8}     REST {handle.https_url(ex)}  WS {handle.wss_url(ex)}")
        lines.append("Trust the simulator's CA (the bundle also holds the system CAs):")
        lines.extend(tls.trust_lines())
    lines.append("Point p9 or any client at it:")
    for key, value in handle.env().items():
        lines.append(f"export {key}={value}")
    lines.append("Ctrl-C to stop.")
    return "\n".join(lines)


async def _serve_forever(
    sim: Simulator, host: str, port_base: int, tls: bool = False, tls_dir: str | Path | None = None
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    try:
        async with running_sim(host=host, port_base=port_base, sim=sim, tls=tls, tls_dir=tls_dir) as handle:
            print(_banner(handle), flush=True)
            await stop.wait()
            print("p9 sim: stopping", flush=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_sim(
    host: str = "127.0.0.1",
    port_base: int = 8800,
    seed: int = 9,
    speed: float = 1.0,
    start: str | None = None,
    faults: Sequence[str] = (),
    limits: Sequence[str] = (),
    rate_limits: bool = True,
    list_faults: bool = False,
    okx_legacy_checksum: bool = False,
    okx_books_snapshot: bool = True,
    tls: bool = False,
    tls_dir: str | None = None,
) -> int:
    """``p9 sim``: serve until SIGINT/SIGTERM. Bad input raises ConfigError (exit 2), a port in
    use P9Error (exit 1); a clean stop returns 0."""
    if list_faults:
        print(list_faults_text())
        return 0
    if not 1 <= port_base <= 65535 - 3:
        raise ConfigError(f"--port-base {port_base}: must be between 1 and 65532")
    if not (math.isfinite(speed) and 0 < speed <= MAX_SPEED):
        raise ConfigError(f"--speed {speed:g}: must be a number > 0 and <= {MAX_SPEED:g}")
    start_ms = parse_start(start)
    fault_spec = parse_overrides(list(faults), FaultSettings, "--fault")
    limit_spec = parse_overrides(list(limits), LimitSettings, "--limit")
    okx = limit_spec.setdefault("okx", {})
    if okx_legacy_checksum:
        okx["okx_legacy_checksum"] = True
    if not okx_books_snapshot:
        okx["okx_books_snapshot"] = False
    logging.basicConfig(level=logging.WARNING, format="p9 sim: %(message)s", stream=sys.stderr)
    sim = build_simulator(seed, start_ms, speed, fault_spec, limit_spec, rate_limits, host, port_base)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(sim, host, port_base, tls, tls_dir))
    return 0


__all__ = [
    "SimHandle",
    "build_simulator",
    "build_exchange_app",
    "list_faults_text",
    "parse_overrides",
    "parse_start",
    "run_sim",
    "running_sim",
]
