from pathlib import Path

import pytest

from p9cli.config import (
    CONFIG_KEYS,
    LIVE_ENDPOINTS,
    SettingsFlags,
    Use,
    load_settings,
    parse_list,
    sim_endpoints,
)
from p9cli.errors import EXIT_USAGE, ConfigError
from p9cli.universe import EXCHANGES, SYMBOLS, TIMEFRAMES


def test_defaults_are_the_whole_universe_and_live_endpoints():
    s = load_settings({}, env={}, config_path=None)
    assert s.symbols == SYMBOLS and s.exchanges == EXCHANGES and s.timeframes == TIMEFRAMES
    assert s.candles == 1000 and s.data_dir == Path("data")
    assert s.rest_url("binance") == "https://api.binance.com"
    assert s.ws_url("okx") == LIVE_ENDPOINTS["okx"]["ws"]


def test_sim_endpoints_and_overrides():
    s = load_settings({}, env={"P9_ENDPOINTS": "sim", "P9_OKX_REST_URL": "http://127.0.0.1:9903/"})
    assert s.rest_url("binance") == "http://127.0.0.1:8801"
    assert s.ws_url("bybit") == "ws://127.0.0.1:8802"
    assert s.rest_url("okx") == "http://127.0.0.1:9903"  # override wins, trailing slash dropped
    assert sim_endpoints("::1", 9000)["okx"]["rest"] == "http://[::1]:9003"


def test_precedence_flags_over_env_over_toml(tmp_path):
    toml = tmp_path / "p9.toml"
    toml.write_text('symbols = "btc,eth,sol"\ncandles = 50\ndata_dir = "from-toml"\n')
    env = {"P9_CANDLES": "70"}
    s = load_settings({"symbols": "xrp"}, env=env, config_path=toml)
    assert s.symbols == ("xrp",)  # flag
    assert s.candles == 70  # env over toml
    assert s.data_dir == Path("from-toml")  # toml over default


def test_lists_are_canonical_order_and_deduplicated():
    assert parse_list("1m,1d,1m", TIMEFRAMES, "timeframes") == ("1d", "1m")
    assert parse_list(" BTC , eth ", SYMBOLS, "symbols") == ("btc", "eth")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        ({"symbols": "btc,doge"}, "unknown symbol 'doge'; valid symbols: btc, eth, sol, bnb, xrp"),
        ({"exchanges": "kraken"}, "valid exchanges: binance, bybit, okx"),
        ({"timeframes": "1w"}, "valid timeframes: 1d, 12h"),
        ({"candles": "many"}, "not a whole number"),
        ({"candles": 0}, "out of range"),
        ({"endpoints": "prod"}, "valid values: live, sim"),
        ({"binance_rest_url": "ftp://x"}, "is not a base URL"),
        ({"okx_ws_url": "http://127.0.0.1:1"}, "expected ws://HOST[:PORT] or wss://HOST[:PORT]"),
    ],
)
def test_bad_settings_give_one_clear_line(flags, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(flags, env={})
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg
    assert err.value.exit_code == EXIT_USAGE


def test_broken_toml_is_one_line(tmp_path):
    bad = tmp_path / "p9.toml"
    bad.write_text("symbols = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, env={}, config_path=bad)


# -- issue 8 item 4: config file mistakes; P9_CONFIG through the config layer --------------------


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('symbol = "btc"\n', "unknown key 'symbol'"),
        ('[p9]\nsymbols = "btc"\n', "has a table [p9]"),
        ('endpoints = "sim"\n[p9.extra]\nx = 1\n', "has a table [p9]"),
    ],
)
def test_config_file_with_an_unknown_key_or_a_table_lists_the_valid_keys(text, fragment, tmp_path):
    path = tmp_path / "p9.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings({}, env={}, config_path=path)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg and err.value.exit_code == EXIT_USAGE
    assert "valid keys: " + ", ".join(CONFIG_KEYS) in msg


