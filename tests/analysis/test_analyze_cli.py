"""``p9 analyze`` end to end: Parquet history in a tmp data dir -> context JSON files; bad input
gives one line naming the file, the other symbols still complete, nothing on disk is damaged."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from analysis_candles import simulator_candles, synthetic_candles, write_history, write_universe
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from p9cli.cli import app
from p9cli.config import load_settings
from p9cli.errors import P9Error
from p9cli.services.analyze import load_pair
from p9cli.services.analyze import run as run_analyze
from p9cli.services.fetch_history import run as run_fetch_history
from p9cli.sim.testing import SimThread
from p9cli.store import DataStore, read_series_file
from p9cli.universe import TIMEFRAMES

TFS = ("1d", "4h", "1h", "15m")
ENV = {"P9_TIMEFRAMES": ",".join(TFS), "P9_DEBUG": ""}


@pytest.fixture(scope="module")
def schema_validator() -> Draft202012Validator:
    schema = json.loads(resources.files("p9cli.schemas").joinpath("structure.schema.json").read_text())
    return Draft202012Validator(schema)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_universe(tmp_path, ["binance", "okx"], ["btc", "eth"], TFS, count=250)
    return tmp_path


def invoke(*args: str, env: dict | None = None):
    runner = CliRunner()
    return runner.invoke(app, ["analyze", *args], env={**ENV, **(env or {})})


def context_file(data_dir: Path, exchange: str, symbol: str) -> Path:
    return data_dir / "context" / exchange / f"{symbol}.json"


def test_writes_one_valid_document_per_symbol(data_dir, schema_validator):
    res = invoke("--data-dir", str(data_dir), "--exchanges", "binance,okx", "--symbols", "btc,eth")
    assert res.exit_code == 0, res.output
    for ex in ("binance", "okx"):
        for sym in ("btc", "eth"):
            path = context_file(data_dir, ex, sym)
            doc = json.loads(path.read_text())
            assert not list(schema_validator.iter_errors(doc))
            assert doc["exchange"] == ex and doc["base"] == sym and list(doc["timeframes"]) == list(TFS)
            assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not the temp file's private mode
    # plain output when not on a terminal: one line per symbol + a summary, no ANSI codes
    lines = res.output.strip().splitlines()
    assert len(lines) == 5 and "\x1b[" not in res.output
    assert lines[-1].startswith("analyze: 4/4 written")
    assert not any(p.name.endswith(".tmp") for p in (data_dir / "context").rglob("*"))


def test_a_missing_timeframe_is_named_in_the_document_not_a_failure(data_dir):
    """Issue 8 item 2: analyse what exists; the document says which timeframes are absent."""
    (data_dir / "history" / "okx" / "eth" / "4h.parquet").unlink()
    res = invoke("--data-dir", str(data_dir), "--exchanges", "binance,okx", "--symbols", "btc,eth")
    assert res.exit_code == 0, res.output
    assert not [ln for ln in res.output.splitlines() if ln.startswith("p9: ")]
    doc = json.loads(context_file(data_dir, "okx", "eth").read_text())
    assert list(doc["timeframes"]) == ["1d", "1h", "15m"] and doc["missing_timeframes"] == ["4h"]
    assert "okx eth: wrote" in res.output and "no history for 4h" in res.output
    for ex, sym in (("binance", "btc"), ("binance", "eth"), ("okx", "btc")):
        assert json.loads(context_file(data_dir, ex, sym).read_text())["missing_timeframes"] == []


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (lambda p: p.write_bytes(b"not parquet at all"), "not a readable Parquet file"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable Parquet file"),
        (lambda p: p.write_bytes(b""), "not a readable Parquet file"),
    ],
    ids=["garbage", "truncated", "empty-file"],
)
def test_corrupt_file_fails_with_one_line_and_keeps_the_old_document(data_dir, damage, expect):
    args = ("--data-dir", str(data_dir), "--exchanges", "binance", "--symbols", "btc,eth")
    assert invoke(*args).exit_code == 0
    old = context_file(data_dir, "binance", "btc").read_bytes()
    target = data_dir / "history" / "binance" / "btc" / "1h.parquet"
    damage(target)
    res = invoke(*args)
    assert res.exit_code == 1
    bad = [ln for ln in res.output.splitlines() if ln.startswith("p9: ")]
    assert len(bad) == 1 and str(target) in bad[0] and expect in bad[0] and "p9 fetch-history" in bad[0]
    assert context_file(data_dir, "binance", "btc").read_bytes() == old  # untouched
    assert context_file(data_dir, "binance", "eth").exists()


def read_candles(path, exchange, symbol, timeframe=""):
    return read_series_file(path, exchange, symbol, timeframe).candles


def test_bad_contents_are_named(tmp_path):
    c = synthetic_candles("1h", 50, seed=1)
    path = tmp_path / "h.parquet"
    # descending open_time
    write_history(
        path, c.__class__(*(getattr(c, f)[::-1] for f in c.__dataclass_fields__)), "binance", "btc", "1h"
    )
    with pytest.raises(P9Error, match="not strictly ascending"):
        read_candles(path, "binance", "btc")
    # no rows
    assert len(c.tail(0)) == 0
    store = DataStore(tmp_path)
    write_history(store.series_path("binance", "btc", "1h"), c.tail(0), "binance", "btc", "1h")
    with pytest.raises(P9Error, match="holds no candles"):
        load_pair(store, "binance", "btc", ("1h",))
    # a low above the close
    bad = c.__class__(*(getattr(c, f).copy() for f in c.__dataclass_fields__))
    bad.low[10] = bad.close[10] + 1
    write_history(path, bad, "binance", "btc", "1h")
    with pytest.raises(P9Error, match="low > open/close"):
        read_candles(path, "binance", "btc")
    # written for another series (file metadata)
    write_history(path, c, "okx", "btc", "1h")
    with pytest.raises(P9Error, match="holds another series .exchange 'okx'"):
        read_candles(path, "binance", "btc", "1h")
    write_history(path, c, "binance", "btc", "4h")
    with pytest.raises(P9Error, match="timeframe '4h'"):
        read_candles(path, "binance", "btc", "1h")
    # 1h candles are not on the 4h grid
    write_history(path, c, "binance", "btc", "")
    with pytest.raises(P9Error, match="not on the 240-minute UTC grid"):
        read_candles(path, "binance", "btc", "4h")
    assert len(read_candles(path, "binance", "btc", "1h")) == 50
    # a missing column
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"open_time": [1, 2], "open": [1.0, 2.0]}), path)
    with pytest.raises(P9Error, match="lacks column"):
        read_candles(path, "binance", "btc")


def test_reads_what_it_wrote_exactly(tmp_path):
    c = synthetic_candles("5m", 120, seed=8)
    path = write_history(tmp_path / "x.parquet", c, "okx", "sol", "5m")
    back = read_candles(path, "okx", "sol")
    assert back.equals(c)


def test_simulator_history_end_to_end(tmp_path, schema_validator):
    first = simulator_candles("xrp", "1d", 200, exchange="bybit")
    for tf in TFS:
        c = first if tf == "1d" else simulator_candles("xrp", tf, 200, exchange="bybit")
        write_history(tmp_path / "history" / "bybit" / "xrp" / f"{tf}.parquet", c, "bybit", "xrp", tf)
    settings = load_settings(
        {"data_dir": str(tmp_path), "exchanges": "bybit", "symbols": "xrp", "timeframes": ",".join(TFS)},
        env={},
    )
    assert run_analyze(settings, progress=False) == 0
    doc = json.loads(context_file(tmp_path, "bybit", "xrp").read_text())
    assert not list(schema_validator.iter_errors(doc))
    assert doc["tick"] == 0.0001 and doc["exchange_symbol"] == "XRPUSDT"


def test_bad_options_exit_2_without_work(data_dir):
    res = invoke("--data-dir", str(data_dir), "--symbols", "doge")
    assert res.exit_code == 2 and "unknown symbol 'doge'" in res.output
    res = invoke(
        "--data-dir",
        str(data_dir),
        "--exchanges",
        "binance",
        "--symbols",
        "btc",
        "--plot",
        "--plot-timeframe",
        "7m",
    )
    assert res.exit_code == 2 and "plot timeframe" in res.output
    assert not (data_dir / "context").exists()


def test_unwritable_context_dir_is_one_line_exit_2(data_dir):
    (data_dir / "context").write_text("a file where the directory should be")
    res = invoke("--data-dir", str(data_dir), "--exchanges", "binance", "--symbols", "btc")
    assert res.exit_code == 2
    bad = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(bad) == 1 and "is a file, not a directory" in bad[0] and "Traceback" not in res.output
    assert (data_dir / "context").read_text() == "a file where the directory should be"


def test_rich_output_on_a_terminal(data_dir, capsys):
    settings = load_settings(
        {
            "data_dir": str(data_dir),
            "exchanges": "binance",
            "symbols": "btc,eth",
            "timeframes": ",".join(TFS),
        },
        env={},
    )
    assert run_analyze(settings, progress=True) == 0
    out = capsys.readouterr().out
    assert "p9 analyze" in out and "2/2 written" in out and "binance" in out


def test_real_process_has_no_traceback(data_dir):
    (data_dir / "history" / "binance" / "eth" / "1d.parquet").write_bytes(b"\x00" * 64)
    env = {**os.environ, **ENV, "P9_DATA_DIR": str(data_dir)}
    env.pop("P9_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "p9cli", "analyze", "--exchanges", "binance", "--symbols", "btc,eth"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("p9: ")]
    assert len(err) == 1 and "binance/eth/1d.parquet" in err[0]
    assert "binance btc: wrote" in proc.stdout


def plot_okx_btc(data_dir: Path, timeframe: str, env: dict | None = None):
    args = ("--data-dir", str(data_dir), "--exchanges", "okx", "--symbols", "btc")
    return invoke(*args, "--plot", "--plot-timeframe", timeframe, env=env)


def test_plot_writes_a_png_next_to_the_json(data_dir):
    res = plot_okx_btc(data_dir, "1h")
    assert res.exit_code == 0, res.output
    png = context_file(data_dir, "okx", "btc").with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_pipeline_sim_fetch_history_analyze(tmp_path, schema_validator):
    """The real chain: `p9 sim` serves history, `fetch-history` stores it as Parquet, `analyze`
    reads it; the document equals an analysis of the simulator's own candles (ground truth)."""
    from p9cli.analysis.context import analyze_timeframe

    start_ms = 1_767_616_496_789  # 2026-01-05 12:34:56.789 UTC
    tfs = "4h,1h,15m"
    with SimThread(
        seed=9, start_ms=start_ms, speed=1e-9, warm_up=False, with_ws=False, with_feed=False
    ) as sim:
        flags = {
            "data_dir": str(tmp_path),
            "exchanges": "binance",
            "symbols": "sol",
            "timeframes": tfs,
            "candles": 600,
        }
        flags |= {f"{ex}_rest_url": sim.rest_url(ex) for ex in ("binance", "bybit", "okx")}
        settings = load_settings(flags, env={})
        assert run_fetch_history(settings, progress=False, out=io.StringIO()) == 0
    assert run_analyze(settings, progress=False) == 0
    doc = json.loads(context_file(tmp_path, "binance", "sol").read_text())
    assert not list(schema_validator.iter_errors(doc))
    for tf in tfs.split(","):
        truth = simulator_candles("sol", tf, 600, exchange="binance", later_ms=start_ms - 1_767_225_600_000)
        expect = analyze_timeframe(truth, tf)
        got = doc["timeframes"][tf]
        assert got["last_open_ms"] == expect["last_open_ms"] and got["candles"] == 600
        assert got["trend"] == expect["trend"]
        assert got["volatility"] == expect["volatility"]
        assert got["volume"]["last"] == expect["volume"]["last"]


