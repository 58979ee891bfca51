"""parse_message under hostile input: only kbook's DecodeError ever escapes (issue 10).

First the inputs the fuzzer found (each raised AttributeError or TypeError before), then a
property test: valid v1/v2 message shapes built here are mutated (type swaps, deleted keys,
replaced values, wrapped values, huge numbers) and ``parse_message`` must either return typed
messages or raise :class:`kbook.DecodeError`.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbook import DecodeError
from kbook.messages import Ack, Pong, parse_message


@pytest.mark.parametrize(
    "msg",
    [
        {"channel": "instrument", "type": "snapshot", "data": []},
        {"channel": "executions", "data": ["x"]},
        {"method": "pong", "req_id": [1]},
        {"method": "subscribe", "success": True, "req_id": {"a": 1}},
        {"method": ["subscribe"], "success": True},
        {"event": "pong", "reqid": "7"},
        {"event": "addOrderStatus", "status": "ok", "reqid": [1]},
        {
            "channel": "trade",
            "data": [
                {
                    "symbol": "BTC/USD",
                    "side": "b",
                    "price": 1,
                    "qty": 1,
                    "ord_type": "l",
                    "timestamp": "t",
                    "trade_id": True,
                }
            ],
        },
        {
            "channel": "trade",
            "data": [
                {
                    "symbol": "BTC/USD",
                    "side": "b",
                    "price": 1,
                    "qty": 1,
                    "ord_type": "l",
                    "timestamp": "t",
                    "trade_id": Decimal("1e999999999"),
                }
            ],
        },
        {"channel": "ticker", "data": None},
        {"channel": "balances", "type": "snapshot", "data": [{"asset": "BTC"}]},
        [0, [["1.0", "1.0", "9" * 5000, "b", "l", ""]], "trade", "XBT/USD"],
        [0, ["1", "1e999999999", "2", "3", "4", "5", "6", "7", "8"], "ohlc-1", "XBT/USD"],
        [[{"T": []}], "ownTrades", {"sequence": 1}],
        [["x"], "openOrders", {"sequence": 1}],
    ],
)
def test_parse_message_malformed_input_raises_decode_error(msg: Any) -> None:
    with pytest.raises(DecodeError):
        parse_message(msg)


def test_parse_message_integer_req_ids_still_match() -> None:
    assert parse_message({"method": "pong", "req_id": 7}) == [
        Pong(req_id=7, raw={"method": "pong", "req_id": 7})
    ]
    [ack] = parse_message(
        {
            "method": "subscribe",
            "success": True,
            "req_id": 3,
            "result": {"channel": "book", "symbol": "BTC/USD"},
        }
    )
    assert isinstance(ack, Ack) and ack.req_id == 3 and ack.channel == "book"


# -- property: mutated valid shapes ----------------------------------------------------------

SEEDS: list[Any] = [
    {
        "channel": "ticker",
        "type": "snapshot",
        "data": [
            {
                "symbol": "BTC/USD",
                "bid": Decimal("1.5"),
                "bid_qty": Decimal("2"),
                "ask": Decimal("1.6"),
                "ask_qty": Decimal("3"),
                "last": Decimal("1.55"),
                "volume": Decimal("10"),
                "vwap": Decimal("1.5"),
                "low": Decimal("1"),
                "high": Decimal("2"),
                "change": Decimal("0.1"),
                "change_pct": Decimal("1.2"),
            }
        ],
    },
    {
        "channel": "trade",
        "type": "update",
        "data": [
            {
                "symbol": "BTC/USD",
                "side": "buy",
                "price": Decimal("1.5"),
                "qty": Decimal("0.1"),
                "ord_type": "limit",
                "trade_id": 4,
                "timestamp": "2024-01-01T00:00:00.000000Z",
            }
        ],
    },
    {
        "channel": "ohlc",
        "type": "update",
        "data": [
            {
                "symbol": "BTC/USD",
                "open": 1,
                "high": 2,
                "low": 1,
                "close": 2,
                "vwap": Decimal("1.5"),
                "volume": 3,
                "trades": 5,
                "interval": 1,
                "interval_begin": "2024-01-01T00:00:00Z",
            }
        ],
    },
    {
        "channel": "status",
        "type": "update",
        "data": [{"system": "online", "version": "2.0.0", "connection_id": 1}],
    },
    {"channel": "heartbeat"},
    {
        "channel": "executions",
        "type": "snapshot",
        "sequence": 1,
        "data": [
            {
                "exec_type": "trade",
                "order_id": "O1",
                "exec_id": "E1",
                "trade_id": 9,
                "last_qty": Decimal("0.1"),
                "last_price": 100,
                "fees": [{"asset": "USD", "qty": 1}],
                "order_userref": 0,
            }
        ],
    },
    {
        "channel": "balances",
        "type": "snapshot",
        "sequence": 1,
        "data": [{"asset": "BTC", "balance": Decimal("1.5")}],
    },
    {
        "channel": "balances",
        "type": "update",
        "sequence": 2,
        "data": [{"asset": "BTC", "amount": 1, "balance": 2, "fee": 0, "type": "trade"}],
    },
    {
        "channel": "instrument",
        "type": "snapshot",
        "data": {"assets": [{"id": "BTC"}], "pairs": [{"symbol": "BTC/USD"}]},
    },
    {"method": "pong", "req_id": 1, "time_in": "t", "time_out": "t"},
    {
        "method": "subscribe",
        "success": True,
        "req_id": 2,
        "result": {"channel": "book", "symbol": "BTC/USD", "depth": 10},
    },
    {"method": "add_order", "success": False, "error": "EOrder:Insufficient funds", "req_id": 3},
    {"event": "heartbeat"},
    {"event": "pong", "reqid": 5},
    {"event": "systemStatus", "status": "online", "version": "1.9", "connectionID": 1},
    {
        "event": "subscriptionStatus",
        "status": "subscribed",
        "pair": "XBT/USD",
        "reqid": 1,
        "subscription": {"name": "ticker"},
    },
    {"event": "error", "errorMessage": "bad", "reqid": 1},
    {"event": "addOrderStatus", "status": "ok", "reqid": 2, "txid": "T"},
    [
        1,
        {
            "a": ["1.6", 1, "1.0"],
            "b": ["1.5", 1, "1.0"],
            "c": ["1.55", "0.1"],
            "v": ["1", "2"],
            "p": ["1", "1.5"],
            "l": ["1", "1"],
            "h": ["2", "2"],
            "o": ["1", "1"],
        },
        "ticker",
        "XBT/USD",
    ],
    [2, [["1.5", "0.1", "1534614057.321597", "b", "l", ""]], "trade", "XBT/USD"],
    [3, ["1.5", "1.6", "1534614057.321597", "1", "2"], "spread", "XBT/USD"],
    [
        4,
        ["1534614057.321597", "1534614060.000000", "1", "2", "1", "2", "1.5", "3", 5],
        "ohlc-1",
        "XBT/USD",
    ],
    [
        [
            {
                "O1": {
                    "status": "open",
                    "descr": {
                        "pair": "XBT/USD",
                        "type": "buy",
                        "ordertype": "limit",
                        "price": "1.5",
                    },
                    "vol": "1",
                    "vol_exec": "0",
                    "cost": "0",
                    "avg_price": "0",
                }
            }
        ],
        "openOrders",
        {"sequence": 1},
    ],
    [
        [
            {
                "T1": {
                    "ordertxid": "O1",
                    "pair": "XBT/USD",
                    "type": "buy",
                    "ordertype": "limit",
                    "vol": "1",
                    "price": "1.5",
                    "cost": "1.5",
                    "fee": "0.01",
                    "time": "1534614057.321597",
                }
            }
        ],
        "ownTrades",
        {"sequence": 2},
    ],
]

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=8),
    st.sampled_from(
        [
            Decimal("1e999999999"),
            Decimal("-1"),
            Decimal("NaN"),
            "9" * 5000,
            "1e-9",
            "",
            "x",
            [],
            {},
            [[]],
            {"a": {}},
            ["1", "2"],
            "1534614057.3",
            -0.0,
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _mutate(msg: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    msg = copy.deepcopy(msg)
    if not path:
        return value
    parent = msg
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif how == "wrap":
        parent[last] = [parent[last]]
    elif how == "nest":
        inner: Any = parent[last]
        for _ in range(50):
            inner = [inner]
        parent[last] = inner
    else:
        parent[last] = value
    return msg


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_parse_message_mutated_messages_only_decode_error_escapes(data: st.DataObject) -> None:
    msg = data.draw(st.sampled_from(SEEDS), label="seed")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = _paths(msg)
        path = data.draw(st.sampled_from(paths), label="path")
        how = data.draw(st.sampled_from(["replace", "delete", "wrap", "nest"]), label="how")
        if not path and how != "replace":
            continue
        msg = _mutate(msg, path, how, data.draw(ODD_VALUES, label="value"))
    try:
        out = parse_message(msg)
    except DecodeError:
        return
    assert isinstance(out, list)
