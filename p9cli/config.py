"""Settings: CLI flags > ``P9_*`` environment > ``p9.toml`` > defaults, validated with clear errors.

Every invalid value raises :class:`ConfigError` whose message is one line that names the
setting and lists the valid values; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from p9cli.errors import ConfigError
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAMES

#: The exchanges' real public endpoints (what users get by default).
LIVE_ENDPOINTS: dict[str, dict[str, str]] = {
    "binance": {"rest": "https://api.binance.com", "ws": "wss://stream.binance.com:9443"},
    "bybit": {"rest": "https://api.bybit.com", "ws": "wss://stream.bybit.com"},
    "okx": {"rest": "https://www.okx.com", "ws": "wss://ws.okx.com"},  # port 8443 retired 2026-10-31
}

SIM_HOST = "127.0.0.1"
SIM_PORT_BASE = 8800
#: ``p9 sim --port-base B`` serves the control API on B, Binance on B+1, Bybit on B+2, OKX on B+3.
SIM_PORT_OFFSETS: dict[str, int] = {"binance": 1, "bybit": 2, "okx": 3}


def sim_endpoints(host: str = SIM_HOST, port_base: int = SIM_PORT_BASE) -> dict[str, dict[str, str]]:
    """The simulator's base URLs (REST and WebSocket share one port per exchange)."""
    out = {}
    for ex, off in SIM_PORT_OFFSETS.items():
        hostport = f"[{host}]:{port_base + off}" if ":" in host else f"{host}:{port_base + off}"
        out[ex] = {"rest": f"http://{hostport}", "ws": f"ws://{hostport}"}
    return out


ENDPOINT_MODES = ("live", "sim")
DEFAULT_CONFIG_FILE = "p9.toml"


@dataclass(frozen=True)
class Settings:
    endpoints: str = "live"
    rest_urls: dict[str, str] = field(default_factory=dict)
    ws_urls: dict[str, str] = field(default_factory=dict)
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("data")
    symbols: tuple[str, ...] = SYMBOLS
    exchanges: tuple[str, ...] = EXCHANGES
    timeframes: tuple[str, ...] = TIMEFRAMES
    candles: int = 1000

    def rest_url(self, exchange: str) -> str:
        return self.rest_urls[exchange]

    def ws_url(self, exchange: str) -> str:
        return self.ws_urls[exchange]

    @property
    def history_dir(self) -> Path:
        return self.data_dir / "history"

    @property
    def context_dir(self) -> Path:
        return self.data_dir / "context"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def parse_list(value: str | Iterable[str] | None, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Parse ``"btc,eth"`` (or a list) into canonical names, checking each against ``valid``.

    Returns the names in the canonical order of ``valid`` without duplicates, so that
    ``--timeframes 1m,1d`` and ``--timeframes 1d,1m`` mean the same thing.
    """
    if value is None:
        return valid
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip().lower() for v in items if str(v).strip()]
    if not names:
        raise ConfigError(f"no {what} given; valid {what}: {', '.join(valid)}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        label = what[:-1] if what.endswith("s") else what
        raise ConfigError(
            f"unknown {label} {', '.join(repr(u) for u in unknown)}; valid {what}: {', '.join(valid)}"
        )
    wanted = set(names)
    return tuple(v for v in valid if v in wanted)


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(
            f"{name}={url!r} is not a base URL; expected {' or '.join(s + '://HOST[:PORT]' for s in schemes)}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{name}={url!r}: {exc}") from None
    return url.rstrip("/")


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        path = Path(os.environ.get("P9_CONFIG", DEFAULT_CONFIG_FILE))
        if not path.exists():
            return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


_KEYS = ("endpoints", "redis_url", "data_dir", "symbols", "exchanges", "timeframes", "candles")


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Settings:
    """Build settings from flags (``None`` = not given), ``P9_*`` variables and ``p9.toml``.

    Flag keys: the ``Settings`` field names plus ``{exchange}_rest_url`` / ``{exchange}_ws_url``.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    toml = _read_toml(config_path)

    def pick(key: str) -> Any:
        if key in flags:
            return flags[key]
        ekey = "P9_" + key.upper()
        if env.get(ekey, "") != "":
            return env[ekey]
        return toml.get(key)

    raw = {k: pick(k) for k in _KEYS}
    endpoints = str(raw["endpoints"] or "live").lower()
    if endpoints not in ENDPOINT_MODES:
        raise ConfigError(f"P9_ENDPOINTS={endpoints!r} is not valid; valid values: live, sim")
    base = LIVE_ENDPOINTS if endpoints == "live" else sim_endpoints()
    rest_urls, ws_urls = {}, {}
    for ex in EXCHANGES:
        for kind, target, schemes in (("rest", rest_urls, ("http", "https")), ("ws", ws_urls, ("ws", "wss"))):
            key = f"{ex}_{kind}_url"
            value = pick(key)
            name = f"P9_{key.upper()}"
            target[ex] = _check_url(name, str(value), schemes) if value else base[ex][kind]

    candles_raw = raw["candles"] if raw["candles"] is not None else 1000
    try:
        candles = int(candles_raw)
    except (TypeError, ValueError):
        raise ConfigError(f"candles={candles_raw!r} is not a whole number") from None
    if not 1 <= candles <= 100_000:
        raise ConfigError(f"candles={candles} is out of range; valid: 1..100000")

    redis_url = str(raw["redis_url"] or Settings.redis_url)
    if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"P9_REDIS_URL={redis_url!r} is not a redis:// URL")

    return Settings(
        endpoints=endpoints,
        rest_urls=rest_urls,
        ws_urls=ws_urls,
        redis_url=redis_url,
        data_dir=Path(raw["data_dir"] or "data"),
        symbols=parse_list(raw["symbols"], SYMBOLS, "symbols"),
        exchanges=parse_list(raw["exchanges"], EXCHANGES, "exchanges"),
        timeframes=parse_list(raw["timeframes"], TIMEFRAMES, "timeframes"),
        candles=candles,
    )
