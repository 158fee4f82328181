"""OKX order-book checksum (exchange-protocols.md section 4.6), written for the simulator.

The checksum is computed on the exact price and size *strings* that are sent: the best 25
bids (descending) and best 25 asks (ascending) are interleaved level by level as
``bid_px:bid_sz:ask_px:ask_sz`` (a side with no level ``i`` contributes nothing), joined with
``:``, and the CRC32 of that text is read as a signed 32-bit integer.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

CHECKSUM_LEVELS = 25

StrLevel = Sequence[str]  # (price, size, ...) as sent; only the first two are used


def checksum_text(bids: Sequence[StrLevel], asks: Sequence[StrLevel]) -> str:
    """The ``:``-joined string the checksum is the CRC32 of."""
    parts: list[str] = []
    nb = min(len(bids), CHECKSUM_LEVELS)
    na = min(len(asks), CHECKSUM_LEVELS)
    for i in range(max(nb, na)):
        if i < nb:
            parts.append(bids[i][0])
            parts.append(bids[i][1])
        if i < na:
            parts.append(asks[i][0])
            parts.append(asks[i][1])
    return ":".join(parts)


def signed_crc32(text: str) -> int:
    crc = zlib.crc32(text.encode())
    return crc - 0x1_0000_0000 if crc >= 0x8000_0000 else crc


def okx_checksum(bids: Sequence[StrLevel], asks: Sequence[StrLevel]) -> int:
    """Signed CRC32 of the top 25 levels; ``bids`` descending, ``asks`` ascending, strings."""
    return signed_crc32(checksum_text(bids, asks))
