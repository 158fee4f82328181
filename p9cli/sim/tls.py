"""``p9 sim --tls``: a local certificate authority, a server certificate for the simulator's
host, and listeners that speak TLS and plain text on the same port.

Some clients refuse a plain ``ws://`` address (cryptofeed: "Invalid address, must be a wss
address"; python-okx always passes an ``ssl=`` context, which ``websockets`` refuses for
``ws://``). With ``--tls`` every exchange port also answers ``https://`` and ``wss://``, so
such a client needs only its base URL changed and the simulator's CA trusted.

Files (in ``--tls-dir``, default ``$XDG_CACHE_HOME/p9/sim-tls`` or ``~/.cache/p9/sim-tls``):

* ``ca.pem`` — the simulator's certificate authority (trust this one);
* ``bundle.pem`` — the system's CA bundle plus ``ca.pem``: for ``SSL_CERT_FILE`` /
  ``REQUESTS_CA_BUNDLE``, so the same shell still reaches real HTTPS sites;
* ``cert.pem`` / ``key.pem`` — the server certificate (SANs: the host, 127.0.0.1, ::1,
  localhost) and its key (mode 0600).

They are generated at start when missing, expired within a day, or not valid for the host, and
reused otherwise, so a restarted simulator keeps the trust its clients were given.

Why one port for both: a connection's first byte tells a TLS ClientHello (``0x16``) from an
HTTP request line; each accepted socket is peeked and handed to the same aiohttp server with
or without TLS. Existing ``http://``/``ws://`` users are unaffected. (The real exchanges speak
only TLS; this is a convenience of the simulator, not a protocol feature.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: how long to wait for a client's first byte before giving up on the connection
FIRST_BYTE_TIMEOUT_S = 10.0
TLS_HANDSHAKE_RECORD = 0x16
CERT_DAYS = 365
CA_DAYS = 3650


def default_tls_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "p9" / "sim-tls"


@dataclass(frozen=True)
class TlsFiles:
    directory: Path
    ca: Path
    bundle: Path
    cert: Path
    key: Path
    generated: bool  # False: reused from an earlier start

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the simulator (for tests and scripts)."""
        return ssl.create_default_context(cafile=str(self.ca))

    def trust_lines(self) -> list[str]:
        """How to trust the simulator, as shell lines."""
        return [
            f"export SSL_CERT_FILE={self.bundle}        # Python ssl: websockets, aiohttp, httpx, urllib",
            f"export REQUESTS_CA_BUNDLE={self.bundle}   # requests (ccxt, pybit, python-okx REST, ...)",
            f"export NODE_EXTRA_CA_CERTS={self.ca}      # Node.js",
            f"# or import {self.ca} (the simulator's CA) into your client's trust store",
        ]


def san_names(host: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the server certificate must cover for ``host``."""
    dns = ["localhost"]
    ips = ["127.0.0.1", "::1"]
    if host in ("", "0.0.0.0", "::"):
        name = socket.gethostname()
        if name and name not in dns:
            dns.append(name)
        return dns, ips
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        if host not in dns:
            dns.append(host)
    else:
        if ip not in ips:
            ips.append(ip)
    return dns, ips


def ensure_tls_files(directory: Path | str | None, host: str) -> TlsFiles:
    """The simulator's CA and server certificate for ``host`` in ``directory`` (see the module
    docstring): reused when still good, generated otherwise."""
    d = Path(directory) if directory else default_tls_dir()
    d.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(d, d / "ca.pem", d / "bundle.pem", d / "cert.pem", d / "key.pem", generated=False)
    if _still_good(files, host):
        return files
    _generate(files, host)
    return TlsFiles(files.directory, files.ca, files.bundle, files.cert, files.key, generated=True)


def _still_good(files: TlsFiles, host: str) -> bool:
    from cryptography import x509

    if not all(p.exists() for p in (files.ca, files.bundle, files.cert, files.key)):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    if cert.not_valid_after_utc < soon:
        return False
    dns, ips = san_names(host)
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(dns) <= have_dns and set(ips) <= have_ips


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _system_bundle() -> bytes:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return Path(candidate).read_bytes()
    with contextlib.suppress(ImportError, OSError):
        import certifi

        return Path(certifi.where()).read_bytes()
    return b""


def _generate(files: TlsFiles, host: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p9 sim"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"p9 sim local CA {now:%Y-%m-%d %H:%M:%S}"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = san_names(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[-1] if len(dns) > 1 else host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    system = _system_bundle()
    _write(files.ca, ca_pem)
    _write(files.bundle, system + (b"" if not system or system.endswith(b"\n") else b"\n") + ca_pem)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(
        files.key,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )


class DualListener:
    """One listening socket; each accepted connection is served by ``protocol_factory`` over
    TLS (``ssl_context``) when its first byte opens a TLS handshake, in plain text otherwise."""

    def __init__(self, protocol_factory: Callable[[], asyncio.Protocol], ssl_context: ssl.SSLContext):
        self.protocol_factory = protocol_factory
        self.ssl_context = ssl_context
        self.sock: socket.socket | None = None
        self._task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()

    def bind(self, host: str, port: int) -> int:
        """Bind and listen (OSError as ``socket`` raises it); returns the port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=1024)
        self.sock.setblocking(False)
        return self.sock.getsockname()[1]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop(), name="p9-sim-tls-accept")

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    await asyncio.sleep(0.1)
                    continue
                raise
            task = loop.create_task(self._serve(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        readable = loop.create_future()
        fd = conn.fileno()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, FIRST_BYTE_TIMEOUT_S)
            first = conn.recv(1, socket.MSG_PEEK)
        except (TimeoutError, OSError):
            conn.close()
            return
        finally:
            loop.remove_reader(fd)
        if not first:
            conn.close()
            return
        tls = first[0] == TLS_HANDSHAKE_RECORD
        try:
            await loop.connect_accepted_socket(
                self.protocol_factory, conn, ssl=self.ssl_context if tls else None
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError):
            conn.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.sock is not None:
            self.sock.close()
            self.sock = None


__all__ = ["DualListener", "TlsFiles", "default_tls_dir", "ensure_tls_files", "san_names"]
