"""Order round trip over loopback: kbook's PrivateSession against websockets + json.

Runs ``kbook sim`` in its own process (so the exchange does not share the client's event loop),
then, alternating blocks to cancel machine noise, sends limit orders far from the market and
measures, per order, request -> ``add_order`` answer and request -> ``new`` execution report,
then cancels it. Both clients see the same server cost, so the difference is the client path.

Usage: ``python benchmarks/order_roundtrip.py [--orders 300] [--blocks 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

from kbook.client import Client
from kbook.messages import Execution
from kbook.trading import AddOrder, OutcomeState
from kbook.trading.auth import Credentials, TokenProvider
from kbook.trading.session import PrivateSession

_SIM = """
import asyncio, sys
from kbook.sim import Simulator
from kbook.sim.accounts import TIERS, Tier

# a tier without trading limits: Kraken's per-pair rate counter would otherwise throttle a
# round-trip benchmark long before it measured anything
TIERS["bench"] = Tier("bench", 1e12, 1e12, 1_000_000)

async def main():
    async with Simulator(seed=1, rate=20, pairs=["BTC/USD"], request_rate=None) as sim:
        key, secret = sim.add_account(tier="bench")
        print("v2", sim.url_v2, flush=True)
        print("rest", sim.rest_url, flush=True)
        print("key", key, flush=True)
        print("secret", secret, flush=True)
        print("serving", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def start_sim() -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIM],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    info: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line == "serving":
            return proc, info
        name, _, value = line.partition(" ")
        if name in ("v2", "rest", "key", "secret"):
            info[name] = value
    proc.kill()
    raise RuntimeError("the simulator did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def kbook_block(info: dict[str, str], n: int) -> tuple[list[float], list[float]]:
    provider = TokenProvider(Credentials(info["key"], info["secret"]), rest_url=info["rest"])
    acks: list[float] = []
    reports: list[float] = []
    async with Client(info["v2"], token=provider, precisions={"BTC/USD": (1, 8)}) as client:
        private = PrivateSession(client, url=info["v2"])
        await private.start(balances=False, snap_trades=False)
        seen: dict[str, float] = {}
        private.on_message(
            lambda m: (
                seen.setdefault(m.order_id, time.perf_counter_ns())
                if isinstance(m, Execution) and m.exec_type == "new" and m.order_id
                else None
            )
        )
        for _ in range(n):
            start = time.perf_counter_ns()
            outcome = await private.add_order(
                AddOrder(
                    order_type="limit",
                    side="buy",
                    order_qty=Decimal("0.001"),
                    symbol="BTC/USD",
                    limit_price=Decimal("1000.0"),
                )
            )
            acks.append((time.perf_counter_ns() - start) / 1000)
            assert outcome.state is OutcomeState.ACCEPTED and outcome.order_id, outcome
            while outcome.order_id not in seen:
                await asyncio.sleep(0)
            reports.append((seen[outcome.order_id] - start) / 1000)
            await private.cancel_order([outcome.order_id])
    return acks, reports


async def websockets_block(info: dict[str, str], n: int) -> tuple[list[float], list[float]]:
    import websockets

    token = await TokenProvider(
        Credentials(info["key"], info["secret"]), rest_url=info["rest"]
    ).token()
    acks: list[float] = []
    reports: list[float] = []
    async with websockets.connect(info["v2"], compression=None) as ws:
        await ws.send(
            json.dumps(
                {
                    "method": "subscribe",
                    "params": {"channel": "executions", "token": token, "snap_trades": False},
                    "req_id": 1,
                }
            )
        )
        req_id = 10
        pending: dict[str, Any] = {}

        async def until(predicate: Any) -> Any:
            while True:
                msg = json.loads(await ws.recv())
                result = predicate(msg)
                if result is not None:
                    return result

        for _ in range(n):
            req_id += 1
            start = time.perf_counter_ns()
            await ws.send(
                json.dumps(
                    {
                        "method": "add_order",
                        "params": {
                            "order_type": "limit",
                            "side": "buy",
                            "order_qty": 0.001,
                            "symbol": "BTC/USD",
                            "limit_price": 1000.0,
                            "token": token,
                        },
                        "req_id": req_id,
                    }
                )
            )
            answer = await until(
                lambda m, r=req_id: (
                    m
                    if m.get("req_id") == r
                    else (
                        pending.setdefault(m["data"][0]["order_id"], time.perf_counter_ns())
                        and None
                        if m.get("channel") == "executions"
                        and m.get("data")
                        and m["data"][0].get("exec_type") == "new"
                        else None
                    )
                )
            )
            acks.append((time.perf_counter_ns() - start) / 1000)
            order_id = answer["result"]["order_id"]
            if order_id not in pending:
                await until(
                    lambda m, o=order_id: (
                        True
                        if m.get("channel") == "executions"
                        and any(
                            d.get("order_id") == o and d.get("exec_type") == "new"
                            for d in m.get("data", [])
                        )
                        else None
                    )
                )
                pending[order_id] = time.perf_counter_ns()
            reports.append((pending[order_id] - start) / 1000)
            req_id += 1
            await ws.send(
                json.dumps(
                    {
                        "method": "cancel_order",
                        "params": {"order_id": [order_id], "token": token},
                        "req_id": req_id,
                    }
                )
            )
            await until(lambda m, r=req_id: m if m.get("req_id") == r else None)
    return acks, reports


async def main(orders: int, blocks: int) -> None:
    proc, info = start_sim()
    try:
        results: dict[str, tuple[list[float], list[float]]] = {
            "kbook": ([], []),
            "websockets+json": ([], []),
        }
        for _ in range(blocks):
            for name, block in (("kbook", kbook_block), ("websockets+json", websockets_block)):
                acks, reports = await block(info, orders)
                results[name][0].extend(acks)
                results[name][1].extend(reports)
        print(f"{orders * blocks} orders per client, alternating blocks of {orders}")
        print("| client | ack p50 µs | ack p99 µs | exec report p50 µs | exec report p99 µs |")
        print("|---|---:|---:|---:|---:|")
        for name, (acks, reports) in results.items():
            print(
                f"| {name} | {pct(acks, 0.5):.0f} | {pct(acks, 0.99):.0f} | "
                f"{pct(reports, 0.5):.0f} | {pct(reports, 0.99):.0f} |"
            )
        k, w = results["kbook"], results["websockets+json"]
        print(
            f"ratio kbook/websockets: ack p50 {pct(k[0], 0.5) / pct(w[0], 0.5):.2f}, "
            f"report p50 {pct(k[1], 0.5) / pct(w[1], 0.5):.2f}"
        )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--blocks", type=int, default=3)
    ns = parser.parse_args()
    asyncio.run(main(ns.orders, ns.blocks))