def test_a_failed_chart_is_one_line_and_other_symbols_complete(data_dir):
    blocker = context_file(data_dir, "okx", "btc").with_suffix(".png")
    (blocker / "occupied").mkdir(parents=True)  # a non-empty directory where the PNG goes
    res = invoke("--data-dir", str(data_dir), "--exchanges", "okx", "--symbols", "btc,eth", "--plot")
    assert res.exit_code == 1
    bad = [ln for ln in res.output.splitlines() if ln.startswith("p9: ")]
    assert len(bad) == 1 and "okx btc" in bad[0] and "Traceback" not in res.output
    assert context_file(data_dir, "okx", "btc").exists()  # the JSON itself was written
    assert context_file(data_dir, "okx", "eth").with_suffix(".png").exists()


def test_plot_reads_each_history_file_once(data_dir, monkeypatch):
    """The chart draws the candles the document was built from (no second read of its file);
    a plot timeframe outside the analysed ones is read on its own."""
    import p9cli.store as store_module

    reads: list[str] = []
    real = store_module.pq.read_table

    def counting(path, *a, **kw):
        reads.append(Path(path).name)
        return real(path, *a, **kw)

    monkeypatch.setattr(store_module.pq, "read_table", counting)
    res = plot_okx_btc(data_dir, "1h")
    assert res.exit_code == 0, res.output
    assert sorted(reads) == sorted(f"{tf}.parquet" for tf in TFS)
    reads.clear()
    res = plot_okx_btc(data_dir, "4h", env={"P9_TIMEFRAMES": "1d,1h"})
    assert res.exit_code == 0, res.output
    assert sorted(reads) == ["1d.parquet", "1h.parquet", "4h.parquet"]
    assert context_file(data_dir, "okx", "btc").with_suffix(".png").stat().st_size > 10_000


