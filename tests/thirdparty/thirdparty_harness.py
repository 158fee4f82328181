"""Run `p9 sim` as a separate process and point well-known third-party clients at it.

Shared by the tests in this folder and by ``scripts/try_third_party_clients.py``.

The simulator runs in its own process, exactly as a user starts it (``python -m p9cli sim``),
so synchronous clients (ccxt, pybit, python-okx, binance-connector) can block freely and the
asynchronous ones (cryptofeed, binance-sdk-spot) run in the caller's event loop. Each client
is configured the one documented way its users point it at another host; nothing else about
the client is changed. Clients that refuse a plain ``ws://`` URL (cryptofeed, python-okx's
WebSocket) use the simulator's own TLS (``p9 sim --tls``: the same ports also speak
``wss://``/``https://``), trusting its CA the way a user does: ``SSL_CERT_FILE``.

Ground truth comes from the simulator's control API (``/truth/...`` on the control port).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXCHANGE_PORT_OFFSET = {"binance": 1, "bybit": 2, "okx": 3}
#: The canonical universe as the exchanges spell it (written here, not imported: the tests
#: must fail if the simulator and the real codes drift apart).
SYMBOLS = ("btc", "eth", "sol", "bnb", "xrp")
EXCHANGE_CODE = {
    "binance": {s: f"{s.upper()}USDT" for s in SYMBOLS},
    "bybit": {s: f"{s.upper()}USDT" for s in SYMBOLS},
    "okx": {s: f"{s.upper()}-USDT" for s in SYMBOLS},
}
CCXT_SYMBOL = {s: f"{s.upper()}/USDT" for s in SYMBOLS}
TF_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_base(host: str = "127.0.0.1", start: int = 18800, span: int = 4) -> int:
    """A base port B such that B..B+span-1 are free (B = control API, B+1..B+3 = exchanges)."""
    base = start + (os.getpid() % 200) * 10
    for _ in range(400):
        if all(port_is_free(host, base + i) for i in range(span)):
            return base
        base += 10
        if base > 60000:
            base = 20000
    raise RuntimeError("no free port range for the simulator")


class SimNotReady(RuntimeError):
    pass


@dataclass
class SimProcess:
    """`p9 sim` in a child process, with the URLs a client needs and a control-API reader."""

    seed: int = 9
    speed: float = 1.0
    start_ms: int | None = None
    host: str = "127.0.0.1"
    port_base: int = 0
    extra_args: list[str] = field(default_factory=list)
    startup_timeout: float = 90.0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    #: with a folder: ``--tls --tls-dir <folder>/tls`` and the log in it (tests pass tmp_path)
    workdir: Path | None = None
    tls: bool = False

    # -- URLs ------------------------------------------------------------------------------
    def port(self, exchange: str) -> int:
        return self.port_base + EXCHANGE_PORT_OFFSET[exchange]

    def rest_url(self, exchange: str) -> str:
        return f"http://{self.host}:{self.port(exchange)}"

    def ws_url(self, exchange: str) -> str:
        return f"ws://{self.host}:{self.port(exchange)}"

    def wss_url(self, exchange: str) -> str:
        """The same port over TLS (``tls=True``)."""
        return f"wss://{self.host}:{self.port(exchange)}"

    def https_url(self, exchange: str) -> str:
        return f"https://{self.host}:{self.port(exchange)}"

    @property
    def tls_dir(self) -> Path:
        assert self.workdir is not None, "tls needs a workdir"
        return self.workdir / "tls"

    @property
    def ca_file(self) -> Path:
        """The simulator's CA (``--tls``)."""
        return self.tls_dir / "ca.pem"

    @property
    def bundle_file(self) -> Path:
        """The system CAs plus the simulator's: what ``SSL_CERT_FILE`` should name."""
        return self.tls_dir / "bundle.pem"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.port_base}"

    # -- process ---------------------------------------------------------------------------
    def start(self) -> SimProcess:
        if not self.port_base:
            self.port_base = free_port_base(self.host)
        args = [
            sys.executable,
            "-m",
            "p9cli",
            "sim",
            "--host",
            self.host,
            "--port-base",
            str(self.port_base),
            "--seed",
            str(self.seed),
            "--speed",
            str(self.speed),
        ]
        if self.start_ms is not None:
            args += ["--start", str(self.start_ms)]
        if self.tls:
            args += ["--tls", "--tls-dir", str(self.tls_dir)]
        args += self.extra_args
        if self.log_path is None:
            folder = self.workdir or Path(tempfile.gettempdir())
            folder.mkdir(parents=True, exist_ok=True)
            self.log_path = folder / f"p9-thirdparty-sim-{self.port_base}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ)
        env.pop("P9_DEBUG", None)
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        probes = [
            f"{self.rest_url('binance')}/api/v3/ping",
            f"{self.rest_url('bybit')}/v5/market/time",
            f"{self.rest_url('okx')}/api/v5/public/time",
        ]
        pending = list(probes)
        while pending:
            if self.proc is not None and self.proc.poll() is not None:
                raise SimNotReady(f"p9 sim exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise SimNotReady(f"p9 sim not ready after {self.startup_timeout:.0f} s: {self.log_tail()}")
            url = pending[0]
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        pending.pop(0)
                        continue
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)

    def log_tail(self, n: int = 2000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.returncode == 0 and self.log_path is not None:  # a clean stop: the log is not needed
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control API -----------------------------------------------------------------------
    def control(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.control_url}{path}" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.loads(resp.read(), parse_float=Decimal)

    def control_post(self, path: str, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.control_url}{path}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read(), parse_float=Decimal)

    # -- ground truth (the control API formats values exactly as the exchange does) --------
    def now_ms(self) -> int:
        return int(self.control("/health")["now_ms"])

    def truth_candles(self, exchange: str, symbol: str, timeframe: str, start: int, end: int) -> list[tuple]:
        """``[(open_time, open, high, low, close, volume), ...]`` (Decimals) for bars opening in
        ``[start, end]``; the newest bar is the forming one."""
        rows: list[tuple] = []
        cursor = start
        while cursor <= end:
            doc = self.control(
                "/truth/candles", exchange=exchange, symbol=symbol, interval=timeframe, start=cursor, end=end
            )
            batch = doc["candles"]
            if not batch:
                break
            rows += [
                (
                    c["open_time"],
                    Decimal(c["open"]),
                    Decimal(c["high"]),
                    Decimal(c["low"]),
                    Decimal(c["close"]),
                    Decimal(c["volume"]),
                )
                for c in batch
            ]
            cursor = batch[-1]["open_time"] + 1
        return rows

    def truth_candle_rows(
        self, exchange: str, symbol: str, timeframe: str, start: int, end: int
    ) -> list[dict[str, Any]]:
        """The true bars as the control API gives them: named fields, ``closed`` and the
        exchange's exact REST ``row``."""
        doc = self.control(
            "/truth/candles", exchange=exchange, symbol=symbol, interval=timeframe, start=start, end=end
        )
        return doc["candles"]

    def truth_trades(self, exchange: str, symbol: str, start: int, end: int) -> dict[str, Any]:
        """Every trade with ``start <= time < end`` (``trades``) and whether the feed has sent
        that whole range (``sent``)."""
        return self.control("/truth/trades", exchange=exchange, symbol=symbol, start=start, end=end)

    def truth_book(
        self, exchange: str, symbol: str, update_id: int | None = None, depth: int | None = None
    ) -> dict[str, Any]:
        """The true book (``update_id`` in the engine's id space: Binance ``u``/``lastUpdateId``,
        Bybit ``seq``, OKX ``seqId``), levels as ``(Decimal price, Decimal qty)``."""
        doc = self.control("/truth/book", exchange=exchange, symbol=symbol, update_id=update_id)
        bids = [(Decimal(p), Decimal(q)) for p, q in doc["bids"]]
        asks = [(Decimal(p), Decimal(q)) for p, q in doc["asks"]]
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return {"update_id": int(doc["update_id"]), "bids": bids, "asks": asks}

    def assert_trades_equal_truth(
        self, exchange: str, symbol: str, got: list[tuple], start: int | None = None, end: int | None = None
    ) -> int:
        """``got`` = ``[(time_ms, id_str, Decimal price, Decimal qty, "buy"|"sell"), ...]`` as a
        client received them, in arrival order: no duplicate, in time order, and within the
        window ``[start, end)`` (simulated ms, a span during which the client was surely
        subscribed) exactly the simulator's trades: same ids, times, prices, sizes and taker
        sides, nothing missing, nothing extra. Without a window, the span from the second
        received millisecond to the last one is used. Returns the number compared."""
        assert len({t[1] for t in got}) == len(got), f"{exchange} {symbol}: duplicate trade ids"
        assert [t[0] for t in got] == sorted(t[0] for t in got), (
            f"{exchange} {symbol}: trades out of time order"
        )
        if start is None or end is None:
            assert got, f"{exchange} {symbol}: no trade received"
            start, end = got[0][0] + 1, got[-1][0] + 1
        doc = self.truth_trades(exchange, symbol, start, end)
        assert doc["sent"], f"{exchange} {symbol}: the simulator says [{start}, {end}) was not sent"
        truth = [
            (t["time"], str(t["id"]), Decimal(t["price"]), Decimal(t["qty"]), t["taker_side"])
            for t in doc["trades"]
        ]
        window = [t for t in got if start <= t[0] < end]
        assert len(window) == len(truth), (
            f"{exchange} {symbol}: {len(window)} trades received in [{start}, {end}), {len(truth)} true"
        )
        assert window == truth, f"{exchange} {symbol}: received trades differ from the true trades"
        return len(window)

    def book_state_between(
        self, exchange: str, symbol: str, bids: list, asks: list, first_id: int, last_id: int
    ) -> int | None:
        """The engine update id in ``[first_id, last_id]`` whose top levels equal ``bids``/``asks``
        (for books without an update id on the wire, e.g. OKX REST), or None."""
        depth = max(len(bids), len(asks))
        for uid in range(last_id, first_id - 1, -1):
            try:
                truth = self.truth_book(exchange, symbol, update_id=uid, depth=depth)
            except urllib.error.HTTPError:
                return None
            if truth["bids"][: len(bids)] == bids and truth["asks"][: len(asks)] == asks:
                return uid
        return None


