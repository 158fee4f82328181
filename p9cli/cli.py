"""The ``p9`` command line. Parses options, builds settings, calls one service per command.

Heavy modules are imported inside the commands so that ``p9 --help`` stays instant. Every
:class:`~p9cli.errors.P9Error` becomes one line on stderr and its exit code; nothing else
should escape (an unexpected exception is still reported as one line, with the hint to
re-run with ``P9_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from p9cli import __version__
from p9cli.config import load_settings
from p9cli.errors import EXIT_FAILURE, EXIT_USAGE, P9Error

app = typer.Typer(
    name="p9",
    help=(
        "p9: the market's full context for trading bots.\n\n"
        "Deep candle history from Binance, Bybit and OKX (fetch-history), market structure "
        "(analyze), and an offline simulator of the three exchanges (sim)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"p9: {message}", err=True)
    raise typer.Exit(code)


def _run(fn, *args, **kwargs) -> int:
    """Run a service; turn every error into one line and an exit code."""
    try:
        return int(fn(*args, **kwargs) or 0)
    except P9Error as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, never a traceback
        if os.environ.get("P9_DEBUG"):
            raise
        _fail(f"unexpected error: {type(exc).__name__}: {exc} (set P9_DEBUG=1 for details)", EXIT_FAILURE)
    return EXIT_FAILURE


def _version(value: bool) -> None:
    if value:
        typer.echo(f"p9 {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """p9 command line."""


EndpointsOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoints",
        help="live (the exchanges' real URLs) or sim (p9 sim on 127.0.0.1:8801-8803). Env: P9_ENDPOINTS.",
        show_default=False,
    ),
]


def _url_opt(exchange: str, kind: str):
    return typer.Option(
        f"--{exchange}-{kind}-url",
        help=f"{exchange.capitalize()} {kind.upper()} base URL (scheme://host:port). Env: P9_{exchange.upper()}_{kind.upper()}_URL.",
        show_default=False,
    )


@app.command("fetch-history")
def fetch_history(
    symbols: Annotated[
        str | None,
        typer.Option(help="Comma-separated symbols (btc,eth,sol,bnb,xrp). Default: all.", show_default=False),
    ] = None,
    exchanges: Annotated[
        str | None,
        typer.Option(help="Comma-separated exchanges (binance,bybit,okx). Default: all.", show_default=False),
    ] = None,
    timeframes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated timeframes (1d,12h,6h,4h,2h,1h,30m,15m,5m,3m,1m). Default: all 11.",
            show_default=False,
        ),
    ] = None,
    candles: Annotated[
        int | None, typer.Option(help="Closed candles to keep per series. Default: 1000.", show_default=False)
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Data directory (history goes to DIR/history). Env: P9_DATA_DIR. Default: ./data.",
            show_default=False,
        ),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Re-fetch every series instead of only the candles after the last stored one."
        ),
    ] = False,
    endpoints: EndpointsOpt = None,
    binance_rest_url: Annotated[str | None, _url_opt("binance", "rest")] = None,
    bybit_rest_url: Annotated[str | None, _url_opt("bybit", "rest")] = None,
    okx_rest_url: Annotated[str | None, _url_opt("okx", "rest")] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Force progress bars on or off. Default: on for a terminal, off otherwise (cron gets one plain line per event).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download closed candles (REST) for every exchange, symbol and timeframe into Parquet.

    Incremental when files exist: only the candles after the last stored one are fetched.
    Exit codes: 0 every series complete, 1 some series failed (the others are kept),
    2 bad input, 75 another fetch-history run holds the lock.
    """
    settings = _settings(locals())
    from p9cli.history.service import run_fetch_history

    raise typer.Exit(_run(run_fetch_history, settings, full=full, progress=progress))


