"""The simulated market: one deterministic 1-minute path per symbol, seen by three exchanges.

TO BE IMPLEMENTED (sim-market helper). Contract used by the REST, WS and control parts:

All values are integers: times in epoch ms, prices in ticks of the instrument
(``Instrument.tick``), quantities in the instrument's ``qty_unit``; quote volume in
``tick * qty_unit`` units. Formatting to exchange strings is done with the ``Instrument``
methods (``price_str``, ``qty_str``, ``quote_str``), never with floats.

    class Bars:             # numpy int64 arrays, ascending by open_time; closed is bool
        open_time, open, high, low, close, volume, quote, trades, closed

    class Trades:           # numpy arrays, ascending by (time, id)
        id, time, price, qty (int64), taker_buy (bool)

    class MarketModel:
        def __init__(self, seed: int, clock: SimClock, instruments=INSTRUMENTS)
        live_start_ms: int       # first minute whose trades are simulated one by one
        history_start_ms: int    # first minute that exists (>= 1100 days before start, day aligned)
        def bars(self, exchange, symbol, tf_ms, offset_ms, first_open_ms, last_open_ms, now_ms) -> Bars
        def trades(self, exchange, symbol, start_ms, end_ms) -> Trades   # start <= time < end
        def last_trade_price(self, exchange, symbol, now_ms) -> int
        def warm_up(self) -> None  # precompute history aggregates (run in a thread at start)
"""