@contextlib.contextmanager
def running_sim_process(**kwargs: Any):
    sim = SimProcess(**kwargs)
    try:
        sim.start()
        yield sim
    finally:
        sim.stop()


# -- where each client keeps its base URLs ----------------------------------------------------


def _rebase(url: str, new_base: str) -> str:
    """``https://api.binance.com/api/v3`` -> ``http://127.0.0.1:18801/api/v3`` (path kept)."""
    parts = urllib.parse.urlsplit(url)
    new = urllib.parse.urlsplit(new_base)
    return urllib.parse.urlunsplit((new.scheme, new.netloc, parts.path, parts.query, parts.fragment))


def ccxt_client(exchange: str, sim: SimProcess, spot_only: bool = True, **config: Any):
    """A ccxt (sync) client whose every REST base URL points at the simulator.

    ccxt's documented knob is ``exchange.urls['api']``; each entry keeps its path. A spot-only
    user also narrows ``options['fetchMarkets']['types']`` to ``['spot']`` (ccxt's default
    loads derivatives markets from other hosts too: Binance fapi/dapi, Bybit linear/inverse/
    option, OKX FUTURES/SWAP/OPTION).
    """
    import ccxt

    options = dict(config.pop("options", {}))
    if spot_only:
        options["fetchMarkets"] = {"types": ["spot"]}
    client = getattr(ccxt, exchange)({"options": options, "timeout": 20_000, **config})
    base = sim.rest_url(exchange)
    api = client.urls["api"]
    for key, url in list(api.items()):
        if isinstance(url, str):
            api[key] = _rebase(url.replace("{hostname}", "example.invalid"), base)
    return client


