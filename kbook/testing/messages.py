"""Frames of Kraken's v2 channels other than the books, in the documented shapes, from a seed.

Each function writes one frame for a :class:`~kbook.testing.Pair` from a seed, with prices and
quantities at the pair's decimals (integers written as text; no float), as Kraken's published
examples show them (``tests/data/kraken``): ``ticker``, ``trade``, ``ohlc``, ``instrument``,
``status``, ``heartbeat``, and the private ``executions`` and ``balances``.

>>> from kbook.testing.books import BTC_USD
>>> trade_frame(BTC_USD, 3, False)[:60]
b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/US'

What it is not: a consistent market. A ticker does not agree with the trades drawn next to it;
each frame is valid alone. The strategies over these are in :mod:`kbook.testing.strategies`.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from kbook.testing.books import Pair

__all__ = [
    "balance_frame",
    "execution_frame",
    "heartbeat_frame",
    "instrument_frame",
    "ohlc_frame",
    "status_frame",
    "ticker_frame",
    "trade_frame",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_T0_US = 1_695_625_471_742_648  # 2023-09-25T09:04:31.742648Z, the docs' ticker example
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_STATUSES = ("online", "maintenance", "cancel_only", "post_only")


def _num(units: int, dp: int) -> str:
    """A v2 JSON number: the live feed's float-style text (``0.566``, ``45281.0``)."""
    whole, fraction = divmod(units, 10**dp)
    if fraction == 0:
        return f"{whole}.0"
    return f"{whole}.{f'{fraction:0{dp}d}'.rstrip('0')}"


