"""The README's pictures of ``p9 watch`` and ``p9 status``, made from a real run.

    python scripts/make_pictures.py                       # sim + 2 streams + private Redis, ~40 s
    python scripts/make_pictures.py --redis-url URL       # a p9 stream already publishing there

Without ``--redis-url``: starts ``p9 sim`` (in this process), fetches a short history from it
(``p9 fetch-history --candles 300``) and analyzes it (``p9 analyze``) into a temporary data
directory, starts a private Redis server (``EmbeddedRedis``) and two ``p9 stream`` workers
(binance+bybit, okx; btc and eth), waits ``--seconds`` for the flow windows to fill, then reads
the Redis keys exactly as ``p9 watch`` / ``p9 status`` do and renders the same renderables
(``p9cli.ui.watch.WatchScreen``, ``p9cli.ui.status.status_view``) with ``Console(record=True)``
into ``docs/img/watch.svg`` and ``docs/img/status.svg``.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from p9cli.services import watch as watch_service  # noqa: E402
from p9cli.ui.status import status_view  # noqa: E402
from p9cli.ui.watch import WatchScreen  # noqa: E402

P9 = str(Path(sys.executable).with_name("p9"))
WORKERS = (("binance,bybit", "tokyo-1"), ("okx", "hongkong-1"))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def render(url: str, pair: str, out_dir: Path, width: int, height: int) -> None:
    from p9cli.services.status import connect, read_snapshot

    ex, sym = watch_service.parse_pair(pair)
    client = connect(url)
    try:
        channels = [f"{k}:{ex}:{sym}" for k in watch_service.PAIR_KINDS]
        feed = watch_service.Feed(url)
        feed.connect(channels)
        feed.poll(0.5)  # a message or two more, as the live screen would have
        feed.close()
        pairs = watch_service.pair_payloads(feed.latest, [(ex, sym)])
        if not pairs[0].payloads:
            raise SystemExit(f"no data for {ex}:{sym} at {url} — is p9 stream running?")
        snapshot = read_snapshot(client, url)
    finally:
        client.close()
    now = _now_ms()
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(record=True, width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")  # fmt: skip
    console.print(WatchScreen(pairs, now))
    console.save_svg(str(out_dir / "watch.svg"), title=f"p9 watch {ex}:{sym}")
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(status_view(snapshot, now))
    console.save_svg(str(out_dir / "status.svg"), title="p9 status")
    print(f"wrote {out_dir / 'watch.svg'} and {out_dir / 'status.svg'} ({ex}:{sym}, {url.rsplit('@', 1)[-1]})")


def real_run(args) -> None:
    from p9cli.publish import EmbeddedRedis
    from p9cli.sim.testing import SimThread

    sim = SimThread(seed=9, speed=1.0, start_ms=None)
    handle = sim.start()
    server = EmbeddedRedis.start()
    streams: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="p9-pictures-") as data_dir:
        env = {**os.environ, **handle.env(), "P9_DATA_DIR": data_dir, "P9_REDIS_URL": server.url,
               "P9_SYMBOLS": "btc,eth"}  # fmt: skip
        try:
            for cmd in (["fetch-history", "--candles", "300", "--no-progress"], ["analyze"]):
                print(f"p9 {' '.join(cmd)} ...", flush=True)
                subprocess.run([P9, *cmd], env=env, check=True, stdout=subprocess.DEVNULL)
            for exchanges, worker in WORKERS:
                streams.append(subprocess.Popen(
                    [P9, "stream", "--exchanges", exchanges, "--worker-id", worker], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            print(f"2 p9 stream workers running; waiting {args.seconds:g} s ...", flush=True)
            time.sleep(args.seconds)
            render(server.url, args.pair, args.out, args.width, args.height)
        finally:
            for p in streams:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in streams:
                p.wait(15)
            server.stop()
            sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", help="use the p9 stream publishing there instead of a run of our own")
    ap.add_argument("--pair", default="binance:btcusdt")
    ap.add_argument("--seconds", type=float, default=25.0, help="how long the streams run before the pictures")
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--height", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    if args.redis_url:
        render(args.redis_url, args.pair, args.out, args.width, args.height)
    else:
        real_run(args)


if __name__ == "__main__":
    main()
