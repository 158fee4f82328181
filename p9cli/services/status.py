"""``p9 status``: read the whole system's state from Redis, print it once or keep it live.

Reads only (never writes, never starts a Redis): the merged ``precision9_fusion_status``, every
live worker key ``precision9_fusion_status:{worker_id}``, the ``fusion_data`` and
``precision9_context`` twins, and which ``structure`` keys exist. The view and the health verdict
are pure functions in :mod:`p9cli.ui.status`.

Which Redis: ``--redis-url`` / ``P9_REDIS_URL``, else the probe address (``P9_REDIS_PROBE``,
default 127.0.0.1:6379) — the stream's rules, except that nothing there is exit 3 (a stream
running on its private server prints the URL to pass).

Exit codes: 0 healthy, 1 some feed stale or down (or a worker silent), 2 bad input, 3 nothing
publishing / Redis unreachable or refusing us.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TextIO

import orjson

from p9cli.config import Settings
from p9cli.errors import P9Error
from p9cli.publish.channels import FUSION_DATA, PRECISION9_CONTEXT, STATUS, STRUCTURE, worker_channel
from p9cli.publish.redact import redact, redact_url, url_secrets
from p9cli.publish.target import parse_probe
from p9cli.ui.status import EXIT_NOTHING, evaluate, report_view

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 3.0
REFRESH_S = 1.0


class NothingThere(P9Error):
    """Redis unreachable, refusing us, or not configured and nothing on the probe address."""

    exit_code = EXIT_NOTHING


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def resolve_url(settings: Settings) -> tuple[str, bool]:
    """(url, configured): the configured URL, else the probe address as ``redis://HOST:PORT/0``."""
    if settings.redis_url:
        return settings.redis_url, True
    host, port = parse_probe(settings.redis_probe or "127.0.0.1:6379")
    return f"redis://{host}:{port}/0", False


def connect(url: str):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=READ_TIMEOUT_S, protocol=2,
        retry=Retry(NoBackoff(), 0), client_name="p9-status",
    )  # fmt: skip


def describe(url: str, configured: bool, exc: BaseException) -> str:
    """One line, without any secret, for a Redis that cannot be used (the publisher's wording)."""
    from p9cli.publish.publisher import Publisher

    line = redact(Publisher(url, connect_timeout_s=CONNECT_TIMEOUT_S).describe_failure(exc), url_secrets(url))
    if not configured and (" is not reachable " in line or " did not answer " in line):
        where = redact_url(url).removeprefix("redis://").removesuffix("/0")
        return (
            f"no Redis answers on {where} (P9_REDIS_PROBE) and no --redis-url / P9_REDIS_URL is set: nothing to "
            "report (a p9 stream on its private Redis prints the URL to pass with --redis-url)"
        )
    return line


def _loads(raw: bytes | None) -> dict | None:
    if not raw:
        return None
    try:
        v = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return v if isinstance(v, dict) else None


def _scan(client, pattern: str) -> list[str]:
    return sorted({k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=pattern, count=1000)})


