"""The shared pieces of p9cli.exchanges.base: candles helpers, windows, errors, headers."""

from __future__ import annotations

import pytest

from p9cli.errors import EXIT_USAGE, ConfigError
from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import (
    BadRequest,
    KlinesPage,
    RateLimited,
    RestRequest,
    bars_in_window,
    header,
    limit_param,
    normalize_order,
    retry_after_seconds,
)


def _candles(times, confirmed=None):
    n = len(times)
    return KlinesPage(
        open_time=list(times),
        open=[float(t) for t in times],
        high=[float(t) + 1 for t in times],
        low=[float(t) - 1 for t in times],
        close=[float(t) for t in times],
        volume=[1.0] * n,
        quote_volume=[2.0] * n,
        trades=[None] * n,
        confirmed=list(confirmed) if confirmed is not None else [None] * n,
    )


def test_normalize_order_sorts_and_keeps_last_duplicate():
    c = _candles([3, 1, 2, 1])
    c.close[3] = 99.0  # the later copy of open_time 1
    out = normalize_order(c)
    assert out.open_time == [1, 2, 3] and out.close == [99.0, 2.0, 3.0]
    already = _candles([1, 2, 3])
    assert normalize_order(already) is already


def test_closed_mask_uses_flag_or_server_time():
    c = _candles([0, 60_000, 120_000], confirmed=[None, None, None])
    assert c.closed_mask(60_000, 180_000) == [True, True, True]
    assert c.closed_mask(60_000, 179_999) == [True, True, False]
    flagged = _candles([0, 60_000], confirmed=[True, False])
    assert flagged.closed_mask(60_000, 10**12) == [True, False]  # the exchange's flag wins
    assert flagged.closed_only(60_000, 10**12).open_time == [0]
    assert list(flagged.rows())[0] == (0, 0.0, 1.0, -1.0, 0.0, 1.0, 2.0, None, True)
    assert set(c.columns()) == set(KlinesPage.COLUMNS) and len(c) == 3
    # leaving the exchange layer: the one candle representation, closed bars only
    closed = c.closed(60_000, 179_999)
    assert closed.open_time.tolist() == [0, 60_000] and closed.rows()[60_000] == (
        60_000.0, 60_001.0, 59_999.0, 60_000.0, 1.0, 2.0, None
    )  # fmt: skip
    assert len(flagged.to_candles()) == 2


def test_bars_in_window_and_limit_param():
    assert bars_in_window(0, 0, 60_000) == 1
    assert bars_in_window(1, 59_999, 60_000) == 0
    assert bars_in_window(1, 60_000, 60_000) == 1
    assert bars_in_window(120_000, 60_000, 60_000) == 0
    assert limit_param(None, 10, 500, 1000) is None
    assert limit_param(None, 501, 500, 1000) == 501
    assert limit_param(None, 5000, 500, 1000) == 1000
    assert limit_param(2000, 1, 500, 1000) == 1000
    with pytest.raises(ValueError):
        limit_param(0, 1, 500, 1000)


def test_rest_request_target():
    assert RestRequest("/api/v3/time", (), "binance:weight").target == "/api/v3/time"
    r = RestRequest("/x", (("a", "1"), ("b", "2")), "b")
    assert (r.query, r.target, r.method, r.cost) == ("a=1&b=2", "/x?a=1&b=2", "GET", 1)


def test_error_messages_are_one_bounded_line():
    err = BadRequest("line one\nline two\r\n\tend", exchange="okx", status=400, code="51000")
    assert str(err) == "okx: HTTP 400 code 51000 - line one line two end"
    long = RateLimited(1.5, "x" * 1000, exchange="binance")
    assert len(str(long)) < 320 and long.retry_after_s == 1.5 and long.retryable
    assert RateLimited().retry_after_s is None


def test_header_lookup_and_retry_after():
    assert header({"retry-after": "5"}, "Retry-After") == "5"
    assert retry_after_seconds({"Retry-After": " 12 "}) == 12.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds({"Retry-After": "-3"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize("adapter", [binance, bybit, okx], ids=lambda a: a.NAME)
def test_bad_input_is_a_usage_error(adapter):
    for call in (
        lambda: adapter.klines_request("btc", "2d", 0, 0, 0),
        lambda: adapter.klines_request("BTC", "1m", 0, 0, 0),
        lambda: adapter.klines_request("btc/usdt", "1m", 0, 0, 0),
        lambda: adapter.parse_klines(b"[]", "1w"),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.exit_code == EXIT_USAGE and "\n" not in str(info.value)


@pytest.mark.parametrize("adapter", [binance, bybit, okx], ids=lambda a: a.NAME)
def test_published_limits(adapter):
    assert {"binance": 1000, "bybit": 1000, "okx": 300}[adapter.NAME] == adapter.MAX_KLINES_PER_REQUEST
    buckets = {b.name: b for b in adapter.RATE_BUCKETS}
    if adapter is binance:
        assert buckets["binance:weight"].capacity == 6000 and buckets["binance:weight"].window_s == 60.0
        assert buckets["binance:weight"].kind == "fixed"
    if adapter is bybit:
        assert (buckets["bybit:ip"].capacity, buckets["bybit:ip"].window_s) == (600, 5.0)
    for req in (adapter.klines_request("btc", "1h", 0, 3_600_000, 10**13), adapter.server_time_request()):
        assert req.bucket in buckets
