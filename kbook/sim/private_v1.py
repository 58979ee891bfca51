"""Kraken Spot WebSocket v1, private half: trading events and the ownTrades/openOrders channels.

:class:`V1Private` belongs to one v1 connection's session. It answers ``addOrder``,
``editOrder``, ``cancelOrder``, ``cancelAll`` and ``cancelAllOrdersAfter`` with their ``*Status``
events (``status`` ok/error, ``errorMessage``, ``reqid`` echoed; keys sorted like every v1
control message), and (un)subscribes ``ownTrades`` and ``openOrders``, all with an account token
(top-level ``token`` for trading, ``subscription.token`` for channels).

Tokens: a request without one is answered as Kraken's public endpoint answers it ("Private data
and trading are unavailable in this endpoint"); an unknown, expired or public-only token is
``ESession:Invalid session``.

Request values follow v1: decimals as strings (numbers accepted too), ``userref`` as a string
of an integer, ``oflags`` a comma list (``post`` is post-only, ``viqc`` makes ``volume`` a quote
amount for a market buy, ``fciq``/``fcib``/``nompp`` are accepted; fees are always in quote),
``starttm``/``expiretm`` as ``0``, ``+seconds`` or epoch seconds (an ``expiretm`` makes the order
GTD), ``stptype``/``stp_type`` with hyphens or underscores. Relative prices (``+``, ``-``, ``#``,
``%``), ``price2``, ``close[...]`` and leverage belong to order kinds the simulator does not
model and are refused like those kinds. A ``validate`` answer has ``descr`` and no ``txid``,
as REST's.

Channels are arrays ``[payload, channelName, {"sequence": n}]``, every decimal a string:

* ownTrades: ``{exec_id: {cost, fee, margin, ordertxid, ordertype, pair, postxid, price, time,
  type, vol}}`` as published (``postxid`` carries the order id: spot has no positions), the
  snapshot the last 50 fills (``consolidate_taker`` is accepted; fills are never merged);
* openOrders: the snapshot and a new order (``status: pending``) carry the published full
  description, then ``{"status": "open"}``, fills ``{avg_price, cost, fee, vol_exec}``, an
  amend ``{amended, limitprice, vol}``, and closing ``{"status": "closed"}``, ``{"status":
  "expired"}`` or ``{"cancel_reason": ..., "status": "canceled"}``; ``ratecounter`` adds
  ``ratecount`` to full descriptions.

Prices are written with ``max(price precision, cost precision)`` decimals, costs and fees with
the larger of the quote's ledger precision and the pair's cost precision, quantities with the
pair's lot precision.

What it is not: the public half (see :mod:`kbook.sim.protocol_v1`) or v1's ``amendOrder``.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kbook.sim import requests as rq
from kbook.sim.exchange import (
    E_ARGS,
    E_UNKNOWN,
)
from kbook.sim.pairs import PairSpec
from kbook.sim.records import (
    AVG_EXTRA_DP,
    Account,
    ExOrder,
    OrderSpec,
    PrivateSink,
    Reject,
    TradeRecord,
)
from kbook.sim.wire import epoch_text, fixed, pow10

if TYPE_CHECKING:
    from kbook.sim.exchange import Exchange
    from kbook.sim.host import Host

__all__ = ["EVENTS", "PRIVATE_NAMES", "OpenOrdersSink", "OwnTradesSink", "V1Private"]

EVENTS = ("addOrder", "editOrder", "cancelOrder", "cancelAll", "cancelAllOrdersAfter")
PRIVATE_NAMES = ("ownTrades", "openOrders")
ERR_PRIVATE = "Private data and trading are unavailable in this endpoint. Try ws-auth.kraken.com"
ERR_TOKEN_INVALID = "ESession:Invalid session"
ERR_ALREADY = "Already subscribed"
ERR_NOT_FOUND = "Subscription Not Found"
_OFLAGS = ("post", "fciq", "fcib", "nompp", "viqc")
_UNMODELLED = ("price2", "close[ordertype]", "close[price]", "close[price2]", "trigger")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _price_dp(pair: PairSpec) -> int:
    return max(pair.price_precision, pair.cost_precision)


def _price(ticks: int, pair: PairSpec) -> str:
    dp = _price_dp(pair)
    return fixed(ticks * pow10(dp - pair.price_precision), dp)


def _money(exchange: Exchange, pair: PairSpec, units: int) -> str:
    ledger_dp = exchange.ledger.dp(pair.quote)
    dp = max(ledger_dp, pair.cost_precision)
    return fixed(units * pow10(dp - ledger_dp), dp)


def _descr_text(
    order_side: str, qty: int, pair: PairSpec, order_type: str, price: int | None
) -> str:
    limit = f" {_price(price, pair)}" if price is not None else ""
    return (
        f"{order_side} {fixed(qty, pair.qty_precision)} {pair.v1_name.replace('/', '')} "
        f"@ {order_type}{limit}"
    )


def _when(value: Any, name: str, now_ns: int) -> int | None:
    """``0`` (none), ``+seconds`` from now, or epoch seconds, as epoch ns."""
    text = (
        str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    )
    if not re.fullmatch(r"\+?\d{1,12}", text):
        raise Reject(f"{E_ARGS}:{name}")
    if text.startswith("+"):
        return now_ns + int(text[1:]) * 10**9
    return None if int(text) == 0 else int(text) * 10**9


class OwnTradesSink(PrivateSink):
    """One ``ownTrades`` subscription."""

    def __init__(self, exchange: Exchange, conn: Any, account: Account) -> None:
        super().__init__(exchange, conn, account)
        self.sequence = 0

    def _entry(self, record: TradeRecord) -> dict[str, Any]:
        order = record.order
        pair = order.spec
        return {
            record.exec_id: {
                "cost": _money(self.exchange, pair, record.cost),
                "fee": _money(self.exchange, pair, record.fee),
                "margin": _money(self.exchange, pair, 0),
                "ordertxid": order.order_id,
                "ordertype": order.order_type,
                "pair": pair.v1_name,
                "postxid": order.order_id,
                "price": _price(record.price, pair),
                "time": epoch_text(record.time_ns),
                "type": order.side,
                "vol": fixed(record.qty, pair.qty_precision),
            }
        }

    def _frame(self, entries: list[dict[str, Any]]) -> bytes:
        self.sequence += 1
        return _dumps([entries, "ownTrades", {"sequence": self.sequence}])

    def snapshot(self) -> None:
        self.send(self._frame([self._entry(r) for r in self.account.fills]))

    def trade(self, record: TradeRecord) -> None:
        self.send(self._frame([self._entry(record)]))


class OpenOrdersSink(PrivateSink):
    """One ``openOrders`` subscription."""

    def __init__(self, exchange: Exchange, conn: Any, account: Account, ratecounter: bool) -> None:
        super().__init__(exchange, conn, account)
        self.ratecounter = ratecounter
        self.sequence = 0

    def _full(self, order: ExOrder, status: str) -> dict[str, Any]:
        pair = order.spec
        zero = _price(0, pair)
        oflags = "fciq,post" if order.post_only else "fciq"
        body: dict[str, Any] = {
            "avg_price": fixed(order.avg_units(), pair.price_precision + AVG_EXTRA_DP),
            "cost": _money(self.exchange, pair, order.cum_cost),
            "descr": {
                "close": "",
                "leverage": "0:1",
                "order": _descr_text(order.side, order.qty, pair, order.order_type, order.price)
                + " with 0:1 leverage",
                "ordertype": order.order_type,
                "pair": pair.v1_name,
                "price": _price(order.price or 0, pair),
                "price2": zero,
                "type": order.side,
            },
            "expiretm": epoch_text(order.expire_ns or 0),
            "fee": _money(self.exchange, pair, order.cum_fee),
            "limitprice": _price(order.price or 0, pair),
            "misc": "",
            "oflags": oflags,
            "opentm": epoch_text(order.created_ns),
            "refid": "",
            "starttm": epoch_text(order.effective_ns or 0),
            "status": status,
            "stopprice": zero,
            "userref": order.userref,
            "vol": fixed(order.qty, pair.qty_precision),
            "vol_exec": fixed(order.filled, pair.qty_precision),
        }
        if order.cl_ord_id is not None:
            body["cl_ord_id"] = order.cl_ord_id
        if self.ratecounter:
            body["ratecount"] = round(self.account.counter(pair.symbol).value(), 4)
        return body

    def _frame(self, entries: list[dict[str, Any]]) -> bytes:
        self.sequence += 1
        return _dumps([entries, "openOrders", {"sequence": self.sequence}])

    def snapshot(self) -> None:
        entries = [
            {o.order_id: self._full(o, "pending" if o.status == "pending_new" else "open")}
            for o in self.account.orders.values()
        ]
        self.send(self._frame(entries))

    def order_event(self, kind: str, order: ExOrder, time_ns: int, reason: str | None) -> None:
        pair = order.spec
        body: dict[str, Any]
        if kind == "pending_new":
            body = self._full(order, "pending")
        elif kind == "new":
            body = {"status": "open"}
        elif kind == "amended":
            body = {
                "amended": True,
                "limitprice": _price(order.price or 0, pair),
                "vol": fixed(order.qty, pair.qty_precision),
            }
        elif kind == "filled":
            body = {"status": "closed"}
        elif kind == "canceled":
            body = {"cancel_reason": reason or "", "status": "canceled"}
        else:
            body = {"status": kind}
        self.send(self._frame([{order.order_id: body}]))

    def trade(self, record: TradeRecord) -> None:
        order = record.order
        pair = order.spec
        body = {
            "avg_price": fixed(record.avg_units, pair.price_precision + AVG_EXTRA_DP),
            "cost": _money(self.exchange, pair, record.cum_cost),
            "fee": _money(self.exchange, pair, record.cum_fee),
            "vol_exec": fixed(record.cum_qty, pair.qty_precision),
        }
        self.send(self._frame([{order.order_id: body}]))


class V1Private:
    """The private requests of one v1 connection."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.sinks: dict[str, PrivateSink] = {}

    @property
    def exchange(self) -> Exchange:
        return self.host.exchange

    def _send(self, obj: dict[str, Any]) -> None:
        self.host.send_control(_dumps(obj))

    def _status(self, event: str, reqid: Any, **fields: Any) -> None:
        obj: dict[str, Any] = {"event": f"{event}Status", "status": "ok", **fields}
        if reqid is not None:
            obj["reqid"] = reqid
        self._send(obj)

    def _fail(self, event: str, reqid: Any, text: str) -> None:
        obj: dict[str, Any] = {"errorMessage": text, "event": f"{event}Status", "status": "error"}
        if reqid is not None:
            obj["reqid"] = reqid
        self._send(obj)

    # -- trading events --------------------------------------------------------------------------

    def event(self, event: str, raw: bytes, reqid: Any) -> None:
        """Answer one trading event (``raw`` is re-read with exact decimals)."""
        req = json.loads(raw, parse_float=Decimal)
        token = req.get("token")
        if not isinstance(token, str) or not token:
            self._fail(event, reqid, ERR_PRIVATE)
            return
        exchange = self.exchange
        exchange.hold()
        try:
            account = exchange.tokens.account(token)
            if account is None:
                raise Reject(ERR_TOKEN_INVALID)
            getattr(self, f"_{event}")(account, req, reqid)
        except Reject as refusal:
            self._fail(event, reqid, refusal.code)
        finally:
            exchange.release()

    def _spec(self, req: dict[str, Any]) -> tuple[OrderSpec, bool]:
        exchange = self.exchange
        market = exchange.market(req.get("pair"))
        pair = market.spec
        for name in _UNMODELLED:
            if req.get(name) not in (None, ""):
                raise Reject(f"{E_ARGS}:Unsupported in simulator: {name}")
        if req.get("leverage") not in (None, "none") or req.get("margin") in (True, "true"):
            raise Reject(f"{E_ARGS}:Unsupported in simulator: margin")
        order_type = rq.string(req.get("ordertype"), "ordertype")
        side = rq.string(req.get("type"), "type", ("buy", "sell"))
        flags = [f for f in rq.string(req.get("oflags", ""), "oflags").split(",") if f]
        if any(flag not in _OFLAGS for flag in flags):
            raise Reject(f"{E_ARGS}:oflags")
        price_value = req.get("price")
        limit = None
        if price_value is not None and order_type != "market":
            if (
                isinstance(price_value, str)
                and price_value[:1] in ("+", "-", "#")
                or isinstance(price_value, str)
                and price_value.endswith("%")
            ):
                raise Reject(f"{E_ARGS}:Unsupported in simulator: relative price")
            limit = rq.price(price_value, pair.price_precision, pair.symbol, "price", strings=True)
        qty: int | None = None
        cash: int | None = None
        if "viqc" in flags:
            cash = rq.amount(
                req.get("volume"), exchange.ledger.dp(pair.quote), "volume", strings=True
            )
        else:
            qty = rq.amount(req.get("volume"), pair.qty_precision, "volume", strings=True)
        now = time.time_ns()
        effective = _when(req["starttm"], "starttm", now) if "starttm" in req else None
        expire = _when(req["expiretm"], "expiretm", now) if "expiretm" in req else None
        tif = rq.string(
            req.get("timeinforce", "GTD" if expire else "GTC"),
            "timeinforce",
            ("GTC", "GTD", "IOC", "FOK"),
        )
        cl_ord_id = req.get("cl_ord_id")
        if cl_ord_id is not None:
            cl_ord_id = rq.check_cl_ord_id(cl_ord_id)
        ref = rq.userref(req["userref"], "userref", strings=True) if "userref" in req else 0
        if cl_ord_id is not None and "userref" in req:
            raise Reject(f"{E_ARGS}:cl_ord_id")
        stp = req.get("stptype", req.get("stp_type", "cancel_newest"))
        stp = rq.string(stp, "stptype").replace("-", "_")
        reduce_only = rq.boolean(req.get("reduce_only", False), "reduce_only", strings=True)
        validate = rq.boolean(req.get("validate", False), "validate", strings=True)
        if req.get("deadline") is not None:
            rq.check_deadline(req["deadline"], now)
        spec = OrderSpec(
            market.symbol,
            side,
            order_type,
            qty,
            limit,
            tif,
            "post" in flags,
            reduce_only,
            cl_ord_id,
            ref,
            stp,
            expire,
            effective,
            cash,
        )
        return spec, validate

    def _addOrder(self, account: Account, req: dict[str, Any], reqid: Any) -> None:  # noqa: N802
        spec, validate = self._spec(req)
        order = self.exchange.place(account, spec, validate)
        pair = self.exchange.market(spec.symbol).spec
        qty = order.qty if order is not None else spec.qty or 0
        fields: dict[str, Any] = {
            "descr": _descr_text(spec.side, qty, pair, spec.order_type, spec.price)
        }
        if order is not None:
            fields["txid"] = order.order_id
        if spec.cl_ord_id is not None:
            fields["cl_ord_id"] = spec.cl_ord_id
        self._status("addOrder", reqid, **fields)

    def _find(self, account: Account, value: Any, name: str) -> list[ExOrder]:
        text = rq.string(value, name)
        found = self.exchange.find(account, order_id=text)
        if not found and re.fullmatch(r"-?\d{1,10}", text):
            found = self.exchange.find(account, userref=int(text))
        return found

    def _editOrder(self, account: Account, req: dict[str, Any], reqid: Any) -> None:  # noqa: N802
        found = self._find(account, req.get("orderid"), "orderid")
        if not found:
            raise Reject(E_UNKNOWN)
        order = found[0]
        pair = order.spec
        if self.exchange.market(req.get("pair")) is not order.market:
            raise Reject(f"{E_ARGS}:pair")
        if req.get("price2") not in (None, ""):
            raise Reject(f"{E_ARGS}:Unsupported in simulator: price2")
        limit = (
            rq.price(req["price"], pair.price_precision, pair.symbol, "price", strings=True)
            if req.get("price") is not None
            else None
        )
        qty = (
            rq.amount(req["volume"], pair.qty_precision, "volume", strings=True)
            if req.get("volume") is not None
            else None
        )
        flags = [f for f in rq.string(req.get("oflags", ""), "oflags").split(",") if f]
        if any(flag not in _OFLAGS for flag in flags):
            raise Reject(f"{E_ARGS}:oflags")
        ref = (
            rq.userref(req["newuserref"], "newuserref", strings=True)
            if req.get("newuserref") not in (None, "")
            else None
        )
        validate = rq.boolean(req.get("validate", False), "validate", strings=True)
        if req.get("deadline") is not None:
            rq.check_deadline(req["deadline"], time.time_ns())
        replacement = self.exchange.edit(
            order, qty, limit, ref, True if "post" in flags else None, validate
        )
        changes = []
        if limit is not None:
            changes.append(f"price = {_price(limit, pair)}")
        if qty is not None:
            changes.append(f"volume = {fixed(qty, pair.qty_precision)}")
        fields: dict[str, Any] = {
            "descr": "order edited " + ", ".join(changes),
            "originaltxid": order.order_id,
        }
        if replacement is not None:
            fields["txid"] = replacement.order_id
        self._status("editOrder", reqid, **fields)

    def _cancelOrder(
        self,
        account: Account,
        req: dict[str, Any],  # noqa: N802
        reqid: Any,
    ) -> None:
        lookups: list[tuple[str, Any]] = []
        for key in ("txid", "cl_ord_id"):
            values = req.get(key)
            if values is None:
                continue
            if not isinstance(values, list) or not values:
                raise Reject(f"{E_ARGS}:{key}")
            lookups += [(key, value) for value in values]
        if not lookups:
            raise Reject(f"{E_ARGS}:txid")
        for key, value in lookups:
            if key == "txid":
                found = self._find(account, value, key)
            else:
                found = self.exchange.find(account, cl_ord_id=rq.string(value, key))
            if not found:
                self._fail("cancelOrder", reqid, E_UNKNOWN)
                continue
            for order in found:
                try:
                    self.exchange.cancel(order)
                except Reject as refusal:
                    self._fail("cancelOrder", reqid, refusal.code)
                    continue
                self._status("cancelOrder", reqid)

    def _cancelAll(self, account: Account, req: dict[str, Any], reqid: Any) -> None:  # noqa: N802
        self._status("cancelAll", reqid, count=self.exchange.cancel_all(account))

    def _cancelAllOrdersAfter(
        self,
        account: Account,
        req: dict[str, Any],  # noqa: N802
        reqid: Any,
    ) -> None:
        timeout = req.get("timeout")
        if isinstance(timeout, str) and timeout.isdigit():
            timeout = int(timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout < 86400:
            raise Reject(f"{E_ARGS}:timeout")
        current, trigger = self.exchange.cancel_after(account, timeout)

        def text(seconds: int) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

        self._status(
            "cancelAllOrdersAfter",
            reqid,
            currentTime=text(current),
            triggerTime=text(trigger) if trigger is not None else "0",
        )

    # -- channels --------------------------------------------------------------------------------

    def subscription(self, event: str, name: str, subscription: dict[str, Any], reqid: Any) -> None:
        """(Un)subscribe ``ownTrades`` or ``openOrders`` (``subscription`` holds the token)."""
        echo = {"name": name}

        def refuse(text: str) -> None:
            obj: dict[str, Any] = {
                "errorMessage": text,
                "event": "subscriptionStatus",
                "status": "error",
                "subscription": echo,
            }
            if reqid is not None:
                obj["reqid"] = reqid
            self._send(obj)

        token = subscription.get("token")
        account = (
            self.exchange.tokens.account(token, use=event == "subscribe")
            if isinstance(token, str)
            else None
        )
        if account is None:
            refuse(ERR_TOKEN_INVALID)
            return
        held = self.sinks.get(name)
        if event == "unsubscribe":
            if held is None:
                refuse(ERR_NOT_FOUND)
                return
            self.exchange.detach(held)
            del self.sinks[name]
        elif held is not None:
            refuse(ERR_ALREADY)
            return
        try:
            snapshot = rq.boolean(subscription.get("snapshot", True), "snapshot", strings=True)
            ratecounter = rq.boolean(
                subscription.get("ratecounter", False), "ratecounter", strings=True
            )
            if "consolidate_taker" in subscription:
                rq.boolean(subscription["consolidate_taker"], "consolidate_taker", strings=True)
        except Reject as refusal:
            refuse(refusal.code)
            return
        obj: dict[str, Any] = {
            "channelName": name,
            "event": "subscriptionStatus",
            "status": "unsubscribed" if event == "unsubscribe" else "subscribed",
            "subscription": echo,
        }
        if reqid is not None:
            obj["reqid"] = reqid
        if event == "unsubscribe":
            self._send(obj)
            return
        sink: OwnTradesSink | OpenOrdersSink
        if name == "ownTrades":
            sink = OwnTradesSink(self.exchange, self.host, account)
        else:
            sink = OpenOrdersSink(self.exchange, self.host, account, ratecounter)
        self.sinks[name] = sink
        self.exchange.attach(sink)
        self._send(obj)
        if snapshot:
            sink.snapshot()
