"""The transport seam: how the feed layer talks to a WebSocket peer.

A :data:`Connector` is ``async connect(url) -> Transport``. The feed layer only ever calls
``send``, ``recv``, ``ping`` and ``close`` on what it gets back, so a test or a benchmark can
fill the seam with anything that behaves like a WebSocket:

* :func:`websockets_connector` — the real one, on ``websockets`` (asyncio implementation):
  permessage-deflate off (it costs ~25 % of the per-message budget, live-references §5.4),
  protocol pings off (the venue's keepalive rule decides what to send, and on Binance every
  frame we send counts against 5 incoming messages/s), ``max_size`` bounds one frame (a bigger
  one closes the connection with 1009) and ``max_queue`` bounds the frames read ahead of the
  consumer (when it is full ``websockets`` stops reading the socket: TCP backpressure), so a
  flood or one huge frame cannot grow memory without bound.
* :class:`ReplayConnector` — pre-built frames pushed through the same seam without a socket
  (the feed benchmark and pure unit tests use it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit


class TransportClosed(Exception):
    """The connection is gone (closed by either side, reset, or refused a frame)."""

    def __init__(self, reason: str, code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Transport(Protocol):
    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes:
        """The next frame; raises :class:`TransportClosed` when the connection is gone."""
        ...

    async def ping(self) -> None:
        """A protocol-level ping frame (for venues whose keepalive is a WebSocket ping)."""
        ...

    async def close(self) -> None: ...


Connector = Callable[[str], Awaitable[Transport]]


@dataclass(frozen=True)
class TransportOptions:
    #: largest frame accepted (OKX 400-level books are ~30 KB; 4 MiB leaves room for any
    #: snapshot the exchanges send and still bounds memory)
    max_size: int = 4 * 1024 * 1024
    #: frames read ahead of the consumer before reading the socket pauses
    max_queue: int = 256
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    #: permessage-deflate; off unless measured to help (live-references §5.4)
    compression: bool = False


class WebsocketsTransport:
    """:class:`Transport` over a ``websockets`` client connection."""

    __slots__ = ("_ws", "_closed_exc")

    def __init__(self, ws):
        self._ws = ws
        self._closed_exc: type[BaseException] | None = None

    async def send(self, message: str) -> None:
        try:
            await self._ws.send(message)
        except Exception as exc:  # ConnectionClosed, OSError, ...
            raise _closed(exc) from None

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.recv()
        except Exception as exc:
            raise _closed(exc) from None

    async def ping(self) -> None:
        try:
            await self._ws.ping()
        except Exception as exc:
            raise _closed(exc) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection may fail in many ways
            await self._ws.close()


def _closed(exc: BaseException) -> TransportClosed:
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        sent = exc.sent
        code = rcvd.code if rcvd is not None else (sent.code if sent is not None else None)
        why = (rcvd.reason if rcvd is not None else "") or (sent.reason if sent is not None else "")
        return TransportClosed(f"closed (code {code}{': ' + why if why else ''})", code)
    return TransportClosed(f"{type(exc).__name__}: {exc}".rstrip(": "))


def websockets_connector(options: TransportOptions | None = None) -> Connector:
    """A :data:`Connector` on the ``websockets`` library with bounded memory (see module doc)."""
    o = options or TransportOptions()

    async def connect(url: str) -> Transport:
        from websockets.asyncio.client import connect as ws_connect

        host = urlsplit(url).hostname or ""
        try:
            ws = await ws_connect(
                url,
                compression="deflate" if o.compression else None,
                ping_interval=None,
                ping_timeout=None,
                max_size=o.max_size,
                max_queue=o.max_queue,
                open_timeout=o.open_timeout_s,
                close_timeout=o.close_timeout_s,
                # the local simulator is never proxied; real exchanges honour *_PROXY
                proxy=None if host in ("127.0.0.1", "localhost", "::1") else True,
                user_agent_header="p9cli",
            )
        except Exception as exc:  # refused, DNS, HTTP 429 on the upgrade, timeout, ...
            raise TransportClosed(f"connect failed: {type(exc).__name__}: {exc}".strip()) from None
        return WebsocketsTransport(ws)

    return connect


class ReplayTransport:
    """A transport that hands out pre-built frames (then waits, or closes when ``close_at_end``)."""

    def __init__(self, frames: Iterable[str | bytes], close_at_end: bool = False):
        self._frames = iter(frames)
        self.close_at_end = close_at_end
        self.sent: list[str] = []
        self.pings = 0
        self.closed = False
        self._n = 0
        self._closed_event = asyncio.Event()

    async def send(self, message: str) -> None:
        if self.closed:
            raise TransportClosed("closed")
        self.sent.append(message)

    async def recv(self) -> str | bytes:
        if self.closed:
            raise TransportClosed("closed")
        self._n += 1
        if not self._n & 255:  # let other tasks run now and then (no frame ever waits)
            await asyncio.sleep(0)
        try:
            return next(self._frames)
        except StopIteration:
            if self.close_at_end:
                self.closed = True
                raise TransportClosed("replay ended") from None
            await self._closed_event.wait()
            raise TransportClosed("closed") from None

    async def ping(self) -> None:
        self.pings += 1

    async def close(self) -> None:
        self.closed = True
        self._closed_event.set()


class ReplayConnector:
    """A :data:`Connector` that serves :class:`ReplayTransport` values.

    ``frames_for(url)`` returns the frames of each new connection to ``url`` (an iterable or
    generator: frames are built lazily, so a benchmark can stream millions without holding them)."""

    def __init__(self, frames_for: Callable[[str], Iterable[str | bytes]], close_at_end: bool = False):
        self.frames_for = frames_for
        self.close_at_end = close_at_end
        self.transports: list[ReplayTransport] = []

    async def __call__(self, url: str) -> Transport:
        t = ReplayTransport(self.frames_for(url), self.close_at_end)
        self.transports.append(t)
        return t
