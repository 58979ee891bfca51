"""The simulator's v1 endpoint over real loopback sockets: arrays, events, names and errors.

v1 data arrives as ``[channelID, payload..., channelName, pair]`` with quoted decimals at full
precision and v1 pair names; control messages are events. Every frame is checked against the
structure of Kraken's v1 examples, and the book's v1 specifics (two objects when both sides
change, ``"c"`` in the last one, ``"r"`` on a level re-entering the window) are looked for.
"""

from __future__ import annotations

import json
from typing import Any

import kbook
from kbook.sim import Simulator
from tests.integration import shapes
from tests.integration.simclient import T0, SimClient, feed_frames, run


def _subscribe(pairs: list[str], reqid: int | None = None, **subscription: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"event": "subscribe", "pair": pairs, "subscription": subscription}
    if reqid is not None:
        request["reqid"] = reqid
    return request


def test_v1_every_message_matches_the_published_shapes() -> None:
    async def scenario() -> list[bytes]:
        async with Simulator(seed=11, rate=None, start_time=T0, warmup=300) as sim:
            client = await SimClient.connect(sim.url_v1)
            client.send(_subscribe(["XBT/USD", "XDG/USD"], 1, name="book", depth=25))
            client.send(_subscribe(["XBT/USD"], 2, name="ticker"))
            client.send(_subscribe(["SHIB/USD"], name="trade"))
            client.send(_subscribe(["XBT/USD"], name="spread"))
            client.send(_subscribe(["ETH/USD"], name="ohlc", interval=5))
            client.send({"event": "ping", "reqid": 42})
            await client.wait_for(
                lambda f: all(
                    any(n in x for x in f)
                    for n in (
                        b'"book-25","XDG/USD"]',
                        b'"ticker","XBT/USD"]',
                        b'"trade","SHIB/USD"]',
                        b'"spread","XBT/USD"]',
                        b'"ohlc-5","ETH/USD"]',
                    )
                ),
                timeout=10,
                what="channels",
            )
            client.send(
                {
                    "event": "unsubscribe",
                    "pair": ["XBT/USD"],
                    "subscription": {"name": "ticker"},
                    "reqid": 3,
                }
            )
            await client.wait_match(b'"status":"unsubscribed"')
            await client.close()
            return client.frames

    frames = run(scenario())
    events = {name: shapes.schema(*sources) for name, sources in shapes.V1_EVENT_SCHEMAS.items()}
    payloads = {
        name: shapes.v1_payload_schema(*sources) for name, sources in shapes.V1_DATA_SCHEMAS.items()
    }
    problems: list[str] = []
    seen: set[str] = set()
    for frame in frames:
        message = shapes.load(frame)
        if isinstance(message, dict):
            seen.add(message["event"])
            problems += events[message["event"]].errors(message)
        else:
            name = message[-2].split("-")[0]
            seen.add(name)
            problems += [f"{name}: {p}" for p in shapes.v1_errors(message, payloads[name])]
    assert problems == [], problems[:10]
    assert {
        "systemStatus",
        "subscriptionStatus",
        "pong",
        "book",
        "ticker",
        "trade",
        "spread",
        "ohlc",
    } <= seen


def test_v1_book_updates_split_sides_checksum_last_and_republish() -> None:
    async def scenario() -> list[bytes]:
        async with Simulator(seed=12, rate=None, start_time=T0, warmup=300) as sim:
            client = await SimClient.connect(sim.url_v1)
            client.send(
                _subscribe(["XBT/USD", "XDG/USD", "SHIB/USD", "MATIC/GBP"], name="book", depth=10)
            )
            await client.wait_for(
                lambda f: (
                    sum(x.count(b',"r"]') for x in f) >= 5 and any(b'},{"b":' in x for x in f)
                ),
                timeout=15,
                what="republished levels and two-sided updates",
            )
            await client.close()
            return client.frames

    frames = run(scenario())
    both_sides = 0
    for frame in frames:
        message = json.loads(frame)
        if not isinstance(message, list):
            continue
        assert message[-1] in ("XBT/USD", "XDG/USD", "SHIB/USD", "MATIC/GBP")
        assert message[-2] == "book-10"
        payloads = message[1:-2]
        if "as" in payloads[0]:
            assert len(payloads) == 1 and "c" not in payloads[0]  # no checksum on snapshots
            continue
        # Asks first, then bids, each in its own object; the checksum only in the last one.
        assert [next(iter(p)) for p in payloads] in (["a"], ["b"], ["a", "b"])
        assert all("c" not in p for p in payloads[:-1]) and "c" in payloads[-1]
        assert payloads[-1]["c"].isdigit()
        both_sides += len(payloads) == 2
        for payload in payloads:
            for entry in payload.get("a", []) + payload.get("b", []):
                assert len(entry) == 3 or entry[3] == "r"
    assert both_sides > 0
    feed = kbook.Feed()
    assert feed_frames(feed, frames) == (0, [])
    assert feed.checksums_verified > 20


