"""Bad-input sweep (issue 12): every command, driven through the real ``p9`` entry point with
malformed arguments and environment, answers with one clear line, its documented non-zero exit
code, no traceback and no secret, and damages nothing: the files of a pre-populated data
directory and the keys of a password-protected Redis are unchanged afterwards.

Exit codes under test (README, docs/status.md, docs/watch.md): 2 bad input everywhere;
``p9 stream`` 69 for a configured Redis that does not answer or refuses us; ``p9 status`` and
``p9 watch`` 3 for an unusable Redis; 1 for a run-time failure (an exchange that does not answer,
a port already in use).

Cases that reach a server, a port or an exchange run the real ``p9`` executable in subprocesses,
in parallel (a thread pool); the cases refused while the arguments and settings are read run
in-process through the same entry point (``p9cli.cli.main`` with ``sys.argv``), which keeps the
sweep within its ~30 s budget. Several of those also run as subprocesses, one or more per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import socket
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent / "history"))

from history_helpers import run_fetch, sim_settings, start_thread  # noqa: E402

from p9cli import cli  # noqa: E402
from p9cli.publish.embedded import EmbeddedRedis  # noqa: E402
from p9cli.services import analyze  # noqa: E402

P9 = str(Path(sys.executable).with_name("p9"))
#: the password of the protected Redis and a wrong one: neither may ever be printed
SECRET = "Sw33p/s3cret:pw"
WRONG = "wr0ng/Pa55:word"


@dataclass
class Case:
    name: str
    args: list[str]
    code: int
    mention: str  # a word the error line must contain
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "plain"  # which prepared working directory
    #: "one": stderr is exactly one line, stdout empty; "any": a run-time failure with a report
    #: (the mention is in some stderr line)
    lines: str = "one"
    #: run the real executable in a subprocess (else in-process through cli.main)
    sub: bool = False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hashes(root: Path) -> dict[str, str]:
    """The data files (history, structure, charts); not fetch-history's own dot-files (its lock and
    rate-limit hand-over, which a run that reached the exchange legitimately updates)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _keys(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {k: client.dump(k) for k in client.scan_iter(count=1000)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """History of binance btc (1d, 4h, 1h) fetched from a real simulator, analysed, with a chart."""
    root = tmp_path_factory.mktemp("sweep-data")
    threads: list = []
    handle = start_thread(threads)
    try:
        settings = sim_settings(handle, root, exchanges="binance", symbols="btc", timeframes="1d,4h,1h", candles=300)
        asyncio.run(run_fetch(settings))
    finally:
        for t in threads:
            t.stop()
    assert analyze.run(settings, plot=True, plot_timeframe="1h", out=open(os.devnull, "w")) == 0  # noqa: SIM115
    assert (root / "context" / "binance" / "btc.json").is_file()
    return root


@pytest.fixture(scope="module")
def locked_redis():
    """A private server that needs a password, holding a few keys the sweep must not touch."""
    server = EmbeddedRedis.start(extra_args=("--requirepass", SECRET))
    client = redis.Redis(host="127.0.0.1", port=server.port, password=SECRET)
    client.set("fusion_data:binance:btcusdt", b'{"seq": 1}')
    client.set("precision9_fusion_status", b'{"workers": []}')
    client.set("structure:binance:btcusdt", b'{"schema": "p9.structure/2"}')
    try:
        yield server, client
    finally:
        client.close()
        server.stop()


def _cases(data: Path, redis_port: int, dead: int, busy: int) -> list[Case]:
    d = ["--data-dir", str(data)]
    bin1 = ["--exchanges", "binance", "--symbols", "btc"]
    dead_url = f"redis://127.0.0.1:{dead}/0"
    nopw_url = f"redis://127.0.0.1:{redis_port}/0"
    wrong_url = f"redis://:{quote(WRONG, safe='')}@127.0.0.1:{redis_port}/0"
    good_url = f"redis://:{quote(SECRET, safe='')}@127.0.0.1:{redis_port}/0"
    file_dir = str(data / "context" / "binance" / "btc.json")  # a file, not a directory
    cases = [
        # fetch-history: unknown names, bad numbers, bad URLs, bad data dirs, bad p9.toml
        Case("fetch unknown symbol", ["fetch-history", "--symbols", "doge", *d], 2, "doge", sub=True),
        Case("fetch unknown exchange", ["fetch-history", "--exchanges", "kraken", *d], 2, "kraken"),
        Case("fetch unknown timeframe", ["fetch-history", "--timeframes", "7m", *d], 2, "7m"),
        Case("fetch empty symbols", ["fetch-history", "--symbols", "", *d], 2, "symbols"),
        Case("fetch candles not a number", ["fetch-history", "--candles", "abc", *d], 2, "--candles"),
        Case("fetch candles zero", ["fetch-history", "--candles", "0", *d], 2, "--candles"),
        Case("fetch P9_CANDLES float", ["fetch-history", *d], 2, "P9_CANDLES", env={"P9_CANDLES": "1e9"}),
        Case("fetch unknown endpoints", ["fetch-history", *d], 2, "P9_ENDPOINTS", env={"P9_ENDPOINTS": "mars"}),
        Case("fetch REST URL not a URL", ["fetch-history", *d], 2, "P9_BINANCE_REST_URL",
             env={"P9_BINANCE_REST_URL": "notaurl"}),
        Case("fetch REST URL with a path", ["fetch-history", "--okx-rest-url", "https://www.okx.com/api/v5", *d],
             2, "path"),
        Case("fetch REST URL unclosed IPv6", ["fetch-history", "--bybit-rest-url", "http://[::1", *d], 2,
             "--bybit-rest-url"),
        Case("fetch REST URL bad port", ["fetch-history", "--bybit-rest-url", "http://h:99999", *d], 2, "port"),
        Case("fetch data dir is a file", ["fetch-history", *bin1, "--data-dir", file_dir], 2, "not a directory"),
        Case("fetch data dir not writable", ["fetch-history", *bin1, "--data-dir", "/proc/p9-sweep"], 2,
             "not writable"),
        Case("fetch empty data dir", ["fetch-history", "--data-dir", ""], 2, "--data-dir"),
        Case("fetch p9.toml syntax error", ["fetch-history", *d], 2, "not valid TOML", cwd="bad_toml", sub=True),
        Case("fetch p9.toml unknown key", ["fetch-history", *d], 2, "unknown key", cwd="unknown_key"),
        Case("fetch P9_CONFIG names no file", ["fetch-history", *d], 2, "P9_CONFIG",
             env={"P9_CONFIG": "/nonexistent/p9.toml"}),
        Case("fetch P9_LOG not a level", ["fetch-history", *d], 2, "P9_LOG", env={"P9_LOG": "loud"}),
        Case("fetch unknown option", ["fetch-history", "--nosuch", *d], 2, "--nosuch"),
        Case("fetch exchange unreachable", ["fetch-history", *bin1, "--timeframes", "1h", "--endpoints", "sim",
                                            "--binance-rest-url", f"http://127.0.0.1:{dead}", *d],
             1, "unreachable", lines="any", sub=True),
        # analyze
        Case("analyze unknown exchange", ["analyze", "--exchanges", "kraken", *d], 2, "kraken", sub=True),
        Case("analyze unknown plot timeframe", ["analyze", "--plot", "--plot-timeframe", "7m", *d], 2, "7m"),
        Case("analyze no history", ["analyze", "--data-dir", "/nonexistent/p9-sweep"], 2, "no history"),
        Case("analyze data dir is a file", ["analyze", "--data-dir", file_dir], 2, "not a directory"),
        Case("analyze p9.toml syntax error", ["analyze", *d], 2, "not valid TOML", cwd="bad_toml"),
        # feeds
        Case("feeds unknown symbol", ["feeds", "--symbols", "doge"], 2, "doge", sub=True),
        Case("feeds duration not a number", ["feeds", "--duration", "abc"], 2, "--duration"),
        Case("feeds negative duration", ["feeds", "--duration", "-1", "--endpoints", "sim"], 2, "--duration", sub=True),
        Case("feeds WS URL is http", ["feeds", "--duration", "1"], 2, "P9_BINANCE_WS_URL",
             env={"P9_BINANCE_WS_URL": "http://127.0.0.1:1"}),
        Case("feeds p9.toml unknown key", ["feeds", "--duration", "1"], 2, "unknown key", cwd="unknown_key"),
        # stream: bad input (nothing may be written, even with the right password)
        Case("stream unknown exchange", ["stream", "--exchanges", "kraken", "--redis-url", good_url, *d], 2,
             "kraken", sub=True),
        Case("stream negative duration", ["stream", *bin1, "--duration", "-5", "--redis-url", good_url, *d], 2,
             "--duration"),
        Case("stream bad worker id", ["stream", *bin1, "--worker-id", "bad id!", "--redis-url", good_url, *d], 2,
             "--worker-id"),
        Case("stream P9_TIMEFRAMES unknown", ["stream", *bin1, "--duration", "1", *d], 2, "P9_TIMEFRAMES",
             env={"P9_TIMEFRAMES": "7m", "P9_REDIS_URL": good_url}),
        Case("stream redis URL not a URL", ["stream", *bin1, "--duration", "1", *d], 2, "P9_REDIS_URL",
             env={"P9_REDIS_URL": "notaurl"}),
        Case("stream redis URL is http", ["stream", *bin1, "--duration", "1", *d], 2, "P9_REDIS_URL",
             env={"P9_REDIS_URL": f"http://127.0.0.1:{redis_port}"}),
        Case("stream redis URL bad port", ["stream", *bin1, "--redis-url", "redis://127.0.0.1:99999/0", *d], 2,
             "--redis-url"),
        Case("stream bad redis probe", ["stream", *bin1, "--duration", "1", *d], 2, "P9_REDIS_PROBE",
             env={"P9_REDIS_PROBE": "nope"}),
        # stream: a configured Redis it cannot use (69)
        Case("stream redis unreachable", ["stream", *bin1, "--duration", "1", "--endpoints", "sim",
                                          "--redis-url", dead_url, *d], 69, "not reachable", sub=True),
        Case("stream redis needs a password", ["stream", *bin1, "--duration", "1", "--endpoints", "sim", *d], 69,
             "requires authentication", env={"P9_REDIS_URL": nopw_url}, sub=True),
        Case("stream redis wrong password", ["stream", *bin1, "--duration", "1", "--endpoints", "sim", *d], 69,
             "refused authentication", env={"P9_REDIS_URL": wrong_url}, sub=True),
        # sim
        Case("sim port base out of range", ["sim", "--port-base", "99999"], 2, "--port-base"),
        Case("sim speed not a number", ["sim", "--speed", "abc"], 2, "--speed"),
        Case("sim speed zero", ["sim", "--speed", "0"], 2, "--speed"),
        Case("sim negative seed", ["sim", "--seed", "-1"], 2, "--seed"),
        Case("sim bad start", ["sim", "--start", "yesterday-ish"], 2, "--start"),
        Case("sim malformed fault", ["sim", "--fault", "nonsense"], 2, "--fault"),
        Case("sim unknown fault", ["sim", "--fault", "binance:nope=1"], 2, "nope", sub=True),
        Case("sim fault bad value", ["sim", "--fault", "binance:ws_drop_every_messages=abc"], 2, "abc"),
        Case("sim unknown limit", ["sim", "--limit", "okx:nope=1"], 2, "nope"),
        Case("sim port in use", ["sim", "--port-base", str(busy - 1)], 1, "in use", sub=True),
        Case("unknown command", ["nosuchcmd"], 2, "nosuchcmd", sub=True),
    ]
    # status and watch: bad URLs (2); a Redis they cannot use (3)
    cases += [
        Case("status redis URL not a URL", ["status"], 2, "P9_REDIS_URL", env={"P9_REDIS_URL": "notaurl"}, sub=True),
        Case("status redis URL is http", ["status"], 2, "P9_REDIS_URL",
             env={"P9_REDIS_URL": f"http://127.0.0.1:{redis_port}/0"}),
        Case("status redis URL unclosed IPv6", ["status", "--redis-url", "redis://[::1"], 2, "--redis-url"),
        Case("status bad redis probe", ["status"], 2, "P9_REDIS_PROBE", env={"P9_REDIS_PROBE": "nope"}),
        Case("status unknown option", ["status", "--colour"], 2, "--colour"),
        Case("status redis unreachable", ["status", "--redis-url", dead_url], 3, "not reachable", sub=True),
        Case("status nothing on the probe", ["status", "--json"], 3, "no Redis answers", sub=True),
        Case("status redis needs a password", ["status"], 3, "requires authentication",
             env={"P9_REDIS_URL": nopw_url}, sub=True),
        Case("status redis wrong password", ["status", "--json"], 3, "refused authentication",
             env={"P9_REDIS_URL": wrong_url}, sub=True),
        Case("watch unknown pair", ["watch", "kraken:btc", "--once"], 2, "kraken:btc", sub=True),
        Case("watch unknown symbol", ["watch", "binance:doge", "--once"], 2, "binance:doge"),
        Case("watch no pair", ["watch"], 2, "EXCHANGE:SYMBOL"),
        Case("watch redis URL not a URL", ["watch", "binance:btc", "--once"], 2, "P9_REDIS_URL",
             env={"P9_REDIS_URL": "notaurl"}),
        Case("watch redis unreachable", ["watch", "binance:btc", "--once", "--redis-url", dead_url], 3,
             "not reachable", sub=True),
        Case("watch redis needs a password", ["watch", "binance:btc", "--once"], 3, "requires authentication",
             env={"P9_REDIS_URL": nopw_url}, sub=True),
        Case("watch redis wrong password", ["watch", "binance:btc", "--once"], 3, "refused authentication",
             env={"P9_REDIS_URL": wrong_url}, sub=True),
    ]
    return cases


def _run(case: Case, base_env: dict[str, str], cwds: dict[str, Path]) -> tuple[Case, int, str, str]:
    proc = subprocess.run(
        [P9, *case.args], env={**base_env, **case.env}, cwd=cwds[case.cwd], capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )
    return case, proc.returncode, proc.stdout, proc.stderr


def _run_in_process(case: Case, base_env: dict[str, str], cwds: dict[str, Path]) -> tuple[Case, int, str, str]:
    """The same entry point as the executable (``cli.main`` reading ``sys.argv``), in this process."""
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    os.environ.clear()
    os.environ.update({**base_env, **case.env})
    sys.argv = ["p9", *case.args]
    os.chdir(cwds[case.cwd])
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - what escapes main() is what a user would see
                traceback.print_exc(file=err)
                code = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return case, code, out.getvalue(), err.getvalue()


def _problems(case: Case, code: int, out: str, err: str) -> list[str]:
    problems = []
    lines = [line for line in err.splitlines() if line.strip()]
    if code != case.code:
        problems.append(f"exit {code}, expected {case.code}")
    for secret in (SECRET, WRONG, quote(SECRET, safe=""), quote(WRONG, safe="")):
        if secret in out or secret in err:
            problems.append("a password was printed")
    if "Traceback" in out + err or "unexpected error" in err:
        problems.append("traceback / unexpected error")
    if case.lines == "one":
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines, expected 1")
        if out.strip():
            problems.append("output on stdout")
    if case.lines != "any" and lines and not lines[-1].startswith("p9"):
        problems.append("the error line does not start with 'p9'")
    mention = lines[-1] if case.lines != "any" and lines else err
    if case.mention.lower() not in mention.lower():
        problems.append(f"the error does not mention {case.mention!r}")
    return problems


def test_every_command_refuses_bad_input_in_one_line_and_damages_nothing(data_dir, locked_redis, tmp_path):
    server, client = locked_redis
    cwds = {"plain": tmp_path / "plain", "bad_toml": tmp_path / "bad_toml", "unknown_key": tmp_path / "unknown_key"}
    for path in cwds.values():
        path.mkdir()
    (cwds["bad_toml"] / "p9.toml").write_text('symbols = "btc\n')
    (cwds["unknown_key"] / "p9.toml").write_text('colour = "red"\n')
    dead = _free_port()  # nothing listens there
    busy = socket.socket()  # a port p9 sim wants (its Binance port) already taken
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("P9_")}
    # the commands never find the system Redis by accident
    base_env.update(P9_REDIS_PROBE=f"127.0.0.1:{dead}", COLUMNS="200", NO_COLOR="1")

    files_before = _hashes(data_dir)
    keys_before = _keys(client)
    cases = _cases(data_dir, server.port, dead, busy_port)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            pending = [pool.submit(_run, c, base_env, cwds) for c in cases if c.sub]
            # meanwhile, the in-process cases one after the other (they swap env, argv and cwd)
            results = [_run_in_process(c, base_env, cwds) for c in cases if not c.sub]
            results += [f.result() for f in pending]
    finally:
        busy.close()

    failures = []
    for case, code, out, err in results:
        problems = _problems(case, code, out, err)
        if problems:
            failures.append(f"{case.name}: {'; '.join(problems)}\n    p9 {' '.join(case.args)}\n    stderr: "
                            + "\n            ".join(err.strip().splitlines()[-4:]))
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)

    assert _hashes(data_dir) == files_before, "a refused command changed the data directory"
    assert not [p for p in data_dir.rglob("*") if ".tmp" in p.name], "a temporary file was left"
    assert _keys(client) == keys_before, "a refused command changed the Redis keys"
    for cwd in cwds.values():  # nothing created where the commands ran (no ./data)
        assert sorted(p.name for p in cwd.iterdir()) in ([], ["p9.toml"])
