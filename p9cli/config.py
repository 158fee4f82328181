"""Settings: CLI flags > ``P9_*`` environment > ``p9.toml`` > defaults, validated with clear errors.

Every invalid value raises :class:`ConfigError` whose message is one line that names where the
value came from (``--endpoints``, ``P9_ENDPOINTS`` or ``endpoints in p9.toml``) and lists the
valid values; the CLI prints it and exits with code 2. The config file (``./p9.toml`` or the
file ``P9_CONFIG`` names) is always checked: an unknown key, a table or a missing
``P9_CONFIG`` file is an error. A value is checked only when the command uses it
(``uses=``): ``p9 analyze`` does not refuse a bad ``P9_ENDPOINTS`` it never reads.

The command line passes what the user typed as a typed :class:`SettingsFlags`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
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
class SettingsFlags:
    """What the command line said; ``None``: not given. The field names are the settings' keys
    (also the ``p9.toml`` keys, and ``P9_`` + the upper-case key in the environment)."""

    endpoints: str | None = None
    binance_rest_url: str | None = None
    binance_ws_url: str | None = None
    bybit_rest_url: str | None = None
    bybit_ws_url: str | None = None
    okx_rest_url: str | None = None
    okx_ws_url: str | None = None
    data_dir: str | Path | None = None
    symbols: str | Sequence[str] | None = None
    exchanges: str | Sequence[str] | None = None
    timeframes: str | Sequence[str] | None = None
    candles: int | str | None = None
    redis_url: str | None = None
    redis_probe: str | None = None
    worker_id: str | None = None


#: Every settings key (flag field, ``P9_*`` variable without the prefix, ``p9.toml`` key).
CONFIG_KEYS: tuple[str, ...] = tuple(f.name for f in fields(SettingsFlags))


class Use(StrEnum):
    """The settings a command can use: ``load_settings(uses=...)`` reads and checks only these.
    ``REST_URLS`` / ``WS_URLS`` include ``endpoints`` and the per-exchange URL overrides."""

    REST_URLS = "rest_urls"
    WS_URLS = "ws_urls"
    DATA_DIR = "data_dir"
    SYMBOLS = "symbols"
    EXCHANGES = "exchanges"
    TIMEFRAMES = "timeframes"
    CANDLES = "candles"
    REDIS_URL = "redis_url"  # with redis_probe
    WORKER_ID = "worker_id"


ALL_USES: frozenset[Use] = frozenset(Use)

DEFAULT_CANDLES = 1000
DEFAULT_REDIS_PROBE = "127.0.0.1:6379"
MAX_CANDLES = 100_000
WORKER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@dataclass(frozen=True)
class Settings:
    """Validated settings. Fields a command did not ask for (``uses``) hold their defaults."""

    endpoints: str = "live"
    rest_urls: dict[str, str] = field(default_factory=dict)
    ws_urls: dict[str, str] = field(default_factory=dict)
    #: None: not configured (the live half uses a Redis answering at ``redis_probe``, or
    #: starts its own)
    redis_url: str | None = None
    #: HOST:PORT where an unconfigured live half looks for a local Redis
    redis_probe: str = DEFAULT_REDIS_PROBE
    #: None: not configured (the live half derives one from host and process)
    worker_id: str | None = None
    data_dir: Path = Path("data")
    symbols: tuple[str, ...] = SYMBOLS
    exchanges: tuple[str, ...] = EXCHANGES
    timeframes: tuple[str, ...] = TIMEFRAMES
    candles: int = DEFAULT_CANDLES

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


class _Value:
    """A setting's raw value and where it came from (for the error message)."""

    __slots__ = ("key", "value", "origin")

    def __init__(self, key: str, value: Any, origin: str):
        self.key = key
        self.value = value
        self.origin = origin  # "flag", "env", a config file path, or "" (default)

    @property
    def name(self) -> str:
        """How the user wrote the setting: ``--data-dir``, ``P9_DATA_DIR``, ``data_dir in FILE``."""
        if self.origin == "flag":
            return "--" + self.key.replace("_", "-")
        if self.origin == "env":
            return "P9_" + self.key.upper()
        if self.origin:
            return f"{self.key} in {self.origin}"
        return self.key

    @property
    def shown(self) -> str:
        """The setting with its value: ``--endpoints 'x'``, ``P9_ENDPOINTS='x'``, ``endpoints = 'x' in FILE``."""
        if self.origin == "flag":
            return f"{self.name} {self.value!r}"
        if self.origin == "env":
            return f"{self.name}={self.value!r}"
        if self.origin:
            return f"{self.key} = {self.value!r} in {self.origin}"
        return f"{self.key} {self.value!r}"


