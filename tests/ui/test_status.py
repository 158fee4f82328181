"""`p9 status`: the pure health evaluation and the view, on real payloads recorded from `p9 stream`
against `p9 sim` (fixture `stream_payloads`, tests/ui/conftest.py), aged by moving `now_ms`."""

from __future__ import annotations

import copy
import io
import re

from rich.console import Console

from p9cli.publish import FUSION_DATA, PRECISION9_CONTEXT, STATUS, STRUCTURE
from p9cli.ui.numbers import fmt_price
from p9cli.ui.status import (
    EXIT_HEALTHY,
    EXIT_NOTHING,
    EXIT_UNHEALTHY,
    evaluate,
    snapshot_from_payloads,
    status_view,
)


def _snapshot(rec) -> dict:
    """The recorded stream as `p9 status` reads it while the stream runs: the newest status whose
    feeds were all live (the very last ones were sent while stopping: state "stopped"), with only
    the recording worker, and the newest payload per pair key."""
    worker_id = f"w-{rec.token}"

    def mine(msg: dict) -> list[dict]:
        return [w for w in msg["workers"] if w["worker_id"] == worker_id]

    running = [m for m in rec.messages[STATUS] if mine(m) and all(f["state"] == "live" for f in mine(m)[0]["feeds"])]
    assert running, "no recorded status with every feed live"
    status = copy.deepcopy(running[-1])
    status["workers"] = mine(status)
    pairs = {}
    for ex, sym in rec.pairs:
        pairs[f"{ex}:{sym}"] = {
            FUSION_DATA: copy.deepcopy(rec.last[f"{FUSION_DATA}:{ex}:{sym}"]),
            PRECISION9_CONTEXT: copy.deepcopy(rec.last[f"{PRECISION9_CONTEXT}:{ex}:{sym}"]),
            STRUCTURE: rec.last[f"{STRUCTURE}:{ex}:{sym}"],
        }
    return snapshot_from_payloads(status, pairs, workers=status["workers"],
                                  redis={"url": "redis://***@127.0.0.1:6379/9", "ok": True, "error": None,
                                         "server": "redis", "version": "7.0.15", "ping_ms": 0.4,
                                         "used_memory_human": "1.2M"})  # fmt: skip


def _newest_ts(snap: dict) -> int:
    ts = [int(w["ts"]) for w in snap["workers"]]
    for kinds in snap["pairs"].values():
        ts += [int(kinds[k]["ts"]) for k in (FUSION_DATA, PRECISION9_CONTEXT)]
    return max(ts)


def _render(snap: dict, now_ms: int, width: int = 80) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(status_view(snap, now_ms))
    return buf.getvalue()


