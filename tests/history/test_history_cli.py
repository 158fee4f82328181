"""``p9 fetch-history`` end to end, as cron runs it: a subprocess against the simulator."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from conftest import assert_file_matches_truth, counters

from p9cli.history.lock import LOCK_NAME
from p9cli.history.store import read_series, series_path
from p9cli.universe import EXCHANGES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def p9(handle, *args, wait=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("P9_")}
    env.update(handle.env())
    env["PYTHONPATH"] = ROOT
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p9cli",
        "fetch-history",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    if not wait:
        return proc
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    return proc.returncode, out.decode(), err.decode()


async def test_cron_run_is_plain_idempotent_and_exit_0(start_sim, tmp_path):
    handle = start_sim()
    args = ("--symbols", "btc", "--timeframes", "1h,1d", "--candles", "300", "--data-dir", str(tmp_path))
    code, out, err = await p9(handle, *args)
    assert code == 0, out + err
    assert err == ""
    assert "\x1b[" not in out  # no colour codes, no progress bars
    lines = out.splitlines()
    assert lines[0].endswith(
        f"fetch-history: incremental of 6 series (binance 2, bybit 2, okx 2) into {tmp_path}/history"
    )
    assert "fetch-history summary" in out and "6/6" in out
    for ex in EXCHANGES:
        for tf in ("1h", "1d"):
            assert_file_matches_truth(handle, tmp_path / "history", ex, "btc", tf, 300)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "history").rglob("*.parquet")}
    code, out, err = await p9(handle, *args)  # again at once: nothing new, nothing rewritten
    assert code == 0 and " 0 new candles" in out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "history").rglob("*.parquet")} == mtimes
    assert sorted(p.name for p in (tmp_path / "history").iterdir()) == sorted([LOCK_NAME, *EXCHANGES])


async def test_progress_mode_still_prints_the_summary(start_sim, tmp_path):
    handle = start_sim()
    code, out, err = await p9(
        handle,
        "--exchanges",
        "okx",
        "--symbols",
        "eth",
        "--timeframes",
        "4h",
        "--data-dir",
        str(tmp_path),
        "--progress",
    )
    assert code == 0, err
    assert "fetch-history summary" in out and "1/1" in out


async def test_overlapping_cron_runs_second_exits_75_and_first_completes(start_sim, tmp_path):
    handle = start_sim(faults={"all": {"latency_ms": 400}})
    args = ("--symbols", "sol", "--timeframes", "1h,4h,1d", "--candles", "200", "--data-dir", str(tmp_path))
    first = await p9(handle, *args, wait=False)
    lock = tmp_path / "history" / LOCK_NAME
    for _ in range(200):
        if lock.exists() and lock.read_text().strip():
            break
        await asyncio.sleep(0.05)
    code, out, err = await p9(handle, *args)
    assert code == 75
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "another fetch-history run" in lines[0] and f"pid {first.pid}" in lines[0]
    out1, err1 = await asyncio.wait_for(first.communicate(), 120)
    assert first.returncode == 0, out1.decode() + err1.decode()


async def test_kill_9_mid_run_leaves_every_file_readable_old_or_new(start_sim, tmp_path):
    handle = start_sim(faults={"all": {"latency_ms": 150}})
    args = ["--symbols", "btc", "--candles", "300", "--data-dir", str(tmp_path)]
    code, out, err = await p9(handle, *args)
    assert code == 0, out + err
    old = {p: read_series(p).open_time[-1] for p in (tmp_path / "history").rglob("*.parquet")}
    assert len(old) == 33
    handle.sim.clock.advance(2 * 86_400_000)  # two days later every series has new bars
    proc = await p9(handle, *args, "--full", wait=False)
    # kill while files are being replaced: once some (not all) series have been rewritten
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        changed = sum(
            1 for p, last in old.items() if p.stat().st_mtime_ns and read_series(p).open_time[-1] != last
        )
        if changed >= 3:
            break
        await asyncio.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    rewritten = 0
    for p, last in old.items():
        s = read_series(p)  # every file is readable
        ex, sym, tf = p.parent.parent.name, p.parent.name, p.stem
        assert s.open_time[-1] >= last
        rewritten += s.open_time[-1] != last
        assert_file_matches_truth(handle, tmp_path / "history", ex, sym, tf, 300)  # whole, exact
    assert 0 < rewritten < 33
    # the next run cleans up and completes (the killed run's lock died with it)
    code, out, err = await p9(handle, *args)
    assert code == 0, out + err
    for p, last in old.items():
        assert read_series(p).open_time[-1] > last
    assert not [p for p in (tmp_path / "history").rglob("*.tmp")]
    for ex in EXCHANGES:
        c = counters(handle, ex)
        assert c.get("limit.violations", 0) == 0 and c.get("limit.bans", 0) == 0
    assert series_path(tmp_path / "history", "okx", "btc", "1m").exists()
