"""The server clock estimate that plans the wanted bars never runs ahead of the exchange's
clock, even when the time request was slow on its way there (then the server read its clock
late in the round trip and the midpoint estimate runs ahead): the forming bar of an exchange
without a closed flag must never be asked for as if it were closed."""

from __future__ import annotations

from history_helpers import sim_settings

from p9cli.exchanges import binance, bybit, okx
from p9cli.history.planner import last_closed_open
from p9cli.rest.client import ExchangeClient

LATENCY_MS = 400  # the simulator waits this long before it reads its clock and answers


async def test_reached_server_time_is_behind_the_server_clock_when_requests_are_slow(start_sim, tmp_path):
    handle = start_sim(faults={"all": {"latency_ms": LATENCY_MS}})
    settings = sim_settings(handle, tmp_path)
    for adapter in (binance, bybit, okx):
        async with ExchangeClient(adapter, settings.rest_url(adapter.NAME)) as client:
            await client.sync_time()
            reached = client.reached_server_ms()
            server = handle.sim.clock.now_ms()
            estimate = client.server_now_ms()
            # the plain midpoint estimate is ahead by about half the slow way there ...
            assert estimate > server + LATENCY_MS / 4, (adapter.NAME, estimate - server)
            # ... the time the planner uses is not
            assert reached <= server, (adapter.NAME, reached - server)
            assert last_closed_open(reached, 60_000) + 60_000 <= server
