"""Run `p9 sim` as a separate process and point well-known third-party clients at it.

Shared by the tests in this folder and by ``scripts/try_third_party_clients.py``.

The simulator runs in its own process, exactly as a user starts it (``python -m p9cli sim``),
so synchronous clients (ccxt, pybit, python-okx, binance-connector) can block freely and the
asynchronous ones (cryptofeed, binance-sdk-spot) run in the caller's event loop. Each client
is configured the one documented way its users point it at another host; nothing else about
the client is changed (where a client cannot reach a plain ``ws://`` URL at all, the helper
says so and applies the smallest shim, see ``python_okx_ws_public``).

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

    # -- URLs ------------------------------------------------------------------------------
    def port(self, exchange: str) -> int:
        return self.port_base + EXCHANGE_PORT_OFFSET[exchange]

    def rest_url(self, exchange: str) -> str:
        return f"http://{self.host}:{self.port(exchange)}"

    def ws_url(self, exchange: str) -> str:
        return f"ws://{self.host}:{self.port(exchange)}"

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
        args += self.extra_args
        if self.log_path is None:
            self.log_path = Path(f"/tmp/p9-thirdparty-sim-{self.port_base}.log")
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


def cryptofeed_class(exchange: str, sim: SimProcess, tls: TlsFrontDoor):
    """A subclass of cryptofeed's feed whose REST and WebSocket endpoints point at the sim.

    cryptofeed keeps the base URLs in the class attributes ``websocket_endpoints`` and
    ``rest_endpoints``; subclassing with rebased copies (paths, routes, filters unchanged) is
    the way its users redirect a feed. cryptofeed accepts only ``wss://`` addresses, so the
    WebSocket side goes through ``tls`` (a :class:`TlsFrontDoor`), whose CA is handed to
    ``websockets.connect`` through the endpoint ``options`` (cryptofeed passes them on).
    """
    import dataclasses

    from cryptofeed.exchanges import OKX, Binance, Bybit

    base = {"binance": Binance, "bybit": Bybit, "okx": OKX}[exchange]
    ctx = tls.client_context()
    ws = [
        dataclasses.replace(
            ep,
            address=_rebase(ep.address, tls.wss_url(exchange)),
            sandbox=None,
            options={**(ep.options or {}), "ssl": ctx},
        )
        for ep in base.websocket_endpoints
    ]
    rest = [
        dataclasses.replace(ep, address=_rebase(ep.address, sim.rest_url(exchange)), sandbox=None)
        for ep in base.rest_endpoints
    ]
    return type(f"Sim{base.__name__}", (base,), {"websocket_endpoints": ws, "rest_endpoints": rest})


# -- TLS in front of the simulator ------------------------------------------------------------
#
# Some clients refuse a plain ``ws://`` URL: cryptofeed's WSAsyncConn raises "Invalid address,
# must be a wss address", python-okx's WsPublicAsync always passes an ``ssl=`` context, which
# ``websockets`` rejects for ``ws://``. A user points them at `p9 sim` through a TLS front
# door: a local TLS-terminating TCP relay with a certificate the client trusts. This one makes
# a throw-away CA and a certificate for 127.0.0.1 (``cryptography``, which ccxt already needs).


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem) in ``directory``: a CA and a server certificate for ``host``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p9 sim test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


class TlsFrontDoor:
    """``wss://host:P`` -> ``ws://host:<sim port>`` for each exchange, relayed byte for byte
    by a daemon thread with its own event loop."""

    def __init__(self, sim: SimProcess, directory: Path | None = None):
        import tempfile

        self.sim = sim
        self.directory = directory or Path(tempfile.mkdtemp(prefix="p9-thirdparty-tls-"))
        self.ca_file, self.cert_file, self.key_file = make_tls_files(self.directory, sim.host)
        self.ports: dict[str, int] = {}
        self._loop = None
        self._thread = None
        self._servers: list = []

    def client_context(self):
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx

    def wss_url(self, exchange: str) -> str:
        return f"wss://{self.sim.host}:{self.ports[exchange]}"

    def start(self) -> TlsFrontDoor:
        import asyncio
        import ssl
        import threading

        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        ready = threading.Event()
        errors: list[BaseException] = []

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        def relay_to(port: int):
            async def handle(client_reader, client_writer):
                try:
                    up_reader, up_writer = await asyncio.open_connection(self.sim.host, port)
                except OSError:
                    client_writer.close()
                    return
                await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

            return handle

        async def main():
            try:
                for exchange in EXCHANGE_PORT_OFFSET:
                    server = await asyncio.start_server(
                        relay_to(self.sim.port(exchange)), self.sim.host, 0, ssl=server_ctx
                    )
                    self._servers.append(server)
                    self.ports[exchange] = server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
            ready.set()

        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            if not errors:
                self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="p9-thirdparty-tls", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        def shutdown():
            for server in self._servers:
                server.close()
            loop.stop()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(5)
