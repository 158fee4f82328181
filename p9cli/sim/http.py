"""Shared REST plumbing of the simulated exchanges: JSON bodies, query parsing, and the gate
every REST request passes (request counting, latency, injected faults, rate limits, 404s).

Each exchange module (``rest_binance``, ``rest_bybit``, ``rest_okx``) supplies an
:class:`ExchangeRest` with its own error bodies and limiter; :func:`install` puts the gate in
front of every route of the exchange's aiohttp app. WebSocket upgrade requests (the WS
engineer's routes share the port) pass straight through, untouched and uncounted here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from aiohttp import web

from p9cli.sim.instruments import INSTRUMENTS
from p9cli.sim.state import ExchangeState, FaultSettings, Simulator

log = logging.getLogger("p9cli.sim")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: REST faults in the order they take precedence when several fire on the same request.
REST_FAULTS: tuple[str, ...] = ("rest_drop_every", "rest_timeout_every", "rest_5xx_every", "rest_429_every")
#: ``rest_5xx_every`` answers rotate through these statuses (503 first).
SERVER_ERROR_STATUSES: tuple[int, ...] = (503, 502, 504)

APP_SIM_KEY = web.AppKey("p9_sim", Simulator)
APP_STATE_KEY = web.AppKey("p9_state", ExchangeState)


def json_body(obj: Any) -> bytes:
    """Compact JSON (orjson keeps dict insertion order, which is the wire key order)."""
    return orjson.dumps(obj)


def json_response(
    obj: Any,
    status: int = 200,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    resp = web.Response(body=json_body(obj), status=status, headers=headers)
    resp.headers["Content-Type"] = content_type
    return resp


def text_response(text: str, status: int, content_type: str = "text/plain; charset=utf-8") -> web.Response:
    resp = web.Response(body=text.encode(), status=status)
    resp.headers["Content-Type"] = content_type
    return resp


class ParamError(Exception):
    """A bad query parameter; each exchange turns it into its own error body."""

    def __init__(self, kind: str, name: str, value: str | None = None):
        super().__init__(f"{kind}: {name}={value!r}")
        self.kind = kind  # "missing", "illegal" (not an integer), "invalid" (out of range)
        self.name = name
        self.value = value


def query_int(query: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
    """An integer query parameter; ``None`` when absent (or empty and not required)."""
    raw = query.get(name)
    if raw is None or raw == "":
        if required:
            raise ParamError("missing", name, raw)
        return None
    text = raw.strip()
    if not (text.isdigit() or (text.startswith("-") and text[1:].isdigit())) or len(text) > 20:
        raise ParamError("illegal", name, raw)
    return int(text)


def fault_due(faults: FaultSettings, n: int) -> str | None:
    """The REST fault that fires on the ``n``-th request (1-based) of an exchange, if any."""
    for name in REST_FAULTS:
        every = int(getattr(faults, name))
        if every > 0 and n % every == 0:
            return name
    return None


class ExchangeRest:
    """What the gate needs from an exchange. Subclasses override the bodies and the limiter."""

    name = "exchange"

    def __init__(self, sim: Simulator, state: ExchangeState):
        self.sim = sim
        self.state = state
        self._5xx_turn = 0

    # -- limiter -------------------------------------------------------------------------
    def admit(self, request: web.Request, now_ms: int) -> web.StreamResponse | None:
        """Apply the real rate limit; return the refusal, or ``None`` to serve the request."""
        return None

    def decorate(self, request: web.Request, response: web.StreamResponse, now_ms: int) -> None:
        """Add headers every response carries (Binance: used weight)."""

    # -- bodies ----------------------------------------------------------------------------
    def injected_rate_limit(self, request: web.Request, now_ms: int) -> web.StreamResponse:
        raise NotImplementedError

    def server_error(self, status: int) -> web.StreamResponse:
        raise NotImplementedError

    def geo_blocked(self, request: web.Request) -> web.StreamResponse | None:
        """The answer to a request from a restricted location (``rest_geo_block``); None when
        the exchange has no documented one."""
        return None

    def not_found(self, request: web.Request) -> web.StreamResponse:
        return text_response("404 page not found", 404)

    def method_not_allowed(self, request: web.Request) -> web.StreamResponse:
        return self.not_found(request)

    def internal_error(self, request: web.Request, exc: BaseException) -> web.StreamResponse:
        return self.server_error(500)

    def next_server_error_status(self) -> int:
        status = SERVER_ERROR_STATUSES[self._5xx_turn % len(SERVER_ERROR_STATUSES)]
        self._5xx_turn += 1
        return status

    # -- the gate ------------------------------------------------------------------------
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        state = self.state
        state.count("rest.requests")
        n = state.counters["rest.requests"]
        faults = state.faults
        if faults.latency_ms > 0:
            state.count("fault.latency_ms")
            await asyncio.sleep(faults.latency_ms / 1000.0)
        if faults.rest_geo_block:
            blocked = self.geo_blocked(request)
            if blocked is not None:
                state.count("fault.rest_geo_block")
                return blocked
        fault = fault_due(faults, n)
        if fault is not None:
            state.count(f"fault.{fault}")
            if fault == "rest_drop_every":
                return drop_connection(request)
            if fault == "rest_timeout_every":
                await asyncio.sleep(max(0.0, float(faults.rest_timeout_seconds)))
                return drop_connection(request)
            now = self.sim.clock.now_ms()
            if fault == "rest_5xx_every":
                response = self.server_error(self.next_server_error_status())
            else:
                response = self.injected_rate_limit(request, now)
            self.decorate(request, response, now)
            return response
        now = self.sim.clock.now_ms()
        refusal = self.admit(request, now)
        if refusal is not None:
            self.decorate(request, refusal, now)
            return refusal
        try:
            response = await handler(request)
        except web.HTTPMethodNotAllowed:
            response = self.method_not_allowed(request)
        except web.HTTPNotFound:
            response = self.not_found(request)
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a simulator bug must still answer like the exchange
            log.exception("sim %s: error serving %s", self.name, request.path_qs)
            response = self.internal_error(request, exc)
        self.decorate(request, response, now)
        return response


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection without answering (the client sees 'server disconnected')."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def install(app: web.Application, rest: ExchangeRest) -> None:
    """Put ``rest``'s gate in front of every non-WebSocket request of ``app``."""

    @web.middleware
    async def rest_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_websocket_upgrade(request):
            return await handler(request)
        return await rest.gate(request, handler)

    app.middlewares.append(rest_gate)
    app[APP_SIM_KEY] = rest.sim
    app[APP_STATE_KEY] = rest.state


