"""`p9 status --json` and its exit codes against two real `p9 stream` workers (subprocesses, one per
exchange) fed by `p9 sim`, on a Redis server of this test's own.

Why a private server (not the suite's DB 9): the merged status, the worker keys and "nothing
publishing" are whole-database facts, and other tests run stream workers in DB 9 at the same
time; on its own server this test's verdicts cannot be changed by them. The sim, the fetched
history and the structure documents are the ones of the `stream_payloads` fixture (no second
fetch); the worker ids carry the test's `redis_token`.

Scenario: both workers live -> exit 0, both listed with their pairs; one worker stopped (Ctrl-C)
-> its pair is reported down ("no worker publishes it") -> exit 1; both stopped -> exit 3
(nothing publishing); unreachable Redis, password missing or wrong -> exit 3, one line, no secret.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import redis
from typer.testing import CliRunner

from p9cli.cli import app
from p9cli.publish.embedded import EmbeddedRedis, free_port

SYMBOL = "eth"
STARTUP_DEADLINE_S = 25.0


def _p9(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "p9cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def _status(url: str) -> tuple[int, dict | None, str]:
    """`p9 status --json` in this process (the real CLI app; no interpreter start per poll)."""
    r = CliRunner().invoke(app, ["status", "--json", "--redis-url", url])
    report = orjson.loads(r.stdout) if r.stdout.strip() else None
    return r.exit_code, report, r.stderr


def _start_worker(exchange: str, worker_id: str, url: str, rec) -> subprocess.Popen:
    env = {**os.environ, **rec.sim.env(), "P9_DATA_DIR": str(rec.data_dir)}
    env.pop("P9_REDIS_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "p9cli", "stream", "--exchanges", exchange, "--symbols", SYMBOL,
         "--worker-id", worker_id, "--redis-url", url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def test_status_json_exit_codes_two_workers(stream_payloads, redis_token):
    rec = stream_payloads
    server = EmbeddedRedis.start()
    url = f"redis://{server.host}:{server.port}/0"
    ids = {"binance": f"wa-{redis_token}", "okx": f"wb-{redis_token}"}
    procs = {ex: _start_worker(ex, wid, url, rec) for ex, wid in ids.items()}
    pairs = {ex: f"{ex}:{SYMBOL}usdt" for ex in ids}
    try:
        # 1. both live: exit 0, both workers with their pairs, every pair ok with a price
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        code, report, err = _status(url)
        while code != 0 and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs.values()), {ex: _stop(p) for ex, p in procs.items()}
            time.sleep(0.5)
            code, report, err = _status(url)
        assert code == 0, (report, err)
        assert report["health"] == "healthy" and report["exit_code"] == 0
        assert report["redis"]["ok"] and report["redis"]["ping_ms"] is not None and report["redis"]["version"]
        workers = {w["worker_id"]: w for w in report["workers"]}
        assert set(workers) == set(ids.values())
        for ex, wid in ids.items():
            assert workers[wid]["pairs"] == [pairs[ex]]
            assert workers[wid]["pid"] == procs[ex].pid
        by_pair = {p["pair"]: p for p in report["pairs"]}
        assert set(by_pair) == set(pairs.values())
        for ex, name in pairs.items():
            p = by_pair[name]
            assert p["worker"] == ids[ex] and p["health"] == "ok" and p["problems"] == []
            assert isinstance(p["price"], float) and p["price"] > 0
            assert p["trade_age_ms"] is not None and p["context_age_ms"] is not None

        # --follow --json (a real process): one report per second, messages/s (the worker's, or derived
        # from its message counter across the two reads);
        # Ctrl-C exits 0
        follow = subprocess.Popen([sys.executable, "-m", "p9cli", "status", "--follow", "--json", "--redis-url", url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        lines = [orjson.loads(follow.stdout.readline()) for _ in range(2)]
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0, follow.stderr.read()
        follow.stdout.close()
        follow.stderr.close()
        assert all(r["exit_code"] == 0 for r in lines), lines
        rates = [p["messages_per_s"] for p in lines[-1]["pairs"]]
        assert any(v is not None and v > 0 for v in rates), rates

        # 2. the okx worker stops (Ctrl-C, clean exit: its worker key is deleted at once): its pair
        # is down, named in words; the binance pair stays ok; exit 1
        _stop(procs["okx"])
        code, report, err = _status(url)
        assert code == 1, (report, err)
        assert report["health"] == "degraded"
        assert [w["worker_id"] for w in report["workers"]] == [ids["binance"]]
        by_pair = {p["pair"]: p for p in report["pairs"]}
        down = by_pair[pairs["okx"]]
        assert down["health"] == "down" and down["worker"] is None
        assert down["problems"][0].startswith("no worker publishes it")
        assert by_pair[pairs["binance"]]["health"] == "ok", by_pair[pairs["binance"]]

        # 3. both stopped: nothing publishing, exit 3 (the leftover pair keys are listed as down)
        _stop(procs["binance"])
        code, report, err = _status(url)
        assert code == 3, (report, err)
        assert report["health"] == "nothing publishing" and report["workers"] == []
        assert {p["pair"] for p in report["pairs"]} == set(pairs.values())

        # 4. a Redis that needs a password: missing / wrong -> one line without the secret, exit 3
        client = redis.Redis.from_url(url)
        client.config_set("requirepass", "s3cret-pw")
        client.close()
        r = _p9("status", "--json", "--redis-url", url)
        assert r.returncode == 3 and r.stdout == ""
        assert r.stderr.count("\n") == 1 and "requires authentication" in r.stderr, r.stderr
        bad = f"redis://:wrong-pw@{server.host}:{server.port}/0"
        r = _p9("status", "--redis-url", bad)
        assert r.returncode == 3 and r.stdout == ""
        assert r.stderr.count("\n") == 1 and "refused authentication" in r.stderr, r.stderr
        assert "wrong-pw" not in r.stderr and "***" in r.stderr
        code, report, err = _status(f"redis://:s3cret-pw@{server.host}:{server.port}/0")
        assert code == 3 and report["health"] == "nothing publishing", err
    finally:
        for p in procs.values():
            _stop(p)
        server.stop()

    # 5. no Redis at all: a configured URL that does not answer, and nothing on the probe address
    # (status never starts a server) -> exit 3, one line, no traceback
    dead = free_port("127.0.0.1")
    r = _p9("status", "--json", "--redis-url", f"redis://127.0.0.1:{dead}/0")
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "not reachable" in r.stderr and "Traceback" not in r.stderr, r.stderr
    env = {k: v for k, v in os.environ.items() if k != "P9_REDIS_URL"}
    env["P9_REDIS_PROBE"] = f"127.0.0.1:{dead}"
    r = _p9("status", env=env)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and f"no Redis answers on 127.0.0.1:{dead}" in r.stderr, r.stderr
