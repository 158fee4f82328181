"""Helpers for the simulator WebSocket tests: recorded frames, JSON shape comparison, receiving."""

from __future__ import annotations

import asyncio
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

FIXTURES = Path(os.environ["P9_FIXTURES"])  # set by tests/conftest.py


def capture_frames(path: Path) -> list[Any]:
    """Received frames of a cryptofeed ``*.capture.txt`` (sent lines and the header skipped)."""
    out = []
    for line in path.read_text().splitlines():
        head = line.split(": ", 1)[0]
        if not line.strip() or " <-" in head or " <->" in line:
            continue
        out.append(json.loads(line.partition(": ")[2]))
    return out


def jsonl_frames(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_same_shape(ours: Any, ref: Any, where: str = "$") -> None:
    """Same JSON types, same object keys in the same order, recursively (lists: element shapes)."""
    assert type(ours) is type(ref), (
        f"{where}: {type(ours).__name__} != {type(ref).__name__} ({ours!r} vs {ref!r})"
    )
    if isinstance(ref, dict):
        assert list(ours) == list(ref), f"{where}: keys {list(ours)} != {list(ref)}"
        for key in ref:
            assert_same_shape(ours[key], ref[key], f"{where}.{key}")
    elif isinstance(ref, list) and ours and ref:
        for i, item in enumerate(ours):
            assert_same_shape(item, ref[0], f"{where}[{i}]")


def assert_shape_extends(ours: dict, ref: dict, extra: list[str], where: str = "$") -> None:
    """``ours`` has ``ref``'s keys in ``ref``'s order (same shapes), then exactly ``extra``."""
    assert list(ours) == list(ref) + extra, f"{where}: keys {list(ours)} != {list(ref) + extra}"
    for key in ref:
        assert_same_shape(ours[key], ref[key], f"{where}.{key}")


async def recv_json(ws, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, pred, timeout: float = 10.0, limit: int = 100_000) -> tuple[Any, list[Any]]:
    """Receive until ``pred(frame)``; returns (that frame, every frame received before it)."""
    seen = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(limit):
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time())))
        if pred(frame):
            return frame, seen
        seen.append(frame)
    raise AssertionError("predicate never matched")


def ticks(text: str, tick: Decimal) -> int:
    value = Decimal(text) / tick
    assert value == value.to_integral_value(), f"{text} is not a multiple of {tick}"
    return int(value)


def units(text: str, unit: Decimal) -> int:
    value = Decimal(text) / unit
    assert value == value.to_integral_value(), f"{text} is not a multiple of {unit}"
    return int(value)


def apply_levels(book: dict, levels, tick: Decimal, unit: Decimal) -> None:
    """Apply [price, qty, ...] string levels to {ticks: units} (qty 0 deletes)."""
    for level in levels:
        p, q = ticks(level[0], tick), units(level[1], unit)
        if q:
            book[p] = q
        else:
            book.pop(p, None)
