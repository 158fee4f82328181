"""The ``p9`` command line. Parses options, builds settings, calls one service per command.

Heavy modules are imported inside the commands so that ``p9 --help`` stays instant. Every
:class:`~p9cli.errors.P9Error` becomes one line on stderr and its exit code; nothing else
should escape (an unexpected exception is still reported as one line, with the hint to
re-run with ``P9_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperGroup
from typer.exceptions import TyperException

from p9cli import __version__
from p9cli.config import Settings, SettingsFlags, Use, load_settings
from p9cli.errors import EXIT_FAILURE, EXIT_USAGE, P9Error
from p9cli.logsetup import log_from_env
from p9cli.universe import EXCHANGE_TITLES, SYMBOLS, TIMEFRAMES


def _untyped_flags(params: Iterable) -> None:
    """On/off flags (``--full``, ``--help``, ``--version``, completion) show no ``<bool>`` label in
    help; options that take a value show their ``metavar`` (``LIST``, ``N``, ``URL`` ...); an
    argument with a ``metavar`` (``EXCHANGE:SYMBOL``) shows only that, no ``<list[str]>``."""
    for param in params:
        if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if isinstance(param, TyperArgument) and param.metavar:
            param.display_type_rich = lambda ctx: None


class _Group(TyperGroup):
    """The ``p9`` group: every command's help without type labels on flags."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _untyped_flags(params)
        return params

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _untyped_flags([*cmd.params, cmd.get_help_option(ctx)])
        return cmd


app = typer.Typer(
    name="p9",
    cls=_Group,
    help=(
        "p9: the market's full context for trading bots.\n\n"
        "Deep candle history from Binance, Bybit and OKX (fetch-history), market structure "
        "(analyze), the live trades and order books as they arrive (feeds), and an offline "
        "simulator of the three exchanges (sim)."
    ),
    invoke_without_command=True,
    add_completion=True,
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
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """p9 command line."""
    try:
        log_from_env()
    except P9Error as exc:
        _fail(str(exc), exc.exit_code)
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        # a bare `p9`: the help, exit 0 (asking what p9 can do is not an error)
        typer.echo(ctx.get_help(), nl=False)
        raise typer.Exit(0)


def _settings(flags: SettingsFlags, uses: Iterable[Use]) -> Settings:
    """Settings for one command from its typed flags; checks only what the command ``uses``."""
    try:
        return load_settings(flags, uses=uses)
    except P9Error as exc:
        _fail(str(exc), exc.exit_code)
        raise  # unreachable: _fail raises


# -- options shared by the commands (one definition each: same name, help and default text) ----

SymbolsOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LIST",
        help=f"Comma-separated symbols ({','.join(SYMBOLS)}). Env: P9_SYMBOLS.",
        show_default="all",
    ),
]
ExchangesOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LIST",
        help="Comma-separated exchanges (binance,bybit,okx). Env: P9_EXCHANGES.",
        show_default="all",
    ),
]
TimeframesOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LIST",
        help=f"Comma-separated timeframes ({','.join(TIMEFRAMES)}). Env: P9_TIMEFRAMES.",
        show_default="all 11",
    ),
]
EndpointsOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoints",
        metavar="live|sim",
        help="live: the exchanges' real URLs; sim: p9 sim on 127.0.0.1:8801-8803. Env: P9_ENDPOINTS.",
        show_default="live",
    ),
]
RedisUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        metavar="URL",
        help="Redis to publish to (redis://HOST:PORT/DB, rediss://, unix://). Env: P9_REDIS_URL.",
        show_default="127.0.0.1:6379 if it answers, else an embedded Redis",
    ),
]
#: the readers' (status, watch) Redis: the same resolution, but they never start a server
ReadRedisUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        metavar="URL",
        help="Redis the streams publish to (redis://HOST:PORT/DB, rediss://, unix://). Env: P9_REDIS_URL.",
        show_default="127.0.0.1:6379 (P9_REDIS_PROBE); never starts one",
    ),
]
WorkerIdOpt = Annotated[
    str | None,
    typer.Option(
        "--worker-id",
        metavar="ID",
        help="This worker's name in the status channel (letters, digits, . _ : -). Env: P9_WORKER_ID.",
        show_default="derived from the host name",
    ),
]


