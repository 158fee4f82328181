from pathlib import Path

import pytest

from p9cli.config import LIVE_ENDPOINTS, load_settings, parse_list, sim_endpoints
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
