"""`p9 stream` under faults, end to end (issue 9): real p9 sim + real Redis servers, no mocks.

1. One run against a fast simulator (20x: a 1m candle every 3 s, a 5m candle every 15 s) with
   the stream's clock seam reading the simulator's time, publishing into a private Redis server
   that is SIGKILLed a few seconds in and restarted on the same port 3 s later. Proves: every
   closed 1m/5m candle published equals the simulator's true candle; a 5m close makes the
   structure recompute; the stream survives the restart (exit 0 with a passing quick-test
   verdict), prints one outage line (not one per message), resumes publishing on every channel
   kind with seq still increasing per channel, counts the outage in the status, and holds at
   most one waiting payload per channel while Redis is away (coalescing, not a backlog).
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sim"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "history"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from history_helpers import run_fetch  # noqa: E402
from simutil import start_sim  # noqa: E402
from streamutil import SimWallClock, Subscriber  # noqa: E402

from p9cli.config import load_settings  # noqa: E402
from p9cli.publish import STATUS, Publisher, validate_message  # noqa: E402
from p9cli.publish.embedded import EmbeddedRedis  # noqa: E402
from p9cli.services import analyze  # noqa: E402
from p9cli.services import stream as service  # noqa: E402

KINDS = ("market_context", "fusion_data", "precision9_context", "structure")
SPEED = 20.0  # a simulated minute every 3 s real
FAST_EXCHANGES = ("binance", "okx")
RUN_S = 24
OUTAGE_S = 3.0


def _find_publisher(url: str, timeout_s: float = 10.0) -> Publisher:
    """The stream's own Publisher object (read-only inspection of its held payloads)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [o for o in gc.get_objects() if isinstance(o, Publisher) and o.url == url]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("the stream's publisher was not found")


class Chaos(threading.Thread):
    """Once every channel has a message: SIGKILL the server, wait, restart it on the same port;
    sample the publisher's held payloads and coalesced counter meanwhile."""

    def __init__(self, server: EmbeddedRedis, sub: Subscriber, channels: list[str]):
        super().__init__(daemon=True)
        self.server = server
        self.sub = sub
        self.channels = channels
        self.restarted: EmbeddedRedis | None = None
        self.t_kill = self.t_up = None
        self.max_pending = self.max_held = 0
        self.coalesced = (0, 0)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.sub.wait_for(lambda: all(self.sub.of(c) for c in self.channels), 15, "every channel before the kill")
            pub = _find_publisher(self.server.url)
            time.sleep(0.5)
            c0 = pub.stats.coalesced
            self.server.proc.kill()  # no goodbye: the socket just closes
            self.server.proc.wait()
            self.t_kill = time.monotonic()
            while time.monotonic() < self.t_kill + OUTAGE_S:
                self.max_pending = max(self.max_pending, pub.pending_count())
                self.max_held = max(self.max_held, pub.held_count())
                time.sleep(0.02)
            self.coalesced = (c0, pub.stats.coalesced)
            self.restarted = EmbeddedRedis.start(port=self.server.port)  # same port, empty
            self.t_up = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _truth(control_url: str, exchange: str, tf: str, first: int, last: int) -> dict[int, dict]:
    r = httpx.get(f"{control_url}/truth/candles",
                  params={"exchange": exchange, "symbol": "btc", "interval": tf, "start": first, "end": last},
                  timeout=30)  # fmt: skip
    r.raise_for_status()
    return {c["open_time"]: c for c in r.json()["candles"]}