def test_v1_system_status_pair_names_and_channel_names() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(seed=13, rate=20.0, start_time=T0, warmup=100) as sim:
            client = await SimClient.connect(sim.url_v1)
            client.send(_subscribe(["XBT/USD", "XDG/USD", "ETH/USD"], 7, name="book", depth=100))
            client.send(_subscribe(["XBT/USD"], 8, name="ohlc", interval=60))
            await client.wait_for(lambda f: sum(b"subscriptionStatus" in x for x in f) == 4)
            await client.close()
            return client.decoded()

    messages = run(scenario())
    status = messages[0]
    assert list(status) == ["connectionID", "event", "status", "version"]
    assert status["event"] == "systemStatus" and status["status"] == "online"
    acks = [m for m in messages if isinstance(m, dict) and m["event"] == "subscriptionStatus"]
    assert [(a["pair"], a["channelName"], a["status"]) for a in acks] == [
        ("XBT/USD", "book-100", "subscribed"),
        ("XDG/USD", "book-100", "subscribed"),
        ("ETH/USD", "book-100", "subscribed"),
        ("XBT/USD", "ohlc-60", "subscribed"),
    ]
    assert acks[0]["subscription"] == {"depth": 100, "name": "book"} and acks[0]["reqid"] == 7
    assert acks[3]["subscription"] == {"interval": 60, "name": "ohlc"}
    # channelID names the stream in the data arrays that follow.
    ids = {(a["channelName"], a["pair"]): a["channelID"] for a in acks}
    for message in messages:
        if isinstance(message, list):
            assert ids[(message[-2], message[-1])] == message[0]


def test_v1_refusals_come_back_as_kraken_errors() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(
            seed=14, rate=20.0, start_time=T0, warmup=100, request_rate=1.0, request_burst=8
        ) as sim:
            client = await SimClient.connect(sim.url_v1)
            for request in (
                _subscribe(["XBT/USD"], name="book", depth=42),
                _subscribe(["BTC/USD"], 2, name="ticker"),
                _subscribe(["XBT/USD"], 3, name="candles"),
                _subscribe(["XBT/USD"], 4, name="ohlc", interval=2),
                _subscribe(["XBT/USD"], 5, name="ownTrades"),
                {
                    "event": "unsubscribe",
                    "pair": ["XBT/USD"],
                    "subscription": {"name": "trade"},
                    "reqid": 6,
                },
                b"[not json",
                {"event": "dance", "reqid": 7},
                {"event": "ping", "reqid": 8},
                {"event": "ping", "reqid": 9},
            ):
                client.send(request)
            await client.wait_match(b'"reqid":9')
            await client.close()
            return client.decoded(1)

    answers = run(scenario())
    # Kraken's own example, key for key.
    assert answers[0] == {
        "errorMessage": "Subscription depth not supported",
        "event": "subscriptionStatus",
        "pair": "XBT/USD",
        "status": "error",
        "subscription": {"depth": 42, "name": "book"},
    }
    texts = [a.get("errorMessage") for a in answers]
    assert texts[1:] == [
        "Currency pair not supported",
        "Subscription name invalid",
        "Subscription ohlc interval not supported",
        "Private data and trading are unavailable in this endpoint. Try ws-auth.kraken.com",
        "Subscription Not Found",
        "Malformed request",
        "Unsupported event",
        None,
        "Exceeded msg rate",
    ]
    assert answers[1]["pair"] == "BTC/USD"  # v1 knows bitcoin as XBT
    assert answers[8] == {"event": "pong", "reqid": 8}
    assert answers[9] == {"errorMessage": "Exceeded msg rate", "event": "error", "reqid": 9}
    assert answers[6] == {"errorMessage": "Malformed request", "event": "error"}


def test_v1_heartbeat_when_nothing_else_is_sent() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(
            seed=15, rate=20.0, start_time=T0, warmup=100, heartbeat_interval=0.25
        ) as sim:
            client = await SimClient.connect(sim.url_v1)
            await client.wait_for(lambda f: sum(b"heartbeat" in x for x in f) >= 2)
            await client.close()
            return client.decoded()

    messages = run(scenario())
    assert messages[0]["event"] == "systemStatus"
    assert messages[1:3] == [{"event": "heartbeat"}] * 2
