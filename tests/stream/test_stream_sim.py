"""`p9 stream` end to end: p9 sim (real time) + history fetched from it + analyze + the real
Redis server. A subscriber receives all five channels for every pair, every message validates
against its schema, seq increases per channel, the SET twin holds the newest message, and every
sampled fusion_data.book equals the simulator's true book at its update_id. fusion_data keeps its
throttle (<= 4/s per channel), structure messages are fresh (not stale, age from the document's
newest candle), and a forming higher-timeframe candle seeded from the stored minutes is the
simulator's true candle so far."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import httpx
import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sim"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "history"))

from e2e_helpers import ThreadSubscriber, fetched_and_analyzed  # noqa: E402
from simutil import start_sim  # noqa: E402

from p9cli.publish import STATUS, validate_message  # noqa: E402
from p9cli.publish.embedded import EmbeddedRedis  # noqa: E402
from p9cli.services import stream as service  # noqa: E402
from p9cli.store import DataStore  # noqa: E402

EXCHANGES = ("binance", "bybit")
KINDS = ("market_context", "fusion_data", "precision9_context", "structure")
RUN_S = 14


def test_stream_publishes_all_channels_with_true_books(tmp_path, redis_token):
    # a Redis server of its own: pub/sub channels are server-wide, and this test uses the real
    # channel names (fusion_data:binance:btcusdt ...) that another stream on a shared server may
    # publish too (seen: a demo run broke the seq check)
    server = EmbeddedRedis.start()
    try:
        _run(tmp_path, server.url, redis_token)
    finally:
        server.stop()


def _run(tmp_path, redis_url, redis_token):
    thread, handle = start_sim(speed=1.0, start_ms=None)
    pairs = [(ex, "btcusdt") for ex in EXCHANGES]
    channels = [f"{k}:{ex}:{sym}" for ex, sym in pairs for k in KINDS] + [STATUS]
    sub = ThreadSubscriber(redis_url, channels)
    client = redis.Redis.from_url(redis_url)
    try:
        settings = fetched_and_analyzed(handle, tmp_path, symbols="btc", exchanges=EXCHANGES, redis_url=redis_url,
                                        worker_id=f"w-{redis_token}")
        sub.start()
        out = io.StringIO()
        rc = service.run(settings, duration=RUN_S, quick_test=True, out=out)
        summary = out.getvalue()
        assert rc == 0, summary
        assert "PASS" in summary and "FAIL" not in summary, summary

        for ch in channels:
            msgs = sub.messages.get(ch)
            assert msgs, f"nothing on {ch}"
            decoded = [validate_message(ch, m) for m in msgs]
            seqs = [d["seq"] for d in decoded if ch != STATUS or d.get("worker_id") is None]
            if ch != STATUS:  # the system status merges every live worker: seq is per producer
                assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False)), (ch, seqs[:20])
                twin = client.get(ch)
                assert twin is not None, f"no SET twin for {ch}"
                assert orjson.loads(twin) == decoded[-1], ch

        # nearest levels agree with the structure documents published and the live price
        for ex, sym in pairs:
            level_prices = {
                float(lv["price"])
                for m in sub.messages[f"structure:{ex}:{sym}"]
                for lv in orjson.loads(m).get("levels") or []
            }
            positions = 0
            for m in sub.messages[f"fusion_data:{ex}:{sym}"]:
                d = orjson.loads(m)
                if not d.get("position") or d["price"] is None:
                    continue
                price = d["price"]
                sup, res = d["position"]["support"], d["position"]["resistance"]
                for lv in (sup, res):
                    if lv is not None:
                        assert lv["price"] in level_prices, (ex, lv)
                        # published to 6 decimals (docs/channels.md): within half a unit of the 6th
                        assert abs(lv["distance_pct"] - (lv["price"] - price) / price * 100) <= 5e-7 + 1e-12
                if sup is not None:
                    assert sup["price"] <= price
                if res is not None:
                    assert res["price"] > price
                positions += 1
            assert positions, f"no position in fusion_data:{ex}:{sym}"

        # throttle: <= 4/s per channel (builds >= 250 ms apart; ts is the build time in ms)
        # and structure freshness: a just-analysed document recomputed on every close
        for ex, sym in pairs:
            fusion = [orjson.loads(m) for m in sub.messages[f"fusion_data:{ex}:{sym}"]]
            gaps = [b["ts"] - a["ts"] for a, b in zip(fusion, fusion[1:], strict=False)]
            assert min(gaps) >= 249, (ex, sorted(gaps)[:5])
            assert len(fusion) <= 4 * RUN_S + 4
            ages = [d["freshness"]["structure_age_ms"] for d in fusion]
            assert all(a is not None and -5_000 <= a <= 180_000 for a in ages), (ex, min(ages), max(ages))
            assert not any(orjson.loads(m)["stale"] for m in sub.messages[f"structure:{ex}:{sym}"])

        checked = 0
        seeded = 0
        with httpx.Client(timeout=10) as http:
            # seeding: when the stored minutes reach the live start, the first forming 1h candle
            # opens with the true 1h open and stays inside the true range
            store = DataStore(tmp_path)
            for ex, sym in pairs:
                stored_last = int(store.read_series(ex, "btc", "1m").candles.open_time[-1])
                fusion = [orjson.loads(m) for m in sub.messages[f"fusion_data:{ex}:{sym}"]]
                first = next(d for d in fusion if (d["candles"].get("1m") or {}).get("forming"))
                if stored_last != first["candles"]["1m"]["forming"]["open_time"] - 60_000:
                    continue  # a minute went by between fetch-history and the stream: nothing to seed with
                hour = first["candles"]["1h"]["forming"]
                r = http.get(f"{handle.control_url}/truth/candles", params={
                    "exchange": ex, "symbol": "btc", "interval": "1h", "start": hour["open_time"],
                    "end": hour["open_time"]})  # fmt: skip
                [truth] = r.json()["candles"]
                assert float(truth["open"]) == hour["open"], (ex, truth, hour)
                assert float(truth["low"]) <= hour["low"] and hour["high"] <= float(truth["high"])
                assert hour["volume"] <= float(truth["volume"]) + 1e-9
                seeded += 1
            print(f"seeded forming 1h candles checked: {seeded} of {len(pairs)}")

            for ex, sym in pairs:
                books = [orjson.loads(m)["book"] for m in sub.messages[f"fusion_data:{ex}:{sym}"]]
                books = [b for b in books if b is not None]
                assert books, f"no book in fusion_data:{ex}:{sym}"
                for b in books[:: max(1, len(books) // 8)]:
                    uid = b.get("seq", b["update_id"])
                    r = http.get(f"{handle.control_url}/truth/book",
                                 params={"exchange": ex, "symbol": "btc", "update_id": uid})
                    assert r.status_code == 200, (ex, uid, r.text)
                    truth = r.json()
                    assert (float(truth["bids"][0][0]), float(truth["bids"][0][1])) == (b["bid"], b["bid_size"])
                    assert (float(truth["asks"][0][0]), float(truth["asks"][0][1])) == (b["ask"], b["ask_size"])
                    checked += 1
        assert checked >= 2 * len(pairs)
    finally:
        sub.close()
        for ex, sym in pairs:
            for k in KINDS:
                client.delete(f"{k}:{ex}:{sym}")
        client.close()
        thread.stop()
