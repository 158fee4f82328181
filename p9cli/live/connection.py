"""One WebSocket connection of a feed: open, subscribe (paced), read, keep alive, watch.

A :class:`Link` knows nothing about books or trades: it hands every frame to ``on_frame``
and ends with a reason. Around the read loop a small timer task (the *watchdog*):

* sends the venue's keepalive (``Keepalive.ping_every_s`` fixed, or ``ping_when_idle_s``
  after that long without a frame; Binance: nothing, the server pings and the WebSocket
  library answers);
* closes the connection after ``silence_s`` without any frame (``silence``), or when a ping
  got nothing back within ``pong_timeout_s`` (``pong_timeout``);
* asks for a replacement (``replace_wanted``) when the connection nears the exchange's
  maximum age, so the feed can open the new one first.

Every message sent goes through one :class:`~p9cli.live.pacing.Pacer` per connection
(``venue.send_interval_s``): subscribes and pings together stay under the exchange's
incoming-message limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from p9cli.exchanges.venue import ConnectionPlan, Keepalive
from p9cli.live.clock import Clock
from p9cli.live.pacing import Pacer
from p9cli.live.transport import Connector, Transport, TransportClosed

log = logging.getLogger("p9cli.live")

# end reasons
CLOSED = "closed"  # the peer closed or the socket failed
SILENCE = "silence"  # nothing received for silence_s
PONG_TIMEOUT = "pong_timeout"
REPLACED = "replaced"  # a replacement took over
STOPPED = "stopped"  # the feed is stopping


class Link:
    """One connection per :class:`ConnectionPlan` at a time (two during a switch-over)."""

    _ids = 0

    def __init__(
        self,
        plan: ConnectionPlan,
        keepalive: Keepalive,
        on_frame: Callable[[Link, str | bytes], None],
        *,
        clock: Clock,
        send_interval_s: float,
        silence_s: float,
        max_age_s: float | None,
    ):
        Link._ids += 1
        self.id = Link._ids
        self.plan = plan
        self.keepalive = keepalive
        self.on_frame = on_frame
        self.clock = clock
        self.silence_s = silence_s
        self.max_age_s = max_age_s
        self.pacer = Pacer(1.0 / send_interval_s if send_interval_s > 0 else 0.0, clock)
        self.transport: Transport | None = None
        self.opened_at = 0.0
        self.last_recv = 0.0
        self.last_ping = 0.0
        self.ping_pending_since: float | None = None
        self.frames = 0
        #: True while this link's books are the ones handed on
        self.primary = False
        #: per-symbol book machines of this connection (filled by the feed)
        self.books: dict = {}
        #: symbol -> whether a valid state of this link's book was handed on (feed bookkeeping)
        self.handed_valid: dict[str, bool] = {}
        #: symbol -> the machine's resync counters already added to the feed's statistics
        self.seen_resyncs: dict[str, dict] = {}
        #: symbol -> the exchange's cross sequence of the book's last message (Bybit ``seq``)
        self.book_seq: dict[str, int] = {}
        #: set when every book of this link is valid (or it carries no books)
        self.ready = asyncio.Event()
        #: set when the link should be replaced (server notice, max age); ``replace_cause`` why
        self.replace_wanted = asyncio.Event()
        self.replace_cause = ""
        self.end_reason: str | None = None
        self.end_detail = ""
        self.done = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def url(self) -> str:
        return self.plan.url

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self, connector: Connector) -> None:
        """Connect and send the plan's subscribe messages (paced). Raises TransportClosed."""
        self.transport = await connector(self.plan.url)
        now = self.clock.monotonic()
        self.opened_at = self.last_recv = self.last_ping = now
        self._tasks.append(asyncio.ensure_future(self._read()))
        try:
            for message in self.plan.subscribe:
                await self.send(message)
        except TransportClosed:
            await self.close(CLOSED, "closed while subscribing")
            raise
        self._tasks.append(asyncio.ensure_future(self._watch()))

    async def send(self, message: str) -> None:
        await self.pacer.wait()
        if self.transport is None or self.done.is_set():
            raise TransportClosed("not open")
        await self.transport.send(message)

    def request_replacement(self, cause: str) -> None:
        if not self.replace_wanted.is_set():
            self.replace_cause = cause
            self.replace_wanted.set()

    async def close(self, reason: str, detail: str = "") -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self.end_detail = detail
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        # the link is over now: its replacement need not wait for a closing handshake that a
        # stalled or vanished peer may never answer (close_timeout bounds it)
        self.done.set()
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await self.transport.close()

    # -- tasks ---------------------------------------------------------------------------

    async def _read(self) -> None:
        recv = self.transport.recv
        on_frame = self.on_frame
        clock = self.clock
        try:
            while True:
                frame = await recv()
                self.last_recv = clock.monotonic()
                self.ping_pending_since = None
                self.frames += 1
                try:
                    on_frame(self, frame)
                except Exception:  # noqa: BLE001 - one bad frame never ends the connection
                    log.exception("%s: frame handling failed; frame skipped", self.plan.url)
        except TransportClosed as exc:
            if self.end_reason is None:
                self.end_reason = CLOSED
                self.end_detail = exc.reason
        except asyncio.CancelledError:
            raise
        finally:
            if not self.done.is_set():
                closing = asyncio.ensure_future(self.close(self.end_reason or CLOSED, self.end_detail))
                self._tasks.append(closing)

    async def _watch(self) -> None:
        ka = self.keepalive
        step = max(0.05, min(1.0, self.silence_s / 4))
        if ka.pong_timeout_s:
            step = min(step, max(0.05, ka.pong_timeout_s / 4))
        clock = self.clock
        while True:
            await asyncio.sleep(step)
            now = clock.monotonic()
            if now - self.last_recv >= self.silence_s:
                await self.close(SILENCE, f"nothing received for {now - self.last_recv:.1f} s")
                return
            pending = self.ping_pending_since
            if pending is not None and ka.pong_timeout_s and now - pending >= ka.pong_timeout_s:
                await self.close(PONG_TIMEOUT, f"no answer to ping within {ka.pong_timeout_s:.0f} s")
                return
            if ka.ping_text is not None:
                due = False
                if ka.ping_every_s and now - self.last_ping >= ka.ping_every_s:
                    due = True
                if ka.ping_when_idle_s and now - max(self.last_recv, self.last_ping) >= ka.ping_when_idle_s:
                    due = True
                if due:
                    self.last_ping = now
                    if self.ping_pending_since is None:
                        self.ping_pending_since = now
                    with contextlib.suppress(TransportClosed):  # the read loop ends the link
                        await self.send(ka.ping_text)
            if self.max_age_s is not None and now - self.opened_at >= self.max_age_s:
                self.request_replacement("max_age")
