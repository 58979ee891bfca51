"""No secret leaks: the whole private flow with DEBUG logging everywhere (issue 10).

The client, a :class:`~kbook.trading.PrivateSession` and a :class:`~kbook.trading.TokenProvider`
run against the simulator (v2 and v1) with every logger at DEBUG. Afterwards neither the API secret
(as issued in base64, as raw bytes, as hex, URL-safe base64) nor any WebSocket token the session
used may appear in a log record, an event, the repr/str of a request or an outcome, or the text
of an exception the flow raised or carried.
"""

from __future__ import annotations

import base64
import logging
from decimal import Decimal
from typing import Any

import pytest

from kbook.client import Client, ClientEvent, ReconnectPolicy
from kbook.sim import Simulator
from kbook.trading import AddOrder, OutcomeState
from kbook.trading.auth import AuthError, Credentials, TokenProvider
from kbook.trading.session import PrivateSession
from tests.integration.simclient import run, wait_until

FAST = ReconnectPolicy(initial=0.05, maximum=0.2, give_up_after=5)
BTC = "BTC/USD"


def secret_forms(secret: str) -> list[str]:
    raw = base64.b64decode(secret)
    return [
        secret,
        raw.hex(),
        raw.hex().upper(),
        base64.urlsafe_b64encode(raw).decode(),
        raw.decode("latin-1"),
    ]


def record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), str(record.exc_text or "")]
    if record.exc_info and record.exc_info[1] is not None:
        parts += [str(record.exc_info[1]), repr(record.exc_info[1])]
    return "\n".join(parts)


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_private_flow_at_debug_never_shows_secret_or_token(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every logger propagates here
    texts: list[str] = []
    tokens: list[str] = []
    secrets: list[str] = []

    async def main() -> None:
        async with Simulator(seed=11, rate=20, pairs=[BTC]) as sim:
            key, secret = sim.add_account()
            secrets.append(secret)
            credentials = Credentials(key, secret)
            provider = TokenProvider(credentials, rest_url=sim.rest_url)

            async def token() -> str:
                value = await provider.token()
                tokens.append(value)
                return value

            events: list[ClientEvent] = []
            url = sim.url_v2 if protocol == "v2" else sim.url_v1
            client = Client(
                url,
                protocol=protocol,
                token=token,  # type: ignore[arg-type]
                policy=FAST,
                precisions={BTC: (1, 8)},
                on_event=events.append,
            )
            await client.start()
            private = PrivateSession(client, url=url, request_timeout=3.0)
            await private.start()
            if protocol == "v2":
                await wait_until(lambda: bool(private.balances))
            request = AddOrder(
                order_type="limit",
                side="buy",
                order_qty=Decimal("0.01"),
                symbol=BTC,
                limit_price=Decimal("1000.0"),
                cl_ord_id="s-1",
            )
            outcome = await private.add_order(request)
            assert outcome.state is OutcomeState.ACCEPTED
            assert request.token is None  # the caller's request is never written to
            texts.extend([repr(request), str(request), repr(outcome), str(outcome)])
            broke = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("1000"),
                    symbol=BTC,
                    limit_price=Decimal("1000.0"),
                )
            )
            assert broke.state is OutcomeState.REJECTED and broke.error is not None
            texts.extend([repr(broke), str(broke.error), repr(broke.error)])
            if protocol == "v2":
                batch = await private.batch_add(
                    [
                        AddOrder(
                            order_type="limit",
                            side="buy",
                            order_qty=Decimal("0.01"),
                            symbol=BTC,
                            limit_price=Decimal(1000 + i),
                        )
                        for i in range(2)
                    ]
                )
                texts.extend(repr(b) for b in batch)
            cancel = await private.cancel_all()
            texts.append(repr(cancel))
            texts.extend([repr(provider), repr(credentials), repr(client), repr(private)])
            # a wrong secret: the typed error's text must not quote either secret
            other = sim.add_account()[1]
            secrets.append(other)
            with pytest.raises(AuthError) as info:
                await TokenProvider(Credentials(key, other), rest_url=sim.rest_url).token()
            texts.extend([str(info.value), repr(info.value)])
            await private.close()
            await client.close()
            texts.extend(repr(e) for e in events)
            texts.extend(str(e) for e in events)

    run(main())
    texts.extend(record_text(r) for r in caplog.records)
    assert tokens and len(caplog.records) > 0
    haystack = "\n".join(texts)
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in haystack, "an API secret leaked"
    for value in tokens:
        assert value not in haystack, "a WebSocket token leaked"


def test_add_order_repr_hides_a_token_set_by_the_caller() -> None:
    order = AddOrder(
        order_type="market", side="sell", order_qty=Decimal("1"), symbol=BTC, token="tok-SECRET-123"
    )
    shown: Any = [repr(order), str(order), f"{order}", repr([order])]
    assert all("tok-SECRET-123" not in text for text in shown)
    assert "token='<hidden>'" in repr(order)


def test_level3_watch_at_debug_never_shows_its_token(caplog: pytest.LogCaptureFixture) -> None:
    import io

    from kbook.cli.watch import watch

    out = io.StringIO()

    async def main() -> str:
        async with Simulator(seed=5, rate=50, pairs=[BTC]) as sim:
            token = sim.issue_token()
            with caplog.at_level(logging.DEBUG, logger="kbook"):
                result = await watch(
                    BTC,
                    url=sim.url_v2,
                    duration=1.5,
                    level3=True,
                    token=token,
                    out=out,
                    live=False,
                    every=0.5,
                )
            assert result.checksums_verified > 0
            return token

    token = run(main())
    assert caplog.records  # DEBUG was on and the client logged
    assert all(token not in record_text(r) for r in caplog.records)
    assert token not in out.getvalue()