def _data_dir_opt(what: str):
    return typer.Option(
        metavar="DIR", help=f"Data directory ({what}). Env: P9_DATA_DIR.", show_default="./data"
    )


def _url_opt(exchange: str, kind: str):
    title = EXCHANGE_TITLES[exchange]
    scheme = "http(s)" if kind == "rest" else "ws(s)"
    return typer.Option(
        f"--{exchange}-{kind}-url",
        metavar="URL",
        help=f"{title} {kind.upper()} base URL, {scheme}://HOST[:PORT] without a path. Env: P9_{exchange.upper()}_{kind.upper()}_URL.",
        show_default="per --endpoints",
    )


@app.command("fetch-history")
def fetch_history(
    symbols: SymbolsOpt = None,
    exchanges: ExchangesOpt = None,
    timeframes: TimeframesOpt = None,
    candles: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="How far back to reach: the newest N closed candles of each series are fetched where "
            "missing (older stored candles are kept; see --trim). Env: P9_CANDLES.",
            show_default="1000",
        ),
    ] = None,
    data_dir: Annotated[str | None, _data_dir_opt("history goes to DIR/history")] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Re-download the newest N candles of every series instead of only what is missing "
            "(stored candles outside them are kept).",
        ),
    ] = False,
    trim: Annotated[
        bool,
        typer.Option(
            "--trim",
            help="Delete stored candles older than the newest N (--candles) and say how many per series. "
            "Without it nothing stored is ever deleted.",
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
            help="Force progress bars on or off (off: one plain line per event, as cron gets).",
            show_default="on for a terminal",
        ),
    ] = None,
) -> None:
    """Download closed candles (REST) for every exchange, symbol and timeframe into Parquet.

    Incremental when files exist: only the missing candles are fetched; stored candles are never
    deleted (unless --trim). Exit codes: 0 every series complete, 1 some series failed (the
    others are kept), 2 bad input (incl. a data directory that is not a writable directory),
    75 another fetch-history run holds the lock.
    """
    settings = _settings(
        SettingsFlags(
            symbols=symbols,
            exchanges=exchanges,
            timeframes=timeframes,
            candles=candles,
            data_dir=data_dir,
            endpoints=endpoints,
            binance_rest_url=binance_rest_url,
            bybit_rest_url=bybit_rest_url,
            okx_rest_url=okx_rest_url,
        ),
        uses=(Use.REST_URLS, Use.DATA_DIR, Use.SYMBOLS, Use.EXCHANGES, Use.TIMEFRAMES, Use.CANDLES),
    )
    from p9cli.services import fetch_history as service

    raise typer.Exit(_run(service.run, settings, full=full, trim=trim, progress=progress))


@app.command("analyze")
def analyze(
    symbols: SymbolsOpt = None,
    exchanges: ExchangesOpt = None,
    data_dir: Annotated[str | None, _data_dir_opt("reads DIR/history, writes DIR/context")] = None,
    plot: Annotated[
        bool, typer.Option("--plot", help="Also write a PNG chart per symbol next to its JSON.")
    ] = False,
    plot_timeframe: Annotated[str, typer.Option(metavar="TF", help="Timeframe drawn by --plot.")] = "4h",
) -> None:
    """Turn stored history into market structure (levels, profile, zones, trend, volatility).

    Writes DIR/context/{exchange}/{symbol}.json (schema p9.structure/2) for every exchange and
    symbol with history. Exit codes: 0 all written, 1 some symbol failed (the others are
    written), 2 bad input.
    """
    settings = _settings(
        SettingsFlags(symbols=symbols, exchanges=exchanges, data_dir=data_dir),
        uses=(Use.DATA_DIR, Use.SYMBOLS, Use.EXCHANGES, Use.TIMEFRAMES),
    )
    from p9cli.services import analyze as service

    raise typer.Exit(_run(service.run, settings, plot=plot, plot_timeframe=plot_timeframe))


