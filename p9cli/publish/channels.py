"""The public channel contract: channel (= key) names, schema ids, twin TTLs, the payload envelope.

A channel and its SET twin share one name: ``{kind}:{exchange}:{symbol}`` for the four per-pair
kinds, ``precision9_fusion_status`` for the whole-system heartbeat, and
``precision9_fusion_status:{worker_id}`` for each worker's own status.
"""

from __future__ import annotations

import time
from typing import Any

MARKET_CONTEXT = "market_context"
FUSION_DATA = "fusion_data"
PRECISION9_CONTEXT = "precision9_context"
STRUCTURE = "structure"
STATUS = "precision9_fusion_status"
#: Each worker's own status; not one of the five public channels, but published the same way.
WORKER_STATUS = "worker_status"

#: The five public channel kinds, in the order of issue 9's table.
CHANNEL_KINDS = (MARKET_CONTEXT, FUSION_DATA, PRECISION9_CONTEXT, STRUCTURE, STATUS)
PAIR_KINDS = (MARKET_CONTEXT, FUSION_DATA, PRECISION9_CONTEXT, STRUCTURE)

#: The versioned ``schema`` value each kind's payload carries.
SCHEMA_IDS = {
    MARKET_CONTEXT: "p9.market_context/1",
    FUSION_DATA: "p9.fusion_data/1",
    PRECISION9_CONTEXT: "p9.precision9_context/1",
    STRUCTURE: "p9.structure/2",
    STATUS: "p9.precision9_fusion_status/1",
    WORKER_STATUS: "p9.worker_status/1",
}

#: Expiry of the SET twin per kind (seconds): a producer that stopped becomes visible as a missing key.
#: The structure twin lives longer: it is republished only at start and on recompute.
DEFAULT_TTL_S = {
    MARKET_CONTEXT: 10,
    FUSION_DATA: 10,
    PRECISION9_CONTEXT: 10,
    STRUCTURE: 3600,
    STATUS: 10,
    WORKER_STATUS: 5,
}

_WORKER_PREFIX = STATUS + ":"


def channel(kind: str, exchange: str, symbol: str) -> str:
    """``fusion_data:binance:btcusdt``; ``symbol`` is the channel symbol (``btcusdt``)."""
    if kind not in PAIR_KINDS:
        raise ValueError(f"{kind!r} is not a per-pair channel kind; valid: {', '.join(PAIR_KINDS)}")
    return f"{kind}:{exchange}:{symbol}"


def worker_channel(worker_id: str) -> str:
    """The key and channel of one worker's own status."""
    return _WORKER_PREFIX + worker_id


def kind_of(name: str) -> str:
    """The kind of a channel name (``worker_status`` for a per-worker status channel)."""
    if name == STATUS:
        return STATUS
    if name.startswith(_WORKER_PREFIX):
        return WORKER_STATUS
    kind = name.split(":", 1)[0]
    if kind not in PAIR_KINDS or name.count(":") != 2:
        raise ValueError(f"{name!r} is not a p9 channel")
    return kind


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def envelope(
    kind: str,
    *,
    event_ts: int,
    exchange: str | None = None,
    symbol: str | None = None,
    stale: bool = False,
    ts: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A payload dict with the channel envelope first, then ``fields``.

    ``seq`` is a placeholder (0): the publisher numbers each message per channel when it sends it,
    so a coalesced (never sent) payload never uses up a number. ``ts`` defaults to now (ms).
    ``exchange``/``symbol`` are required for every kind except the status ones.
    """
    if kind not in SCHEMA_IDS:
        raise ValueError(f"unknown channel kind {kind!r}")
    out: dict[str, Any] = {"schema": SCHEMA_IDS[kind]}
    if kind not in (STATUS, WORKER_STATUS):
        if not exchange or not symbol:
            raise ValueError(f"a {kind} payload needs exchange and symbol")
        out["exchange"] = exchange
        out["symbol"] = symbol
    out["ts"] = now_ms() if ts is None else ts
    out["event_ts"] = event_ts
    out["seq"] = 0
    out["stale"] = stale
    out.update(fields)
    return out
