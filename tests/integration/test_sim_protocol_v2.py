"""The simulator's v2 endpoint over real loopback sockets: shapes, numbers, acks and errors.

Every frame received is checked against the structure of Kraken's published examples (key sets
and order, JSON number vs integer, timestamp precision), requests get one ack per symbol with
``req_id`` and ``time_in``/``time_out``, and each documented refusal comes back as Kraken's error
ack. The channels are also checked against each other: the ticker agrees with the book, the
trades with the ticker and the candles.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from kbook.reference import RefBook
from kbook.sim import INTERVALS, Simulator
from tests.integration import shapes
from tests.integration.simclient import T0, SimClient, run

_V2_NUMBER = re.compile(
    rb'"(?:price|qty|limit_price|order_qty|bid|ask|bid_qty|ask_qty|last|'
    rb'volume|vwap|low|high|change|open|close)":(-?[0-9][0-9eE.+-]*)'
)


def _subscribe(channel: str, req_id: int, **params: Any) -> dict[str, Any]:
    return {"method": "subscribe", "params": {"channel": channel, **params}, "req_id": req_id}


def _by_kind(frames: list[bytes]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for frame in frames:
        message = shapes.load(frame)
        out.setdefault(shapes.v2_kind(message), []).append(message)
    return out


def test_v2_every_message_matches_the_published_shapes() -> None:
    async def scenario() -> list[bytes]:
        async with Simulator(seed=3, rate=None, start_time=T0, warmup=300) as sim:
            client = await SimClient.connect(sim.url_v2)
            token = sim.issue_token()
            client.send(_subscribe("instrument", 1))
            client.send(_subscribe("book", 2, symbol=["BTC/USD", "SHIB/USD"], depth=10))
            client.send(_subscribe("level3", 3, symbol=["ETH/USD"], token=token))
            client.send(_subscribe("ticker", 4, symbol=["DOGE/USD"]))
            client.send(_subscribe("trade", 5, symbol=["BTC/USD"], snapshot=True))
            client.send(_subscribe("ohlc", 6, symbol=["BTC/USD"], interval=5))
            client.send({"method": "ping", "req_id": 7})
            for needle in (
                b'"channel":"book","type":"update"',
                b'"channel":"level3","type":"up',
                b'"channel":"ticker","type":"update"',
                b'"channel":"trade","type":"up',
                b'"channel":"ohlc","type":"update"',
            ):
                await client.wait_match(needle, timeout=10)
            for req_id, (channel, extra) in enumerate(
                (
                    ("instrument", {}),
                    ("book", {"symbol": ["BTC/USD"], "depth": 10}),
                    ("level3", {"symbol": ["ETH/USD"], "token": token}),
                    ("ticker", {"symbol": ["DOGE/USD"]}),
                    ("trade", {"symbol": ["BTC/USD"]}),
                    ("ohlc", {"symbol": ["BTC/USD"], "interval": 5}),
                ),
                start=10,
            ):
                client.send(
                    {
                        "method": "unsubscribe",
                        "params": {"channel": channel, **extra},
                        "req_id": req_id,
                    }
                )
            await client.wait_match(b'"req_id":15', timeout=5)
            await client.close()
            return client.frames

    frames = run(scenario())
    by_kind = _by_kind(frames)
    assert {
        "status",
        "ack",
        "pong",
        "instrument",
        "book",
        "level3",
        "ticker",
        "trade",
        "ohlc",
    } <= set(by_kind)
    assert "error" not in by_kind
    problems = []
    for kind, messages in by_kind.items():
        schema = shapes.schema(*shapes.V2_SCHEMAS[kind])
        if kind == "ack":
            schema.members["result"].key_orders |= shapes.EXTENSIONS["ack.result"]
        for message in messages:
            problems += [f"{kind}: {p}" for p in schema.errors(message)]
    assert problems == [], problems[:10]
    assert sum(1 for m in by_kind["ack"] if m["method"] == "unsubscribe") == 6


def test_v2_numbers_are_float_text_that_only_the_precision_restores() -> None:
    async def scenario() -> tuple[list[bytes], dict[str, tuple[int, int]]]:
        async with Simulator(seed=4, rate=None, start_time=T0, warmup=300) as sim:
            client = await SimClient.connect(sim.url_v2)
            symbols = ["BTC/USD", "ETH/USD", "DOGE/USD", "SHIB/USD", "MATIC/GBP"]
            client.send(_subscribe("book", 1, symbol=symbols, depth=25))
            client.send(_subscribe("ticker", 2, symbol=symbols))
            client.send(_subscribe("trade", 3, symbol=symbols, snapshot=True))
            await client.wait_count(600, timeout=10)
            await client.close()
            precisions = {s.symbol: (s.price_precision, s.qty_precision) for s in sim.specs}
            return client.frames, precisions

    frames, precisions = run(scenario())
    shortened = 0
    for frame in frames:
        for match in _V2_NUMBER.finditer(frame):
            text = match.group(1).decode()
            # Float-style text: never an exponent for a price or quantity, a '.0' on integral
            # values, and no trailing zero otherwise.
            assert re.fullmatch(r"-?\d+\.\d+", text), text
            assert text.endswith(".0") or not text.endswith("0"), text
        if frame.startswith(b'{"channel":"book"'):
            message = shapes.load(frame)["data"][0]
            pp, qp = precisions[message["symbol"]]
            for level in message["bids"] + message["asks"]:
                price, qty = level["price"].text, level["qty"].text
                assert len(price.split(".")[1]) <= pp and len(qty.split(".")[1]) <= qp
                shortened += len(qty.split(".")[1]) < qp
    # The trap Kraken sets is present: many quantities are shorter than the pair's precision.
    assert shortened > 100


def test_v2_subscribe_acks_one_per_symbol_with_req_id_and_times() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(seed=5, rate=20.0, start_time=T0, warmup=200) as sim:
            client = await SimClient.connect(sim.url_v2)
            client.send(
                _subscribe("book", 42, symbol=["BTC/USD", "ETH/USD", "MATIC/GBP"], depth=100)
            )
            await client.wait_for(lambda f: sum(b'"req_id":42' in x for x in f) == 3)
            await client.close()
            return [shapes.load(f) for f in client.frames if b'"req_id":42' in f]

    acks = run(scenario())
    assert [a["result"]["symbol"] for a in acks] == ["BTC/USD", "ETH/USD", "MATIC/GBP"]
    for ack in acks:
        assert list(ack) == ["method", "req_id", "result", "success", "time_in", "time_out"]
        assert list(ack["result"]) == ["channel", "depth", "snapshot", "symbol"]
        assert ack["result"]["depth"].text == "100" and ack["result"]["snapshot"] is True
        assert ack["time_in"] <= ack["time_out"]


def test_v2_refusals_come_back_as_kraken_error_acks() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(
            seed=6, rate=20.0, start_time=T0, warmup=100, request_rate=1.0, request_burst=12
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            requests: list[Any] = [
                _subscribe("book", 1, symbol=["BTC/USD"], depth=11),
                _subscribe("book", 2, symbol=["XXX/USD"]),
                b"{not json",
                _subscribe("level3", 4, symbol=["BTC/USD"]),
                _subscribe("level3", 5, symbol=["BTC/USD"], token="forged"),
                _subscribe("ohlc", 6, symbol=["BTC/USD"], interval=7),
                _subscribe("ticker", 7, symbol=["BTC/USD"], event_trigger="sometimes"),
                {
                    "method": "unsubscribe",
                    "params": {"channel": "trade", "symbol": ["BTC/USD"]},
                    "req_id": 8,
                },
                _subscribe("trade", 9, symbol=["BTC/USD"]),
                _subscribe("trade", 10, symbol=["BTC/USD"]),
                {"method": "add_order", "params": {}, "req_id": 11},
                _subscribe("nonsense", 12, symbol=["BTC/USD"]),
                # The bucket holds 12 requests (the malformed one is not charged): the twelfth
                # passes, the thirteenth is over the message rate.
                {"method": "ping", "req_id": 13},
                {"method": "ping", "req_id": 14},
            ]
            for request in requests:
                client.send(request)
            await client.wait_match(b'"req_id":14')
            await client.close()
            return [
                shapes.load(f)
                for f in client.frames
                if b'"success":false' in f or b'"method":"pong"' in f
            ]

    answers = run(scenario())
    errors = {a.get("req_id").text if "req_id" in a else None: a for a in answers}
    assert errors["1"]["error"] == "Subscription depth not supported"
    assert errors["2"]["error"] == "Currency pair not supported XXX/USD"
    assert errors["2"]["symbol"] == "XXX/USD"
    assert errors[None]["error"] == "Malformed request"
    assert errors["4"]["error"] == "Token required"
    assert errors["5"]["error"] == "ESession:Invalid session"
    assert errors["6"]["error"] == "Subscription interval not supported"
    assert errors["7"]["error"] == "Subscription event_trigger not supported"
    assert errors["8"]["error"] == "Subscription Not Found"
    assert errors["10"]["error"] == "Already subscribed"
    assert errors["11"]["error"] == "Method not supported"
    assert errors["12"]["error"] == "Channel not supported"
    assert errors["13"]["method"] == "pong"
    assert errors["14"]["error"] == "Exceeded msg rate"
    for answer in answers:
        if answer.get("method") == "pong":
            continue
        assert answer["success"] is False
        # The key order of the error Kraken was seen to send (sorted, symbol when a pair).
        keys = [
            k
            for k in ("error", "method", "req_id", "success", "symbol", "time_in", "time_out")
            if k in answer
        ]
        assert list(answer) == keys


def test_v2_status_on_connect_and_heartbeat_after_a_quiet_second() -> None:
    async def scenario() -> tuple[list[Any], list[float]]:
        async with Simulator(
            seed=7, rate=0.5, pairs=["MATIC/GBP"], start_time=T0, warmup=50, heartbeat_interval=0.3
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            await client.wait_count(1)
            client.send(_subscribe("trade", 1, symbol=["MATIC/GBP"]))
            await client.wait_for(lambda f: sum(b"heartbeat" in x for x in f) >= 3, timeout=5)
            await client.close()
            return client.decoded(), client.times

    messages, _ = run(scenario())
    assert messages[0]["channel"] == "status" and messages[0]["type"] == "update"
    assert messages[0]["data"][0]["system"] == "online"
    assert messages[0]["data"][0]["api_version"] == "v2"
    assert {"channel": "heartbeat"} in messages


def test_v2_trade_snapshot_holds_50_trades_and_ids_are_sequential() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(
            seed=8, rate=None, pairs=["ETH/USD"], start_time=T0, warmup=2000
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            client.send(_subscribe("trade", 1, symbol=["ETH/USD"], snapshot=True))
            await client.wait_for(lambda f: sum(b'"channel":"trade"' in x for x in f) >= 40)
            await client.close()
            return [m for m in client.decoded() if m.get("channel") == "trade"]

    messages = run(scenario())
    assert messages[0]["type"] == "snapshot" and len(messages[0]["data"]) == 50
    ids = [t["trade_id"] for m in messages for t in m["data"]]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert all(m["type"] == "update" for m in messages[1:])


def test_v2_ohlc_every_interval_acks_and_aligns_candles() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(
            seed=9, rate=None, pairs=["BTC/USD"], start_time=T0, warmup=3000
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            for i, interval in enumerate(INTERVALS):
                client.send(_subscribe("ohlc", i, symbol=["BTC/USD"], interval=interval))
            await client.wait_for(
                lambda f: sum(b'"channel":"ohlc","type":"update"' in x for x in f) >= 27
            )
            await client.close()
            return client.decoded()

    messages = run(scenario())
    acks = [m for m in messages if m.get("method") == "subscribe"]
    assert sorted(a["result"]["interval"] for a in acks) == sorted(INTERVALS)
    assert all(
        a["result"]["warnings"] == ["timestamp is deprecated, use interval_begin"] for a in acks
    )
    from datetime import datetime

    for message in (m for m in messages if m.get("channel") == "ohlc"):
        for candle in message["data"]:
            begin = datetime.strptime(candle["interval_begin"][:19], "%Y-%m-%dT%H:%M:%S")
            assert (
                int(begin.timestamp()) % (candle["interval"] * 60) == 0
                or candle["interval"] >= 1440
            )  # day-and-longer candles align to UTC days
            assert candle["low"] <= min(candle["open"], candle["close"])
            assert candle["high"] >= max(candle["open"], candle["close"])
            assert candle["low"] <= candle["vwap"] <= candle["high"]


def test_v2_ticker_agrees_with_book_trades_and_candles() -> None:
    async def scenario() -> list[bytes]:
        async with Simulator(
            seed=10, rate=None, pairs=["DOGE/USD"], start_time=T0, warmup=500
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            client.send(_subscribe("instrument", 1))
            client.send(_subscribe("book", 2, symbol=["DOGE/USD"], depth=10))
            client.send(_subscribe("ticker", 3, symbol=["DOGE/USD"], event_trigger="bbo"))
            client.send(_subscribe("trade", 4, symbol=["DOGE/USD"]))
            client.send(_subscribe("ohlc", 5, symbol=["DOGE/USD"], interval=1))
            await client.wait_count(3000, timeout=15)
            await client.close()
            return client.frames

    frames = run(scenario())
    book = RefBook("DOGE/USD", 10, 7, 8)
    checked_bbo = checked_trades = 0
    last_trade: Decimal | None = None
    trades_in_candle: dict[str, int] = {}
    for frame in frames:
        message = shapes.load(frame)
        channel = message.get("channel")
        if channel == "book":
            data = message["data"][0]
            book.apply_message(
                [(Decimal(lv["price"].text), Decimal(lv["qty"].text)) for lv in data["bids"]],
                [(Decimal(lv["price"].text), Decimal(lv["qty"].text)) for lv in data["asks"]],
                snapshot=message["type"] == "snapshot",
            )
        elif channel == "ticker" and message["type"] == "update":
            data = message["data"][0]
            (bid, bid_qty), (ask, ask_qty) = book.top_bids(1)[0], book.top_asks(1)[0]
            # The ticker of an event follows its book update (feeds publish in subscription
            # order), so at this point the book shows the same top of book.
            assert (Decimal(data["bid"].text), Decimal(data["bid_qty"].text)) == (bid, bid_qty)
            assert (Decimal(data["ask"].text), Decimal(data["ask_qty"].text)) == (ask, ask_qty)
            checked_bbo += 1
        elif channel == "trade":
            last_trade = Decimal(message["data"][-1]["price"].text)
            for trade in message["data"]:
                minute = trade["timestamp"][:16]
                trades_in_candle[minute] = trades_in_candle.get(minute, 0) + 1
            checked_trades += 1
        elif channel == "ohlc" and message["type"] == "update":
            candle = message["data"][0]
            assert last_trade is not None and Decimal(candle["close"].text) == last_trade
            assert candle["trades"].text == str(
                trades_in_candle[candle["interval_begin"][:16]]
            ) or candle["interval_begin"][:16] == min(trades_in_candle)
    assert checked_bbo > 100 and checked_trades > 50