@app.command("feeds")
def feeds(
    symbols: SymbolsOpt = None,
    exchanges: ExchangesOpt = None,
    duration: Annotated[
        float | None,
        typer.Option(metavar="S", help="Stop after S seconds.", show_default="until Ctrl-C"),
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (type trade, book, event, stats).")
    ] = False,
    endpoints: EndpointsOpt = None,
    binance_ws_url: Annotated[str | None, _url_opt("binance", "ws")] = None,
    bybit_ws_url: Annotated[str | None, _url_opt("bybit", "ws")] = None,
    okx_ws_url: Annotated[str | None, _url_opt("okx", "ws")] = None,
    binance_rest_url: Annotated[str | None, _url_opt("binance", "rest")] = None,
    bybit_rest_url: Annotated[str | None, _url_opt("bybit", "rest")] = None,
    okx_rest_url: Annotated[str | None, _url_opt("okx", "rest")] = None,
) -> None:
    """Watch the live feeds: trades and top of book per pair as they come, plus reconnects,
    switch-overs and book resyncs with their cause (for debugging; see docs/feeds.md).

    Books are shown only while provably in sync, with the exchange's own update id. Ends with
    the statistics of each feed. Exit codes: 0 every feed delivered data, 1 some feed delivered
    nothing, 2 bad input.
    """
    settings = _settings(
        SettingsFlags(
            symbols=symbols,
            exchanges=exchanges,
            endpoints=endpoints,
            binance_ws_url=binance_ws_url,
            bybit_ws_url=bybit_ws_url,
            okx_ws_url=okx_ws_url,
            binance_rest_url=binance_rest_url,
            bybit_rest_url=bybit_rest_url,
            okx_rest_url=okx_rest_url,
        ),
        uses=(Use.WS_URLS, Use.REST_URLS, Use.SYMBOLS, Use.EXCHANGES),
    )
    from p9cli.services import feeds as service

    raise typer.Exit(_run(service.run, settings, duration=duration, as_json=json_lines))


@app.command("stream")
def stream(
    symbols: SymbolsOpt = None,
    exchanges: ExchangesOpt = None,
    redis_url: RedisUrlOpt = None,
    data_dir: Annotated[str | None, _data_dir_opt("reads DIR/history and DIR/context")] = None,
    duration: Annotated[
        float | None,
        typer.Option(metavar="S", help="Stop after S seconds.", show_default="until Ctrl-C"),
    ] = None,
    quick_test: Annotated[
        bool,
        typer.Option(
            "--quick-test",
            help="Run 120 s (or --duration), print a summary per feed; exit 0 only if every feed "
            "delivered data and every channel was published.",
        ),
    ] = False,
    bootstrap: Annotated[
        bool, typer.Option("--bootstrap", help="Run fetch-history and analyze first.")
    ] = False,
    worker_id: WorkerIdOpt = None,
    endpoints: EndpointsOpt = None,
    binance_ws_url: Annotated[str | None, _url_opt("binance", "ws")] = None,
    bybit_ws_url: Annotated[str | None, _url_opt("bybit", "ws")] = None,
    okx_ws_url: Annotated[str | None, _url_opt("okx", "ws")] = None,
    binance_rest_url: Annotated[str | None, _url_opt("binance", "rest")] = None,
    bybit_rest_url: Annotated[str | None, _url_opt("bybit", "rest")] = None,
    okx_rest_url: Annotated[str | None, _url_opt("okx", "rest")] = None,
) -> None:
    """Stream the live market fused with its stored structure to Redis for bots.

    Channels (= keys) market_context, fusion_data, precision9_context, structure
    (:{exchange}:{symbol}) and precision9_fusion_status. Exit codes: 0 done (--quick-test:
    passed), 1 --quick-test failed, 2 bad input, 69 a configured Redis that does not answer.
    """
    settings = _settings(
        SettingsFlags(
            symbols=symbols,
            exchanges=exchanges,
            data_dir=data_dir,
            redis_url=redis_url,
            worker_id=worker_id,
            endpoints=endpoints,
            binance_ws_url=binance_ws_url,
            bybit_ws_url=bybit_ws_url,
            okx_ws_url=okx_ws_url,
            binance_rest_url=binance_rest_url,
            bybit_rest_url=bybit_rest_url,
            okx_rest_url=okx_rest_url,
        ),
        uses=(
            Use.WS_URLS,
            Use.REST_URLS,
            Use.SYMBOLS,
            Use.EXCHANGES,
            Use.DATA_DIR,
            Use.REDIS_URL,
            Use.WORKER_ID,
            Use.TIMEFRAMES,
            Use.CANDLES,
        ),
    )
    from p9cli.services import stream as service

    raise typer.Exit(
        _run(service.run, settings, duration=duration, quick_test=quick_test, bootstrap=bootstrap)
    )


