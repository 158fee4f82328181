"""`p9 watch` renderables from REAL payloads (recorded from `p9 stream` vs `p9 sim` by the
`stream_payloads` fixture): the screen shows the payloads' numbers, flags stale data in words,
degrades to the terminal's size and exports to SVG; bad input and unreachable Redis are one line."""

from __future__ import annotations

import copy
import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from p9cli.cli import app
from p9cli.services.watch import parse_pair
from p9cli.ui.watch import LADDER_ATR_TF, PairPayloads, WatchScreen

KINDS = ("fusion_data", "market_context", "precision9_context", "structure")


def pairs_of(rec) -> list[PairPayloads]:
    return [PairPayloads(ex, sym, rec.pair(i)) for i, (ex, sym) in enumerate(rec.pairs)]


def render(pairs, now_ms, width=120, height=40) -> str:
    console = Console(width=width, height=height, record=True, color_system=None, file=io.StringIO())
    console.print(WatchScreen(pairs, now_ms))
    text = console.export_text()
    lines = text.splitlines()
    assert len(lines) == height and all(len(ln) <= width for ln in lines), (width, height, text)
    return text


def decimals(tick: float) -> int:
    return len(f"{tick:.10f}".rstrip("0").split(".")[1])


def test_view_shows_the_payloads_numbers(stream_payloads):
    rec = stream_payloads
    for pair in pairs_of(rec):
        p = pair.payloads
        assert set(p) == set(KINDS), pair.name
        fd, mc, p9 = p["fusion_data"], p["market_context"], p["precision9_context"]
        now = max(fd["ts"], mc["ts"], p9["ts"]) + 400
        text = render([pair], now)
        # the newest price among the payloads (fusion_data on change, the contexts 1/s)
        newest = max((fd, p9), key=lambda m: m["ts"])
        price = newest["price"]
        dec = decimals(p["structure"]["tick"])
        assert f"{price:,.{dec}f}" in text.splitlines()[0]
        assert pair.name.upper() in text
        book = max((fd, mc), key=lambda m: m["ts"])
        book = book["book"] if book is fd else book["live"]["book"]
        assert f"spread {book['spread']:,.{dec}f} ({book['spread_bps']:.2f} bp)" in text
        assert f"{book['bid']:,.{dec}f}" in text and f"{book['ask']:,.{dec}f}" in text
        # change of the UTC day: vs the previous 1d close of the structure when it is yesterday's
        sec, forming = p["structure"]["timeframes"]["1d"], fd["candles"]["1d"]["forming"]
        base = sec["close"] if sec["last_open_ms"] + 86_400_000 == forming["open_time"] else forming["open"]
        assert f"{(price - base) / base * 100:+.2f}% 1d" in text
        # ladder: the nearest support / resistance of the payload with distances from the live price
        atr = p9["atr"][LADDER_ATR_TF]
        for side in ("support", "resistance"):
            lv = fd["position"][side]
            if lv is None:
                continue
            row = next(ln for ln in text.splitlines() if f"{lv['price']:,.{dec}f}" in ln and f"nearest {side}" in ln)
            d = (lv["price"] - price) / price * 100
            assert f"{d:+.{2 if abs(d) >= 0.1 else 3}f}%" in row, row
            assert f"{(lv['price'] - price) / atr:+.2f}" in row, row
        # trend per timeframe and ATR %
        trend = mc["structure"]["trend"]
        for tf in ("1d", "1h", "1m"):
            row = next(ln for ln in text.splitlines() if f" {tf} " in ln and trend[tf]["label"] in ln)
            assert f"{mc['structure']['atr_pct'][tf]:.2f}" in row, row
        # flow
        flow = fd["flow"]
        assert f"{flow['trades_per_s_10s']:.1f} 10s" in text
        assert "LIVE" in text and "STALE" not in text


def test_stale_is_said_in_words(stream_payloads):
    rec = stream_payloads
    pair = pairs_of(rec)[0]
    newest = max(m["ts"] for k, m in pair.payloads.items() if k != "structure")
    text = render([pair], newest + 20_000)
    assert "STALE" in text and "no message from p9 stream for 20 s" in text
    # the stream itself says the exchange data is stale: a real payload with its flags set
    broken = copy.deepcopy(pair)
    for k in ("fusion_data", "market_context", "precision9_context"):
        m = broken.payloads[k]
        m["stale"] = True
        m["freshness"].update(stale_sources=["trades", "book"], book_valid=False, trade_age_ms=15_000)
    broken.payloads["fusion_data"]["book"] = None
    broken.payloads["market_context"]["live"]["book"] = None
    text = render([broken], newest + 400)
    assert "STALE" in text and "book out of sync" in text and "last trade 15 s ago" in text
    assert "out of sync (no valid book)" in text


def test_degrades_to_small_terminals_and_several_pairs(stream_payloads):
    rec = stream_payloads
    pairs = pairs_of(rec)
    now = max(m["ts"] for p in pairs for k, m in p.payloads.items() if k != "structure") + 400
    one = render(pairs[:1], now, 80, 24)
    assert "book & flow" in one and "levels" in one and "trend & volatility" in one and "Ctrl-C" in one
    two = render(pairs, now, 80, 24)
    assert all(p.name.upper() in two for p in pairs) and two.count("book & flow") == 2
    tiny = render(pairs, now, 60, 10)  # compact: one row per pair
    assert all(p.name in tiny for p in pairs) and "LIVE" in tiny
    stale_tiny = render(pairs, now + 30_000, 60, 10)
    assert "no message from p9 stream" in stale_tiny


def test_svg_export(stream_payloads, tmp_path):
    pair = pairs_of(stream_payloads)[0]
    console = Console(width=100, height=30, record=True, file=io.StringIO())
    console.print(WatchScreen([pair], pair.payloads["fusion_data"]["ts"] + 400))
    out = tmp_path / "watch.svg"
    console.save_svg(str(out), title="p9 watch")
    svg = out.read_text()
    assert svg.startswith("<svg") and "book&#160;&amp;&#160;flow" in svg


@pytest.mark.parametrize(
    "spec,want",
    [("binance:btcusdt", ("binance", "btcusdt")), ("binance:btc", ("binance", "btcusdt")),
     ("OKX:BTC-USDT", ("okx", "btcusdt")), ("BTCUSDT", (None, "btcusdt")), ("eth", (None, "ethusdt"))],
)  # fmt: skip
def test_parse_pair(spec, want):
    assert parse_pair(spec) == want


def test_bad_input_no_data_and_no_redis(stream_payloads):
    runner = CliRunner()
    r = runner.invoke(app, ["watch", "kraken:btc", "--redis-url", stream_payloads.redis_url])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "unknown pair 'kraken:btc'" in lines[0] and "okx:xrpusdt" in lines[0]
    # a pair nobody publishes on this Redis (the fixture's stream published eth and stopped)
    r = runner.invoke(app, ["watch", "bybit:xrpusdt", "--redis-url", stream_payloads.redis_url])
    assert r.exit_code == 3, r.output
    assert r.output.strip() == "p9: no data for bybit:xrpusdt — is p9 stream running?"
    r = runner.invoke(app, ["watch", "binance:btc", "--redis-url", "redis://alice:s3cr%2Fet@127.0.0.1:1/0"])
    assert r.exit_code == 3
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0] and "redis://alice:***@127.0.0.1:1/0" in lines[0]
    assert "s3cr" not in r.output and "Traceback" not in r.output
