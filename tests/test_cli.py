"""The CLI as a user meets it: help texts and bad input (one line, exit 2, no traceback)."""

import subprocess
import sys

import pytest


def run_p9(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "p9cli", *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


@pytest.mark.parametrize("cmd", [[], ["sim"], ["fetch-history"], ["analyze"]])
def test_every_command_has_help(cmd):
    r = run_p9(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: p9" in r.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fetch-history", "--symbols", "btc,doge"], "valid symbols: btc, eth, sol, bnb, xrp"),
        (["fetch-history", "--exchanges", "kraken"], "valid exchanges: binance, bybit, okx"),
        (
            ["fetch-history", "--timeframes", "1w"],
            "valid timeframes: 1d, 12h, 6h, 4h, 2h, 1h, 30m, 15m, 5m, 3m, 1m",
        ),
        (["analyze", "--symbols", "doge"], "valid symbols"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment, tmp_path):
    r = run_p9(*args, "--data-dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_version():
    r = run_p9("--version")
    assert r.returncode == 0 and r.stdout.startswith("p9 ")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fetch-history", "--candles", "abc"], "Invalid value for '--candles'"),
        (["sim", "--port-base", "x"], "Invalid value for '--port-base'"),
        (["fetch-history", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, fragment):
    r = run_p9(*args)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "--help" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "╭" not in r.stderr


def test_help_and_no_args():
    assert run_p9("--help").returncode == 0
    r = run_p9()
    assert r.returncode == 2 and "Usage: p9" in r.stdout + r.stderr