def add_get_routes(
    app: web.Application,
    routes: Mapping[str, Handler],
    error: type[Exception],
    answer: Callable[[Any], web.StreamResponse],
) -> None:
    """``GET`` each path with its handler; an ``error`` raised by a handler is answered with
    ``answer(exc)`` (the exchange's own error body and status)."""

    def answering(fn: Handler) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                return await fn(request)
            except error as exc:
                return answer(exc)

        return handler

    for path, fn in routes.items():
        app.router.add_get(path, answering(fn))


# -- market helpers shared by the exchanges ------------------------------------------------


#: One worker thread for market-model work (bars and their formatting). A cold request for
#: years of history can take seconds before the model's warm-up has finished; off the event
#: loop it delays only that request, not the WebSocket feed or other endpoints. One thread
#: keeps the model's own caches free of concurrent writers from REST.
_MODEL_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="p9-sim-model")


async def offload(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on the model worker thread and return its result."""
    return await asyncio.get_running_loop().run_in_executor(_MODEL_EXECUTOR, fn, *args)


def floor_open(t_ms: int, tf_ms: int, offset_ms: int = 0) -> int:
    """Open time of the bar (length ``tf_ms``, boundaries at ``offset_ms`` mod ``tf_ms``) containing ``t_ms``."""
    return t_ms - (t_ms - offset_ms) % tf_ms


def ceil_open(t_ms: int, tf_ms: int, offset_ms: int = 0) -> int:
    """Smallest bar open time >= ``t_ms``."""
    f = floor_open(t_ms, tf_ms, offset_ms)
    return f if f == t_ms else f + tf_ms


def instrument_of(sim: Simulator, exchange: str, symbol: str) -> Any:
    """The instrument of (exchange, symbol): formatting and precision (``instruments.py``)."""
    return INSTRUMENTS[(exchange, symbol)]