@app.command("status")
def status(
    redis_url: ReadRedisUrlOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep the table live (refresh every second) until Ctrl-C.")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="Machine-readable report (with --follow: one per line); see docs/status.md."
        ),
    ] = False,
) -> None:
    """Health of the whole system from Redis: Redis itself, every stream worker, every
    exchange:symbol (feed state, last price, age of the last trade / book update / context,
    messages/s, book resyncs, reconnects). Stale or missing data is flagged in words.

    Exit codes (for cron and monitoring): 0 healthy, 1 some feed stale or down, 2 bad input, 3 nothing publishing or Redis unreachable. --follow exits 0 on Ctrl-C. See docs/status.md.
    """
    settings = _settings(SettingsFlags(redis_url=redis_url), uses=(Use.REDIS_URL,))
    from p9cli.services import status as service

    raise typer.Exit(_run(service.run, settings, follow=follow, as_json=json_out))


@app.command("watch")
def watch(
    pairs: Annotated[
        list[str],
        typer.Argument(
            metavar="EXCHANGE:SYMBOL",
            help="binance:btcusdt, binance:btc, or a symbol alone (BTCUSDT: every exchange publishing it).",
            show_default=False,
        ),
    ],
    redis_url: ReadRedisUrlOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame and exit (also when stdout is not a terminal).")
    ] = False,
) -> None:
    """Live full-screen view of pairs from Redis: price, change, spread, flow, top of book,
    the nearest key levels and zones (distance in % and ATR), trend and volatility per
    timeframe, level events. Stale data is flagged in words.

    Exit codes: 0 quit (Ctrl-C), 2 bad input (unknown pair), 3 no data for a pair or Redis unreachable. See docs/watch.md.
    """
    settings = _settings(SettingsFlags(redis_url=redis_url), uses=(Use.REDIS_URL, Use.EXCHANGES))
    from p9cli.services import watch as service

    raise typer.Exit(_run(service.run, settings, pairs, once=once))


@app.command("sim")
def sim(
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port_base: Annotated[
        int,
        typer.Option(metavar="PORT", help="Control API on PORT, Binance on +1, Bybit on +2, OKX on +3."),
    ] = 8800,
    seed: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            help="Seed of the market model: the same seed gives the same market.",
        ),
    ] = 9,
    speed: Annotated[
        float, typer.Option(metavar="X", help="Time acceleration of the live market (1 = real time).")
    ] = 1.0,
    start: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Simulated wall-clock time at start (ISO 8601 UTC or epoch ms).",
            show_default="now",
        ),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            metavar="EX:NAME=VALUE",
            help="Fault to inject, EXCHANGE:NAME=VALUE (repeatable), e.g. binance:ws_drop_every_messages=500. `p9 sim --list-faults` lists them.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            metavar="EX:NAME=VALUE",
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
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="Also serve https:// and wss:// on the exchange ports, with a local CA generated at start (prints how to trust it).",
        ),
    ] = False,
    tls_dir: Annotated[
        str | None,
        typer.Option(
            "--tls-dir",
            metavar="DIR",
            help="Folder for the --tls CA and certificate (reused across restarts).",
            show_default="~/.cache/p9/sim-tls",
        ),
    ] = None,
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
            tls=tls,
            tls_dir=tls_dir,
        )
    )


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