# -- issue 8: analyse what exists, say what is missing, no dead ends, no stale output looking fresh --

EVERY_TF = {"P9_TIMEFRAMES": ""}  # the default: all 11 timeframes


def p9_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("p9: ")]


def test_after_the_readme_quick_start_analyze_exits_0(tmp_path):
    """README quick start: `fetch-history --symbols btc,eth` (3 exchanges x 11 timeframes), then
    `analyze --symbols btc,eth --plot` and a bare `analyze`: every pair written, exit 0."""
    write_universe(tmp_path, ["binance", "bybit", "okx"], ["btc", "eth"], TIMEFRAMES, count=120)
    res = invoke("--data-dir", str(tmp_path), "--symbols", "btc,eth", "--plot", env=EVERY_TF)
    assert res.exit_code == 0, res.output
    assert not p9_lines(res.output)
    for ex in ("binance", "bybit", "okx"):
        for sym in ("btc", "eth"):
            doc = json.loads(context_file(tmp_path, ex, sym).read_text())
            assert list(doc["timeframes"]) == list(TIMEFRAMES) and doc["missing_timeframes"] == []
            assert context_file(tmp_path, ex, sym).with_suffix(".png").stat().st_size > 10_000
    res = invoke("--data-dir", str(tmp_path), env=EVERY_TF)
    assert res.exit_code == 0, res.output
    head = res.output.splitlines()[0]
    assert (
        head
        == f"analyze: 6 pair(s) with history under {tmp_path}/history; none for sol, bnb, xrp (any exchange)"
    )
    assert res.output.strip().splitlines()[-1].startswith("analyze: 6/6 written")


