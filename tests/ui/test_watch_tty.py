"""`p9 watch` end to end in a real pseudo-terminal (tmux): a `p9 stream` subprocess against the
session's `p9 sim` publishes to the real Redis; `p9 watch` in a tmux pane shows the live price
(one the stream published in the 3 s around the capture), is redrawn to fit after the
window is resized, and on Ctrl-C exits 0 with the terminal restored (alternate screen left,
cursor visible)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import redis

TMUX = shutil.which("tmux")
P9 = str(Path(sys.executable).with_name("p9"))


def wait_for(cond, timeout_s: float, what: str, step: float = 0.1):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class PriceLog(threading.Thread):
    """(receive time, price) of every fusion_data / precision9_context message of the pair."""

    def __init__(self, url: str, channels: list[str]):
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*channels)
        self.prices: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            m = self.pubsub.get_message(timeout=0.1)
            if m and m["type"] == "message":
                price = orjson.loads(m["data"]).get("price")
                if price is not None:
                    self.prices.append((time.monotonic(), price))

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.pubsub.close()
        self.client.close()


@pytest.mark.skipif(TMUX is None, reason="tmux not installed")
def test_watch_in_a_terminal_live_resize_ctrl_c(stream_payloads, tmp_path):
    rec = stream_payloads
    ex, sym = rec.pairs[0]
    url = rec.redis_url
    env = {**os.environ, **rec.sim.env(), "P9_DATA_DIR": str(rec.data_dir), "P9_REDIS_URL": url,
           "P9_SYMBOLS": sym.removesuffix("usdt"), "P9_EXCHANGES": ex, "P9_WORKER_ID": f"w-{rec.token}-tty"}  # fmt: skip
    prices = PriceLog(url, [f"fusion_data:{ex}:{sym}", f"precision9_context:{ex}:{sym}"])
    prices.start()
    with open(tmp_path / "stream.err", "wb") as err:
        stream = subprocess.Popen([P9, "stream", "--duration", "40"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=err, start_new_session=True)  # fmt: skip
    sock = f"p9-{rec.token}"
    tmux = [TMUX, "-L", sock, "-f", "/dev/null"]
    client = redis.Redis.from_url(url)
    try:
        wait_for(lambda: client.get(f"fusion_data:{ex}:{sym}") and len(prices.prices) > 2, 15, "the stream")
        # the shell traps SIGINT (a handler, not "ignore": p9 gets the default) so that it survives
        # the Ctrl-C and prints p9's exit code
        cmd = f"trap : INT; {P9} watch {ex}:{sym.upper()} --redis-url {url}; echo EXIT=$?; sleep 60"
        subprocess.run([*tmux, "new-session", "-d", "-s", "w", "-x", "110", "-y", "34", "sh", "-c", cmd],
                       check=True, env={**os.environ, "TERM": "xterm-256color"})  # fmt: skip

        def pane() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "w"], capture_output=True, text=True).stdout

        def pane_with(text: str) -> str | None:
            s = pane()
            return s if text in s else None

        def fmt(name: str) -> str:
            return subprocess.run([*tmux, "display", "-p", "-t", "w", f"#{{{name}}}"], capture_output=True,
                                  text=True).stdout.strip()  # fmt: skip

        title = f"{ex}:{sym}".upper()
        wait_for(lambda: title in pane() and "LIVE" in pane(), 10, "the watch screen")
        assert fmt("alternate_on") == "1"
        # the price on screen is one the stream published in the 3 s before the capture
        for _ in range(2):
            time.sleep(1.0)
            t_cap = time.monotonic()
            screen = pane()
            first = screen.splitlines()[0]
            m = re.search(rf"{re.escape(title)}\s+([\d,]+\.\d+)", first)
            assert m, screen
            shown = float(m.group(1).replace(",", ""))
            time.sleep(0.5)  # our subscriber may take the same message a moment after p9 watch did
            recent = {p for t, p in prices.prices if t_cap - 3.0 <= t <= t_cap + 0.5}
            assert shown in recent, (shown, sorted(recent), first)
        # a capture can fall in the middle of a redraw (seen under load): wait for the whole frame
        # (the ladder's title is "levels (distance % and ATR 1h)" or, when the trend table takes
        # more of the width, "levels (ATR 1h)": content decides, so either)
        try:
            screen = wait_for(lambda: pane_with("─ levels ("), 5, "the levels panel")
        except AssertionError:
            raise AssertionError(f"no levels panel ({fmt('window_width')}x{fmt('window_height')}):\n{pane()}") from None
        assert "trend & volatility" in screen
        # resize: redrawn to the new size (80x24: narrow titles, nothing wider than 80)
        subprocess.run([*tmux, "resize-window", "-t", "w", "-x", "80", "-y", "24"], check=True)
        small = wait_for(lambda: pane_with("levels (ATR 1h)"), 5, "the redraw at 80x24")
        lines = small.rstrip("\n").splitlines()
        assert len(lines) <= 24 and max(len(ln) for ln in lines) <= 80, small
        assert title in lines[0] and "Ctrl-C quits" in small and "trend & volatility" in small
        # Ctrl-C: exit 0, alternate screen left, cursor visible
        subprocess.run([*tmux, "send-keys", "-t", "w", "C-c"], check=True)
        after = wait_for(lambda: pane_with("EXIT="), 5, "p9 watch to exit")
        assert "EXIT=0" in after, after
        assert title not in after and "Traceback" not in after, after
        assert fmt("alternate_on") == "0" and fmt("cursor_flag") == "1"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        if stream.poll() is None:
            os.killpg(stream.pid, signal.SIGTERM)
            stream.wait(10)
        prices.close()
        for k in ("market_context", "fusion_data", "precision9_context", "structure"):
            client.delete(f"{k}:{ex}:{sym}")
        client.close()
