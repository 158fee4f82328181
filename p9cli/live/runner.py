"""The consumer API of the feed layer: :class:`LiveFeeds`.

::

    from p9cli.live import LiveFeeds, BookState, FeedEvent
    from p9cli.exchanges.venue import Trade, ExchangeCandle

    def handle(event):              # called inline, in arrival order, never concurrently
        if type(event) is Trade: ...            # new trades only (deduplicated), recv_ms set
        elif type(event) is BookState: ...      # a book provably in sync, with update_id
        elif type(event) is FeedEvent: ...      # connected / book_invalid / switchover / ...

    async with LiveFeeds(settings, handle) as feeds:     # settings: p9cli.config.Settings
        await feeds.wait(60)                              # or: run your own tasks meanwhile
        feeds.stats()                                     # {exchange: plain dict}, any time

The handler must be quick (it runs on the feed's hot path); keep heavy work elsewhere. An
exception in it is logged and the event skipped. Everything the feed starts (connections,
REST clients, timers) stops on leaving the ``async with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from p9cli.config import Settings
from p9cli.exchanges.venue import get_venue
from p9cli.live.clock import SYSTEM_CLOCK, Clock
from p9cli.live.exchange_feed import ExchangeFeed, FeedOptions
from p9cli.live.rest_jobs import default_rest_client
from p9cli.live.transport import Connector

log = logging.getLogger("p9cli.live")


class LiveFeeds:
    """Every configured exchange's feed, for ``symbols`` (defaults: the settings')."""

    def __init__(
        self,
        settings: Settings,
        handler: Callable[[object], None],
        *,
        exchanges: Iterable[str] | None = None,
        symbols: Iterable[str] | None = None,
        options: FeedOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
        connector: Connector | None = None,
        rest_clients: dict | None = None,
        candles_for: Callable[[str, str], object] | None = None,
    ):
        self.settings = settings
        self.handler = handler
        self.exchanges = tuple(exchanges if exchanges is not None else settings.exchanges)
        self.symbols = tuple(symbols if symbols is not None else settings.symbols)
        self.options = options or FeedOptions()
        self.clock = clock
        self.connector = connector
        self._given_clients = dict(rest_clients or {})
        self._own_clients: list = []
        self.candles_for = candles_for
        self.feeds: dict[str, ExchangeFeed] = {}
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> LiveFeeds:
        for name in self.exchanges:
            venue = get_venue(name)
            client = self._given_clients.get(name)
            needs_rest = (
                venue.snapshot_request is not None
                or venue.trade_replay_request is not None
                or (self.candles_for is not None and self.options.complete_candles)
            )
            if client is None and needs_rest:
                client = default_rest_client(venue, self.settings.rest_url(name))
                await client.__aenter__()
                self._own_clients.append(client)
            candles = {}
            if self.candles_for is not None:
                for symbol in self.symbols:
                    builder = self.candles_for(name, symbol)
                    if builder is not None:
                        candles[symbol] = builder
            self.feeds[name] = ExchangeFeed(
                venue,
                self.settings.ws_url(name),
                self.symbols,
                self.handler,
                rest_client=client,
                options=self.options,
                clock=self.clock,
                connector=self.connector,
                candles=candles,
            )
        self._task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        await asyncio.gather(*(f.run() for f in self.feeds.values()))

    async def wait(self, duration_s: float | None = None) -> None:
        """Serve for ``duration_s`` seconds (None: until cancelled). A feed that fails with an
        unexpected error raises it here."""
        if self._task is None:
            raise RuntimeError("LiveFeeds used outside 'async with'")
        if duration_s is None:
            await asyncio.shield(self._task)
            return
        done, _ = await asyncio.wait({self._task}, timeout=duration_s)
        if done:
            self._task.result()

    def stats(self) -> dict[str, dict]:
        """Per exchange: a plain dict (see :class:`p9cli.live.stats.FeedStats`)."""
        return {name: feed.snapshot() for name, feed in self.feeds.items()}

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for client in self._own_clients:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
        self._own_clients.clear()
