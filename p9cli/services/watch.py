"""``p9 watch PAIR [PAIR ...]``: the live fused context of one or more pairs, full screen.

Reads only from Redis (``p9 stream`` may run anywhere): SUBSCRIBE to the pair's four channels
first, then GET their SET twins so that the first frame is never empty (late-joiner rule of
docs/redis.md: a pub/sub message older than what is held is dropped). The screen is
:class:`p9cli.ui.watch.WatchScreen` (pure) redrawn by Rich ``Live(screen=True)`` at most 4×/s and
at the console's current size, so a resized terminal is redrawn to fit.

Pairs: ``binance:btcusdt``, ``binance:btc`` or ``BINANCE:BTC-USDT``; a symbol alone
(``BTCUSDT``, ``btc``) means every configured exchange that publishes it. Exit codes: 0 quit
(Ctrl-C, SIGTERM, SIGHUP; ``--once`` printed), 2 bad input (an unknown pair: the valid ones are
listed), 3 no data for a pair (``no data for binance:btcusdt — is p9 stream running?``) or Redis
unreachable. Never starts a Redis of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TextIO

import orjson

from p9cli.config import Settings
from p9cli.errors import EXIT_OK, ConfigError, P9Error
from p9cli.publish.channels import PAIR_KINDS
from p9cli.publish.redact import redact, url_secrets
from p9cli.ui.watch import PairPayloads, WatchScreen
from p9cli.universe import EXCHANGES, QUOTE, SYMBOLS

#: no data for a pair / Redis unreachable (the same code as ``p9 status`` for "nothing publishing")
EXIT_NO_DATA = 3
#: how long a pair without any twin may take to send a first message before "no data"
FIRST_MESSAGE_WAIT_S = 2.0
REFRESH_S = 0.25
#: kinds whose presence means the pair is being published (``structure`` lives 1 h after a stop)
LIVE_KINDS = ("fusion_data", "market_context", "precision9_context")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------- input


def valid_pairs() -> list[str]:
    return [f"{ex}:{s}{QUOTE}" for ex in EXCHANGES for s in SYMBOLS]


def parse_pair(spec: str) -> tuple[str | None, str]:
    """``(exchange or None, channel symbol)``; ``binance:btc`` -> ``("binance", "btcusdt")``."""
    text = spec.strip().lower()
    ex, sep, sym = text.rpartition(":")
    ex = ex if sep else None
    base = sym.replace("-", "").replace("/", "").replace("_", "")
    if base.endswith(QUOTE) and base != QUOTE:
        base = base[: -len(QUOTE)]
    if (ex is not None and ex not in EXCHANGES) or base not in SYMBOLS:
        raise ConfigError(
            f"unknown pair {spec.strip()!r}; valid: {', '.join(valid_pairs())} (or a symbol alone, e.g. "
            f"{SYMBOLS[0]}{QUOTE}, for every exchange publishing it)"
        )
    return ex, f"{base}{QUOTE}"


def parse_pairs(specs: Iterable[str]) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for spec in specs:
        p = parse_pair(spec)
        if p not in out:
            out.append(p)
    if not out:
        raise ConfigError(f"name at least one pair, e.g. binance:btcusdt; valid: {', '.join(valid_pairs())}")
    return out


def redis_url_of(settings: Settings) -> str:
    """The configured URL, else the probed address (``P9_REDIS_PROBE``, 127.0.0.1:6379) DB 0."""
    return settings.redis_url or f"redis://{settings.redis_probe}/0"


def describe_failure(url: str, exc: BaseException) -> str:
    """One line for a Redis that cannot be read (the publisher's wording); never contains a secret."""
    from p9cli.publish.publisher import Publisher

    line = Publisher(url).describe_failure(exc)
    if " is not reachable " in line or " did not answer " in line:
        line += "; is p9 stream running? (a stream on a private Redis prints its URL: pass it with --redis-url)"
    return redact(line, url_secrets(url))


# ---------------------------------------------------------------------------------------- redis


class Feed:
    """The newest payload per channel of the watched pairs, from a SUBSCRIBE + GET of the twins."""

    def __init__(self, url: str):
        import redis

        self.url = url
        self._redis = redis
        self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        self.pubsub = None
        self.latest: dict[str, dict] = {}

    def connect(self, channels: Sequence[str]) -> None:
        """PING, SUBSCRIBE, then GET the twins (subscribe first: nothing is missed)."""
        try:
            self.client.ping()
            self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            self.pubsub.subscribe(*channels)
            for ch, raw in zip(channels, self.client.mget(list(channels)), strict=True):
                if raw is not None:
                    self._keep(ch, raw)
        except (self._redis.RedisError, OSError) as exc:
            self.close_pubsub()
            raise P9Error(describe_failure(self.url, exc), EXIT_NO_DATA) from None

    def _keep(self, ch: str, raw: bytes) -> bool:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(msg, dict):
            return False
        cur = self.latest.get(ch)
        # late-joiner rule: drop what is older than the twin (a restarted producer has a newer ts)
        if cur is not None and (msg.get("ts") or 0) < (cur.get("ts") or 0):
            return False
        self.latest[ch] = msg
        return True

    def poll(self, timeout_s: float, limit: int = 500) -> int:
        """Wait up to ``timeout_s`` for messages, take every one waiting; how many were kept."""
        kept = 0
        m = self.pubsub.get_message(timeout=timeout_s)
        while m is not None and limit > 0:
            if m.get("type") == "message":
                kept += self._keep(m["channel"].decode(), m["data"])
            limit -= 1
            m = self.pubsub.get_message(timeout=0)
        return kept

    def close_pubsub(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                self.pubsub.close()
            self.pubsub = None

    def close(self) -> None:
        self.close_pubsub()
        with contextlib.suppress(Exception):
            self.client.close()


def _channels(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{k}:{ex}:{sym}" for ex, sym in pairs for k in PAIR_KINDS]


def pair_payloads(latest: dict[str, dict], pairs: Sequence[tuple[str, str]]) -> list[PairPayloads]:
    return [
        PairPayloads(ex, sym, {k: latest[f"{k}:{ex}:{sym}"] for k in PAIR_KINDS if f"{k}:{ex}:{sym}" in latest})
        for ex, sym in pairs
    ]


def _has_data(latest: dict[str, dict], ex: str, sym: str) -> bool:
    return any(f"{k}:{ex}:{sym}" in latest for k in LIVE_KINDS)


def open_feed(settings: Settings, specs: Sequence[str]) -> tuple[Feed, list[tuple[str, str]]]:
    """Parse the pairs, connect, subscribe, read the twins; resolve bare symbols to the
    exchanges publishing them; raise "no data" (exit 3) for a pair nobody publishes."""
    wanted = parse_pairs(specs)
    exchanges = tuple(settings.exchanges) or EXCHANGES
    candidates: list[tuple[str, str]] = []
    for ex, sym in wanted:
        for e in [ex] if ex else exchanges:
            if (e, sym) not in candidates:
                candidates.append((e, sym))
    feed = Feed(redis_url_of(settings))
    try:
        feed.connect(_channels(candidates))
        deadline = time.monotonic() + FIRST_MESSAGE_WAIT_S
        while not all(_has_pair(feed.latest, w, candidates) for w in wanted) and time.monotonic() < deadline:
            feed.poll(0.1)
        pairs: list[tuple[str, str]] = []
        missing: list[str] = []
        for ex, sym in wanted:
            group = [(e, s) for e, s in candidates if s == sym and (ex is None or e == ex)]
            have = [p for p in group if _has_data(feed.latest, *p)]
            if not have:
                missing.append(", ".join(f"{e}:{s}" for e, s in group))
            pairs += [p for p in have if p not in pairs]
        if missing:
            raise P9Error(f"no data for {', '.join(missing)} — is p9 stream running?", EXIT_NO_DATA)
        if len(pairs) < len(candidates):  # bare symbols: only the exchanges that publish them
            feed.close_pubsub()
            feed.connect(_channels(pairs))
        return feed, pairs
    except BaseException:
        feed.close()
        raise


def _has_pair(latest: dict[str, dict], wanted: tuple[str | None, str], candidates) -> bool:
    ex, sym = wanted
    return any(_has_data(latest, e, s) for e, s in candidates if s == sym and (ex is None or e == ex))


# ---------------------------------------------------------------------------------------- loop


class _Quit(Exception):
    """SIGTERM / SIGHUP: leave like Ctrl-C."""


def _raise_quit(signum, frame) -> None:
    raise _Quit


@contextlib.contextmanager
def _no_echo(stream):
    """Typed keys are not echoed over the screen while it runs; the terminal mode is restored."""
    try:
        import termios

        fd = stream.fileno()
        old = termios.tcgetattr(fd)
    except Exception:  # noqa: BLE001 - not a terminal (or no termios): nothing to do
        yield
        return
    new = list(old)
    new[3] &= ~(termios.ECHO | termios.ICANON)
    try:
        termios.tcsetattr(fd, termios.TCSADRAIN, new)
        yield
    finally:  # keys typed meanwhile are dropped, not handed to the shell
        termios.tcsetattr(fd, termios.TCSAFLUSH, old)


def run(settings: Settings, specs: Sequence[str], *, once: bool = False, out: TextIO | None = None,
        duration: float | None = None) -> int:  # fmt: skip
    from rich.console import Console
    from rich.live import Live

    out = out or sys.stdout
    try:
        feed, pairs = open_feed(settings, specs)
    except KeyboardInterrupt:  # Ctrl-C before the first frame: still a plain quit
        return EXIT_OK
    console = Console(file=out)
    try:
        if once or not console.is_terminal:
            try:
                console.print(WatchScreen(pair_payloads(feed.latest, pairs), _now_ms()))
                out.flush()
            except BrokenPipeError:  # `p9 watch btc --once | head`: the reader left; not an error
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
            return EXIT_OK
        old = {s: signal.signal(s, _raise_quit) for s in (signal.SIGTERM, signal.SIGHUP)}
        resized = [False]
        winch = getattr(signal, "SIGWINCH", None)  # redraw at once on a resize (else within 250 ms)
        old_winch = signal.signal(winch, lambda *_: resized.__setitem__(0, True)) if winch else None
        note: str | None = None
        backoff = 0.5
        end = None if duration is None else time.monotonic() + duration
        try:
            with _no_echo(sys.stdin), Live(console=console, screen=True, auto_refresh=False,
                                           redirect_stdout=False, redirect_stderr=False) as live:  # fmt: skip
                last_draw = 0.0
                while end is None or time.monotonic() < end:
                    if feed.pubsub is None:  # Redis went away: retry, keep showing the last data
                        try:
                            feed.connect(_channels(pairs))
                            note, backoff = None, 0.5
                        except P9Error as exc:
                            note = f"Redis connection lost, retrying in {backoff:g} s (the data below is old): {exc}"
                            live.update(WatchScreen(pair_payloads(feed.latest, pairs), _now_ms(), note), refresh=True)
                            time.sleep(backoff)
                            backoff = min(backoff * 2, 5.0)
                            continue
                    try:
                        feed.poll(REFRESH_S)
                    except (feed._redis.RedisError, OSError) as exc:
                        feed.close_pubsub()
                        note = f"Redis connection lost, reconnecting (the data below is old): {describe_failure(feed.url, exc)}"
                    now = time.monotonic()
                    if resized[0] or now - last_draw >= REFRESH_S:
                        resized[0] = False
                        last_draw = now
                        live.update(WatchScreen(pair_payloads(feed.latest, pairs), _now_ms(), note), refresh=True)
        except (KeyboardInterrupt, _Quit):
            pass
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if winch:
                signal.signal(winch, old_winch)
        return EXIT_OK
    finally:
        feed.close()
