"""ccxt (sync) against `p9 sim`: load_markets, fetch_ohlcv (latest, since/limit paging, ccxt's own
pagination) and fetch_order_book on Binance, Bybit and OKX, compared with the simulator's truth.

The client is configured as a new user would: every ``urls['api']`` entry rebased onto the
simulator, and ``options['fetchMarkets']['types'] = ['spot']`` (a spot-only user; ccxt's
default also loads derivatives markets from other hosts). Nothing else is changed.
"""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from thirdparty_harness import CCXT_SYMBOL, EXCHANGE_CODE, SYMBOLS, TF_MS, ccxt_client, running_sim_process

ccxt = importlib.import_module("ccxt")

pytestmark = pytest.mark.timeout(300)

EXCHANGES = ("binance", "bybit", "okx")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_sim_process(seed=20261124, workdir=tmp_path_factory.mktemp("sim")) as s:
        yield s


@pytest.fixture(scope="module")
def clients(sim):
    made = {ex: ccxt_client(ex, sim) for ex in EXCHANGES}
    yield made


def dec(value: float | None) -> Decimal:
    """ccxt gives floats parsed from the exchange's decimal strings; repr() is the shortest
    decimal that round-trips, i.e. the exchange's number (for <= 15 significant digits)."""
    assert value is not None
    return Decimal(repr(value))


def server_now_ms(client) -> int:
    return int(client.fetch_time())


