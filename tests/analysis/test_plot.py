"""The structure chart: a valid PNG, written atomically, from whatever sections the document has."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from analysis_candles import KLINES_1H, recorded_klines
from partb_data import multi_timeframe, random_walk_minutes, true_range_atr

from p9cli.analysis.plot import _fit, _spread_labels, plot_structure
from p9cli.analysis.zones import structure_sections

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_info(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG, after checking the signature and every chunk's CRC."""
    assert data[:8] == PNG_MAGIC
    pos, first, end_seen = 8, True, False
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(ctype + body) == crc, ctype
        if first:
            assert ctype == b"IHDR"
            width, height = struct.unpack(">II", body[:8])
            first = False
        if ctype == b"IEND":
            end_seen = True
        pos += 12 + length
    assert end_seen and pos == len(data)
    return width, height


@pytest.fixture(scope="module")
def doc_and_frames():
    frames = multi_timeframe(random_walk_minutes(days=30, seed=4), ["1d", "4h", "1h", "15m", "1m"], 1000)
    atr = {tf: true_range_atr(df) for tf, df in frames.items()}
    last = float(frames["1m"]["close"].iloc[-1])
    doc = {"exchange": "binance", "symbol": "btcusdt", "alignment": {"score": 0.25}}
    doc.update(structure_sections(frames, atr, last, 0.01))
    return doc, frames


def test_plot_writes_a_valid_png(tmp_path, doc_and_frames):
    doc, frames = doc_and_frames
    out = plot_structure(doc, frames["1h"], "1h", tmp_path / "context" / "binance" / "btc.png")
    assert out == tmp_path / "context" / "binance" / "btc.png"
    w, h = png_info(out.read_bytes())
    assert (w, h) == (15 * 110, int(8.5 * 110))
    assert [p.name for p in out.parent.iterdir()] == ["btc.png"]  # no temporary file left behind


def test_plot_accepts_candles_and_a_bare_document(tmp_path):
    c = recorded_klines(KLINES_1H)
    out = plot_structure({}, c, "1h", tmp_path / "bare.png", title="recorded BTCUSDT 1h", dpi=60)
    png_info(out.read_bytes())
    out = plot_structure(
        {"levels": None, "liquidity_zones": []}, c, "1h", tmp_path / "few.png", max_candles=5
    )
    png_info(out.read_bytes())


def test_plot_replaces_an_existing_file_and_fails_cleanly(tmp_path, doc_and_frames):
    doc, frames = doc_and_frames
    target = tmp_path / "chart.png"
    target.write_bytes(b"old")
    plot_structure(doc, frames["4h"], "4h", target, dpi=50)
    png_info(target.read_bytes())
    # no candles: a clear error and the existing file untouched
    before = target.read_bytes()
    with pytest.raises(ValueError, match="no candles"):
        plot_structure(doc, frames["4h"].iloc[:0], "4h", target)
    assert target.read_bytes() == before
    # a directory that cannot be created: OSError, nothing written
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        plot_structure(doc, frames["4h"], "4h", blocker / "sub" / "chart.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "file"]


def test_labels_are_spread_apart_and_keep_their_order():
    labels = [
        (100.0, "a", "k", False),
        (100.1, "b", "k", False),
        (100.05, "c", "k", True),
        (200.0, "d", "k", False),
    ]
    out = _spread_labels(labels, gap=1.0)
    ys = [y for y, *_ in out]
    assert [t for _, t, *_ in out] == ["a", "c", "b", "d"]  # price order
    assert all(b - a >= 1.0 - 1e-12 for a, b in zip(ys, ys[1:], strict=False))
    assert ys[-1] == 200.0  # far labels do not move
    assert np.mean(ys[:3]) == pytest.approx(np.mean([100.0, 100.05, 100.1]))  # a group stays centred


def test_plot_of_the_structure_document_built_by_context(tmp_path):
    """The chart reads the sections of the real p9.structure/1 document (what `p9 analyze --plot`
    passes) and draws every level and zone it holds within the view."""
    from p9cli.analysis.candles import Candles
    from p9cli.analysis.context import build_structure

    frames = multi_timeframe(random_walk_minutes(days=20, seed=6), ["1d", "4h", "1h", "15m", "1m"], 1000)
    candles = {tf: Candles.from_mapping(df) for tf, df in frames.items()}
    doc = build_structure("okx", "eth", candles, now_ms=0)
    assert doc["levels"] and doc["composite_profile"]["poc"] > 0
    out = plot_structure(doc, candles["4h"], "4h", tmp_path / "okx" / "eth.png", dpi=60)
    png_info(out.read_bytes())


def test_labels_are_kept_inside_the_view():
    labels = _spread_labels([(0.0, "a", "k", False), (0.2, "b", "k", False), (9.9, "c", "k", False)], gap=1.0)
    ys = [y for y, *_ in _fit(labels, 1.0, 0.0, 10.0)]
    assert ys[0] >= 0.5 and ys[-1] <= 9.5
    assert all(b - a >= 1.0 - 1e-12 for a, b in zip(ys, ys[1:], strict=False))
