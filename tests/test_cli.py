"""The CLI as a user meets it: help texts and bad input (one line, exit 2, no traceback)."""

import os
import re
import subprocess
import sys

import pytest


def run_p9(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "p9cli", *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def run_p9_from_bash(*args, env=None):
    """``p9`` started by an interactive-like bash, as a user runs it: Typer detects the shell from
    the parent processes (shellingham), which under pytest may be anything (timeout, cron, CI)."""
    return subprocess.run(
        ["bash", "-c", '"$@"; exit $?', "bash", sys.executable, "-m", "p9cli", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )


@pytest.mark.parametrize("cmd", [[], ["sim"], ["fetch-history"], ["analyze"]])
def test_every_command_has_help(cmd):
    r = run_p9(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: p9" in r.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fetch-history", "--symbols", "btc,doge"], "valid symbols: btc, eth, sol, bnb, xrp"),
        (["fetch-history", "--exchanges", "kraken"], "valid exchanges: binance, bybit, okx"),
        (
            ["fetch-history", "--timeframes", "1w"],
            "valid timeframes: 1d, 12h, 6h, 4h, 2h, 1h, 30m, 15m, 5m, 3m, 1m",
        ),
        (["analyze", "--symbols", "doge"], "valid symbols"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment, tmp_path):
    r = run_p9(*args, "--data-dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_version():
    r = run_p9("--version")
    assert r.returncode == 0 and r.stdout.startswith("p9 ")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fetch-history", "--candles", "abc"], "Invalid value for '--candles'"),
        (["sim", "--port-base", "x"], "Invalid value for '--port-base'"),
        (["fetch-history", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, fragment):
    r = run_p9(*args)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "--help" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "╭" not in r.stderr


def test_help_and_no_args():
    assert run_p9("--help").returncode == 0
    r = run_p9()
    # a bare `p9` is a request for help: the help on stdout, nothing on stderr, exit 0
    assert r.returncode == 0 and "Usage: p9" in r.stdout, r
    assert r.stderr == ""


# -- issue 8 item 8: help texts and shell completion ----------------------------------------------

TYPE_LABEL = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\])>")


def clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P9_")}
    env.update(COLUMNS="200", **extra)
    return env


def all_commands() -> list[list[str]]:
    """The root and every command registered on the app (new commands are checked too)."""
    from p9cli.cli import app

    return [[]] + [[c.name or c.callback.__name__.replace("_", "-")] for c in app.registered_commands]


@pytest.mark.parametrize("cmd", all_commands())
def test_help_has_no_type_labels_one_default_style_and_exchange_names_as_written(cmd):
    r = run_p9(*cmd, "--help", env=clean_env())
    assert r.returncode == 0, r.stderr
    assert not TYPE_LABEL.search(r.stdout), TYPE_LABEL.search(r.stdout).group(0)
    assert "default:" not in r.stdout.replace("[default:", "").lower()  # one way: [default: ...]
    assert "Okx" not in r.stdout


def test_fetch_history_help_shows_defaults_and_the_valid_values():
    out = run_p9("fetch-history", "--help", env=clean_env()).stdout
    for fragment in ("[default: (all)]", "[default: (1000)]", "[default: (./data)]", "[default: (live)]"):
        assert fragment in out
    assert "btc,eth,sol,bnb,xrp" in out and "1d,12h,6h,4h,2h,1h,30m,15m,5m,3m,1m" in out
    assert "OKX REST base URL" in out


def test_shell_completion_is_offered_and_works():
    r = run_p9("--help", env=clean_env())
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
    script = run_p9_from_bash("--show-completion", env=clean_env())
    assert script.returncode == 0 and "_p9_completion" in script.stdout and "complete " in script.stdout
    # what the installed script runs when the user presses TAB after `p9 fet`
    words = run_p9(env=clean_env(_P9_COMPLETE="complete_bash", COMP_WORDS="p9 fet", COMP_CWORD="1"))
    assert words.returncode == 0 and words.stdout.split() == ["fetch-history"], words


def test_sim_rejects_a_negative_seed_in_one_line():
    r = run_p9("sim", "--seed", "-1", env=clean_env())
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--seed" in lines[0], r.stderr
    assert "Warning" not in r.stderr and "Traceback" not in r.stderr


# -- issue 8 items 4 and 7: settings errors name what the user wrote; each command checks its own ---


def one_line_exit_2(r, *fragments, absent=()):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    for f in absent:
        assert f not in lines[0], (f, lines[0])
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, names",
    [
        (["--endpoints", "garbage"], "--endpoints 'garbage'"),
        (["--symbols", "doge"], "--symbols"),
        (["--exchanges", "kraken"], "--exchanges"),
        (["--timeframes", "1w"], "--timeframes"),
        (["--candles", "0"], "--candles"),
        (["--data-dir", ""], "--data-dir"),
        (["--binance-rest-url", "ftp://x"], "--binance-rest-url"),
        (["--bybit-rest-url", "ftp://x"], "--bybit-rest-url"),
        (["--okx-rest-url", "ftp://x"], "--okx-rest-url"),
    ],
)
def test_every_fetch_history_setting_reaches_the_settings_and_is_named_in_its_error(args, names, tmp_path):
    """A flag that did not reach the settings (a renamed parameter) would not be refused."""
    r = run_p9("fetch-history", *args, env=clean_env(), cwd=tmp_path)
    one_line_exit_2(r, names, absent=("P9_",))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, names",
    [
        (["--symbols", "doge"], "--symbols"),
        (["--exchanges", "kraken"], "--exchanges"),
        (["--data-dir", ""], "--data-dir"),
    ],
)
def test_every_analyze_setting_reaches_the_settings(args, names, tmp_path):
    r = run_p9("analyze", *args, env=clean_env(), cwd=tmp_path)
    one_line_exit_2(r, names)