def test_every_settings_key_is_accepted_in_the_config_file(tmp_path):
    path = tmp_path / "p9.toml"
    path.write_text(
        'endpoints = "sim"\nbinance_rest_url = "http://127.0.0.1:9001"\nbinance_ws_url = "ws://127.0.0.1:9001"\n'
        'bybit_rest_url = "http://127.0.0.1:9002"\nbybit_ws_url = "ws://127.0.0.1:9002"\n'
        'okx_rest_url = "http://127.0.0.1:9003"\nokx_ws_url = "ws://127.0.0.1:9003"\n'
        'data_dir = "d"\nsymbols = ["btc", "eth"]\nexchanges = "okx"\ntimeframes = "1h"\ncandles = 50\n'
        'redis_url = "redis://127.0.0.1:6390/2"\nredis_probe = "127.0.0.1:6391"\nworker_id = "box-1"\n'
    )
    assert set(CONFIG_KEYS) == {line.split(" =")[0] for line in path.read_text().splitlines()}
    s = load_settings({}, env={}, config_path=path)
    assert s.ws_url("okx") == "ws://127.0.0.1:9003" and s.rest_url("binance") == "http://127.0.0.1:9001"
    assert (s.data_dir, s.symbols, s.exchanges, s.timeframes, s.candles) == (
        Path("d"),
        ("btc", "eth"),
        ("okx",),
        ("1h",),
        50,
    )
    assert s.redis_url == "redis://127.0.0.1:6390/2" and s.worker_id == "box-1"
    assert s.redis_probe == "127.0.0.1:6391"