def test_after_fetching_two_timeframes_the_documents_name_the_missing_ones(tmp_path):
    """README: `fetch-history --symbols btc,eth --exchanges binance,okx --timeframes 1h,4h`, then
    `analyze`: exit 0, documents from 4h and 1h naming the nine absent timeframes."""
    write_universe(tmp_path, ["binance", "okx"], ["btc", "eth"], ("4h", "1h"), count=120)
    res = invoke("--data-dir", str(tmp_path), env=EVERY_TF)
    assert res.exit_code == 0, res.output
    assert not p9_lines(res.output)
    absent = [tf for tf in TIMEFRAMES if tf not in ("4h", "1h")]
    for ex in ("binance", "okx"):
        for sym in ("btc", "eth"):
            doc = json.loads(context_file(tmp_path, ex, sym).read_text())
            assert list(doc["timeframes"]) == ["4h", "1h"]
            assert doc["missing_timeframes"] == absent
            assert f"{ex} {sym}: wrote" in res.output
    assert f"no history for {','.join(absent)}" in res.output
    assert not (tmp_path / "context" / "bybit").exists()
    assert res.output.splitlines()[0].endswith("; none for bybit (any symbol), sol, bnb, xrp (any exchange)")
    (tmp_path / "history" / "okx" / "eth" / "4h.parquet").unlink()
    (tmp_path / "history" / "okx" / "eth" / "1h.parquet").unlink()
    res = invoke(
        "--data-dir", str(tmp_path), "--exchanges", "binance,okx", "--symbols", "btc,eth", env=EVERY_TF
    )
    assert res.exit_code == 0 and res.output.splitlines()[0].endswith("; none for okx eth"), res.output


