"""``p9 fetch-history`` end to end, as cron runs it: a subprocess against the simulator."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from history_helpers import assert_file_matches_truth, counters

from p9cli.history.handover import RATE_STATE_NAME
from p9cli.history.lock import LOCK_NAME
from p9cli.store import read_series_file
from p9cli.universe import EXCHANGES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_series(path):
    return read_series_file(path).candles


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


async def test_cron_run_is_plain_idempotent_and_exit_0(shared_sim, tmp_path):
    handle = shared_sim
    args = ("--symbols", "btc", "--timeframes", "1h,1d", "--candles", "300", "--data-dir", str(tmp_path))
    code, out, err = await p9(handle, *args)
    assert code == 0, out + err
    assert err == ""
    assert "\x1b[" not in out  # no colour codes, no progress bars
    lines = out.splitlines()
    assert lines[0].endswith(
        f"fetch-history: first fetch of 6 series (binance 2, bybit 2, okx 2) into {tmp_path}/history"
    )
    assert "fetch-history summary" in out and "6/6" in out
    for ex in EXCHANGES:
        for tf in ("1h", "1d"):
            assert_file_matches_truth(handle, tmp_path / "history", ex, "btc", tf, 300)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "history").rglob("*.parquet")}
    code, out, err = await p9(handle, *args)  # again at once: nothing new, nothing rewritten
    assert code == 0 and " 0 new candles" in out
    assert "fetch-history: incremental of 6 series (binance 2, bybit 2, okx 2) into" in out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "history").rglob("*.parquet")} == mtimes
    names = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert names == sorted([LOCK_NAME, RATE_STATE_NAME, *EXCHANGES])


async def test_progress_mode_still_prints_the_summary(shared_sim, tmp_path):
    handle = shared_sim
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
    # 1000 candles: OKX needs 44 pages at 40 per 2 s, so the run is still busy after the first files
    args = ["--symbols", "btc", "--candles", "1000", "--data-dir", str(tmp_path)]
    code, out, err = await p9(handle, *args)
    assert code == 0, out + err
    files = sorted((tmp_path / "history").rglob("*.parquet"))
    assert len(files) == 33
    old = {p: read_series(p).rows() for p in files}
    old_mtime = {p: p.stat().st_mtime_ns for p in files}
    handle.sim.clock.advance(2 * 86_400_000)  # two days later every series has new bars
    proc = await p9(handle, *args, "--full", wait=False)
    # kill while files are being replaced: once some (not all) series have been rewritten
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(1 for p in files if p.stat().st_mtime_ns != old_mtime[p]) >= 3:
            break
        await asyncio.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    killed = {p: read_series(p).rows() for p in files}  # every file is readable
    rewritten = [p for p in files if killed[p] != old[p]]
    assert 0 < len(rewritten) < 33
    # the next run cleans up and completes (the killed run's lock died with it)
    code, out, err = await p9(handle, *args)
    assert code == 0, out + err
    assert not [p for p in (tmp_path / "history").rglob("*.tmp")]
    for p in files:
        final = read_series(p).rows()
        assert max(final) > max(old[p])
        assert set(old[p]) <= set(final)  # nothing stored was deleted
        if p in rewritten:
            # whole new content: the old bars kept, the newest 1000 and the gap to them fetched,
            # each exactly what the complete run stored
            assert set(old[p]) < set(killed[p]) and max(killed[p]) > max(old[p])
            times = sorted(killed[p])
            assert times == list(range(times[0], times[-1] + 1, times[1] - times[0]))  # no gap
            assert all(final[t] == row for t, row in killed[p].items())
        # (untouched files are exactly the old content by the definition of `rewritten`)
    for ex in EXCHANGES:
        c = counters(handle, ex)
        assert c.get("limit.violations", 0) == 0 and c.get("limit.bans", 0) == 0


async def test_ctrl_c_mid_run_exits_130_at_once_with_one_line(shared_sim, tmp_path):
    """Ctrl-C while many OKX requests wait in the limiter: one line, exit 130, no hang, and
    every file that was written is readable (no temporary file left behind either)."""
    handle = shared_sim
    args = ["--exchanges", "okx", "--symbols", "btc,eth", "--candles", "1000", "--data-dir", str(tmp_path)]
    proc = await p9(handle, *args, wait=False)
    # interrupt once files are being written: 44 OKX pages need > 2 s at 40 per 2 s
    history = tmp_path / "history" / "okx"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(history.rglob("*.parquet"))) < 2:
        await asyncio.sleep(0.01)
    assert proc.returncode is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)  # the old limiter hung here
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, out.decode() + err.decode()
    assert err.decode().strip().splitlines() == ["p9: interrupted"]
    assert "Traceback" not in out.decode()
    for p in history.rglob("*.parquet"):
        assert read_series(p) is not None
    assert not list(history.rglob("*.tmp"))
