"""The rate limiters' recent requests and pauses, handed over from one fetch-history run to the
next through ``DIR/history/.ratelimit-state.json``.

The next run (another process, maybe started right after this one was killed) counts them too,
so an immediate re-run neither exceeds a limit nor ignores a ``Retry-After`` it never saw.
A run that ended normally marks the file ``clean``; a killed run's last save may miss the
requests of its last :data:`RATE_STATE_EVERY_S`, so the next run first lets them age out of
the exchanges' sliding windows (:meth:`RateLimitHandover.settle_s`, a few seconds at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

from p9cli.fsutil import write_atomic
from p9cli.rest.client import ExchangeClient

RATE_STATE_NAME = ".ratelimit-state.json"
#: How often the limiters' state is saved while a run is going (a killed run loses at most this).
RATE_STATE_EVERY_S = 0.25


class RateLimitHandover:
    def __init__(self, history_dir: Path):
        self.path = Path(history_dir) / RATE_STATE_NAME
        self.loaded: dict[str, dict] = {}
        self.live: dict[str, ExchangeClient] = {}
        #: when the previous run that did not end normally saved its state last (else None)
        self.unclean_saved_at: float | None = None
        try:
            doc = json.loads(self.path.read_text())
            if isinstance(doc, dict) and isinstance(doc.get("exchanges"), dict):
                self.loaded = doc["exchanges"]
                if not doc.get("clean") and isinstance(doc.get("saved_at"), int | float):
                    self.unclean_saved_at = float(doc["saved_at"])
        except (OSError, ValueError):
            pass

    def settle_s(self, window_s: float, now: float | None = None) -> float:
        """How long to wait before the first request: after a killed run, until requests it
        may have sent after its last save have left a sliding window of ``window_s``."""
        if self.unclean_saved_at is None:
            return 0.0
        now = time.time() if now is None else now
        return max(0.0, min(self.unclean_saved_at + RATE_STATE_EVERY_S + window_s - now, window_s + 1.0))

    def attach(self, exchange: str, client: ExchangeClient) -> None:
        with contextlib.suppress(TypeError, ValueError):  # a damaged state file: start afresh
            client.limiter.import_state(self.loaded.get(exchange, {}))
        self.live[exchange] = client

    def save(self, clean: bool = False) -> None:
        """``clean``: the run is over and every request it sent is in the state."""
        state = dict(self.loaded)
        for ex, client in self.live.items():
            state[ex] = client.limiter.export_state()
        doc = {"version": 1, "saved_at": time.time(), "clean": clean, "exchanges": state}
        with contextlib.suppress(OSError):  # best effort: the limits are still kept within this run
            write_atomic(self.path, json.dumps(doc).encode(), durable=False)

    async def keep_saving(self) -> None:
        while True:
            await asyncio.sleep(RATE_STATE_EVERY_S)
            self.save()