def assert_candles_equal_truth(
    sim, exchange: str, symbol: str, timeframe: str, candles: list[list], now_ms: int
) -> None:
    """Every candle that had closed by ``now_ms`` (server time read just BEFORE the client's
    call) equals the simulator's truth, field by field; a younger one has the true open."""
    assert candles, "no candles"
    tf = TF_MS[timeframe]
    opens = [c[0] for c in candles]
    assert opens == sorted(opens) and len(set(opens)) == len(opens), "not ascending / duplicates"
    assert all(t % tf == 0 for t in opens), f"{timeframe} candles not UTC aligned: {opens[:3]}"
    assert all(b - a == tf for a, b in zip(opens, opens[1:], strict=False)), "gap between candles"
    truth = sim.truth_candles(exchange, symbol, timeframe, opens[0], opens[-1])
    by_open = {row[0]: row for row in truth}
    closed = [c for c in candles if c[0] + tf <= now_ms]
    assert closed, "no closed candle to compare"
    for c in closed:
        t = by_open.get(c[0])
        assert t is not None, f"{exchange} {symbol} {timeframe} {c[0]}: not in the truth"
        got = tuple(dec(x) for x in c[1:6])
        assert got == t[1:6], f"{exchange} {symbol} {timeframe} {c[0]}: ccxt {got} != truth {t[1:6]}"
    for c in candles:
        if c[0] + tf > now_ms and c[0] in by_open:
            assert dec(c[1]) == by_open[c[0]][1], "forming candle: open differs"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_load_markets_lists_the_five_spot_markets(clients, exchange):
    client = clients[exchange]
    markets = client.load_markets(reload=True)
    for s in SYMBOLS:
        m = markets[CCXT_SYMBOL[s]]
        assert m["id"] == EXCHANGE_CODE[exchange][s]
        assert m["spot"] is True and m["type"] == "spot"
        assert m["active"] is True, f"{exchange} {s}: market not active (status field)"
        assert m["base"] == s.upper() and m["quote"] == "USDT"
        assert m["precision"]["price"] and m["precision"]["price"] > 0
        assert m["precision"]["amount"] and m["precision"]["amount"] > 0
        assert m["limits"]["amount"]["min"] and m["limits"]["amount"]["min"] > 0


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h", "4h", "6h", "12h", "1d"])
def test_fetch_ohlcv_latest_equals_truth(sim, clients, exchange, timeframe):
    client = clients[exchange]
    symbol = "btc" if timeframe in ("1m", "1h", "1d") else "eth"
    now = server_now_ms(client)
    candles = client.fetch_ohlcv(CCXT_SYMBOL[symbol], timeframe, limit=50)
    later = server_now_ms(client)
    assert len(candles) == 50
    tf = TF_MS[timeframe]
    # the newest candle is the one forming at the time of the call
    assert now // tf * tf <= candles[-1][0] <= later
    assert_candles_equal_truth(sim, exchange, symbol, timeframe, candles, now)
    # prices are on the market's tick grid
    tick = dec(client.market(CCXT_SYMBOL[symbol])["precision"]["price"])
    for c in candles:
        for price in c[1:5]:
            assert dec(price) % tick == 0, f"{price} is not a multiple of tick {tick}"


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize(
    ("timeframe", "bars_back", "limit"), [("1m", 2000, 300), ("1h", 900, 200), ("15m", 3000, 100)]
)
def test_fetch_ohlcv_since_limit_paging(sim, clients, exchange, timeframe, bars_back, limit):
    """Page forward from `since` as a user does (next since = last open + 1 bar): three pages,
    contiguous, no duplicate, equal to the truth. 2000 1m bars back is past OKX's 1440-bar
    /market/candles window, so ccxt switches to /market/history-candles there."""
    client = clients[exchange]
    tf = TF_MS[timeframe]
    now = server_now_ms(client)
    since = (now // tf - bars_back) * tf + 1  # unaligned on purpose: the first bar is the next whole one
    got: list[list] = []
    cursor = since
    for _ in range(3):
        page = client.fetch_ohlcv(CCXT_SYMBOL["sol"], timeframe, since=cursor, limit=limit)
        assert len(page) == limit, f"{exchange} page at {cursor}: {len(page)} rows"
        assert page[0][0] >= cursor
        got += page
        cursor = page[-1][0] + tf
    assert got[0][0] == since - 1 + tf, "first candle is not the first whole bar after `since`"
    assert_candles_equal_truth(sim, exchange, "sol", timeframe, got, now)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fetch_ohlcv_ccxt_paginate_reaches_now_without_a_hole(sim, clients, exchange):
    """ccxt's own pagination (params paginate=True, since only) walks from `since` to now.

    (Not with `until`: ccxt then sends the same global `until` with every chunk, and on OKX,
    whose candles come newest first below `after`, that skips bars on the real exchange too.)
    """
    client = clients[exchange]
    tf = TF_MS["5m"]
    now = server_now_ms(client)
    since = (now // tf - 1500) * tf
    candles = client.fetch_ohlcv(CCXT_SYMBOL["xrp"], "5m", since=since, params={"paginate": True})
    opens = [c[0] for c in candles]
    assert opens[0] == since, f"first candle {opens[0]} != since {since}"
    assert opens[-1] >= now // tf * tf - tf, "did not reach the newest bar"
    assert_candles_equal_truth(sim, exchange, "xrp", "5m", candles, now)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fetch_order_book_is_a_true_book(sim, clients, exchange):
    """The book ccxt parses is the simulator's true book at the state the response names
    (Binance lastUpdateId, Bybit seq); OKX REST books carry no id, so the book must equal one
    of the true states between just before and just after the call."""
    client = clients[exchange]
    client.enableLastJsonResponse = True  # to read the update id ccxt does not surface (Bybit seq)
    market = client.market(CCXT_SYMBOL["btc"])
    tick, lot = dec(market["precision"]["price"]), dec(market["precision"]["amount"])
    before = sim.truth_book(exchange, "btc", depth=1)["update_id"]
    book = client.fetch_order_book(CCXT_SYMBOL["btc"], limit=50)
    after = sim.truth_book(exchange, "btc", depth=1)["update_id"]
    raw = client.last_json_response
    bids = [(dec(level[0]), dec(level[1])) for level in book["bids"]]
    asks = [(dec(level[0]), dec(level[1])) for level in book["asks"]]
    assert len(bids) == 50 and len(asks) == 50
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert bids[0][0] < asks[0][0], "crossed book"
    for price, amount in bids + asks:
        assert price % tick == 0 and amount > 0 and amount % lot == 0
    if exchange == "binance":
        assert book["nonce"] == raw["lastUpdateId"]
        state = raw["lastUpdateId"]
    elif exchange == "bybit":
        assert raw["result"]["s"] == "BTCUSDT"
        state = raw["result"]["seq"]
    else:
        state = sim.book_state_between(exchange, "btc", bids, asks, before, after)
        assert state is not None, f"OKX REST book equals no true state between ids {before} and {after}"
    assert before <= state <= after
    truth = sim.truth_book(exchange, "btc", update_id=state, depth=50)
    assert bids == truth["bids"]
    assert asks == truth["asks"]


BAD_SYMBOL_CALL = {
    "binance": ("publicGetKlines", {"symbol": "FOOUSDT", "interval": "1m"}),
    "bybit": ("publicGetV5MarketKline", {"category": "spot", "symbol": "FOOUSDT", "interval": "1"}),
    "okx": ("publicGetMarketCandles", {"instId": "FOO-USDT", "bar": "1m"}),
}
BAD_INTERVAL_CALL = {
    "binance": ("publicGetKlines", {"symbol": "BTCUSDT", "interval": "7m"}),
    "bybit": ("publicGetV5MarketKline", {"category": "spot", "symbol": "BTCUSDT", "interval": "7"}),
    "okx": ("publicGetMarketCandles", {"instId": "BTC-USDT", "bar": "7m"}),
}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_ccxt_maps_the_sims_error_bodies_like_the_real_exchanges(sim, clients, exchange):
    """ccxt's error tables are built from the real exchanges' codes and messages: the
    simulator's error bodies must land in the same ccxt exception classes (an unknown symbol
    is BadSymbol, a bad interval BadRequest, an injected rate-limit answer DDoSProtection /
    RateLimitExceeded), and the next call after a fault works again."""
    client = clients[exchange]
    method, params = BAD_SYMBOL_CALL[exchange]
    with pytest.raises(ccxt.BadSymbol):
        getattr(client, method)(params)
    method, params = BAD_INTERVAL_CALL[exchange]
    with pytest.raises(ccxt.BadRequest) as bad_interval:
        getattr(client, method)(params)
    assert not isinstance(bad_interval.value, ccxt.BadSymbol)
    sim.control_post(f"/faults/{exchange}", {"rest_429_every": 1})
    try:
        with pytest.raises((ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            client.fetch_ohlcv("BTC/USDT", "1m", limit=2)
    finally:
        sim.control_post(f"/faults/{exchange}", {"rest_429_every": 0})
    sim.control_post(f"/faults/{exchange}", {"rest_5xx_every": 1})
    try:
        with pytest.raises(ccxt.BaseError) as server_error:
            client.fetch_ohlcv("BTC/USDT", "1m", limit=2)
        assert not isinstance(server_error.value, ccxt.BadRequest | ccxt.AuthenticationError)
    finally:
        sim.control_post(f"/faults/{exchange}", {"rest_5xx_every": 0})
    assert len(client.fetch_ohlcv("BTC/USDT", "1m", limit=2)) == 2


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_load_markets_with_ccxt_default_market_types(sim, exchange):
    """A new user who changes only the base URLs keeps ccxt's default market types: Binance
    then also asks /fapi and /dapi exchangeInfo, Bybit linear/inverse/option, OKX SWAP/
    FUTURES/OPTION. The simulator lists no derivatives but answers every one of them."""
    client = ccxt_client(exchange, sim, spot_only=False)
    markets = client.load_markets(reload=True)
    spot = {m["symbol"] for m in markets.values() if m["spot"]}
    assert spot == {CCXT_SYMBOL[s] for s in SYMBOLS}
    assert all(m["spot"] for m in markets.values())
