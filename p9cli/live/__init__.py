"""The live feed layer: connections, in-sync order books, deduplicated trades, statistics.

Consumers use :class:`LiveFeeds` (see :mod:`p9cli.live.runner` and ``docs/feeds.md``).
"""

from p9cli.live.events import BookState, FeedEvent
from p9cli.live.exchange_feed import ExchangeFeed, FeedOptions
from p9cli.live.runner import LiveFeeds

__all__ = ["BookState", "ExchangeFeed", "FeedEvent", "FeedOptions", "LiveFeeds"]