def test_stream_candles_are_true_and_a_redis_restart_is_survived(tmp_path, redis_token, capsys):
    server = EmbeddedRedis.start()
    thread, handle = start_sim(speed=SPEED, start_ms=None)
    worker_id = f"w-{redis_token}"
    pairs = [(ex, "btcusdt") for ex in FAST_EXCHANGES]
    channels = [f"{k}:{ex}:{sym}" for ex, sym in pairs for k in KINDS]
    sub = chaos = None
    try:
        settings = load_settings(
            {"data_dir": str(tmp_path), "symbols": "btc", "exchanges": ",".join(FAST_EXCHANGES), "candles": 300,
             "redis_url": server.url, "worker_id": worker_id},
            env=handle.env(), config_path=None,
        )  # fmt: skip
        _, fetched, _ = asyncio.run(run_fetch(settings))
        assert fetched.ok
        assert analyze.run(settings, out=io.StringIO()) == 0
        sub = Subscriber(server.url, [*channels, STATUS])
        sub.start()
        chaos = Chaos(server, sub, channels)
        chaos.start()
        capsys.readouterr()
        out = io.StringIO()
        rc = service.run(settings, duration=RUN_S, quick_test=True, out=out, clock=SimWallClock(handle))
        err = capsys.readouterr().err
        summary = out.getvalue()
        chaos.join(10)
        assert chaos.error is None, repr(chaos.error)
        assert chaos.t_up is not None, "the server was never restarted"
        time.sleep(0.3)
        sub.close()

        # -- survived: exit 0, a passing verdict, one outage (a line when it starts, one when it ends)
        assert rc == 0, summary + err
        assert "PASS" in summary and "FAIL" not in summary, summary
        down = [ln for ln in err.splitlines() if "reconnecting" in ln]
        back = [ln for ln in err.splitlines() if "is back after" in ln]
        assert len(down) == 1 and len(back) == 1, err
        assert "(outage 1;" in back[0], back

        # -- memory bounded: while Redis was away at most one payload per channel waited, and the
        # stream kept offering (coalesced grew) instead of queueing
        n_channels = len(channels) + 2  # + the status and the worker's own status key
        assert 0 < chaos.max_pending <= n_channels, (chaos.max_pending, n_channels)
        assert chaos.max_held <= 2 * n_channels, (chaos.max_held, n_channels)
        c0, c1 = chaos.coalesced
        assert c1 - c0 >= 10, chaos.coalesced

        # -- publishing resumed on every channel kind; seq increases per channel across the outage
        for ch in [*channels, STATUS]:
            got = sub.of(ch)
            for r in got:
                validate_message(ch, r.msg)
            before = [r for r in got if r.at < chaos.t_kill]
            after = [r for r in got if r.at > chaos.t_up]
            assert before and after, (ch, len(before), len(after))
            if ch == STATUS:
                continue
            seqs = [r.msg["seq"] for r in got]
            assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False)), (ch, seqs)
            assert after[0].msg["seq"] > before[-1].msg["seq"], ch
        # the outage is counted in the status the worker publishes after it
        mine = [w for r in sub.of(STATUS) if r.at > chaos.t_up for w in r.msg["workers"]
                if w["worker_id"] == worker_id]  # fmt: skip
        assert mine, "no status of this worker after the restart"
        pub_status = mine[-1]["publisher"]
        assert pub_status["outages"] == 1 and pub_status["outage_ms"] >= 1000, pub_status
        assert pub_status["connected"] is True

        # -- every closed 1m/5m candle published equals the simulator's true candle
        for ex, sym in pairs:
            fusion = sub.of(f"fusion_data:{ex}:{sym}")
            for tf, at_least in (("1m", 4), ("5m", 1)):
                final: dict[int, dict] = {}
                for r in fusion:
                    c = (r.msg["candles"].get(tf) or {}).get("last_closed")
                    if c is not None:
                        final[c["open_time"]] = c  # the newest version of each candle
                assert len(final) >= at_least, (ex, tf, sorted(final))
                truth = _truth(handle.control_url, ex, tf, min(final), max(final))
                for t, c in sorted(final.items()):
                    want = truth[t]
                    assert want["closed"] and c["closed"], (ex, tf, t)
                    exp = tuple(float(want[k]) for k in ("open", "high", "low", "close", "volume"))
                    ours = tuple(c[k] for k in ("open", "high", "low", "close", "volume"))
                    assert ours == exp, f"{ex} {tf} {t}: published {ours} != true {exp}"

            # -- a 5m close made the structure recompute: a later structure message (higher seq)
            # whose 5m section ends with that candle
            structures = sub.of(f"structure:{ex}:{sym}")
            first_5m = {}
            for r in fusion:
                c = (r.msg["candles"].get("5m") or {}).get("last_closed")
                if c is not None and c["open_time"] not in first_5m:
                    first_5m[c["open_time"]] = r
            recomputed = []
            for t, r in first_5m.items():
                seq_then = max((s.msg["seq"] for s in structures if s.at <= r.at), default=0)
                later = [s for s in structures if s.msg["seq"] > seq_then
                         and s.msg["timeframes"]["5m"]["last_open_ms"] == t]  # fmt: skip
                if later:
                    recomputed.append(t)
            assert recomputed, (ex, sorted(first_5m),
                                [s.msg["timeframes"]["5m"]["last_open_ms"] for s in structures])  # fmt: skip
    finally:
        if sub is not None:
            sub.close()
        if chaos is not None:
            chaos.join(10)
            if chaos.restarted is not None:
                chaos.restarted.stop()
        server.stop()
        thread.stop()