def read_snapshot(client, url: str) -> dict:
    """One read of everything ``p9 status`` shows (see :mod:`p9cli.ui.status` for the shape).
    Raises redis errors / OSError when the server cannot be used."""
    from redis.exceptions import NoPermissionError, ResponseError

    t0 = time.perf_counter()
    client.ping()
    ping_ms = (time.perf_counter() - t0) * 1000
    redis_info = {"url": redact_url(url), "ok": True, "error": None, "server": None, "version": None,
                  "ping_ms": round(ping_ms, 2), "used_memory": None, "used_memory_human": None}  # fmt: skip
    try:  # an ACL user may not have INFO: the rest still works
        info = client.info("server")
        if info.get("valkey_version"):
            redis_info["server"], redis_info["version"] = "valkey", str(info["valkey_version"])
        elif info.get("server_name") == "valkey" or info.get("redis_version"):
            redis_info["server"] = str(info.get("server_name") or "redis")
            redis_info["version"] = str(info.get("redis_version"))
        mem = client.info("memory")
        redis_info["used_memory"] = mem.get("used_memory")
        redis_info["used_memory_human"] = mem.get("used_memory_human")
    except (NoPermissionError, ResponseError):
        pass
    status = _loads(client.get(STATUS))
    workers: list[dict] | None
    try:
        wkeys = _scan(client, worker_channel("*"))
        workers = [w for w in map(_loads, client.mget(wkeys) if wkeys else []) if w is not None]
    except (NoPermissionError, ResponseError):  # no SCAN for this user: the merged status's list
        workers = None
    names: dict[str, dict] = {}
    declared = sorted({f"{e}:{s}" for w in (workers if workers is not None else (status or {}).get("workers") or [])
                       for e in w.get("exchanges") or [] for s in w.get("symbols") or []})  # fmt: skip
    for kind in (FUSION_DATA, PRECISION9_CONTEXT, STRUCTURE):
        try:
            keys, scanned = [k for k in _scan(client, f"{kind}:*") if k.count(":") == 2], True
        except (NoPermissionError, ResponseError):  # no SCAN: the keys of the pairs the workers declare
            keys, scanned = [f"{kind}:{p}" for p in declared], False
        if kind == STRUCTURE:  # only whether it exists (the documents are large)
            for key in keys if scanned else [k for k in keys if client.exists(k)]:
                names.setdefault(key.split(":", 1)[1], {})[STRUCTURE] = True
            continue
        for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
            payload = _loads(raw)
            if payload is not None:
                names.setdefault(key.split(":", 1)[1], {})[kind] = payload
    pairs = {
        name: {FUSION_DATA: d.get(FUSION_DATA), PRECISION9_CONTEXT: d.get(PRECISION9_CONTEXT),
               STRUCTURE: bool(d.get(STRUCTURE))}
        for name, d in names.items()
    }  # fmt: skip
    return {"taken_ms": _now_ms(), "redis": redis_info, "status": status, "workers": workers, "pairs": pairs}


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def run(
    settings: Settings,
    *,
    follow: bool = False,
    as_json: bool = False,
    out: TextIO | None = None,
    refresh_s: float = REFRESH_S,
) -> int:
    out = out or sys.stdout
    try:
        return _run(settings, follow, as_json, out, refresh_s)
    except BrokenPipeError:  # `p9 status --follow --json | head`: the reader left; not an error
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0


def _run(settings: Settings, follow: bool, as_json: bool, out: TextIO, refresh_s: float) -> int:
    url, configured = resolve_url(settings)
    if follow:
        return _follow(url, configured, as_json, out, refresh_s)
    client = connect(url)
    try:
        snap = read_snapshot(client, url)
    except _redis_errors() as exc:
        raise NothingThere(describe(url, configured, exc)) from None
    finally:
        client.close()
    now = _now_ms()
    report = evaluate(snap, now)
    if as_json:
        out.write(orjson.dumps(report).decode() + "\n")
        out.flush()
    else:
        from rich.console import Console

        Console(file=out, soft_wrap=False).print(report_view(report))
    return int(report["exit_code"])


def _follow(url: str, configured: bool, as_json: bool, out: TextIO, refresh_s: float) -> int:
    """Redraw every ``refresh_s`` until Ctrl-C (exit 0); a Redis that goes away later is shown and
    retried, not fatal (unusable at the start: one line, exit 3, as without --follow).
    With --json: one report per line."""
    client = connect(url)
    try:
        previous: dict | None = read_snapshot(client, url)
    except _redis_errors() as exc:
        client.close()
        raise NothingThere(describe(url, configured, exc)) from None

    def snapshot() -> dict:
        nonlocal client, previous
        try:
            snap = read_snapshot(client, url)
        except _redis_errors() as exc:
            client.close()
            client = connect(url)
            snap = {"taken_ms": _now_ms(), "status": None, "workers": [], "pairs": {},
                    "redis": {"url": redact_url(url), "ok": False, "error": describe(url, configured, exc)}}  # fmt: skip
        prev, previous = previous, snap if snap["redis"].get("ok") else previous
        return evaluate(snap, _now_ms(), prev)

    try:
        if as_json:
            while True:
                out.write(orjson.dumps(snapshot()).decode() + "\n")
                out.flush()
                time.sleep(refresh_s)
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        if not console.is_terminal:  # a pipe or a file: one table after the other
            while True:
                console.print(report_view(snapshot()))
                console.print()
                out.flush()
                time.sleep(refresh_s)
        with Live(report_view(snapshot()), console=console, auto_refresh=False, screen=False,
                  redirect_stdout=False, redirect_stderr=False) as live:  # fmt: skip
            while True:
                time.sleep(refresh_s)
                live.update(report_view(snapshot()), refresh=True)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
