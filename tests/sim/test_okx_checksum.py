"""OKX CRC32 checksum against the documented test vector and every real `books` frame recorded."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from p9cli.sim.okx_checksum import checksum_text, okx_checksum, signed_crc32

FIXTURES = Path(os.environ["P9_FIXTURES"])  # set by tests/conftest.py
CAPTURE = FIXTURES / "okx" / "public_ws_tickers_trades_books_2022-05-13.capture.txt"


def _received_frames(path: Path):
    for line in path.read_text().splitlines():
        if " <-" in line.split(": ", 1)[0] or " <->" in line:
            continue
        _stamp, _sep, text = line.partition(": ")
        yield json.loads(text)


def test_doc_vector_text_and_value():
    bids = [("3366.1", "7"), ("3366", "6")]
    asks = [("3366.8", "9"), ("3368", "8")]
    assert checksum_text(bids, asks) == "3366.1:7:3366.8:9:3366:6:3368:8"
    assert okx_checksum(bids, asks) == -1881014294
    assert signed_crc32("3366.1:7:3366.8:9:3366:6:3368:8") == -1881014294


def test_one_side_longer_appends_only_the_other_side():
    bids = [("10", "1")]
    asks = [("11", "2"), ("12", "3"), ("13", "4")]
    assert checksum_text(bids, asks) == "10:1:11:2:12:3:13:4"
    assert checksum_text(asks[:1], []) == "11:2"


def test_only_top_25_count():
    bids = [(str(1000 - i), "1") for i in range(40)]
    asks = [(str(2000 + i), "1") for i in range(40)]
    assert okx_checksum(bids, asks) == okx_checksum(bids[:25], asks[:25])
    assert okx_checksum(bids, asks) != okx_checksum(bids[:24], asks[:25])


def test_every_recorded_books_frame_matches():
    """Maintain each instrument's book from snapshot + updates using the exact strings; every
    recorded checksum must equal ours."""
    books: dict[str, tuple[dict, dict]] = {}
    checked = 0
    for frame in _received_frames(CAPTURE):
        arg = frame.get("arg", {})
        if arg.get("channel") != "books" or "data" not in frame:
            continue
        inst = arg["instId"]
        item = frame["data"][0]
        if frame["action"] == "snapshot":
            books[inst] = ({}, {})
        bids, asks = books[inst]
        for side, levels in ((bids, item["bids"]), (asks, item["asks"])):
            for px, sz, *_ in levels:
                key = Decimal(px)
                if sz == "0":
                    side.pop(key, None)
                else:
                    side[key] = (px, sz)
        top_bids = [bids[k] for k in sorted(bids, reverse=True)[:25]]
        top_asks = [asks[k] for k in sorted(asks)[:25]]
        assert okx_checksum(top_bids, top_asks) == item["checksum"], (inst, item["ts"])
        checked += 1
    assert checked == 290


def test_capture_line_31_snapshot():
    line = CAPTURE.read_text().splitlines()[30]
    item = json.loads(line.partition(": ")[2])["data"][0]
    assert item["checksum"] == 47640993
    assert okx_checksum(item["bids"], item["asks"]) == 47640993


@pytest.mark.parametrize("bad", [("30243.40", "0.0012029"), ("30243.4", "0.00120290")])
def test_reformatted_strings_change_the_checksum(bad):
    line = CAPTURE.read_text().splitlines()[30]
    item = json.loads(line.partition(": ")[2])["data"][0]
    bids = [list(b) for b in item["bids"]]
    assert (bids[0][0], bids[0][1]) == ("30243.4", "0.0012029")
    bids[0][0], bids[0][1] = bad
    assert okx_checksum(bids, item["asks"]) != 47640993
