"""The estimate of one exchange's clock, run from the last time request on the monotonic clock."""

from __future__ import annotations

import time

#: Added to the clock's error bound: the exchange's kline engine and its time endpoint may
#: disagree by a few ms, and the monotonic clock is read a little after the answer arrived.
CLOCK_GUARD_MS = 50.0
UNSYNCED_CLOCK_ERROR_MS = 5_000.0


class ServerClock:
    """``server_ms = ref_ms + (monotonic - mono_ref) * 1000``; the local wall clock until
    :meth:`synced` is told an answer of the exchange's time endpoint."""

    def __init__(self) -> None:
        self._mono_ref = time.monotonic()
        self._server_ref_ms = time.time() * 1000.0
        #: how far the estimate may run ahead of the server (unknown before :meth:`synced`)
        self.error_ms = UNSYNCED_CLOCK_ERROR_MS

    def ms_at(self, mono: float) -> float:
        """The server's time (ms) at monotonic time ``mono``."""
        return self._server_ref_ms + (mono - self._mono_ref) * 1000.0

    def now_ms(self) -> int:
        return int(self.ms_at(time.monotonic()))

    def reached_ms(self) -> int:
        """A server time the exchange's clock has certainly reached: the estimate minus its
        error bound."""
        return int(self.ms_at(time.monotonic()) - self.error_ms)

    def synced(self, server_ms: int, sent_mono: float, done_mono: float) -> None:
        """The server answered ``server_ms`` to a request sent at ``sent_mono`` and answered at
        ``done_mono``. It read its clock somewhere inside that flight: take the midpoint, wrong
        by at most half the round trip."""
        self._mono_ref = (sent_mono + done_mono) / 2
        self._server_ref_ms = float(server_ms)
        self.error_ms = (done_mono - sent_mono) * 500.0 + CLOCK_GUARD_MS
