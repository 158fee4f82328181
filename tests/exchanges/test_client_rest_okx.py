"""OKX REST adapter: recorded history-candles body, exclusive bounds, endpoint choice at 1,440 bars."""

from __future__ import annotations

import pytest
from exchange_fixture_files import read_bytes, read_json, same_number

from p9cli.exchanges import okx
from p9cli.exchanges.base import MalformedResponse
from p9cli.universe import TIMEFRAME_MS, TIMEFRAMES

HISTORY = "okx/spot_rest_history_candles_BTC-USDT_1m_2023-05-02.json"


def test_parse_history_candles_exact_values_reversed():
    candles = okx.parse_klines(read_bytes(HISTORY), "1m")
    raw = read_json(HISTORY)["data"]
    assert len(candles) == len(raw) == 2
    for i, row in enumerate(reversed(raw)):
        assert candles.open_time[i] == int(row[0])
        assert same_number(candles.open[i], row[1])
        assert same_number(candles.high[i], row[2])
        assert same_number(candles.low[i], row[3])
        assert same_number(candles.close[i], row[4])
        assert same_number(candles.volume[i], row[5])  # vol: base currency on SPOT
        assert same_number(candles.quote_volume[i], row[7])  # volCcyQuote
        assert candles.confirmed[i] is (row[8] == "1")
    assert candles.open_time == [1683040860000, 1683040920000]
    assert candles.trades == [None, None]
    assert candles.confirmed == [True, True]


def test_confirm_flag_variants():
    body = (
        b'{"code":"0","msg":"","data":['
        b'["1683040980000","1","2","0.5","1.5","3","4.5","4.5","0"],'
        b'["1683040920000","1","2","0.5","1.5","3","4.5","1"],'
        b'["1683040860000","1","2","0.5","1.5","3","4.5"]]}'
    )
    c = okx.parse_klines(body, "1m")
    assert c.confirmed == [None, True, False]  # 7 fields: no flag; 8: last; 9: last
    assert c.quote_volume == [4.5, 4.5, 4.5]
    with pytest.raises(MalformedResponse):
        okx.parse_klines(b'{"code":"0","msg":"","data":[["1","1","2","0.5","1.5","3","4","4","x"]]}', "1m")


def test_request_exclusive_bounds_and_codes():
    minute = 60_000
    first, last = 1683040860000, 1683040920000
    req = okx.klines_request("btc", "1m", first, last, server_now_ms=last + 10 * minute)
    assert req.path == "/api/v5/market/candles"
    assert req.query == f"instId=BTC-USDT&bar=1m&after={last + 1}&before={first - 1}"
    assert (req.bucket, req.cost) == ("okx:candles", 1)
    codes = [okx.interval_code(tf) for tf in TIMEFRAMES]
    assert codes == ["1Dutc", "12Hutc", "6Hutc", "4H", "2H", "1H", "30m", "15m", "5m", "3m", "1m"]
    day = okx.klines_request("eth", "1d", 0, 86_400_000, 10**13)
    assert dict(day.params)["bar"] == "1Dutc" and dict(day.params)["instId"] == "ETH-USDT"


@pytest.mark.parametrize("tf", ["1m", "1h", "6h", "1d"])
def test_endpoint_choice_at_the_1440_boundary(tf):
    step = TIMEFRAME_MS[tf]
    now = 1_700_000_000_000 + step // 3  # mid-bar
    forming = now // step * step
    oldest_recent = forming - 1439 * step  # the newest 1,440 bars, forming bar included
    assert okx.oldest_recent_open(step, now) == oldest_recent
    inside = okx.klines_request("btc", tf, oldest_recent, forming, now, limit=300)
    assert inside.path == "/api/v5/market/candles" and inside.bucket == "okx:candles"
    outside = okx.klines_request("btc", tf, oldest_recent - step, oldest_recent + 298 * step, now)
    assert outside.path == "/api/v5/market/history-candles" and outside.bucket == "okx:history-candles"
    assert dict(outside.params)["limit"] == "300"
    # exactly on a boundary instant the forming bar is the one that just opened
    edge = okx.klines_request("btc", tf, forming - 1439 * step, forming, forming)
    assert edge.path == "/api/v5/market/candles"
    late = okx.klines_request("btc", tf, forming - 1439 * step, forming, forming + step)
    assert late.path == "/api/v5/market/history-candles"


