"""Helpers for the simulator REST tests: recorded fixtures, JSON shape signatures, truth."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

#: ``../shared/fixtures/exchanges`` (set by tests/conftest.py; ``P9_FIXTURES`` overrides it).
FIXTURES = Path(os.environ["P9_FIXTURES"])


def shape(value: Any, classify_str: Callable[[str], str]) -> Any:
    """Structure of a JSON value: JSON types, object keys in order, and for strings the
    exchange's number format as ``classify_str`` names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return classify_str(value)
    if isinstance(value, list):
        return [shape(v, classify_str) for v in value]
    if isinstance(value, dict):
        return {k: shape(v, classify_str) for k, v in value.items()}
    return type(value).__name__


def truth_candles(handle, exchange: str, symbol: str, interval: str, start: int, end: int) -> list[dict]:
    """The simulator's true candles from the control API."""
    r = httpx.get(
        handle.control_url + "/truth/candles",
        params={"exchange": exchange, "symbol": symbol, "interval": interval, "start": start, "end": end},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["candles"]
