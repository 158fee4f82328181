"""The outcome rule of scripts/eval_levels.py on hand-built bars (ATR = 1)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_levels.py"


@pytest.fixture(scope="module")
def outcome():
    spec = importlib.util.spec_from_file_location("eval_levels", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["eval_levels"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod.outcome


def bars(*hlc):
    h, lo, c = (np.array(x, dtype=float) for x in zip(*hlc, strict=True))
    return h, lo, c


def test_resistance_outcomes(outcome):
    # start at 100, resistance at 105: reached on bar 1, then price falls 1 ATR below it
    up_then_down = bars((103, 101, 102), (105.2, 103, 104.5), (104.6, 103.9, 104))
    assert outcome(*up_then_down, 105.0, 100.0, 1.0) == "reaction"
    # reached, then 1 ATR above it first
    assert outcome(*bars((105.1, 104, 105), (106.0, 104.5, 105.8)), 105.0, 100.0, 1.0) == "break"
    # the touching bar closes 1 ATR beyond: a break, whatever its low
    assert outcome(*bars((106.5, 103, 106.2)), 105.0, 100.0, 1.0) == "break"
    # never reached
    assert outcome(*bars((103, 101, 102), (104.9, 103, 104)), 105.0, 100.0, 1.0) == "untouched"
    # reached, then neither side by 1 ATR
    assert outcome(*bars((105.1, 104.5, 105), (105.5, 104.5, 105)), 105.0, 100.0, 1.0) == "open"
    # both in one bar after the touch: order unknown
    assert outcome(*bars((105.1, 104.5, 105), (106.5, 103.5, 105)), 105.0, 100.0, 1.0) == "open"


def test_support_mirrors(outcome):
    assert outcome(*bars((99, 94.8, 95.5), (96.2, 95, 96)), 95.0, 100.0, 1.0) == "reaction"
    assert outcome(*bars((99, 94.8, 95.5), (95.5, 93.9, 94)), 95.0, 100.0, 1.0) == "break"
