"""p9cli.rest: the one REST client and rate limiter, shared by fetch-history and the live side.

Public API (see :mod:`p9cli.rest.client`)::

    from p9cli.rest import ExchangeClient

    async with ExchangeClient(adapter, base_url) as client:   # adapter: p9cli.exchanges.<name>
        body: bytes = await client.send(adapter.depth_request("btc", 1000))

Every client of a process that talks to the same exchange host shares its limiter, pauses
and server clock (:func:`p9cli.rest.hosts.rest_host`).
"""

from p9cli.rest.client import ClientOptions, ExchangeClient, ExchangeUnavailable, RequestCounters
from p9cli.rest.clock import ServerClock
from p9cli.rest.hosts import RestHost, rest_host
from p9cli.rest.ratelimit import Bucket, ExchangeLimiter

__all__ = [
    "Bucket",
    "ClientOptions",
    "ExchangeClient",
    "ExchangeLimiter",
    "ExchangeUnavailable",
    "RequestCounters",
    "RestHost",
    "ServerClock",
    "rest_host",
]
