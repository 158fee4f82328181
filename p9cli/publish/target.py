"""Which Redis p9 publishes to: the configured URL, else 127.0.0.1:6379, else a private server.

1. ``P9_REDIS_URL`` (or ``--redis-url``) set: that URL, nothing else. If it does not answer,
   ``Publisher.start`` raises :class:`ServiceUnavailable` (one line, exit code 69): never a silent
   fallback to another server.
2. Not set: if something answers a PING on the probe address (``settings.redis_probe``:
   ``P9_REDIS_PROBE``, default ``127.0.0.1:6379``), use it.
3. Else start a private server (:class:`EmbeddedRedis`), print its URL for bots, stop it on exit.
"""

from __future__ import annotations

from dataclasses import dataclass

from p9cli.errors import ConfigError, ServiceUnavailable
from p9cli.publish.embedded import EmbeddedRedis, ping
from p9cli.publish.publisher import Log, log_stderr

DEFAULT_PROBE = "127.0.0.1:6379"
RedisUnavailable = ServiceUnavailable

CONFIGURED = "configured"
LOCAL = "local"
EMBEDDED = "embedded"


@dataclass
class RedisTarget:
    """The Redis to publish to; ``close()`` stops a private server (no-op otherwise)."""

    url: str
    source: str  # configured | local | embedded
    embedded: EmbeddedRedis | None = None

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()

    def __enter__(self) -> RedisTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_probe(probe: str) -> tuple[str, int]:
    host, sep, port = probe.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"P9_REDIS_PROBE={probe!r} is not HOST:PORT")
    return host, int(port)


def open_redis(url: str | None, probe: str = DEFAULT_PROBE, log: Log = log_stderr) -> RedisTarget:
    """Resolve the Redis to use (see the module docstring). Call it from the main thread."""
    if url:
        return RedisTarget(url, CONFIGURED)
    host, port = parse_probe(probe)
    if ping(host, port):
        return RedisTarget(f"redis://{host}:{port}/0", LOCAL)
    server = EmbeddedRedis.start()
    log(
        f"p9: no Redis configured and none answers on {host}:{port}: started a private {server.version} "
        f"({server.origin}) at {server.url} for this run; bots: P9_REDIS_URL={server.url} "
        "(stops with p9, nothing kept on disk)"
    )
    return RedisTarget(server.url, EMBEDDED, server)