def test_recorded_stream_is_healthy_then_flagged_stale_in_words(stream_payloads):
    rec = stream_payloads
    snap = _snapshot(rec)
    now = _newest_ts(snap)
    report = evaluate(snap, now)
    assert report["exit_code"] == EXIT_HEALTHY, report
    assert [p["pair"] for p in report["pairs"]] == sorted(f"{ex}:{sym}" for ex, sym in rec.pairs)
    (worker,) = report["workers"]
    assert worker["worker_id"] == f"w-{rec.token}"
    assert set(worker["pairs"]) == {f"{ex}:{sym}" for ex, sym in rec.pairs}
    for p in report["pairs"]:
        fusion = snap["pairs"][p["pair"]][FUSION_DATA]
        assert p["health"] == "ok" and not p["problems"], p
        assert p["worker"] == worker["worker_id"]
        # price and ages (carried forward to now) from the newer of the worker's status entry and
        # the fusion_data twin; the context age from the worker, else the precision9_context twin
        w = snap["workers"][0]
        feed = next(f for f in w["feeds"] if f"{f['exchange']}:{f['symbol']}" == p["pair"])
        worker_newer = feed.get("trade_age_ms") is not None and w["ts"] >= fusion["ts"]
        assert p["price"] == (feed["price"] if worker_newer else fusion["price"]) is not None
        if worker_newer:
            assert p["trade_age_ms"] == max(0, feed["trade_age_ms"]) + (now - w["ts"])
        else:
            assert p["trade_age_ms"] == max(0, fusion["freshness"]["trade_age_ms"]) + (now - fusion["ts"])
        if feed.get("context_age_ms") is not None:
            assert p["context_age_ms"] == feed["context_age_ms"] + (now - w["ts"])
        else:
            assert p["context_age_ms"] == now - snap["pairs"][p["pair"]][PRECISION9_CONTEXT]["ts"]

    text = _render(snap, now)
    assert "HEALTHY" in text and worker["worker_id"] in text
    for p in report["pairs"]:
        assert p["pair"] in text and fmt_price(p["price"]) in text
    assert max(len(line) for line in text.splitlines()) <= 80

    # 42 s later with nothing new: every pair is stale, in words, and the verdict is exit 1
    later = now + 42_000
    stale = evaluate(snap, later)
    assert stale["exit_code"] == EXIT_UNHEALTHY and stale["health"] == "degraded"
    for p in stale["pairs"]:
        assert p["health"] == "stale"
        assert any(re.fullmatch(r"trades stale 4\d s", w) for w in p["problems"]), p["problems"]
        assert any(re.fullmatch(r"context stale 4\d s", w) for w in p["problems"]), p["problems"]
    assert stale["workers"][0]["problems"] and stale["workers"][0]["problems"][0].startswith("silent 4")
    text = _render(snap, later)
    assert "DEGRADED" in text and "STALE" in text
    assert re.search(r"trades stale 4\d s", text) and re.search(r"context stale 4\d s", text)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_missing_data_and_stopped_worker_are_flagged(stream_payloads):
    rec = stream_payloads
    snap = _snapshot(rec)
    now = _newest_ts(snap)
    first, second = sorted(snap["pairs"])

    # one pair never delivered (no fusion_data twin, no price nor trade age from its worker), the
    # other's book out of sync
    gone = copy.deepcopy(snap)
    gone["pairs"][first][FUSION_DATA] = None
    for f in gone["workers"][0]["feeds"]:
        if f"{f['exchange']}:{f['symbol']}" == first:
            f.update(price=None, trade_age_ms=None)
    gone["pairs"][second][FUSION_DATA]["book"] = None
    report = evaluate(gone, now)
    by = {p["pair"]: p for p in report["pairs"]}
    assert report["exit_code"] == EXIT_UNHEALTHY
    assert by[first]["health"] == "down" and "no data" in by[first]["problems"]
    assert by[second]["health"] == "stale" and "book out of sync" in by[second]["problems"]
    text = _render(gone, now)
    assert "no data" in text and "book out of sync" in text

    # the stream's last status, sent while it stops: every feed "stopped" -> DOWN, in words. Whether
    # the merged status carrying it was recorded before the worker retired is a race, so the
    # recorded worker entry is taken as the stream sends it then (its feeds' state "stopped")
    last = copy.deepcopy(snap)
    last["workers"] = [w for w in rec.last[STATUS]["workers"] if w["worker_id"] == f"w-{rec.token}"]
    for f in last["workers"][0]["feeds"]:
        f["state"] = "stopped"
    report = evaluate(last, max(now, int(last["workers"][0]["ts"])))
    assert report["exit_code"] == EXIT_UNHEALTHY
    assert all(p["health"] == "down" and "feed stopped" in p["problems"] for p in report["pairs"])

    # the worker stopped (its key gone), its pair keys still there: its pairs are down; nothing
    # publishes at all -> exit 3
    stopped = copy.deepcopy(snap)
    stopped["workers"] = []
    stopped["status"] = None
    report = evaluate(stopped, now + 5_000)
    assert report["exit_code"] == EXIT_NOTHING and report["health"] == "nothing publishing"
    assert all(p["health"] == "down" and p["worker"] is None for p in report["pairs"])
    assert all(p["problems"][0].startswith("no worker publishes it (last data") for p in report["pairs"])
    text = _render(stopped, now + 5_000)
    assert "NOTHING PUBLISHING" in text and "no worker publishes it" in text


def test_view_exports_svg(stream_payloads):
    snap = _snapshot(stream_payloads)
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(status_view(snap, _newest_ts(snap) + 15_000))
    svg = console.export_svg(title="p9 status")
    assert svg.startswith("<svg") and "trades" in svg and "stale" in svg


def test_feed_states_and_worker_figures(stream_payloads):
    snap = _snapshot(stream_payloads)
    now = _newest_ts(snap)
    first, second = sorted(snap["pairs"])
    worker = snap["workers"][0]
    feeds = {f"{f['exchange']}:{f['symbol']}": f for f in worker["feeds"]}

    # the worker's feed state counts: down -> DOWN, syncing -> STALE, in words
    states = copy.deepcopy(snap)
    sfeeds = {f"{f['exchange']}:{f['symbol']}": f for f in states["workers"][0]["feeds"]}
    sfeeds[first]["state"] = "down"
    sfeeds[second]["state"] = "syncing"
    by = {p["pair"]: p for p in evaluate(states, now)["pairs"]}
    assert by[first]["health"] == "down" and "feed down" in by[first]["problems"]
    assert by[second]["health"] == "stale" and "feed syncing" in by[second]["problems"]

    # the twins expired but the worker reports price and ages: that is data, judged by those ages
    bare = copy.deepcopy(snap)
    for name in bare["pairs"]:
        bare["pairs"][name] = {FUSION_DATA: None, PRECISION9_CONTEXT: None, STRUCTURE: True}
    bfeeds = {f"{f['exchange']}:{f['symbol']}": f for f in bare["workers"][0]["feeds"]}
    for name, f in bfeeds.items():
        fusion = snap["pairs"][name][FUSION_DATA]
        f.update(price=fusion["price"], trade_age_ms=0, book_age_ms=0, context_age_ms=0, stale_sources=[])
    report = evaluate(bare, int(worker["ts"]) + 500)
    assert report["exit_code"] == EXIT_HEALTHY, report["pairs"]
    for p in report["pairs"]:
        assert p["price"] == snap["pairs"][p["pair"]][FUSION_DATA]["price"] and p["trade_age_ms"] == 500
    bfeeds[first]["trade_age_ms"] = 41_500
    by = {p["pair"]: p for p in evaluate(bare, int(worker["ts"]) + 500)["pairs"]}
    assert by[first]["problems"] == ["trades stale 42 s"] and by[second]["health"] == "ok"
    assert feeds  # the recorded worker reported its feeds
