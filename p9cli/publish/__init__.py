"""Redis side of the live half: the public channel contract, the coalescing publisher, the
Redis URL resolution (configured / local / embedded server) and the worker status heartbeat.

What the stream service uses::

    from p9cli.publish import open_redis, publishing, WorkerInfo, envelope, channel, FUSION_DATA

    target = open_redis(settings.redis_url, settings.redis_probe)  # configured, 127.0.0.1:6379, or private
    try:
        async with publishing(target.url, WorkerInfo.create(settings.worker_id, exchanges, symbols)) as pub:
            pub.offer(channel(FUSION_DATA, "binance", "btcusdt"), envelope(FUSION_DATA, ...))
    finally:
        target.close()                            # stops a private server
"""

from p9cli.publish.channels import (
    CHANNEL_KINDS,
    FUSION_DATA,
    MARKET_CONTEXT,
    PRECISION9_CONTEXT,
    STATUS,
    STRUCTURE,
    channel,
    envelope,
    kind_of,
    worker_channel,
)
from p9cli.publish.embedded import EmbeddedRedis
from p9cli.publish.publisher import Publisher, PublisherStats
from p9cli.publish.redact import redact, redact_url
from p9cli.publish.target import RedisTarget, RedisUnavailable, open_redis
from p9cli.publish.validate import SchemaViolation, validate_message
from p9cli.publish.worker import Heartbeat, WorkerInfo, default_worker_id, live_workers, publishing

__all__ = [
    "CHANNEL_KINDS",
    "FUSION_DATA",
    "MARKET_CONTEXT",
    "PRECISION9_CONTEXT",
    "STATUS",
    "STRUCTURE",
    "EmbeddedRedis",
    "Heartbeat",
    "Publisher",
    "PublisherStats",
    "RedisTarget",
    "RedisUnavailable",
    "SchemaViolation",
    "WorkerInfo",
    "channel",
    "default_worker_id",
    "envelope",
    "kind_of",
    "live_workers",
    "open_redis",
    "publishing",
    "redact",
    "redact_url",
    "validate_message",
    "worker_channel",
]