def _stamp(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _kraken_id(rng: random.Random, head: str) -> str:
    body = "".join(rng.choice(_BASE32) for _ in range(16))
    return f"{head}{body[:5]}-{body[5:10]}-{body[10:16]}"


def _frame(channel: str, snapshot: bool, data: str, extra: str = "") -> bytes:
    kind = "snapshot" if snapshot else "update"
    return f'{{"channel":"{channel}","type":"{kind}","data":[{data}]{extra}}}'.encode()


def _price(rng: random.Random, pair: Pair) -> int:
    return max(1, pair.mid + rng.randint(-50, 50))


def _qty(rng: random.Random, pair: Pair) -> int:
    return rng.randint(1, min(pair.max_lots, 5 * 10**pair.qty_precision))


def ticker_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """One ``ticker`` message: best bid and ask with sizes, last, volume, vwap, low, high."""
    rng = random.Random(seed)
    pp, qp = pair.price_precision, pair.qty_precision
    bid = _price(rng, pair)
    ask = bid + rng.randint(1, 5)
    low, high = max(1, bid - rng.randint(0, 500)), ask + rng.randint(0, 500)
    change = rng.randint(-200, 200)
    fields = (
        f'"symbol":{json.dumps(pair.symbol)},"bid":{_num(bid, pp)},'
        f'"bid_qty":{_num(_qty(rng, pair), qp)},"ask":{_num(ask, pp)},'
        f'"ask_qty":{_num(_qty(rng, pair), qp)},"last":{_num(rng.randint(low, high), pp)},'
        f'"volume":{_num(rng.randint(0, pair.max_lots), qp)},"vwap":{_num(bid, pp)},'
        f'"low":{_num(low, pp)},"high":{_num(high, pp)},'
        f'"change":{"-" if change < 0 else ""}{_num(abs(change), pp)},'
        f'"change_pct":{"-" if change < 0 else ""}{_num(abs(change), 2)},'
        f'"timestamp":"{_stamp(_T0_US + rng.randrange(10**9))}"'
    )
    return _frame("ticker", snapshot, "{" + fields + "}")


def trade_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """One ``trade`` message: one to three trades (a snapshot has up to fifty in Kraken)."""
    rng = random.Random(seed)
    us = _T0_US + rng.randrange(10**9)
    trade_id = rng.randint(1, 10**9)
    trades = []
    for i in range(rng.randint(1, 3)):
        trades.append(
            f'{{"symbol":{json.dumps(pair.symbol)},"side":"{rng.choice(("buy", "sell"))}",'
            f'"price":{_num(_price(rng, pair), pair.price_precision)},'
            f'"qty":{_num(_qty(rng, pair), pair.qty_precision)},'
            f'"ord_type":"{rng.choice(("limit", "market"))}","trade_id":{trade_id + i},'
            f'"timestamp":"{_stamp(us + i * 1_000)}"}}'
        )
    return _frame("trade", snapshot, ",".join(trades))


def ohlc_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """One ``ohlc`` message: a candle of a 1, 5, 15, 60 or 1440 minute interval."""
    rng = random.Random(seed)
    pp = pair.price_precision
    interval = rng.choice((1, 5, 15, 60, 1440))
    prices = sorted(_price(rng, pair) for _ in range(4))
    begin_us = (_T0_US // (interval * 60_000_000)) * interval * 60_000_000
    open_, close = rng.sample((prices[1], prices[2]), 2)
    candle = (
        f'{{"symbol":{json.dumps(pair.symbol)},"open":{_num(open_, pp)},'
        f'"high":{_num(prices[3], pp)},"low":{_num(prices[0], pp)},'
        f'"close":{_num(close, pp)},"trades":{rng.randint(1, 500)},'
        f'"volume":{_num(_qty(rng, pair), pair.qty_precision)},"vwap":{_num(prices[1], pp)},'
        f'"interval_begin":"{_stamp(begin_us)[:-1]}000Z","interval":{interval},'
        f'"timestamp":"{_stamp(begin_us + interval * 60_000_000)}"}}'
    )
    return _frame("ohlc", snapshot, candle, f',"timestamp":"{_stamp(_T0_US)}"')


def instrument_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """One ``instrument`` message announcing the pair's decimals (and its two assets)."""
    rng = random.Random(seed)
    base, _, quote = pair.symbol.partition("/")
    status = rng.choice(("online", "online", "cancel_only", "post_only", "maintenance"))
    assets = ",".join(
        f'{{"id":{json.dumps(a)},"status":"enabled","precision":{rng.randint(1, 10)},'
        f'"precision_display":{rng.randint(1, 8)},"borrowable":false,"collateral_value":0.0,'
        f'"margin_rate":0.0}}'
        for a in (base, quote)
    )
    pair_text = (
        f'{{"symbol":{json.dumps(pair.symbol)},"base":{json.dumps(base)},'
        f'"quote":{json.dumps(quote)},"status":"{status}",'
        f'"qty_precision":{pair.qty_precision},"qty_increment":{_num(1, pair.qty_precision)},'
        f'"price_precision":{pair.price_precision},'
        f'"price_increment":{_num(1, pair.price_precision)},"cost_precision":5,'
        f'"marginable":false,"has_index":true,"cost_min":0.5,'
        f'"qty_min":{_num(rng.randint(1, 10**pair.qty_precision), pair.qty_precision)}}}'
    )
    kind = "snapshot" if snapshot else "update"
    return (
        f'{{"channel":"instrument","type":"{kind}","data":{{"assets":[{assets}],'
        f'"pairs":[{pair_text}]}}}}'
    ).encode()


def status_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """One ``status`` message; the connection id may exceed a signed 64-bit integer."""
    rng = random.Random(seed)
    del pair, snapshot  # the status channel names no pair and only sends updates
    return _frame(
        "status",
        False,
        f'{{"api_version":"v2","connection_id":{rng.getrandbits(64)},'
        f'"system":"{rng.choice(_STATUSES)}","version":"2.0.{rng.randint(0, 9)}"}}',
    )


def heartbeat_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """A heartbeat: ``{"channel":"heartbeat"}``, the same whatever the arguments."""
    del pair, seed, snapshot
    return b'{"channel":"heartbeat"}'


def execution_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """One ``executions`` message: a new, partly filled, filled or canceled order, or a trade."""
    rng = random.Random(seed)
    pp, qp = pair.price_precision, pair.qty_precision
    order_qty = _qty(rng, pair)
    price = _price(rng, pair)
    exec_type = rng.choice(("pending_new", "new", "trade", "filled", "canceled"))
    status = {
        "pending_new": "pending_new",
        "new": "new",
        "trade": "partially_filled",
        "filled": "filled",
        "canceled": "canceled",
    }[exec_type]
    cum = {"pending_new": 0, "new": 0, "canceled": 0, "filled": order_qty}.get(
        exec_type, rng.randint(1, order_qty)
    )
    fields = [
        f'"order_id":"{_kraken_id(rng, "O")}"',
        f'"symbol":{json.dumps(pair.symbol)}',
        f'"order_qty":{_num(order_qty, qp)}',
        f'"side":"{rng.choice(("buy", "sell"))}"',
        '"order_type":"limit"',
        f'"limit_price":{_num(price, pp)}',
        f'"exec_id":"{_kraken_id(rng, "T")}"',
        f'"exec_type":"{exec_type}"',
        f'"order_status":"{status}"',
        f'"cum_qty":{_num(cum, qp)}',
        f'"timestamp":"{_stamp(_T0_US + rng.randrange(10**9))}"',
        f'"cl_ord_id":"my-{rng.randrange(1000)}"',
    ]
    if exec_type == "trade":
        fields += [
            f'"last_qty":{_num(cum, qp)}',
            f'"last_price":{_num(price, pp)}',
            f'"trade_id":{rng.randint(1, 10**9)}',
            '"liquidity_ind":"m"',
        ]
    extra = f',"sequence":{rng.randint(1, 10**6)}'
    return _frame("executions", snapshot, "{" + ",".join(fields) + "}", extra)


def balance_frame(pair: Pair, seed: int, snapshot: bool) -> bytes:
    """One ``balances`` message: a snapshot of the pair's two assets, or one ledger entry."""
    rng = random.Random(seed)
    base, _, quote = pair.symbol.partition("/")
    extra = f',"sequence":{rng.randint(1, 10**6)}'
    if snapshot:
        entries = ",".join(
            f'{{"asset":{json.dumps(a)},"asset_class":"currency",'
            f'"balance":{_num(b := rng.randint(0, 10**12), 4)},'
            f'"wallets":[{{"type":"spot","id":"main","balance":{_num(b, 4)}}}]}}'
            for a in (base, quote)
        )
        return _frame("balances", True, entries, extra)
    amount = rng.randint(1, 10**9)
    entry = (
        f'{{"ledger_id":"{_kraken_id(rng, "L")}","ref_id":"{_kraken_id(rng, "T")}",'
        f'"timestamp":"{_stamp(_T0_US + rng.randrange(10**9))}",'
        f'"type":"{rng.choice(("trade", "deposit", "withdrawal"))}",'
        f'"asset":{json.dumps(rng.choice((base, quote)))},"asset_class":"currency",'
        f'"category":"trade","wallet_type":"spot","wallet_id":"main",'
        f'"amount":{"-" if rng.getrandbits(1) else ""}{_num(amount, 4)},'
        f'"fee":{_num(rng.randint(0, 10**4), 4)},"balance":{_num(rng.randint(amount, 10**12), 4)}}}'
    )
    return _frame("balances", False, entry, extra)