def test_p9_config_is_read_from_the_given_environment(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text('symbols = "sol"\n')
    assert load_settings({}, env={"P9_CONFIG": str(path)}).symbols == ("sol",)


@pytest.mark.parametrize("name", ["missing.toml", "."])
def test_p9_config_naming_no_file_is_one_line(name, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({}, env={"P9_CONFIG": str(tmp_path / name)})
    msg = str(err.value)
    assert msg.startswith("P9_CONFIG=") and "\n" not in msg and "endpoints, " in msg


def test_config_values_of_the_wrong_type_are_refused(tmp_path):
    path = tmp_path / "p9.toml"
    for text, fragment in (
        ("candles = 5.5\n", "candles = 5.5 in"),
        ("candles = true\n", "not a whole number"),
        ('symbols = ["btc", 3]\n', "not a comma-separated list"),
        ("data_dir = 7\n", "data_dir = 7 in"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_settings({}, env={}, config_path=path)
        assert fragment in str(err.value), (text, str(err.value))


# -- issue 8 item 7: name the source; base URLs without a path; each command checks what it uses ----


def test_errors_name_where_the_value_came_from(tmp_path):
    path = tmp_path / "p9.toml"
    path.write_text('endpoints = "toml-bad"\n')
    cases = (
        ({"endpoints": "flag-bad"}, {}, "--endpoints 'flag-bad'"),
        ({}, {"P9_ENDPOINTS": "env-bad"}, "P9_ENDPOINTS='env-bad'"),
        ({}, {}, f"endpoints = 'toml-bad' in {path}"),
    )
    for flags, env, fragment in cases:
        with pytest.raises(ConfigError) as err:
            load_settings(flags, env=env, config_path=path)
        assert str(err.value).startswith(fragment), str(err.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8801/api/v3", "http://127.0.0.1:8801/x/", "http://h:1?x=1", "https://h/#f"]
)
def test_a_base_url_with_a_path_query_or_fragment_is_refused(url):
    with pytest.raises(ConfigError, match="has a path") as err:
        load_settings({"binance_rest_url": url}, env={})
    assert "--binance-rest-url" in str(err.value) and "appends" in str(err.value)


def test_an_empty_url_flag_is_refused():
    with pytest.raises(ConfigError, match="--okx-rest-url is empty"):
        load_settings({"okx_rest_url": ""}, env={})


def test_a_trailing_slash_is_no_path():
    assert load_settings({"okx_ws_url": "wss://h:1/"}, env={}).ws_url("okx") == "wss://h:1"


def test_each_command_checks_only_the_settings_it_uses():
    bad = {
        "P9_ENDPOINTS": "garbage",
        "P9_OKX_WS_URL": "nonsense",
        "P9_REDIS_URL": "http://x",
        "P9_WORKER_ID": "has space",
        "P9_CANDLES": "many",
    }
    s = load_settings({"symbols": "btc"}, env=bad, uses=(Use.DATA_DIR, Use.SYMBOLS, Use.EXCHANGES))
    assert s.symbols == ("btc",)
    with pytest.raises(KeyError):
        s.rest_url("binance")  # not asked for: not silently the live default
    # REST but not WS: a bad WS URL does not matter, a bad endpoints mode does
    ok = load_settings({}, env={"P9_OKX_WS_URL": "nonsense"}, uses=(Use.REST_URLS,))
    assert ok.rest_url("okx") == LIVE_ENDPOINTS["okx"]["rest"] and ok.ws_urls == {}
    with pytest.raises(ConfigError, match="P9_ENDPOINTS"):
        load_settings({}, env=bad, uses=(Use.REST_URLS,))
    with pytest.raises(ConfigError, match="P9_OKX_WS_URL"):
        load_settings({}, env={"P9_OKX_WS_URL": "nonsense"}, uses=(Use.WS_URLS,))
    # a config-file mistake is reported whatever the command uses
    with pytest.raises(ConfigError, match="P9_CONFIG"):
        load_settings({}, env={"P9_CONFIG": "/nonexistent/p9.toml"}, uses=("data_dir",))
    with pytest.raises(ValueError, match="valid: rest_urls"):
        load_settings({}, env={}, uses=("rest_url",))  # a misspelt use is a programming error


def test_flags_are_typed_and_an_unknown_flag_key_is_not_dropped():
    s = load_settings(SettingsFlags(symbols="eth", candles=5), env={})
    assert s.symbols == ("eth",) and s.candles == 5
    with pytest.raises(TypeError):
        load_settings({"symbol": "eth"}, env={})  # a misspelt key fails, it is never ignored


def test_empty_data_dir_is_refused():
    with pytest.raises(ConfigError, match="--data-dir is empty"):
        load_settings({"data_dir": ""}, env={})
    assert load_settings({}, env={"P9_DATA_DIR": ""}).data_dir == Path("data")  # unset variable


# -- settings of the live half --------------------------------------------------------------------


def test_live_settings_redis_url_and_worker_id():
    s = load_settings({}, env={})
    assert s.redis_url is None and s.worker_id is None  # not configured: the live half decides
    assert s.ws_url("okx") == "wss://ws.okx.com"  # OKX retired port 8443 on 2026-10-31
    s = load_settings({"worker_id": "eu-1.a:b"}, env={"P9_REDIS_URL": "rediss://u:p@h:6380/1"})
    assert s.redis_url == "rediss://u:p@h:6380/1" and s.worker_id == "eu-1.a:b"
    with pytest.raises(ConfigError, match="P9_REDIS_URL is not a Redis URL"):
        load_settings({}, env={"P9_REDIS_URL": "http://h:6379"})
    assert s.redis_probe == "127.0.0.1:6379"
    assert load_settings({}, env={"P9_REDIS_PROBE": "[::1]:7000"}).redis_probe == "[::1]:7000"
    for bad in ("6379", "host:", ":6379", "h:99999", "h:x"):
        with pytest.raises(ConfigError, match="is not HOST:PORT"):
            load_settings({}, env={"P9_REDIS_PROBE": bad})
    for bad in ("has space", "-lead", "x" * 65, "a/b"):
        with pytest.raises(ConfigError, match="is not a worker id"):
            load_settings({"worker_id": bad}, env={})


def test_readme_settings_table_names_every_key_and_the_real_defaults():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Settings") :]
    table = table[: table.index("\n## ", 3)]
    for key in CONFIG_KEYS:
        assert f"`{key}`" in table, key  # the p9.toml key; the variable is P9_ + its upper case
    for urls in LIVE_ENDPOINTS.values():
        assert f"`{urls['rest']}`" in table and f"`{urls['ws']}`" in table
    defaults = load_settings({}, env={})
    assert f"| `{defaults.endpoints}` |" in table and f"| `{defaults.candles}` |" in table
    assert f"`./{defaults.data_dir}`" in table
