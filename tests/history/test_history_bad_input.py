"""fetch-history as a user meets it when something is wrong: one clear line, the right exit
code, no traceback, nothing on disk damaged. (Cases that need a live exchange are in
test_history_sim.py.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_p9(*args, cwd=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("P9_")}
    return subprocess.run(
        [sys.executable, "-m", "p9cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "PYTHONPATH": ROOT},
        cwd=cwd,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--symbols", "btc,doge"], "unknown symbol 'doge'; valid symbols: btc, eth, sol, bnb, xrp"),
        (["--exchanges", "okx,kraken"], "unknown exchange 'kraken'; valid exchanges: binance, bybit, okx"),
        (["--timeframes", "1h,1w"], "valid timeframes: 1d, 12h, 6h, 4h, 2h, 1h, 30m, 15m, 5m, 3m, 1m"),
        (["--candles", "0"], "--candles 0 is out of range"),
        (["--binance-rest-url", "ftp://x"], "--binance-rest-url 'ftp://x' is not a base URL"),
    ],
)
def test_bad_values_exit_2_with_one_line(args, fragment, tmp_path):
    r = run_p9("fetch-history", *args, "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert fragment in one_line(r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", ["fetch-history", "analyze"])
def test_empty_data_dir_is_refused_not_the_working_directory(command, tmp_path):
    """Issue 8 item 7: `--data-dir ''` wrote ./history."""
    r = run_p9(command, "--data-dir", "", cwd=tmp_path)
    assert r.returncode == 2
    assert "--data-dir is empty; give a directory" in one_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_data_dir_is_one_line_exit_2(tmp_path):
    """Issue 8 item 7: a data directory that cannot be written is bad input (exit 2, as the
    README promises), not a run-time failure."""
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    r = run_p9("fetch-history", "--data-dir", str(blocker), "--endpoints", "sim", cwd=tmp_path)
    assert r.returncode == 2
    assert one_line(r.stderr) == f"p9: data directory {blocker} is not a directory"
    assert "Traceback" not in r.stderr + r.stdout
    assert blocker.read_text() == "a file where the data directory should be"


def test_all_exchanges_unreachable_fail_fast_with_a_line_each(tmp_path):
    urls = []
    for ex in ("binance", "bybit", "okx"):
        urls += [f"--{ex}-rest-url", f"http://127.0.0.1:{closed_port()}"]
    r = run_p9(
        "fetch-history", "--symbols", "btc", "--timeframes", "1h,1d", "--data-dir", str(tmp_path), *urls
    )
    assert r.returncode == 1
    out, err = r.stdout, r.stderr
    # failures go to stderr (cron mails them), one line per exchange, plus the final count
    lines = err.strip().splitlines()
    assert len(lines) == 4, err
    for ex in ("binance", "bybit", "okx"):
        assert sum(f"fetch-history: {ex}: unreachable at http://127.0.0.1:" in line for line in lines) == 1
    assert lines[-1].endswith("fetch-history: 6 of 6 series failed")
    assert "Traceback" not in err + out
    assert "\x1b[" not in out + err  # not a terminal: no colour codes
    assert "0/6" in out  # the summary table (stdout): nothing succeeded
    assert list((tmp_path / "history").rglob("*.parquet")) == []


HOLDER = (
    "import sys,time; from p9cli.history.lock import HistoryLock; "
    "HistoryLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"
)


def test_overlapping_run_exits_75_at_once(tmp_path):
    history = tmp_path / "history"
    history.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(history)], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == b"held"
        r = run_p9("fetch-history", "--data-dir", str(tmp_path), "--endpoints", "sim", timeout=20)
        assert r.returncode == 75
        line = one_line(r.stderr)
        assert "another fetch-history run" in line and f"pid {holder.pid}" in line
        assert r.stdout == ""
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
