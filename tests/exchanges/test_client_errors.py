"""Error classification of the three REST adapters, on the exact bodies of the protocol doc.

Every failure becomes one ExchangeError subclass with a one-line message; nothing else escapes
(checked also on truncated and random bodies).
"""

from __future__ import annotations

import contextlib
import random

import pytest

from p9cli.errors import P9Error
from p9cli.exchanges import binance, bybit, okx
from p9cli.exchanges.base import (
    BadRequest,
    Banned,
    ExchangeError,
    MalformedResponse,
    RateLimited,
    RequestTimeout,
    ServerError,
)

ADAPTERS = (binance, bybit, okx)

BINANCE_429 = (
    b'{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per '
    b'1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}'
)
BINANCE_418 = (
    b'{"code":-1003,"msg":"Way too much request weight used; IP banned until 1770123456789. '
    b'Please use WebSocket Streams for live updates to avoid bans."}'
)
HTML_PAGE = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"


def raised(adapter, status, body, headers=None) -> ExchangeError:
    with pytest.raises(ExchangeError) as info:
        adapter.check_response(status, headers or {}, body)
    err = info.value
    assert isinstance(err, P9Error)
    assert "\n" not in str(err) and "\r" not in str(err)
    assert str(err).startswith(adapter.NAME + ":")
    return err


# ---------------------------------------------------------------------------- Binance


def test_binance_429_with_retry_after():
    err = raised(binance, 429, BINANCE_429, {"Retry-After": "37"})
    assert type(err) is RateLimited and err.retryable
    assert err.retry_after_s == 37.0 and err.code == "-1003" and err.status == 429
    assert "6000 request weight" in str(err)


def test_binance_418_ban_with_retry_after():
    err = raised(binance, 418, BINANCE_418, {"retry-after": "7200"})
    assert type(err) is Banned and err.retry_after_s == 7200.0


def test_binance_invalid_symbol_and_interval_are_not_retried():
    err = raised(binance, 400, b'{"code":-1121,"msg":"Invalid symbol."}')
    assert type(err) is BadRequest and not err.retryable and err.code == "-1121"
    assert str(err) == "binance: HTTP 400 code -1121 - Invalid symbol."
    err = raised(binance, 400, b'{"code":-1120,"msg":"Invalid interval."}')
    assert type(err) is BadRequest and err.code == "-1120"


def test_binance_403_waf_5xx_and_html():
    assert type(raised(binance, 403, b"")) is Banned
    for status in (500, 502, 503, 504):
        err = raised(binance, status, HTML_PAGE)
        assert type(err) is ServerError and err.retryable
    err = raised(binance, 503, b'{"code":-1008,"msg":"Server is currently overloaded with other requests."}')
    assert type(err) is ServerError and err.code == "-1008"
    assert type(raised(binance, 408, b"")) is RequestTimeout
    assert type(raised(binance, 404, b"<html>Not Found</html>")) is BadRequest


def test_binance_2xx_passes_and_html_200_is_malformed_in_parser():
    binance.check_response(200, {}, b"[]")
    with pytest.raises(MalformedResponse):
        binance.parse_klines(HTML_PAGE, "1m")
    with pytest.raises(MalformedResponse):
        binance.parse_klines(b'"x"', "1m")
    with pytest.raises(MalformedResponse):
        binance.parse_server_time(b'{"serverTime":"soon"}')


# ---------------------------------------------------------------------------- Bybit


def test_bybit_param_error_in_200():
    body = b'{"retCode":10001,"retMsg":"params error: symbol invalid","result":{},"retExtInfo":{},"time":1700000000000}'
    err = raised(bybit, 200, body)
    assert type(err) is BadRequest and err.code == "10001" and not err.retryable
    with pytest.raises(BadRequest):
        bybit.parse_klines(body, "1m")


def test_bybit_rate_limit_in_200():
    body = b'{"retCode":10006,"retMsg":"Too many visits!","result":{},"retExtInfo":{},"time":1700000000000}'
    err = raised(bybit, 200, body)
    assert type(err) is RateLimited and err.code == "10006"
    with pytest.raises(RateLimited):
        bybit.parse_klines(body, "1m")


def test_bybit_403_ip_limit_means_wait_ten_minutes():
    err = raised(bybit, 403, b"access too frequent")
    assert type(err) is Banned and err.retry_after_s == 600.0
    err = raised(bybit, 403, b"", {"Retry-After": "900"})
    assert err.retry_after_s == 900.0


def test_bybit_other_statuses():
    assert type(raised(bybit, 429, b"")) is RateLimited
    assert type(raised(bybit, 502, HTML_PAGE)) is ServerError
    assert type(raised(bybit, 404, b"")) is BadRequest
    body = b'{"retCode":10016,"retMsg":"Internal server error.","result":{},"retExtInfo":{},"time":1}'
    assert type(raised(bybit, 200, body)) is ServerError
    assert type(raised(bybit, 200, HTML_PAGE)) is MalformedResponse
    bybit.check_response(
        200, {}, b'{"retCode":0,"retMsg":"OK","result":{"list":[]},"retExtInfo":{},"time":1}'
    )
    bybit.check_response(200, {}, b'{\n  "retCode": 0,\n  "retMsg": "OK",\n  "result": {}\n}')


# ---------------------------------------------------------------------------- OKX


