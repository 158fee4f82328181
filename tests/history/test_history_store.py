"""Parquet store: schema, metadata, round trip, atomic replacement (incl. kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from p9cli.candles import Candles
from p9cli.fsutil import remove_temp_files, write_atomic
from p9cli.store import (
    SCHEMA,
    DataStore,
    SeriesMeta,
    StoredSeries,
    StoreError,
    read_series_file,
    write_series_file,
)

H = 3_600_000


def make_series(n: int, base: float = 100.0, trades: bool = True) -> StoredSeries:
    rows = {}
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % H
    for i in range(n):
        p = base + i * 0.25
        rows[t0 + i * H] = (
            p,
            p + 1.5,
            p - 1.25,
            p + 0.5,
            10.0 + i,
            (10.0 + i) * p,
            (i * 7) if trades else None,
        )
    meta = SeriesMeta(
        exchange="okx",
        symbol="btc",
        exchange_symbol="BTC-USDT",
        timeframe="1h",
        source="http://127.0.0.1:8803",
        fetched_at_ms=1_700_000_000_123,
        holes=[t0 + 5 * H, t0 + 2 * H],
        history_starts_ms=None,
        gaps_checked_ms=1_700_000_000_123,
    )
    return StoredSeries(Candles.from_rows(rows), meta)


def test_round_trip_schema_and_metadata(tmp_path):
    s = make_series(50, trades=False)
    store = DataStore(tmp_path)
    path = store.series_path("okx", "btc", "1h")
    assert path == tmp_path / "history" / "okx" / "btc" / "1h.parquet"
    store.write_series("okx", "btc", "1h", s)
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == SCHEMA
    assert table.schema.field("open_time").type == pa.timestamp("ms", tz="UTC")
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["exchange"] == "okx" and meta["exchange_symbol"] == "BTC-USDT" and meta["timeframe"] == "1h"
    assert meta["source"] == "http://127.0.0.1:8803"
    assert meta["fetched_at"] == "2023-11-14T22:13:20.123+00:00"
    assert json.loads(meta["holes"]) == sorted(s.meta.holes)
    assert meta["schema_version"] == "1" and meta["history_starts_ms"] == ""
    back = store.read_series("okx", "btc", "1h")
    assert back.candles.equals(s.candles) and back.candles.rows() == s.candles.rows()
    assert back.candles.trade_counts() == [None] * 50  # nullable int column
    assert back.meta == s.meta
    assert table.column("trades").null_count == 50
    # with trade counts
    store.write_series("okx", "btc", "1h", make_series(5))
    assert store.read_series("okx", "btc", "1h").candles.trade_counts() == [0, 7, 14, 21, 28]
    assert pq.read_table(path).column("trades").type == pa.int64()
    # another series' file is named as such
    with pytest.raises(StoreError, match="holds another series .timeframe '1h'"):
        read_series_file(path, "okx", "btc", "4h")
    # pandas sees UTC timestamps
    df = pq.read_table(path).to_pandas()
    assert str(df["open_time"].dt.tz) == "UTC"
    assert df["open_time"].is_monotonic_increasing and df["open_time"].is_unique


def test_missing_file_is_none_and_garbage_is_a_one_line_error(tmp_path):
    assert read_series_file(tmp_path / "nope.parquet") is None
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError) as err:
        read_series_file(bad)
    assert "\n" not in str(err.value) and "bad.parquet" in str(err.value)


def test_unsorted_rows_are_refused_and_nothing_is_replaced(tmp_path):
    path = tmp_path / "x.parquet"
    write_series_file(path, make_series(3))
    before = path.read_bytes()
    s = make_series(3)
    s.candles = s.candles.take(slice(None, None, -1))
    with pytest.raises(ValueError):
        write_series_file(path, s)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_unwritable_directory_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as err:
        write_series_file(blocker / "okx" / "1h.parquet", make_series(2))
    assert "\n" not in str(err.value)
    if os.geteuid() == 0:
        return  # root ignores directory permissions
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StoreError) as err:
            write_series_file(d / "1h.parquet", make_series(2))
        assert "\n" not in str(err.value)
    finally:
        d.chmod(0o700)


WRITER = textwrap.dedent(
    """
    import sys
    from tests.history.test_history_store import make_series
    from p9cli.store import write_series_file
    path = sys.argv[1]
    a, b = make_series(1500, 100.0), make_series(3000, 200.0)
    i = 0
    print("ready", flush=True)
    while True:
        write_series_file(path, a if i % 2 == 0 else b)
        i += 1
    """
)


def test_kill_9_during_writes_leaves_a_readable_old_or_new_file(tmp_path):
    path = tmp_path / "okx" / "btc" / "1h.parquet"
    path.parent.mkdir(parents=True)
    a, b = make_series(1500, 100.0), make_series(3000, 200.0)
    write_series_file(path, a)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    versions = {len(x.candles): x.candles.rows() for x in (a, b)}
    for k in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], cwd=root, stdout=subprocess.PIPE, env={**os.environ}
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.15 + 0.037 * k)  # many writes are under way; kill at a different phase each time
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        s = read_series_file(path)
        assert s is not None
        assert versions[len(s.candles)] == s.candles.rows()  # exactly the old or the new content
    # temp files of killed writers may remain; they are hidden and cleaned up by the next run
    leftovers = [p for p in path.parent.iterdir() if p.name != "1h.parquet"]
    assert all(p.name.startswith(".1h.parquet.") and p.name.endswith(".tmp") for p in leftovers)
    assert remove_temp_files(tmp_path) == len(leftovers)
    assert [p.name for p in path.parent.iterdir()] == ["1h.parquet"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """Issue 8 item 3: history files were 0600 (mkstemp) while other output was 0644."""
    old = os.umask(umask)
    try:
        store = DataStore(tmp_path)
        store.write_series("okx", "btc", "1h", make_series(3))
        write_atomic(tmp_path / "x.json", b"{}")
        write_atomic(tmp_path / "fast.json", b"{}", durable=False)
    finally:
        os.umask(old)
    for p in (store.series_path("okx", "btc", "1h"), tmp_path / "x.json", tmp_path / "fast.json"):
        assert p.stat().st_mode & 0o777 == mode, p


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "doc.json"
    write_atomic(target, b"old")

    def half_then_fail(fh):
        fh.write(b"new, half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_inventory_lists_what_exists(tmp_path):
    store = DataStore(tmp_path)
    assert store.inventory() == {}
    for ex, sym, tf in (("okx", "btc", "1h"), ("okx", "btc", "1d"), ("bybit", "eth", "1h")):
        s = make_series(3)
        s.meta.exchange, s.meta.symbol, s.meta.timeframe = ex, sym, tf
        store.write_series(ex, sym, tf, s)  # (inventory looks at the files, not their contents)
    assert store.inventory() == {("bybit", "eth"): ("1h",), ("okx", "btc"): ("1d", "1h")}
    assert store.inventory(exchanges=("okx",), timeframes=("1h", "4h")) == {("okx", "btc"): ("1h",)}
