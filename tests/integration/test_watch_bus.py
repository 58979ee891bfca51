"""``kbook watch --bus``: the same screen and summary from books relayed over NATS."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("nats", reason="the bus tests need the kbook[bus] extra")

from kbook.cli.watch import watch  # noqa: E402
from kbook.sim import Simulator  # noqa: E402
from tests.integration.simclient import run  # noqa: E402
from tests.integration.test_bus import NatsServer, nats_server, relay_for  # noqa: E402, F401


def test_watch_over_the_bus_verifies_relayed_books(nats_server: NatsServer) -> None:  # noqa: F811
    out = io.StringIO()

    async def main() -> None:
        async with Simulator(seed=31, rate=50, pairs=["BTC/USD", "ETH/USD"]) as sim:
            relay = relay_for(nats_server, sim)
            await relay.start()
            try:
                result = await watch(
                    ["BTC/USD", "ETH/USD"],
                    bus=nats_server.url,
                    venue="sim",
                    duration=4.0,
                    out=out,
                    live=False,
                    every=1.0,
                )
            finally:
                await relay.close()
        assert result.checksums_verified > 0 and result.checksum_mismatches == 0
        assert result.valid and result.live

    run(main(), 60)
    lines = out.getvalue().splitlines()
    assert {ln.split()[1] for ln in lines} == {"BTC/USD", "ETH/USD"}
    assert all(" valid " in ln for ln in lines[-2:])