def _check_url(v: _Value, schemes: tuple[str, ...]) -> str:
    url = _text(v).strip()
    expected = " or ".join(s + "://HOST[:PORT]" for s in schemes)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for an unclosed [
        raise ConfigError(f"{v.shown} is not a base URL ({exc}); expected {expected}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{v.shown} is not a base URL; expected {expected}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{v.shown}: {exc}") from None
    if parts.path.strip("/") or parts.query or parts.fragment:
        extra = url[len(f"{parts.scheme}://{parts.netloc}") :]
        raise ConfigError(
            f"{v.shown} has a path ({extra}); give only {expected}: p9 appends each exchange's "
            f"own API paths to it"
        )
    return url.rstrip("/")


def _config_file(config_path: Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read: ``config_path``, else ``P9_CONFIG``, else ``./p9.toml`` when it
    exists. A file named explicitly must exist."""
    if config_path is not None:
        path, shown = Path(config_path), f"config file {str(config_path)!r}"
    elif env.get("P9_CONFIG", "") != "":
        path, shown = Path(env["P9_CONFIG"]), f"P9_CONFIG={env['P9_CONFIG']!r}"
    else:
        path = Path(DEFAULT_CONFIG_FILE)
        return path if path.is_file() else None
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "names no file"
        raise ConfigError(
            f"{shown} {problem}; give a TOML file of top-level keys ({', '.join(CONFIG_KEYS)}) "
            f"or unset it to read ./{DEFAULT_CONFIG_FILE}"
        )
    return path


def _read_toml(path: Path | None) -> dict[str, Any]:
    """The file's settings; an unknown key or a table is an error (it would be ignored)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML: {' '.join(str(exc).split())}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    valid = f"valid keys: {', '.join(CONFIG_KEYS)}"
    for key, value in doc.items():
        if isinstance(value, dict):
            raise ConfigError(
                f"config file {str(path)!r} has a table [{key}]; p9 reads top-level keys only; {valid}"
            )
        if key not in CONFIG_KEYS:
            raise ConfigError(f"config file {str(path)!r} has an unknown key {key!r}; {valid}")
    return doc


def _text(v: _Value) -> str:
    """A setting that must be a string (a TOML number or list is refused, not str()-ed)."""
    if not isinstance(v.value, str | Path):
        raise ConfigError(f"{v.shown} is not a string")
    return str(v.value)


def _list(v: _Value, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    if v.value is None:
        return valid
    if not isinstance(v.value, str | list | tuple) or not all(
        isinstance(x, str) for x in ([v.value] if isinstance(v.value, str) else v.value)
    ):
        raise ConfigError(f"{v.shown} is not a comma-separated list; valid {what}: {', '.join(valid)}")
    try:
        return parse_list(v.value, valid, what)
    except ConfigError as exc:
        raise ConfigError(f"{v.name}: {exc}") from None


def _candles(v: _Value) -> int:
    if v.value is None:
        return DEFAULT_CANDLES
    if isinstance(v.value, bool):
        raise ConfigError(f"{v.shown} is not a whole number")
    try:
        n = int(v.value)
    except (TypeError, ValueError):
        raise ConfigError(f"{v.shown} is not a whole number") from None
    if isinstance(v.value, float) and v.value != n:
        raise ConfigError(f"{v.shown} is not a whole number")
    if not 1 <= n <= MAX_CANDLES:
        raise ConfigError(f"{v.shown} is out of range; valid: 1..{MAX_CANDLES}")
    return n


def load_settings(
    flags: SettingsFlags | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    *,
    uses: Iterable[Use | str] = ALL_USES,
) -> Settings:
    """Build settings from ``flags`` (``None`` = not given), ``P9_*`` variables (``env``,
    default ``os.environ``) and the config file (``config_path``, else ``P9_CONFIG``, else
    ``./p9.toml`` if present). Only the settings named in ``uses`` are read and checked; the
    others keep their defaults. A mapping's keys must be :class:`SettingsFlags` fields."""
    if flags is None:
        flags = SettingsFlags()
    elif not isinstance(flags, SettingsFlags):
        flags = SettingsFlags(**flags)  # an unknown key is a TypeError, never silently dropped
    try:
        uses = frozenset(Use(u) for u in uses)
    except ValueError as exc:
        raise ValueError(f"{exc}; valid: {', '.join(Use)}") from None
    env = os.environ if env is None else env
    path = _config_file(config_path, env)
    toml = _read_toml(path)

    def pick(key: str) -> _Value:
        value = getattr(flags, key)
        if value is not None:
            return _Value(key, value, "flag")
        ekey = "P9_" + key.upper()
        if env.get(ekey, "") != "":
            return _Value(key, env[ekey], "env")
        if key in toml:
            return _Value(key, toml[key], str(path))
        return _Value(key, None, "")

    out: dict[str, Any] = {}
    if uses & {Use.REST_URLS, Use.WS_URLS}:
        mode = pick("endpoints")
        endpoints = (_text(mode) if mode.value is not None else "live").strip().lower()
        if endpoints not in ENDPOINT_MODES:
            raise ConfigError(f"{mode.shown} is not valid; valid values: {', '.join(ENDPOINT_MODES)}")
        out["endpoints"] = endpoints
        base = LIVE_ENDPOINTS if endpoints == "live" else sim_endpoints()
        for kind, schemes in (("rest", ("http", "https")), ("ws", ("ws", "wss"))):
            if (Use.REST_URLS if kind == "rest" else Use.WS_URLS) not in uses:
                continue
            urls = {}
            for ex in EXCHANGES:
                v = pick(f"{ex}_{kind}_url")
                if v.value is None:
                    urls[ex] = base[ex][kind]
                    continue
                if not _text(v).strip():
                    raise ConfigError(f"{v.name} is empty; leave it out for the {endpoints} URL")
                urls[ex] = _check_url(v, schemes)
            out[f"{kind}_urls"] = urls
    if Use.DATA_DIR in uses:
        v = pick("data_dir")
        if v.value is not None:
            text = _text(v)
            if not text.strip():
                raise ConfigError(f"{v.name} is empty; give a directory (default: ./data)")
            out["data_dir"] = Path(text)
    if Use.SYMBOLS in uses:
        out["symbols"] = _list(pick("symbols"), SYMBOLS, "symbols")
    if Use.EXCHANGES in uses:
        out["exchanges"] = _list(pick("exchanges"), EXCHANGES, "exchanges")
    if Use.TIMEFRAMES in uses:
        out["timeframes"] = _list(pick("timeframes"), TIMEFRAMES, "timeframes")
    if Use.CANDLES in uses:
        out["candles"] = _candles(pick("candles"))
    if Use.REDIS_URL in uses:
        v = pick("redis_url")
        if v.value is not None:
            url = _text(v).strip()
            # the value is not repeated in the message: a Redis URL may carry a password
            expected = "expected redis://HOST[:PORT][/DB], rediss:// or unix://"
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
            except ValueError:  # an unclosed [ of an IPv6 host, a bad port (no text: it may hold a secret)
                raise ConfigError(f"{v.name} is not a Redis URL (bad host or port); {expected}") from None
            if parts.scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(f"{v.name} is not a Redis URL; {expected}")
            out["redis_url"] = url
        v = pick("redis_probe")
        if v.value is not None:
            probe = _text(v).strip()
            host, sep, port = probe.rpartition(":")
            if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"{v.shown} is not HOST:PORT (e.g. {DEFAULT_REDIS_PROBE})")
            out["redis_probe"] = probe
    if Use.WORKER_ID in uses:
        v = pick("worker_id")
        if v.value is not None:
            worker = _text(v).strip()
            if not WORKER_ID_PATTERN.fullmatch(worker):
                raise ConfigError(
                    f"{v.shown} is not a worker id; use 1-64 letters, digits and . _ : - (starting with a letter or digit)"
                )
            out["worker_id"] = worker
    return Settings(**out)