def cryptofeed_class(exchange: str, sim: SimProcess):
    """A subclass of cryptofeed's feed whose REST and WebSocket endpoints point at the sim.

    cryptofeed keeps the base URLs in the class attributes ``websocket_endpoints`` and
    ``rest_endpoints``; subclassing with rebased copies (paths, routes, filters unchanged) is
    the way its users redirect a feed. cryptofeed accepts only ``wss://`` addresses, so the
    WebSocket side uses the simulator's TLS (``sim.tls``); the CA is trusted through
    ``SSL_CERT_FILE`` (``websockets`` builds its default context when it connects), the REST
    side stays on plain ``http://``.
    """
    import dataclasses

    from cryptofeed.exchanges import OKX, Binance, Bybit

    assert sim.tls, "cryptofeed needs wss://: start the simulator with tls=True"
    base = {"binance": Binance, "bybit": Bybit, "okx": OKX}[exchange]
    ws = [
        dataclasses.replace(ep, address=_rebase(ep.address, sim.wss_url(exchange)), sandbox=None)
        for ep in base.websocket_endpoints
    ]
    rest = [
        dataclasses.replace(ep, address=_rebase(ep.address, sim.rest_url(exchange)), sandbox=None)
        for ep in base.rest_endpoints
    ]
    return type(f"Sim{base.__name__}", (base,), {"websocket_endpoints": ws, "rest_endpoints": rest})
