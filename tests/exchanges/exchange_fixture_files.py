"""Where the recorded exchange payloads live, and small readers for their formats."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

FIXTURES = Path(os.environ["P9_FIXTURES"])  # set by tests/conftest.py


def read_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def read_json(relative: str):
    return json.loads(read_bytes(relative))


def significant_digits(text: str) -> int:
    return len(Decimal(text).normalize().as_tuple().digits)


def same_number(value: float, text: str) -> bool:
    """The float is the decimal number the exchange wrote (``8871.92`` == ``"8871.92000000"``).

    A float64 holds every decimal of up to 15 significant digits exactly (``repr`` gives it
    back); longer ones (Binance quote volumes such as ``"88149249.09230461"``, 16 digits) can
    only be the nearest double, which is what ``float(text)`` gives.
    """
    if type(value) is not float:
        return False
    if significant_digits(text) <= 15:
        return Decimal(repr(value)) == Decimal(text)
    return value == float(text)


def capture_frames(relative: str) -> Iterator[tuple[str, str]]:
    """Received frames of a cryptofeed ``*.capture.txt``: ``(url_or_empty, frame_text)``.

    Lines ``<url> <-> <ts>`` (connection opened) and ``<url> <- <ts>: <json>`` (sent by the
    client) are skipped; ``<ts>: <json>`` is a received frame; REST lines are
    ``<url> -> <ts>: <body>`` and are yielded with their URL.
    """
    for line in (FIXTURES / relative).read_text().splitlines():
        if not line.strip():
            continue
        head, sep, text = line.partition(": ")
        if " <-> " in line.split(": ", 1)[0] or " <- " in head:
            continue
        if " -> " in head:
            url = head.split(" -> ", 1)[0]
            yield url, text
        elif sep:
            yield "", text


def jsonl_frames(relative: str) -> list[str]:
    return [line for line in (FIXTURES / relative).read_text().splitlines() if line.strip()]