def test_okx_50011_as_http_429_and_http_200():
    err = raised(okx, 429, b'{"msg":"Too Many Requests","code":"50011"}')
    assert type(err) is RateLimited and err.code == "50011" and err.status == 429
    body = b'{"code":"50011","msg":"Rate limit reached. Please refer to API documentation and throttle requests accordingly.","data":[]}'
    err = raised(okx, 200, body)
    assert type(err) is RateLimited and err.status == 200
    with pytest.raises(RateLimited):
        okx.parse_klines(body, "1m")


def test_okx_unknown_instrument_and_bad_parameter():
    body = b'{"code":"51001","msg":"Instrument ID doesn\'t exist.","data":[]}'
    err = raised(okx, 200, body)
    assert type(err) is BadRequest and err.code == "51001"
    with pytest.raises(BadRequest):
        okx.parse_klines(body, "1m")
    err = raised(okx, 400, b'{"code":"51000","msg":"Parameter bar error","data":[]}')
    assert type(err) is BadRequest and err.code == "51000"
    err = raised(okx, 404, b'{"code":404,"msg":"Not Found"}')
    assert type(err) is BadRequest


def test_okx_busy_5xx_and_html():
    assert (
        type(
            raised(okx, 429, b'{"code":"50013","msg":"Systems are busy. Please try again later.","data":[]}')
        )
        is ServerError
    )
    for status in (500, 503):
        assert type(raised(okx, status, HTML_PAGE)) is ServerError
    assert type(raised(okx, 200, HTML_PAGE)) is MalformedResponse
    # a truncated success body passes the cheap status check; the parser then rejects it
    okx.check_response(200, {}, b'{"code":"0","msg":"","data":[["1683040920000","1"')
    with pytest.raises(MalformedResponse):
        okx.parse_klines(b'{"code":"0","msg":"","data":[["1683040920000","1"', "1m")
    okx.check_response(200, {}, b'{"code":"0","msg":"","data":[]}')


# ---------------------------------------------------------------------------- never a crash


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.NAME)
def test_garbage_bodies_only_raise_exchange_errors(adapter):
    rng = random.Random(9)
    samples = [
        b"",
        b"null",
        b"[]x",
        b"{}",
        b"[[]]",
        b"[1,2]",
        b'{"data":5}',
        b"\xff\xfe",
        HTML_PAGE,
        b"[" * 5000,
    ]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))) for _ in range(200)]
    good = {
        binance: b'[[1588636800000,"1","2","0.5","1.5","3",1588636859999,"4",5,"1","1","0"]]',
        bybit: b'{"retCode":0,"retMsg":"OK","result":{"list":[["1683472860000","1","2","0.5","1.5","3","4"]]},"time":1}',
        okx: b'{"code":"0","msg":"","data":[["1683040920000","1","2","0.5","1.5","3","4","4","1"]]}',
    }[adapter]
    samples += [good[:i] for i in range(len(good))]  # every truncation of a valid body
    for body in samples:
        for status in (200, 400, 403, 418, 429, 500):
            with contextlib.suppress(ExchangeError):
                adapter.check_response(status, {}, body)
        for parse in (lambda b: adapter.parse_klines(b, "1m"), adapter.parse_server_time):
            with contextlib.suppress(ExchangeError):
                parse(body)
    assert len(adapter.parse_klines(good, "1m")) == 1


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.NAME)
@pytest.mark.parametrize(
    "status, cls",
    [
        (429, RateLimited),
        (408, RequestTimeout),
        (500, ServerError),
        (502, ServerError),
        (504, ServerError),
        (404, BadRequest),
        (405, BadRequest),
        (302, MalformedResponse),
        (101, MalformedResponse),
    ],
)
def test_bare_statuses_classify_alike_on_every_exchange(adapter, status, cls):
    """A status without an error body (a proxy's or load balancer's answer) means the same
    everywhere; the text names the exchange and the status, on one line."""
    err = raised(adapter, status, HTML_PAGE, {"Retry-After": "3"})
    assert type(err) is cls
    assert err.status == status and err.exchange == adapter.NAME
    line = str(err)
    assert line.startswith(f"{adapter.NAME}: HTTP {status}") and "\n" not in line
    assert err.retry_after_s == (3.0 if cls in (RateLimited, ServerError) else None)


def test_geo_blocks_are_told_apart_from_bans_and_never_retried():
    """Binance 451 and Bybit's CloudFront 403 are a location refusal (reference 2.1, 3.1):
    GeoBlocked, not retryable, one line that says what to do; Bybit's JSON/plain 403 stays the
    IP-limit ban."""
    from p9cli.exchanges import binance, bybit
    from p9cli.exchanges.base import Banned, GeoBlocked

    body_451 = (b'{"code":0,"msg":"Service unavailable from a restricted location according to '
                b"'b. Eligibility' in https://www.binance.com/en/terms.\"}")
    with pytest.raises(GeoBlocked) as e:
        binance.check_response(451, {}, body_451)
    assert not e.value.retryable and e.value.status == 451
    assert "geo-blocked: binance refuses requests from this location" in str(e.value)
    assert "\n" not in str(e.value)
    cloudfront = (b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" '
                  b'"http://www.w3.org/TR/html4/loose.dtd"><HTML><HEAD><TITLE>ERROR: The request could not be '
                  b"satisfied</TITLE></HEAD><BODY>The Amazon CloudFront distribution is configured to block access "
                  b"from your country.</BODY></HTML>")
    with pytest.raises(GeoBlocked) as e:
        bybit.check_response(403, {}, cloudfront)
    assert not e.value.retryable and "leave bybit out" in str(e.value)
    with pytest.raises(Banned):
        bybit.check_response(403, {}, b"access too frequent")
