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

from p9cli.history.store import (
    SCHEMA,
    Series,
    StoreError,
    build_metadata,
    read_series,
    remove_stale_temp_files,
    series_path,
    write_series,
)

H = 3_600_000


def make_series(n: int, base: float = 100.0, trades: bool = True) -> Series:
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
    meta = build_metadata(
        exchange="okx",
        symbol="btc",
        exchange_symbol="BTC-USDT",
        timeframe="1h",
        source="http://127.0.0.1:8803",
        fetched_at_ms=1_700_000_000_123,
        holes=[t0 + 5 * H, t0 + 2 * H],
        history_starts_ms=None,
    )
    return Series.from_rows(rows, meta)


def test_round_trip_schema_and_metadata(tmp_path):
    s = make_series(50, trades=False)
    path = series_path(tmp_path, "okx", "btc", "1h")
    assert path == tmp_path / "okx" / "btc" / "1h.parquet"
    write_series(path, s)
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == SCHEMA
    assert table.schema.field("open_time").type == pa.timestamp("ms", tz="UTC")
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["exchange"] == "okx" and meta["exchange_symbol"] == "BTC-USDT" and meta["timeframe"] == "1h"
    assert meta["source"] == "http://127.0.0.1:8803"
    assert meta["fetched_at"] == "2023-11-14T22:13:20.123+00:00"
    assert json.loads(meta["holes"]) == sorted(s.holes)
    assert meta["schema_version"] == "1"
    back = read_series(path)
    assert back.open_time == s.open_time
    assert back.rows() == s.rows()
    assert back.trades == [None] * 50  # nullable int column
    assert back.holes == sorted(s.holes)
    assert back.history_starts_ms is None
    # pandas sees UTC timestamps
    df = pq.read_table(path).to_pandas()
    assert str(df["open_time"].dt.tz) == "UTC"
    assert df["open_time"].is_monotonic_increasing and df["open_time"].is_unique


def test_missing_file_is_none_and_garbage_is_a_one_line_error(tmp_path):
    assert read_series(tmp_path / "nope.parquet") is None
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError) as err:
        read_series(bad)
    assert "\n" not in str(err.value) and "bad.parquet" in str(err.value)


def test_unsorted_rows_are_refused_and_nothing_is_replaced(tmp_path):
    path = tmp_path / "x.parquet"
    write_series(path, make_series(3))
    before = path.read_bytes()
    s = make_series(3)
    s.open_time.reverse()
    with pytest.raises(ValueError):
        write_series(path, s)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_unwritable_directory_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as err:
        write_series(blocker / "okx" / "1h.parquet", make_series(2))
    assert "\n" not in str(err.value)
    if os.geteuid() == 0:
        return  # root ignores directory permissions
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StoreError) as err:
            write_series(d / "1h.parquet", make_series(2))
        assert "\n" not in str(err.value)
    finally:
        d.chmod(0o700)


WRITER = textwrap.dedent(
    """
    import sys
    from tests.history.test_history_store import make_series
    from p9cli.history.store import write_series
    path = sys.argv[1]
    a, b = make_series(1500, 100.0), make_series(3000, 200.0)
    i = 0
    print("ready", flush=True)
    while True:
        write_series(path, a if i % 2 == 0 else b)
        i += 1
    """
)


def test_kill_9_during_writes_leaves_a_readable_old_or_new_file(tmp_path):
    path = tmp_path / "okx" / "btc" / "1h.parquet"
    path.parent.mkdir(parents=True)
    a, b = make_series(1500, 100.0), make_series(3000, 200.0)
    write_series(path, a)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    versions = {tuple(a.open_time): a.rows(), tuple(b.open_time): b.rows()}
    for k in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], cwd=root, stdout=subprocess.PIPE, env={**os.environ}
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.15 + 0.037 * k)  # many writes are under way; kill at a different phase each time
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        s = read_series(path)
        assert s is not None
        assert versions[tuple(s.open_time)] == s.rows()  # exactly the old or the new content
    # temp files of killed writers may remain; they are hidden and cleaned up by the next run
    leftovers = [p for p in path.parent.iterdir() if p.name != "1h.parquet"]
    assert all(p.name.startswith(".1h.parquet.") and p.name.endswith(".tmp") for p in leftovers)
    assert remove_stale_temp_files(tmp_path) == len(leftovers)
    assert [p.name for p in path.parent.iterdir()] == ["1h.parquet"]