@pytest.mark.parametrize("exists", [True, False], ids=["empty-dir", "no-dir"])
def test_no_history_is_one_line_exit_2(tmp_path, exists):
    data = tmp_path / "data"
    if exists:
        data.mkdir()
    res = invoke("--data-dir", str(data), env=EVERY_TF)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"p9: no history under {data}/history; run `p9 fetch-history --data-dir {data}`"
    ]
    assert list(tmp_path.rglob("*")) == ([data] if exists else [])  # nothing created


def test_history_of_other_timeframes_only_is_one_line_exit_2(tmp_path):
    write_universe(tmp_path, ["okx"], ["sol"], ("1h",), count=50)
    res = invoke("--data-dir", str(tmp_path), env={"P9_TIMEFRAMES": "1m,5m"})
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"p9: no 5m,1m history under {tmp_path}/history (it has 1h); "
        f"run `p9 fetch-history --timeframes 5m,1m --data-dir {tmp_path}`"
    ]


def test_a_data_dir_that_is_a_file_is_one_line_exit_2_without_a_fetch_hint(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    res = invoke("--data-dir", str(blocker), env=EVERY_TF)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"p9: data directory {blocker} is not a directory"]
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_context_files_follow_the_umask(data_dir, umask, mode):
    old = os.umask(umask)
    try:
        res = invoke("--data-dir", str(data_dir), "--exchanges", "okx", "--symbols", "btc", "--plot")
        assert res.exit_code == 0, res.output
        (data_dir / "history" / "okx" / "btc" / "1d.parquet").write_bytes(b"broken")
        assert invoke("--data-dir", str(data_dir), "--exchanges", "okx", "--symbols", "btc").exit_code == 1
    finally:
        os.umask(old)
    folder = data_dir / "context" / "okx"
    assert sorted(p.name for p in folder.iterdir()) == ["btc.failed.json", "btc.json", "btc.png"]
    for p in folder.iterdir():
        assert p.stat().st_mode & 0o777 == mode, p


def test_a_failed_pair_keeps_its_old_files_marked_stale_until_it_succeeds(data_dir):
    args = ("--data-dir", str(data_dir), "--exchanges", "binance", "--symbols", "btc,eth", "--plot")
    assert invoke(*args).exit_code == 0
    folder = data_dir / "context" / "binance"
    before = {n: (folder / n).read_bytes() for n in ("btc.json", "btc.png")}
    target = data_dir / "history" / "binance" / "btc" / "4h.parquet"
    good = target.read_bytes()
    target.write_bytes(b"not parquet")
    res = invoke(*args)
    assert res.exit_code == 1
    (line,) = p9_lines(res.output)
    assert (
        str(target) in line
        and "(previous btc.json and btc.png kept, marked stale by btc.failed.json)" in line
    )
    assert {n: (folder / n).read_bytes() for n in before} == before  # kept as they were
    marker = json.loads((folder / "btc.failed.json").read_text())
    assert marker["schema"] == "p9.analyze-failure/1" and marker["exchange"] == "binance"
    assert marker["base"] == "btc" and str(target) in marker["error"]
    assert marker["stale_files"] == ["btc.json", "btc.png"]
    assert not (folder / "eth.failed.json").exists()
    target.write_bytes(good)
    assert invoke(*args).exit_code == 0
    assert not (folder / "btc.failed.json").exists()
    assert (folder / "btc.json").read_bytes() != before["btc.json"]


def test_without_plot_an_old_chart_is_removed_and_said(data_dir):
    args = ("--data-dir", str(data_dir), "--exchanges", "okx", "--symbols", "eth")
    assert invoke(*args, "--plot").exit_code == 0
    png = context_file(data_dir, "okx", "eth").with_suffix(".png")
    assert png.exists()
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert not png.exists()
    assert (
        "removed the outdated chart eth.png (drawn from the previous document; --plot redraws it)"
        in res.output
    )
