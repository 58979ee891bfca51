"""An order's round trip splits into the exchange's time (``time_out - time_in`` of its v2
answer) and the rest: network both ways and queues."""

from __future__ import annotations

from decimal import Decimal

from kbook.sim import Simulator
from kbook.trading import AddOrder, OutcomeState
from kbook.trading.orders import Outcome
from tests.integration.simclient import run
from tests.integration.test_private_e2e import BTC, session


def test_order_outcome_reports_network_and_exchange_time() -> None:
    async def main() -> None:
        async with Simulator(seed=3, rate=20, pairs=[BTC]) as sim:
            client, private, _, _ = await session(sim)
            outcome = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            await client.close()
        assert outcome.state is OutcomeState.ACCEPTED
        assert outcome.time_in and outcome.time_out
        trip, inside, network = outcome.round_trip_ns, outcome.exchange_ns, outcome.network_ns
        assert trip is not None and inside is not None and network is not None
        assert 0 <= inside <= trip and network == trip - inside

    run(main())


def test_outcome_exchange_time_reads_nanosecond_fractions() -> None:
    outcome = Outcome(
        OutcomeState.ACCEPTED,
        "add_order",
        1,
        sent_ns=100,
        answered_ns=5_000_100,
        time_in="2023-09-25T09:04:31.742599123Z",
        time_out="2023-09-25T09:04:31.743599Z",
    )
    assert outcome.exchange_ns == 999_877
    assert outcome.round_trip_ns == 5_000_000 and outcome.network_ns == 5_000_000 - 999_877
    assert Outcome(OutcomeState.UNKNOWN, "add_order", 2, sent_ns=1).network_ns is None
