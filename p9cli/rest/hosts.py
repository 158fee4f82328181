"""What one process knows about an exchange's REST host: its rate-limit state and its clock.

Limits are counted per exchange and IP, so every :class:`~p9cli.rest.client.ExchangeClient`
of this process that talks to the same exchange at the same base URL (``fetch-history``'s
kline requests, the live side's order-book snapshots) shares one :class:`RestHost`: one
limiter, one pause after a ban or a ``Retry-After``, one server clock. The objects hold no
event-loop primitives, so clients in different loops (tests) may share them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from urllib.parse import urlsplit

from p9cli.rest.clock import ServerClock
from p9cli.rest.ratelimit import ExchangeLimiter


@dataclass(eq=False)
class RestHost:
    exchange: str
    base_url: str
    clock: ServerClock
    limiter: ExchangeLimiter


_HOSTS: dict[tuple[str, str], RestHost] = {}


def host_key(base_url: str) -> str:
    """``scheme://host:port`` of a base URL, lower case, default port made explicit."""
    parts = urlsplit(base_url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def rest_host(adapter: ModuleType, base_url: str) -> RestHost:
    """The process-wide :class:`RestHost` of ``adapter``'s exchange at ``base_url`` (created on
    first use from the exchange's declared ``RATE_BUCKETS``)."""
    key = (adapter.NAME, host_key(base_url))
    host = _HOSTS.get(key)
    if host is None:
        clock = ServerClock()
        host = RestHost(
            adapter.NAME, base_url, clock, ExchangeLimiter(adapter.RATE_BUCKETS, server_ms=clock.ms_at)
        )
        _HOSTS[key] = host
    return host