def test_the_environment_is_named_when_the_value_came_from_it(tmp_path):
    r = run_p9("fetch-history", env=clean_env(P9_ENDPOINTS="garbage"), cwd=tmp_path)
    one_line_exit_2(r, "P9_ENDPOINTS='garbage'", "valid values: live, sim")


def test_a_path_in_a_base_url_is_refused_with_the_reason(tmp_path):
    r = run_p9(
        "fetch-history", "--binance-rest-url", "http://127.0.0.1:8801/api/v3", env=clean_env(), cwd=tmp_path
    )
    line = one_line_exit_2(r, "--binance-rest-url", "has a path (/api/v3)", "http://HOST[:PORT]")
    assert "appends" in line
    assert list(tmp_path.iterdir()) == []


def test_analyze_ignores_settings_it_does_not_use(tmp_path):
    """A bad P9_ENDPOINTS (or WS/Redis URL) is fetch-history's or stream's problem, not analyze's:
    analyze answers about the data directory, as it would without them."""
    env = clean_env(
        P9_ENDPOINTS="garbage", P9_OKX_WS_URL="nonsense", P9_REDIS_URL="http://x", P9_CANDLES="many"
    )
    r = run_p9("analyze", "--data-dir", str(tmp_path), env=env, cwd=tmp_path)
    line = one_line_exit_2(r, "no history under")
    assert "P9_" not in line


@pytest.mark.parametrize(
    "toml, fragments",
    [
        ('symbol = "btc"\n', ["unknown key 'symbol'", "valid keys: endpoints,", "symbols", "data_dir"]),
        ('[p9]\nsymbols = "btc"\n', ["table [p9]", "valid keys: endpoints,"]),
        ('candles = "many"\n', ["candles = 'many' in", "not a whole number"]),
    ],
)
def test_config_file_mistakes_are_one_line_exit_2(toml, fragments, tmp_path):
    (tmp_path / "p9.toml").write_text(toml)
    r = run_p9("fetch-history", "--data-dir", str(tmp_path / "data"), env=clean_env(), cwd=tmp_path)
    one_line_exit_2(r, *fragments)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("cmd", ["fetch-history", "analyze"])
def test_p9_config_naming_a_missing_file_is_one_line_exit_2(cmd, tmp_path):
    r = run_p9(cmd, env=clean_env(P9_CONFIG=str(tmp_path / "nope.toml")), cwd=tmp_path)
    one_line_exit_2(r, "P9_CONFIG=", "nope.toml", "names no file", "endpoints, ")
    assert list(tmp_path.iterdir()) == []


def test_install_completion_writes_the_script_for_the_users_shell(tmp_path):
    r = run_p9_from_bash("--install-completion", env=clean_env(HOME=str(tmp_path), SHELL="/bin/bash"))
    assert r.returncode == 0, r.stderr
    script = tmp_path / ".bash_completions" / "p9.sh"
    assert "_p9_completion" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
