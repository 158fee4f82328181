"""Benchmark: how many WebSocket clients one ``p9 sim`` process serves at the real cadence.

Starts ``p9 sim`` as a subprocess (real time, speed 1), opens N clients with the
``websockets`` library spread over the three exchanges, each subscribed to trades + an order
book for several symbols, and measures for D seconds:

* delivered messages per second (all clients together) and per client;
* end-to-end lag = receive wall time - the event's own timestamp (Binance ``E``, Bybit
  ``ts``, OKX ``ts``), median / p99 / max (ms);
* CPU of the simulator process (``/proc/<pid>/stat``, % of one core) and of this client
  process, over the same window.

    .venv/bin/python scripts/bench_sim_ws.py [--clients 100] [--seconds 20] [--symbols 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import orjson
import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from p9cli.sim.testing import free_port_base, wait_listening  # noqa: E402

SYMBOLS = ["btc", "eth", "sol", "bnb", "xrp"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.lags: list[float] = []
        self.by_exchange: dict[str, list[float]] = {"binance": [], "bybit": [], "okx": []}
        self.recording = False
        self.closed = 0


def event_time(exchange: str, frame: dict) -> int | None:
    if exchange == "binance":
        data = frame.get("data", frame)
        return data.get("E") or None
    if exchange == "bybit":
        return frame.get("ts")
    data = frame.get("data")
    if data:
        return int(data[0]["ts"])
    return None


async def client(exchange: str, url: str, symbols: list[str], stats: Stats, stop: asyncio.Event) -> None:
    if exchange == "binance":
        streams = "/".join(f"{s}usdt@{k}" for s in symbols for k in ("trade", "depth@100ms"))
        url = f"{url}/stream?streams={streams}"
    elif exchange == "bybit":
        url = f"{url}/v5/public/spot"
    else:
        url = f"{url}/ws/v5/public"
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        if exchange == "bybit":
            args = [f"{k}.{s.upper()}USDT" for s in symbols for k in ("publicTrade", "orderbook.50")]
            await ws.send(json.dumps({"op": "subscribe", "args": args}))
        elif exchange == "okx":
            args = [
                {"channel": k, "instId": f"{s.upper()}-USDT"} for s in symbols for k in ("trades", "books")
            ]
            await ws.send(json.dumps({"op": "subscribe", "args": args}))
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                stats.closed += 1
                return
            if not stats.recording or raw == "pong":
                continue
            now = time.time() * 1000
            stats.messages += 1
            frame = orjson.loads(raw)
            t = event_time(exchange, frame)
            if t:
                stats.lags.append(now - t)
                stats.by_exchange[exchange].append(now - t)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--symbols", type=int, default=3, help="symbols per client (1-5)")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated clock speed (>1: more trades and book events per second; lag not reported)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds between connecting and measuring")
    parser.add_argument(
        "--settle", type=float, default=90.0, help="at most this many seconds to let the simulator warm up"
    )
    args = parser.parse_args()

    base = free_port_base()
    env = {"P9_SIM_OKX_MAX_NEW_CONNECTIONS_PER_SECOND": "100000"}
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - read after the run, closed at exit
    # the simulator's output goes to a file: an unread pipe would block it once full
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p9cli",
            "sim",
            "--port-base",
            str(base),
            "--seed",
            "9",
            "--speed",
            str(args.speed),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    try:
        if not wait_listening("127.0.0.1", base + 3, 30):
            log.seek(0)
            print("the simulator did not start:", log.read()[-2000:])
            return 1
        # let the model's history warm-up (a few CPU seconds in a thread) finish first:
        # wait until one second of the idle simulator costs less than a quarter of a core
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            c0 = cpu_seconds(proc.pid)
            await asyncio.sleep(1.0)
            if cpu_seconds(proc.pid) - c0 < 0.25:
                break
        idle0, it0 = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(3.0)
        idle_cpu = (cpu_seconds(proc.pid) - idle0) / (time.monotonic() - it0) * 100
        urls = {
            "binance": f"ws://127.0.0.1:{base + 1}",
            "bybit": f"ws://127.0.0.1:{base + 2}",
            "okx": f"ws://127.0.0.1:{base + 3}",
        }
        stats = Stats()
        stop = asyncio.Event()
        tasks = []
        exchanges = ["binance", "bybit", "okx"]
        for i in range(args.clients):
            ex = exchanges[i % 3]
            syms = [SYMBOLS[(i + k) % 5] for k in range(args.symbols)]
            tasks.append(asyncio.create_task(client(ex, urls[ex], syms, stats, stop)))
            if i % 10 == 9:
                await asyncio.sleep(0.05)
        await asyncio.sleep(args.warmup)
        sim_cpu0, me_cpu0, t0 = cpu_seconds(proc.pid), time.process_time(), time.monotonic()
        stats.recording = True
        await asyncio.sleep(args.seconds)
        stats.recording = False
        elapsed = time.monotonic() - t0
        sim_cpu = (cpu_seconds(proc.pid) - sim_cpu0) / elapsed * 100
        me_cpu = (time.process_time() - me_cpu0) / elapsed * 100
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001
            proc.kill()
    log.seek(0)
    output = log.read()
    if "Traceback" in output or "ERROR" in output:
        print("simulator output (tail):", output[-1500:])
    lags = sorted(stats.lags)
    rate = stats.messages / elapsed
    print(
        f"clients: {args.clients} ({args.symbols} symbols each: trades + book), window {elapsed:.1f} s, "
        f"clock speed {args.speed:g}"
    )
    print(f"delivered: {stats.messages} messages = {rate:,.0f} msg/s ({rate / args.clients:,.1f} per client)")
    if lags and args.speed == 1.0:
        p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
        print(
            f"lag (receive - event time): median {statistics.median(lags):.1f} ms, "
            f"p99 {p(0.99):.1f} ms, max {lags[-1]:.1f} ms"
        )
    for ex, values in stats.by_exchange.items():
        if values and args.speed == 1.0:
            values.sort()
            print(
                f"  {ex}: {len(values)} frames, lag median {statistics.median(values):.1f} ms, max {values[-1]:.1f} ms"
            )
    print(
        f"simulator CPU: {sim_cpu:.0f}% of one core (idle, no client: {idle_cpu:.0f}%); client process CPU: {me_cpu:.0f}%"
    )
    if stats.messages:
        per_frame = (sim_cpu - idle_cpu) / 100 * elapsed / stats.messages * 1e6
        print(
            f"simulator CPU per delivered frame: {per_frame:.1f} us "
            f"(=> about {1e6 / per_frame:,.0f} frames/s on one free core)"
        )
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"machine load average (1/5/15 min): {' '.join(load)} on {os.cpu_count()} cores")
    print(f"connections closed by the server during the run: {stats.closed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