def test_limit_default_and_cap():
    minute = 60_000
    assert "limit" not in dict(okx.klines_request("btc", "1m", 0, 99 * minute, 10**13).params)
    assert dict(okx.klines_request("btc", "1m", 0, 100 * minute, 10**13).params)["limit"] == "101"
    assert dict(okx.klines_request("btc", "1m", 0, 900 * minute, 10**13).params)["limit"] == "300"
    assert okx.MAX_KLINES_PER_REQUEST == 300


def test_server_time_and_buckets():
    assert okx.parse_server_time(b'{"code":"0","msg":"","data":[{"ts":"1597026383085"}]}') == 1597026383085
    req = okx.server_time_request()
    assert (req.path, req.bucket) == ("/api/v5/public/time", "okx:time")
    buckets = {b.name: (b.capacity, b.window_s) for b in okx.RATE_BUCKETS}
    assert buckets == {
        "okx:candles": (40, 2.0),
        "okx:history-candles": (20, 2.0),
        "okx:time": (10, 2.0),
        "okx:books": (40, 2.0),
        "okx:trades": (100, 2.0),  # market/trades (reference 4.1)
        "okx:history-trades": (20, 2.0),  # market/history-trades (reference 4.1)
    }
    assert okx.used_weight({}) == {}


# --- market/trades, market/history-trades: the replay of a hole in the trades channel's numbering


def test_recent_trades_request_and_rows_ascending_one_fill_each():
    from p9cli.exchanges import okx
    from p9cli.exchanges.venue import get_venue

    req = okx.trades_request("btc")
    assert req.path == "/api/v5/market/trades" and dict(req.params) == {"instId": "BTC-USDT", "limit": "500"}
    assert get_venue("okx").trade_replay_request is okx.trade_replay_request
    # the documented row (reference 4.3), newest first as OKX sends it
    body = (
        b'{"code":"0","msg":"","data":['
        b'{"instId":"BTC-USDT","side":"sell","sz":"0.00011194","px":"95635.3","source":"0",'
        b'"tradeId":"674510827","ts":"1740394561686"},'
        b'{"instId":"BTC-USDT","side":"buy","sz":"0.00011186","px":"95634.9","source":"0",'
        b'"tradeId":"674510826","ts":"1740394561685"}]}'
    )
    trades = okx.parse_recent_trades(body, "btc")
    assert [
        (t.trade_id, t.id_first, t.id_last, t.fills, t.side, t.price, t.size, t.ts_ms) for t in trades
    ] == [
        ("674510826", 674510826, 674510826, 1, "buy", 95634.9, 0.00011186, 1740394561685),
        ("674510827", 674510827, 674510827, 1, "sell", 95635.3, 0.00011194, 1740394561686),
    ]


def test_recent_trades_error_envelope_and_garbage_raise_exchange_errors():
    from p9cli.exchanges import okx
    from p9cli.exchanges.base import ExchangeError

    for body in (
        b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}',
        b"<html>502</html>",
        b'{"code":"0","data":[{"tradeId":"1","px":"1","sz":"1","side":"up","ts":"1"}]}',
    ):
        with pytest.raises(ExchangeError):
            okx.parse_recent_trades(body, "btc")


def test_replay_pages_newest_500_then_history_trades_below_the_top_of_the_span():
    from p9cli.exchanges import okx
    from p9cli.exchanges.venue import get_venue

    replay = get_venue("okx").trade_replay_request
    first = replay("btc", 1000, 1999, 0)
    assert first.target == "/api/v5/market/trades?instId=BTC-USDT&limit=500"
    assert (first.bucket, first.cost) == ("okx:trades", 1)
    for page in (1, 2, 7):
        req = replay("eth", 1000, 1999, page)
        # after is exclusive: the 100 trades 1900..1999
        assert req.target == "/api/v5/market/history-trades?instId=ETH-USDT&type=1&after=2000&limit=100"
        assert (req.bucket, req.cost) == ("okx:history-trades", 1)
    assert okx.history_trades_request("sol", 5, limit=3).query == "instId=SOL-USDT&type=1&after=5&limit=3"
    for bad in (0, 101):
        with pytest.raises(ValueError):
            okx.history_trades_request("btc", 5, limit=bad)
    assert get_venue("okx").parse_trade_replay is okx.parse_recent_trades  # one parser, one row shape
