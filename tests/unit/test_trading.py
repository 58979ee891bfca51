"""Order entry's wire layer: Kraken's request shapes, validation before sending, typed errors."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from kbook import Feed
from kbook.messages import Ack, BalanceSnapshot, Execution, LedgerEntry, parse_message
from kbook.trading import (
    AddOrder,
    Conditional,
    InsufficientFunds,
    InvalidArguments,
    OrderError,
    OrderRateLimited,
    Outcome,
    OutcomeState,
    Triggers,
    UnknownOrder,
    ValidationError,
    check_batch_cancel,
    check_cancel_after,
    chunk_batch,
    encode_request,
    error_for,
    v1_add_order,
    validate_add,
)
from tests.data import vector


def raw(name: str) -> Any:
    data = vector(name)
    return json.loads(data.get("raw") or data["messages"][0])


def limit(**kw: Any) -> AddOrder:
    base: dict[str, Any] = {
        "order_type": "limit",
        "side": "buy",
        "order_qty": Decimal("1.2"),
        "symbol": "BTC/USD",
        "limit_price": Decimal("26500.4"),
    }
    base.update(kw)
    return AddOrder(**base)


def test_encode_add_order_matches_published_request() -> None:
    expected = raw("v2_add_order_request.json")
    order = limit(order_userref=100054, token=expected["params"]["token"])
    assert json.loads(encode_request("add_order", order, 123456789)) == expected


def test_encode_add_order_oto_matches_published_request() -> None:
    expected = raw("v2_add_order_request_oto.json")
    order = limit(
        limit_price=Decimal("28440"),
        conditional=Conditional(
            order_type="stop-loss-limit",
            trigger_price=Decimal("28410"),
            limit_price=Decimal("28400"),
        ),
        token=expected["params"]["token"],
    )
    assert json.loads(encode_request("add_order", order, None)) == expected


def test_encode_numbers_are_exact_json_numbers() -> None:
    text = encode_request("add_order", limit(order_qty=Decimal("0.12345678901234567890")), 1)
    assert b'"order_qty":0.12345678901234567890' in text


@pytest.mark.parametrize(
    ("order", "precisions", "rule"),
    [
        (limit(order_type="bogus"), None, "order_type"),
        (limit(side="long"), None, "side"),
        (limit(order_qty=Decimal(0)), None, "positive"),
        (limit(limit_price=None), None, "limit_price"),
        (limit(order_type="stop-loss"), None, "triggers"),
        (limit(cl_ord_id="abc", order_userref=1), None, "mutually exclusive"),
        (limit(cl_ord_id="x" * 19), None, "cl_ord_id"),
        (limit(time_in_force="gtd"), None, "expire_time"),
        (limit(order_type="market", limit_price=None, time_in_force="fok"), None, "fok"),
        (limit(order_qty=Decimal("0.123456789")), (1, 8), "decimals"),
        (limit(limit_price=Decimal("26500.45")), (1, 8), "decimals"),
        (limit(order_type="iceberg", display_qty=Decimal("0.01")), None, "display_qty"),
    ],
)
def test_validate_add_refuses_before_sending(
    order: AddOrder, precisions: tuple[int, int] | None, rule: str
) -> None:
    with pytest.raises(ValidationError, match=rule):
        validate_add(order, precisions)


def test_validate_add_accepts_good_orders() -> None:
    validate_add(limit(), (1, 8))
    validate_add(limit(cl_ord_id="6d1b345e-2821-40e2-ad83-4ecb18a06876"), (1, 8))
    validate_add(
        AddOrder(
            order_type="stop-loss",
            side="sell",
            order_qty=Decimal("1"),
            symbol="BTC/USD",
            triggers=Triggers(price=Decimal("-5"), price_type="pct"),
        ),
        (1, 8),
    )


def test_chunk_batch_keeps_batches_within_2_to_15() -> None:
    orders = [limit() for _ in range(31)]
    sizes = [len(c) for c in chunk_batch(orders)]
    assert sum(sizes) == 31 and all(2 <= n <= 15 for n in sizes)
    with pytest.raises(ValidationError, match="one pair"):
        chunk_batch([limit(), limit(symbol="ETH/USD")])


def test_checks_for_batch_cancel_and_cancel_after_ranges() -> None:
    with pytest.raises(ValidationError):
        check_batch_cancel(["1"])
    with pytest.raises(ValidationError):
        check_batch_cancel([str(i) for i in range(51)])
    check_batch_cancel(["1", "2"])
    assert check_cancel_after(0) == 0 and check_cancel_after(86399) == 86399
    with pytest.raises(ValidationError):
        check_cancel_after(86400)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("EOrder:Insufficient funds", InsufficientFunds),
        ("EGeneral:Invalid arguments:Index unavailable", InvalidArguments),
        ("EOrder:Unknown order", UnknownOrder),
        ("EOrder:Rate limit exceeded", OrderRateLimited),
        ("Exceeded msg rate", OrderRateLimited),
        ("EService:Something new", OrderError),
    ],
)
def test_error_for_kraken_strings_typed(code: str, cls: type[OrderError]) -> None:
    exc = error_for(code, "add_order")
    assert type(exc) is cls and exc.code == code


def test_outcome_unknown_raises_timeout_and_rejected_raises_its_error() -> None:
    with pytest.raises(TimeoutError):
        Outcome(OutcomeState.UNKNOWN, "add_order", 1).raise_for_error()
    with pytest.raises(InsufficientFunds):
        Outcome(
            OutcomeState.REJECTED, "add_order", 1, error=error_for("EOrder:Insufficient funds")
        ).raise_for_error()


def test_v1_add_order_matches_published_shape() -> None:
    expected = raw("v1_add_order_request.json")
    order = AddOrder(
        order_type="limit",
        side="buy",
        order_qty=Decimal("10.123"),
        symbol="XBT/USD",
        limit_price=Decimal("9000"),
    )
    assert json.loads(v1_add_order(order, expected["token"])) == expected


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("v2_add_order_response.json", Ack),
        ("v2_add_order_response_error.json", Ack),
        ("v2_executions_update_trade.json", Execution),
        ("v2_balances_snapshot.json", BalanceSnapshot),
        ("v2_balances_update_trade_debit.json", LedgerEntry),
        ("v1_openorders_snapshot.json", Execution),
        ("v1_owntrades_snapshot.json", Execution),
        ("v1_add_order_response.json", Ack),
    ],
)
def test_private_vectors_parse_to_typed_messages(name: str, kind: type) -> None:
    data = vector(name)
    text = data.get("raw") or data["messages"][0]
    messages = parse_message(Feed().process(text.encode()))
    assert messages and all(isinstance(m, kind) for m in messages)


def test_execution_trade_vector_numbers_exact() -> None:
    data = vector("v2_executions_update_trade.json")
    [execution] = parse_message(Feed().process((data.get("raw") or data["messages"][0]).encode()))
    assert isinstance(execution, Execution)
    assert execution.last_qty == Decimal("0.005") and execution.last_price == Decimal("26599.9")
    assert execution.fees == (("USD", Decimal("0.3458")),) and execution.sequence == 10
