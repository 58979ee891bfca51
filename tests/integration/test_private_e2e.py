"""Private channels and order entry end to end: the client's PrivateSession against the simulator.

Real loopback sockets and a real signed REST token request; the simulator's exchange matches the
orders and its balances are the ground truth the session's views are checked against.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from kbook.client import Client, ReconnectPolicy
from kbook.messages import Execution
from kbook.sim import Simulator
from kbook.trading import (
    AddOrder,
    InsufficientFunds,
    OutcomeState,
    UnknownOrder,
    ValidationError,
)
from kbook.trading.auth import Credentials, InvalidKey, InvalidSignature, TokenProvider
from kbook.trading.session import PrivateSession
from tests.integration.simclient import run, wait_until

FAST = ReconnectPolicy(initial=0.05, maximum=0.2, give_up_after=5)
BTC = "BTC/USD"


async def session(
    sim: Simulator, protocol: str = "v2", **client_kw: object
) -> tuple[Client, PrivateSession, TokenProvider, str]:
    key, secret = sim.add_account()
    provider = TokenProvider(Credentials(key, secret), rest_url=sim.rest_url)
    url = sim.url_v2 if protocol == "v2" else sim.url_v1
    client = Client(
        url,
        protocol=protocol,
        token=provider,
        policy=FAST,  # type: ignore[arg-type]
        precisions={BTC: (1, 8)},
        **client_kw,
    )  # type: ignore[arg-type]
    await client.start()
    private = PrivateSession(client, url=url, request_timeout=3.0)
    await private.start()
    return client, private, provider, key


def test_token_errors_are_typed() -> None:
    async def main() -> None:
        async with Simulator(seed=1, rate=20, pairs=[BTC]) as sim:
            key, secret = sim.add_account()
            good = TokenProvider(Credentials(key, secret), rest_url=sim.rest_url)
            assert await good.token()
            with pytest.raises(InvalidKey):
                await TokenProvider(Credentials("nope", secret), rest_url=sim.rest_url).token()
            other = sim.add_account()[1]
            with pytest.raises(InvalidSignature):
                await TokenProvider(Credentials(key, other), rest_url=sim.rest_url).token()
            # concurrent callers share one request
            shared = TokenProvider(Credentials(key, secret), rest_url=sim.rest_url)
            tokens = await asyncio.gather(*(shared.token() for _ in range(5)))
            assert len(set(tokens)) == 1 and shared.requests == 1

    run(main())


def test_orders_rest_fill_cancel_and_balances_agree_with_the_exchange() -> None:
    async def main() -> None:
        async with Simulator(seed=2, rate=50, pairs=[BTC]) as sim:
            client, private, _, key = await session(sim)
            await wait_until(lambda: bool(private.balances))
            assert private.balances["USD"] == sim.balances(key)["USD"]
            # a resting bid far below the market
            resting = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                    cl_ord_id="rest-1",
                )
            )
            assert resting.state is OutcomeState.ACCEPTED and resting.order_id
            await wait_until(lambda: resting.order_id in private.orders)
            assert private.find("rest-1") is private.orders[resting.order_id]
            cancel = await private.cancel_order([resting.order_id])
            assert cancel.state is OutcomeState.ACCEPTED
            await wait_until(lambda: resting.order_id in private.closed)
            # a marketable buy fills against the book
            taker = await private.add_order(
                AddOrder(order_type="market", side="buy", order_qty=Decimal("0.05"), symbol=BTC)
            )
            assert taker.state is OutcomeState.ACCEPTED
            await wait_until(lambda: taker.order_id in private.closed)
            view = private.closed[taker.order_id]
            assert view.filled_qty == Decimal("0.05")
            await wait_until(
                lambda: (
                    private.balances.get("BTC") == sim.balances(key)["BTC"]
                    and private.balances.get("USD") == sim.balances(key)["USD"]
                )
            )
            assert private.duplicate_fills == 0 and not private.sequence_gaps
            await client.close()

    run(main())


def test_rejections_are_typed_and_validation_runs_before_sending() -> None:
    async def main() -> None:
        async with Simulator(seed=3, rate=20, pairs=[BTC]) as sim:
            client, private, _, _ = await session(sim)
            broke = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("1000"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            assert broke.state is OutcomeState.REJECTED
            assert isinstance(broke.error, InsufficientFunds)
            unknown = await private.cancel_order(["OAAAAA-BBBBB-CCCCCC"])
            assert unknown.state is OutcomeState.REJECTED
            assert isinstance(unknown.error, UnknownOrder)
            with pytest.raises(ValidationError):
                await private.add_order(
                    AddOrder(
                        order_type="limit",
                        side="buy",
                        order_qty=Decimal("0.1"),
                        symbol=BTC,
                        limit_price=Decimal("1000.05"),
                    )
                )
            await client.close()

    run(main())


def test_amend_batch_add_batch_cancel_and_cancel_all() -> None:
    async def main() -> None:
        async with Simulator(seed=4, rate=20, pairs=[BTC]) as sim:
            client, private, _, key = await session(sim)
            orders = [
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal(1000 + i),
                )
                for i in range(3)
            ]
            [batch] = await private.batch_add(orders)
            assert batch.state is OutcomeState.ACCEPTED and len(batch.result) == 3
            ids = [r["order_id"] for r in batch.result]
            await wait_until(lambda: all(i in private.orders for i in ids))
            amend = await private.amend_order(order_id=ids[0], order_qty=Decimal("0.005"))
            assert amend.state is OutcomeState.ACCEPTED
            cancelled = await private.batch_cancel(ids[:2])
            assert cancelled.state is OutcomeState.ACCEPTED
            everything = await private.cancel_all()
            assert everything.state is OutcomeState.ACCEPTED
            await wait_until(lambda: not private.orders)
            assert not sim.account(key).orders
            await client.close()

    run(main())


def test_dead_man_switch_cancels_a_dead_clients_orders() -> None:
    async def main() -> None:
        async with Simulator(seed=5, rate=20, pairs=[BTC]) as sim:
            client, private, _, key = await session(sim)
            outcome = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            assert outcome.state is OutcomeState.ACCEPTED
            armed = await private.cancel_all_orders_after(2)
            assert armed.state is OutcomeState.ACCEPTED
            # the "process" dies: its connections vanish without disarming anything
            for conn in client.connections:
                conn._closing = True
                if conn.transport is not None:
                    conn.transport.disconnect(graceful=False)
            await wait_until(lambda: not sim.account(key).orders, 6)
            await client.close()

    run(main())


def test_dead_man_switch_refreshes_while_alive_and_disarms_on_exit() -> None:
    async def main() -> None:
        async with Simulator(seed=6, rate=20, pairs=[BTC]) as sim:
            client, private, _, key = await session(sim)
            await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            async with private.dead_man_switch(timeout=2, interval=0.5):
                await asyncio.sleep(3)  # longer than the timeout: refreshed
                assert sim.account(key).orders
            await asyncio.sleep(2.5)  # disarmed on exit: nothing is cancelled
            assert sim.account(key).orders
            await client.close()

    run(main())


def test_reconnect_fetches_a_fresh_token_and_reconciles_without_duplicate_fills() -> None:
    async def main() -> None:
        async with Simulator(seed=7, rate=50, pairs=[BTC]) as sim:
            client, private, provider, key = await session(sim)
            filled = await private.add_order(
                AddOrder(order_type="market", side="buy", order_qty=Decimal("0.02"), symbol=BTC)
            )
            await wait_until(lambda: filled.order_id in private.closed)
            resting = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            await wait_until(lambda: resting.order_id in private.orders)
            requests = provider.requests
            private_conn = next(c for c in client.connections if c.name == "private")
            connects = private_conn.connects
            sim.faults.close()
            await wait_until(lambda: private_conn.connects > connects, 10)
            await wait_until(lambda: private.duplicate_fills >= 1, 10)  # snapshot replays fills
            assert provider.requests > requests  # a fresh token
            assert resting.order_id in private.orders  # reconciled
            assert private.closed[filled.order_id].filled_qty == Decimal("0.02")
            assert private.balances["BTC"] == sim.balances(key)["BTC"]
            await client.close()

    run(main())


def test_no_answer_in_time_is_an_unknown_outcome_reconciled_by_cl_ord_id() -> None:
    async def main() -> None:
        async with Simulator(seed=8, rate=20, pairs=[BTC]) as sim:
            client, private, _, _ = await session(sim)
            private.request_timeout = 0.3
            sim.faults.stall_reads(seconds=1.0)
            outcome = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                    cl_ord_id="maybe-1",
                )
            )
            assert outcome.state is OutcomeState.UNKNOWN and outcome.cl_ord_id == "maybe-1"
            await wait_until(lambda: private.find("maybe-1") is not None, 5)
            await client.close()

    run(main())


def test_v1_add_and_cancel_orders_with_open_orders_view() -> None:
    async def main() -> None:
        async with Simulator(seed=9, rate=20, pairs=[BTC]) as sim:
            client, private, _, key = await session(sim, protocol="v1")
            outcome = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol="XBT/USD",
                    limit_price=Decimal("1000.0"),
                )
            )
            assert outcome.state is OutcomeState.ACCEPTED and outcome.order_id
            await wait_until(lambda: outcome.order_id in private.orders)
            cancel = await private.cancel_order([outcome.order_id])
            assert cancel.state is OutcomeState.ACCEPTED
            await wait_until(lambda: outcome.order_id in private.closed)
            assert not sim.account(key).orders
            await client.close()

    run(main())


def test_v2_edit_order_replaces_and_the_view_follows() -> None:
    async def main() -> None:
        async with Simulator(seed=10, rate=20, pairs=[BTC]) as sim:
            client, private, _, key = await session(sim)
            first = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            await wait_until(lambda: first.order_id in private.orders)
            edited = await private.edit_order(first.order_id, BTC, limit_price=Decimal("1001.0"))
            assert edited.state is OutcomeState.ACCEPTED
            new_id = edited.order_id
            assert new_id and new_id != first.order_id
            assert edited.result["original_order_id"] == first.order_id
            await wait_until(lambda: new_id in private.orders and first.order_id in private.closed)
            assert set(sim.account(key).orders) == {new_id}
            await client.close()

    run(main())


def test_v1_cancel_all_and_dead_man_switch_methods() -> None:
    async def main() -> None:
        async with Simulator(seed=11, rate=20, pairs=[BTC]) as sim:
            client, private, _, key = await session(sim, protocol="v1")
            for price in ("1000.0", "1001.0"):
                outcome = await private.add_order(
                    AddOrder(
                        order_type="limit",
                        side="buy",
                        order_qty=Decimal("0.01"),
                        symbol="XBT/USD",
                        limit_price=Decimal(price),
                    )
                )
                assert outcome.state is OutcomeState.ACCEPTED
            await wait_until(lambda: len(sim.account(key).orders) == 2)
            armed = await private.cancel_all_orders_after(30)
            assert armed.state is OutcomeState.ACCEPTED and "triggerTime" in armed.result
            assert (await private.cancel_all_orders_after(0)).state is OutcomeState.ACCEPTED
            everything = await private.cancel_all()
            assert everything.state is OutcomeState.ACCEPTED
            await wait_until(lambda: not sim.account(key).orders and not private.orders)
            await client.close()

    run(main())


def test_sequence_gap_is_reported() -> None:
    async def main() -> None:
        async with Simulator(seed=12, rate=20, pairs=[BTC]) as sim:
            client, private, _, _ = await session(sim)
            first = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.01"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            await wait_until(
                lambda: first.order_id in private.orders and "executions" in private._sequences
            )
            # the simulator's skip fault does not reach private channels: deliver the next
            # report as a lost message would leave it, with a later sequence number
            last = private._sequences["executions"]
            private._on_private(
                Execution(exec_type="status", order_id=first.order_id, sequence=last + 2)
            )
            assert private.sequence_gaps == [("executions", last, last + 2)]
            assert any(e.kind == "sequence_gap" for e in client.events_seen)
            await client.close()

    run(main())