@app.command("analyze")
def analyze(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols. Default: all.", show_default=False)
    ] = None,
    exchanges: Annotated[
        str | None, typer.Option(help="Comma-separated exchanges. Default: all.", show_default=False)
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Data directory (reads DIR/history, writes DIR/context). Env: P9_DATA_DIR. Default: ./data.",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        bool, typer.Option("--plot", help="Also write a PNG chart per symbol next to its JSON.")
    ] = False,
    plot_timeframe: Annotated[str, typer.Option(help="Timeframe drawn by --plot.")] = "4h",
) -> None:
    """Turn stored history into market structure (levels, profile, zones, trend, volatility).

    Writes DIR/context/{exchange}/{symbol}.json (schema p9.structure/1). Exit codes: 0 all written, 1 some symbol failed (the others are written),
    2 bad input.
    """
    settings = _settings(locals())
    from p9cli.services import analyze as service

    raise typer.Exit(_run(service.run, settings, plot=plot, plot_timeframe=plot_timeframe))


@app.command("sim")
def sim(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port_base: Annotated[
        int, typer.Option(help="Control API on PORT_BASE, Binance on +1, Bybit on +2, OKX on +3.")
    ] = 8800,
    seed: Annotated[
        int, typer.Option(help="Seed of the market model: the same seed gives the same market.")
    ] = 9,
    speed: Annotated[float, typer.Option(help="Time acceleration of the live market (1 = real time).")] = 1.0,
    start: Annotated[
        str | None,
        typer.Option(
            help="Simulated wall-clock time at start (ISO 8601 UTC or epoch ms). Default: now.",
            show_default=False,
        ),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="Fault to inject, EXCHANGE:NAME=VALUE (repeatable), e.g. binance:ws_drop_every_messages=500. `p9 sim --list-faults` lists them.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            help="Override a limit or protocol option, EXCHANGE:NAME=VALUE (repeatable), e.g. okx:okx_history_candles_max_limit=100. `p9 sim --list-faults` lists them.",
            show_default=False,
        ),
    ] = None,
    rate_limits: Annotated[
        bool,
        typer.Option("--rate-limits/--no-rate-limits", help="Enforce the exchanges' real REST rate limits."),
    ] = True,
    okx_legacy_checksum: Annotated[
        bool,
        typer.Option(
            "--okx-legacy-checksum",
            help="OKX books carry the real CRC32 checksum (before 2026-06-23) instead of 0 (= --limit okx:okx_legacy_checksum=true).",
        ),
    ] = False,
    okx_books_snapshot: Annotated[
        bool,
        typer.Option(
            "--okx-books-snapshot/--okx-no-books-snapshot",
            help="OKX books send the in-band snapshot on subscribe; without it clients bridge from REST /api/v5/market/books (seqId).",
        ),
    ] = True,
    list_faults: Annotated[
        bool,
        typer.Option("--list-faults", help="List the fault and limit names with their defaults, then exit."),
    ] = False,
) -> None:
    """Serve offline copies of Binance, Bybit and OKX public market data (REST + WebSocket).

    A deterministic market on loopback, with fault injection and ground truth for tests.
    Runs until interrupted (Ctrl-C).
    """
    from p9cli.sim.server import run_sim

    raise typer.Exit(
        _run(
            run_sim,
            host=host,
            port_base=port_base,
            seed=seed,
            speed=speed,
            start=start,
            faults=list(fault or []),
            limits=list(limit or []),
            rate_limits=rate_limits,
            list_faults=list_faults,
            okx_legacy_checksum=okx_legacy_checksum,
            okx_books_snapshot=okx_books_snapshot,
        )
    )


def _settings(params: dict) -> object:
    flags = {
        k: params.get(k) for k in ("symbols", "exchanges", "timeframes", "candles", "data_dir", "endpoints")
    }
    for ex in ("binance", "bybit", "okx"):
        for kind in ("rest", "ws"):
            key = f"{ex}_{kind}_url"
            if key in params:
                flags[key] = params[key]
    try:
        return load_settings(flags)
    except P9Error as exc:
        _fail(str(exc), exc.exit_code)


def main() -> None:
    """Entry point. Usage errors (an unknown option, a value of the wrong type) are one line
    and exit 2, like every other bad input, instead of Typer's multi-line box."""
    try:
        rv = app(prog_name="p9", standalone_mode=False)
    except TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "p9"
        message = " ".join(exc.format_message().split())
        typer.echo(f"{where}: {message} (see '{where} --help')", err=True)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("p9: interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["app", "main", "EXIT_USAGE"]
