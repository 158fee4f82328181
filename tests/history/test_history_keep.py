"""Stored candles are the user's data (issue 8 items 1, 3, 6): a refresh never deletes them,
``--candles`` is how far back to reach, only ``--trim`` deletes and says what; files follow the
umask; the output says what happened (first fetch, short series and where history starts,
re-downloaded vs new, an unreadable file kept aside)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from history_helpers import assert_file_matches_truth, run_fetch, sim_settings, stored, truth

from p9cli.history.report import utc_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAY = 86_400_000


def cron(handle, data_dir: Path, *args: str, umask: int = 0o022) -> tuple[int, str, str]:
    """``p9 fetch-history --data-dir DIR`` as a cron job runs it (no terminal), the selection in
    the environment as a p9.toml would give it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P9_")}
    env |= handle.env() | {"PYTHONPATH": ROOT, "P9_EXCHANGES": "binance,okx", "P9_SYMBOLS": "btc"}
    env["P9_TIMEFRAMES"] = "1h,1d"
    r = subprocess.run(
        [sys.executable, "-m", "p9cli", "fetch-history", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        preexec_fn=lambda: os.umask(umask),
    )
    return r.returncode, r.stdout, r.stderr


def lengths(data_dir: Path) -> dict[tuple[str, str], int]:
    return {
        (ex, tf): len(stored(data_dir / "history", ex, "btc", tf).candles)
        for ex in ("binance", "okx")
        for tf in ("1h", "1d")
    }


def test_candles_5000_then_the_readme_cron_line_keeps_5000_and_only_trim_deletes(shared_sim, tmp_path):
    handle = shared_sim
    code, out, err = cron(handle, tmp_path, "--candles", "5000")
    assert code == 0 and err == "", out + err
    assert "fetch-history: first fetch of 4 series (binance 2, okx 2) into" in out
    first = lengths(tmp_path)
    assert first[("binance", "1h")] == first[("okx", "1h")] == 5000
    # the simulated exchanges list 1100 days: the daily series are short, and say so
    for ex in ("binance", "okx"):
        s = stored(tmp_path / "history", ex, "btc", "1d")
        times = s.candles.open_time.tolist()
        everything = truth(handle, ex, "btc", "1d", times[-1] - 4999 * DAY, times[-1])["candles"]
        assert len(times) == len(everything) < 5000 and s.meta.history_starts_ms == times[0]
        assert (
            f"{ex}/btc/1d: short: {len(times)} of 5000 candles; the exchange's history starts "
            f"{utc_text(times[0])} (nothing older exists)"
        ) in out
        assert re.search(rf"{ex}: 2/2 series ok \(1 short: the exchange's history starts later\)", out)
    # files follow the umask like any other tool's output
    for p in (tmp_path / "history").rglob("*"):
        if p.is_file():
            assert p.stat().st_mode & 0o777 == 0o644, p
    before = {ex: stored(tmp_path / "history", ex, "btc", "1h").candles for ex in ("binance", "okx")}

    # the README's cron line: no --candles (default 1000) -> nothing stored is deleted
    code, out, err = cron(handle, tmp_path)
    assert code == 0 and err == "", out + err
    assert "fetch-history: incremental of 4 series (binance 2, okx 2) into" in out
    assert "trim" not in out
    after = lengths(tmp_path)
    assert all(after[k] >= n for k, n in first.items()), (first, after)
    for ex in ("binance", "okx"):
        now = stored(tmp_path / "history", ex, "btc", "1h").candles
        assert now.between(int(before[ex].open_time[0]), int(before[ex].open_time[-1])).equals(before[ex])
        assert_file_matches_truth(handle, tmp_path / "history", ex, "btc", "1h", len(now))

    # only --trim deletes, and it says what it removed
    code, out, err = cron(handle, tmp_path, "--trim")
    assert code == 0 and err == "", out + err
    trimmed = lengths(tmp_path)
    assert set(trimmed.values()) == {1000}
    removed = {k: after[k] - 1000 for k in after}
    for (ex, tf), n in removed.items():
        assert re.search(
            rf"{ex}/btc/{tf}: --trim removed {n} stored candles older than \d{{4}}-\d\d-\d\d", out
        )
    total = sum(removed.values())
    assert f"--trim removed {total} stored candles from 4 series (older than the newest --candles)" in out
    for ex in ("binance", "okx"):
        assert_file_matches_truth(handle, tmp_path / "history", ex, "btc", "1h", 1000)


async def test_full_says_re_downloaded_not_new(shared_sim, tmp_path):
    settings = sim_settings(
        shared_sim, tmp_path, exchanges="binance", symbols="eth", timeframes="4h", candles=200
    )
    stats, _, out = await run_fetch(settings)
    assert "first fetch of 1 series" in out and "binance: 1/1 series ok, 200 new candles," in out
    stats, _, out = await run_fetch(settings, full=True)
    (s,) = stats
    assert s.ok and s.redownloaded == 200 and s.new_candles == 0
    assert "full re-download of 1 series" in out
    assert "binance: 1/1 series ok, 0 new candles, 200 re-downloaded," in out
    assert re.search(r"binance\s+1/1\s+0\s+0\s+200\s+0\s", out), out  # the summary table


async def test_an_unreadable_stored_file_is_kept_aside_not_overwritten(shared_sim, tmp_path):
    settings = sim_settings(
        shared_sim, tmp_path, exchanges="okx", symbols="xrp", timeframes="1h", candles=100
    )
    path = settings.history_dir / "okx" / "xrp" / "1h.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet: somebody's file")
    stats, _, out = await run_fetch(settings)
    assert all(s.ok for s in stats)
    aside = path.with_name("1h.parquet.bad")
    assert aside.read_bytes() == b"not parquet: somebody's file"
    assert "okx/xrp/1h: " in out and "kept as 1h.parquet.bad, fetching the series again" in out
    assert_file_matches_truth(shared_sim, settings.history_dir, "okx", "xrp", "1h", 100)
