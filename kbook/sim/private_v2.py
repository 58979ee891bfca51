"""Kraken Spot WebSocket v2, private half: trading methods and the executions/balances channels.

:class:`V2Private` belongs to one v2 connection's session. It answers ``add_order``,
``amend_order``, ``edit_order``, ``cancel_order``, ``cancel_all``, ``cancel_all_orders_after``,
``batch_add`` and ``batch_cancel``, and (un)subscribes ``executions`` and ``balances``, all with an
account token from the REST ``GetWebSocketsToken`` endpoint (or ``Simulator.issue_token(key)``).

Tokens: a request without ``params.token`` is answered as Kraken's public endpoint answers it
(``Method not supported`` for a method, ``Token required`` for a channel, as for level3); a token
that is unknown, expired, or not tied to an account is ``ESession:Invalid session``. Unknown
parameters are refused with ``EGeneral:Invalid arguments:Unsupported field: '<name>'``.

Answers are control messages with sorted keys, like every Kraken ack: one per request, except
``cancel_order`` which answers once per order cancelled (and once per identifier that matched
nothing, with ``EOrder:Unknown order``), all with the request's ``req_id``; ``batch_add``'s
``result`` is an array in request order, where an order refused after the batch was validated
(funds, open-order limit) holds ``{"error": ...}`` plus its echoed ids. ``cancel_all_orders_after``
answers ``currentTime``/``triggerTime`` at whole seconds (``triggerTime`` ``"0"`` when disarmed,
as v1 documents). The answer always precedes the execution reports the request causes.

Channel messages are written by hand in the key order of Kraken's examples, numbers as v2 JSON
numbers (trailing zeros dropped). Execution reports, by ``exec_type``:

* ``pending_new``: the order's full description (the published example's keys; a market order
  has no ``limit_price_type``/``limit_price``; ``cl_ord_id`` follows ``order_id`` when set;
  ``cash_order_qty``, ``post_only``, ``reduce_only``, ``expire_time``, ``effective_time`` appear
  when used);
* ``new``: ``timestamp, order_status, exec_type, order_userref, order_id`` as published;
* ``trade``: the published example's keys; ``order_status`` is ``partially_filled`` as in the
  example even when the fill completes the order, and a ``filled`` report follows;
* ``filled``, ``canceled``, ``expired``, ``amended``: the ``new`` keys, then ``cum_qty, cum_cost,
  avg_price, fee_usd_equiv`` (and ``reason`` when closed), or for ``amended`` the new
  ``order_qty``, ``limit_price`` and ``amended: true`` (simulator layouts: Kraken publishes no
  example of these);
* the snapshot: open orders in the ``pending_new`` layout with ``cum_qty`` and ``avg_price``
  added and ``exec_type`` ``new``, then (``snap_trades``) the last 50 fills in the ``trade``
  layout, oldest first.

``order_userref`` is always present (0 when none was given). ``fee_usd_equiv`` is the fee in the
quote currency, not converted. ``order_status: false`` drops ``pending_new`` and ``amended``
reports; ``ratecounter: true`` appends ``ratecount`` (the pair's counter, a name borrowed from v1
because v2 documents none) to every report. Every message carries the subscription's
``sequence``, 1 for the snapshot.

Balances: the snapshot lists every asset of the account (spot ``main`` wallet only); each ledger
entry is one update (a fill: the base leg, then the quote leg, sharing the fill's ``exec_id`` as
``ref_id``).

What it is not: the public half (see :mod:`kbook.sim.protocol_v2`), or the matching engine
(see :mod:`kbook.sim.exchange`).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kbook.sim import requests as rq
from kbook.sim.exchange import (
    E_ARGS,
    E_UNKNOWN,
    E_UNSUPPORTED,
    UNSUPPORTED_TYPES,
)
from kbook.sim.host import wall_ns
from kbook.sim.records import (
    AVG_EXTRA_DP,
    Account,
    ExOrder,
    LedgerEntry,
    OrderSpec,
    PrivateSink,
    Reject,
    TradeRecord,
)
from kbook.sim.wire import number, rfc3339_us

if TYPE_CHECKING:
    from kbook.sim.exchange import Exchange
    from kbook.sim.host import Host

__all__ = ["METHODS", "PRIVATE_CHANNELS", "BalancesSink", "ExecutionsSink", "V2Private"]

METHODS = (
    "add_order",
    "amend_order",
    "edit_order",
    "cancel_order",
    "cancel_all",
    "cancel_all_orders_after",
    "batch_add",
    "batch_cancel",
)
PRIVATE_CHANNELS = ("executions", "balances")

ERR_METHOD = "Method not supported"
ERR_TOKEN_MISSING = "Token required"
ERR_TOKEN_INVALID = "ESession:Invalid session"
ERR_MALFORMED = "Malformed request"
ERR_ALREADY = "Already subscribed"
ERR_NOT_FOUND = "Subscription Not Found"

_ORDER_FIELDS = frozenset(
    (
        "order_type",
        "side",
        "order_qty",
        "limit_price",
        "limit_price_type",
        "triggers",
        "time_in_force",
        "margin",
        "post_only",
        "reduce_only",
        "effective_time",
        "expire_time",
        "cl_ord_id",
        "order_userref",
        "conditional",
        "display_qty",
        "fee_preference",
        "no_mpp",
        "stp_type",
        "cash_order_qty",
        "sender_sub_id",
        "stop_price",
        "trigger",
    )
)
_ADD_FIELDS = _ORDER_FIELDS | {"symbol", "deadline", "validate", "token"}
_AMEND_FIELDS = frozenset(
    (
        "order_id",
        "cl_ord_id",
        "order_qty",
        "display_qty",
        "limit_price",
        "limit_price_type",
        "post_only",
        "trigger_price",
        "trigger_price_type",
        "deadline",
        "symbol",
        "token",
    )
)
_EDIT_FIELDS = frozenset(
    (
        "order_id",
        "symbol",
        "order_qty",
        "limit_price",
        "display_qty",
        "fee_preference",
        "no_mpp",
        "order_userref",
        "post_only",
        "reduce_only",
        "triggers",
        "deadline",
        "validate",
        "price",
        "trigger",
        "stop_price",
        "token",
    )
)
#: Parameters the simulator has no model for (they belong to unsupported order kinds).
_UNMODELLED = (
    "triggers",
    "conditional",
    "display_qty",
    "stop_price",
    "trigger",
    "trigger_price",
    "trigger_price_type",
)
_TIF = {"gtc": "GTC", "gtd": "GTD", "ioc": "IOC", "fok": "FOK"}


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _check_fields(params: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise Reject(f"{E_ARGS}:Unsupported field: '{name}'")


def _unmodelled(params: dict[str, Any]) -> None:
    for name in _UNMODELLED:
        if params.get(name) is not None:
            raise Reject(f"{E_ARGS}:Unsupported in simulator: {name}")
    if params.get("margin"):
        raise Reject(f"{E_ARGS}:Unsupported in simulator: margin")


def order_spec(exchange: Exchange, params: dict[str, Any], symbol: Any) -> OrderSpec:
    """One v2 order (``add_order`` params or a ``batch_add`` entry) as an :class:`OrderSpec`."""
    market = exchange.market(symbol)
    pair = market.spec
    order_type = rq.string(params.get("order_type"), "order_type")
    if order_type in UNSUPPORTED_TYPES:
        raise Reject(E_UNSUPPORTED)
    side = rq.string(params.get("side"), "side", ("buy", "sell"))
    _unmodelled(params)
    for flag in ("margin", "post_only", "reduce_only", "no_mpp"):
        if flag in params:
            rq.boolean(params[flag], flag)
    if "limit_price_type" in params:
        rq.string(params["limit_price_type"], "limit_price_type", ("static",))
    if "fee_preference" in params:
        rq.string(params["fee_preference"], "fee_preference", ("base", "quote"))
    if "sender_sub_id" in params:
        rq.string(params["sender_sub_id"], "sender_sub_id")
    qty = (
        rq.amount(params["order_qty"], pair.qty_precision, "order_qty")
        if params.get("order_qty") is not None
        else None
    )
    limit = (
        rq.price(params["limit_price"], pair.price_precision, pair.symbol, "limit_price")
        if params.get("limit_price") is not None
        else None
    )
    cash = (
        rq.amount(params["cash_order_qty"], exchange.ledger.dp(pair.quote), "cash_order_qty")
        if params.get("cash_order_qty") is not None
        else None
    )
    if cash is not None and qty is not None:
        raise Reject(f"{E_ARGS}:cash_order_qty")
    tif = _TIF.get(params.get("time_in_force", "gtc"))
    if tif is None:
        raise Reject(f"{E_ARGS}:time_in_force")
    cl_ord_id = params.get("cl_ord_id")
    if cl_ord_id is not None:
        cl_ord_id = rq.check_cl_ord_id(cl_ord_id)
    ref = params.get("order_userref")
    if ref is not None:
        ref = rq.userref(ref, "order_userref")
        if cl_ord_id is not None:
            raise Reject(f"{E_ARGS}:cl_ord_id")
    expire = params.get("expire_time")
    effective = params.get("effective_time")
    return OrderSpec(
        market.symbol,
        side,
        order_type,
        qty,
        limit,
        tif,
        bool(params.get("post_only", False)),
        bool(params.get("reduce_only", False)),
        cl_ord_id,
        ref or 0,
        rq.string(params.get("stp_type", "cancel_newest"), "stp_type"),
        rq.rfc3339_to_ns(expire, "expire_time") if expire is not None else None,
        rq.rfc3339_to_ns(effective, "effective_time") if effective is not None else None,
        cash,
    )


def _ids(order: ExOrder, result: dict[str, Any]) -> dict[str, Any]:
    if order.cl_ord_id is not None:
        result["cl_ord_id"] = order.cl_ord_id
    return result


# -- execution reports ---------------------------------------------------------------------------


class _Fields:
    """``"key":value`` pairs in insertion order: the key order is part of the wire format."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, key: str, raw: str) -> _Fields:
        self.parts.append(f'"{key}":{raw}')
        return self

    def text(self, key: str, value: str) -> _Fields:
        return self.add(key, json.dumps(value))

    def render(self) -> str:
        return "{" + ",".join(self.parts) + "}"


def _money(exchange: Exchange, order: ExOrder, units: int) -> str:
    return number(units, exchange.ledger.dp(order.spec.quote))


def _ids_head(f: _Fields, order: ExOrder) -> None:
    f.text("order_id", order.order_id)
    if order.cl_ord_id is not None:
        f.text("cl_ord_id", order.cl_ord_id)


def _status_head(f: _Fields, kind: str, order: ExOrder, time_ns: int) -> None:
    status = order.status if kind in ("amended", "new") else kind
    f.text("timestamp", rfc3339_us(time_ns)).text("order_status", status)
    f.text("exec_type", kind).add("order_userref", str(order.userref))
    _ids_head(f, order)


def _description(exchange: Exchange, order: ExOrder, time_ns: int, snapshot: bool) -> _Fields:
    pair = order.spec
    f = _Fields()
    _ids_head(f, order)
    f.add("order_userref", str(order.userref)).text("symbol", pair.symbol)
    f.add("order_qty", number(order.qty, pair.qty_precision))
    if order.cash is not None:
        f.add("cash_order_qty", _money(exchange, order, order.cash))
    if snapshot:
        f.add("cum_qty", number(order.filled, pair.qty_precision))
    f.add("cum_cost", _money(exchange, order, order.cum_cost))
    if snapshot:
        f.add("avg_price", number(order.avg_units(), pair.price_precision + AVG_EXTRA_DP))
    exec_type = "pending_new" if not snapshot or order.status == "pending_new" else "new"
    f.text("time_in_force", order.tif).text("exec_type", exec_type).text("side", order.side)
    f.text("order_type", order.order_type)
    if order.price is not None:
        f.text("limit_price_type", "static")
        f.add("limit_price", number(order.price, pair.price_precision))
    f.add("stop_price", "0.0").text("order_status", order.status)
    if order.post_only:
        f.add("post_only", "true")
    if order.reduce_only:
        f.add("reduce_only", "true")
    if snapshot and order.amended:
        f.add("amended", "true")
    if order.expire_ns is not None:
        f.text("expire_time", rfc3339_us(order.expire_ns))
    if order.effective_ns is not None:
        f.text("effective_time", rfc3339_us(order.effective_ns))
    f.add("fee_usd_equiv", _money(exchange, order, order.cum_fee)).text("fee_ccy_pref", "fciq")
    f.text("timestamp", rfc3339_us(time_ns))
    return f


def _trade_report(exchange: Exchange, record: TradeRecord) -> _Fields:
    order = record.order
    pair = order.spec
    f = _Fields()
    _ids_head(f, order)
    f.add("order_userref", str(order.userref)).text("exec_id", record.exec_id)
    f.text("exec_type", "trade").add("trade_id", str(record.trade_id)).text("symbol", pair.symbol)
    f.text("side", order.side).add("last_qty", number(record.qty, pair.qty_precision))
    f.add("last_price", number(record.price, pair.price_precision))
    f.text("liquidity_ind", record.liquidity).add("cost", _money(exchange, order, record.cost))
    f.text("order_type", order.order_type).text("timestamp", rfc3339_us(record.time_ns))
    # Kraken's example: a trade says partially_filled even when it completes the order.
    f.text("order_status", "partially_filled")
    f.add("cum_qty", number(record.cum_qty, pair.qty_precision))
    f.add("cum_cost", _money(exchange, order, record.cum_cost))
    f.add("avg_price", number(record.avg_units, pair.price_precision + AVG_EXTRA_DP))
    fee = _money(exchange, order, record.fee)
    f.add("fee_usd_equiv", fee)
    f.add("fees", f'[{{"asset":{json.dumps(pair.quote)},"qty":{fee}}}]')
    return f


class ExecutionsSink(PrivateSink):
    """One ``executions`` subscription."""

    def __init__(
        self,
        exchange: Exchange,
        conn: Any,
        account: Account,
        *,
        snap_orders: bool,
        snap_trades: bool,
        order_status: bool,
        ratecounter: bool,
    ) -> None:
        super().__init__(exchange, conn, account)
        self.snap_orders = snap_orders
        self.snap_trades = snap_trades
        self.order_status = order_status
        self.ratecounter = ratecounter
        self.sequence = 0

    def _message(self, kind: str, reports: list[_Fields]) -> bytes:
        self.sequence += 1
        data = ",".join(r.render() for r in reports)
        return (
            f'{{"channel":"executions","type":"{kind}","data":[{data}],"sequence":{self.sequence}}}'
        ).encode()

    def _ratecount(self, f: _Fields, order: ExOrder) -> _Fields:
        if self.ratecounter:
            value = self.account.counter(order.market.symbol).value()
            f.add("ratecount", json.dumps(round(value, 4)))
        return f

    def snapshot(self) -> None:
        reports: list[_Fields] = []
        if self.snap_orders:
            for order in self.account.orders.values():
                reports.append(
                    self._ratecount(
                        _description(self.exchange, order, order.created_ns, True), order
                    )
                )
        if self.snap_trades:
            for record in self.account.fills:
                reports.append(self._ratecount(_trade_report(self.exchange, record), record.order))
        self.send(self._message("snapshot", reports))

    def order_event(self, kind: str, order: ExOrder, time_ns: int, reason: str | None) -> None:
        if not self.order_status and kind in ("pending_new", "amended"):
            return
        pair = order.spec
        if kind == "pending_new":
            f = _description(self.exchange, order, time_ns, False)
        else:
            f = _Fields()
            _status_head(f, kind, order, time_ns)
            if kind == "amended":
                f.add("order_qty", number(order.qty, pair.qty_precision))
                if order.price is not None:
                    f.add("limit_price", number(order.price, pair.price_precision))
                f.add("amended", "true")
            elif kind != "new":
                f.add("cum_qty", number(order.filled, pair.qty_precision))
                f.add("cum_cost", _money(self.exchange, order, order.cum_cost))
                f.add("avg_price", number(order.avg_units(), pair.price_precision + AVG_EXTRA_DP))
                f.add("fee_usd_equiv", _money(self.exchange, order, order.cum_fee))
                if reason is not None:
                    f.text("reason", reason)
        self.send(self._message("update", [self._ratecount(f, order)]))

    def trade(self, record: TradeRecord) -> None:
        f = self._ratecount(_trade_report(self.exchange, record), record.order)
        self.send(self._message("update", [f]))


class BalancesSink(PrivateSink):
    """One ``balances`` subscription."""

    def __init__(self, exchange: Exchange, conn: Any, account: Account) -> None:
        super().__init__(exchange, conn, account)
        self.sequence = 0

    def snapshot(self) -> None:
        self.sequence += 1
        items = []
        for asset in sorted(self.account.balances):
            amount = number(self.account.balances[asset], self.exchange.ledger.dp(asset))
            items.append(
                f'{{"asset":{json.dumps(asset)},"asset_class":"currency","balance":{amount},'
                f'"wallets":[{{"type":"spot","id":"main","balance":{amount}}}]}}'
            )
        self.send(
            (
                f'{{"channel":"balances","data":[{",".join(items)}],"type":"snapshot",'
                f'"sequence":{self.sequence}}}'
            ).encode()
        )

    def ledger(self, entry: LedgerEntry) -> None:
        self.sequence += 1
        category = "trade" if entry.type == "trade" else entry.type
        body = (
            f'{{"ledger_id":"{entry.ledger_id}","ref_id":"{entry.ref_id}",'
            f'"timestamp":"{rfc3339_us(entry.time_ns)}","type":"{entry.type}",'
            f'"asset":{json.dumps(entry.asset)},"asset_class":"currency",'
            f'"category":"{category}","wallet_type":"spot","wallet_id":"main",'
            f'"amount":{number(entry.amount, entry.dp)},"fee":{number(entry.fee, entry.dp)},'
            f'"balance":{number(entry.balance, entry.dp)}}}'
        )
        self.send(
            (
                f'{{"channel":"balances","type":"update","data":[{body}],'
                f'"sequence":{self.sequence}}}'
            ).encode()
        )


# -- the session part ----------------------------------------------------------------------------


def _seconds_text(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class V2Private:
    """The private requests of one v2 connection."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.sinks: dict[str, PrivateSink] = {}

    @property
    def exchange(self) -> Exchange:
        return self.host.exchange

    # -- answers ---------------------------------------------------------------------------------

    def _error(self, method: str, req_id: Any, time_in: int, text: str) -> None:
        obj: dict[str, Any] = {
            "error": text,
            "method": method,
            "success": False,
            "time_in": rfc3339_us(time_in),
        }
        if req_id is not None:
            obj["req_id"] = req_id
        obj["time_out"] = rfc3339_us(wall_ns())
        self.host.send_control(_dumps(obj))

    def _ack(self, method: str, req_id: Any, time_in: int, result: Any) -> None:
        obj: dict[str, Any] = {
            "method": method,
            "result": result,
            "success": True,
            "time_in": rfc3339_us(time_in),
        }
        if req_id is not None:
            obj["req_id"] = req_id
        obj["time_out"] = rfc3339_us(wall_ns())
        self.host.send_control(_dumps(obj))

    def _account(self, params: Any, use: bool = False) -> Account | None:
        token = params.get("token") if isinstance(params, dict) else None
        if not isinstance(token, str) or not token:
            return None
        account = self.exchange.tokens.account(token, use)
        if account is None:
            raise Reject(ERR_TOKEN_INVALID)
        return account

    # -- methods ---------------------------------------------------------------------------------

    def method(self, method: str, raw: bytes, req_id: Any, time_in: int) -> None:
        """Answer one trading method (``raw`` is re-read with exact decimals)."""
        try:
            req = json.loads(raw, parse_float=Decimal)
        except ValueError:
            self._error(method, req_id, time_in, ERR_MALFORMED)
            return
        params = req.get("params")
        exchange = self.exchange
        exchange.hold()
        try:
            account = self._account(params)
            if account is None:
                # No token: what Kraken's public endpoint says to a trading method.
                self._error(method, req_id, time_in, ERR_METHOD)
                return
            handler = getattr(self, f"_{method}")
            handler(account, params, req_id, time_in)
        except Reject as refusal:
            self._error(method, req_id, time_in, refusal.code)
        finally:
            exchange.release()

    def _add_order(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, _ADD_FIELDS)
        spec = order_spec(self.exchange, params, params.get("symbol"))
        validate = rq.boolean(params.get("validate", False), "validate")
        if params.get("deadline") is not None:
            rq.check_deadline(params["deadline"], time_in)
        order = self.exchange.place(account, spec, validate)
        result: dict[str, Any] = {"order_id": order.order_id if order is not None else ""}
        if spec.cl_ord_id is not None:
            result["cl_ord_id"] = spec.cl_ord_id
        if "order_userref" in params:
            result["order_userref"] = spec.userref
        self._ack("add_order", req_id, time_in, result)

    def _target(self, account: Account, params: dict[str, Any]) -> tuple[ExOrder, str]:
        order_id, cl_ord_id = params.get("order_id"), params.get("cl_ord_id")
        if (order_id is None) == (cl_ord_id is None):
            raise Reject(f"{E_ARGS}:order_id")
        if order_id is not None:
            found = self.exchange.find(account, order_id=rq.string(order_id, "order_id"))
            key = "order_id"
        else:
            found = self.exchange.find(account, cl_ord_id=rq.string(cl_ord_id, "cl_ord_id"))
            key = "cl_ord_id"
        if not found:
            raise Reject(E_UNKNOWN)
        return found[0], key

    def _amend_order(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, _AMEND_FIELDS)
        _unmodelled(params)
        order, key = self._target(account, params)
        pair = order.spec
        if params.get("symbol") is not None and params["symbol"] != pair.symbol:
            raise Reject(f"{E_ARGS}:symbol")
        if "limit_price_type" in params:
            rq.string(params["limit_price_type"], "limit_price_type", ("static",))
        qty = (
            rq.amount(params["order_qty"], pair.qty_precision, "order_qty")
            if params.get("order_qty") is not None
            else None
        )
        limit = (
            rq.price(params["limit_price"], pair.price_precision, pair.symbol, "limit_price")
            if params.get("limit_price") is not None
            else None
        )
        if qty is None and limit is None:
            raise Reject(f"{E_ARGS}:order_qty")
        if qty is not None and qty <= 0:
            raise Reject(f"{E_ARGS}:order_qty")
        if limit is not None and limit <= 0:
            raise Reject(f"{E_ARGS}:limit_price")
        post_only = rq.boolean(params.get("post_only", False), "post_only")
        if params.get("deadline") is not None:
            rq.check_deadline(params["deadline"], time_in)
        amend_id = self.exchange.amend(order, qty, limit, post_only)
        result = {"amend_id": amend_id, key: params[key]}
        self._ack("amend_order", req_id, time_in, result)

    def _edit_order(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, _EDIT_FIELDS)
        _unmodelled(params)
        order_id = rq.string(params.get("order_id"), "order_id")
        symbol = rq.string(params.get("symbol"), "symbol")
        found = self.exchange.find(account, order_id=order_id)
        if not found:
            raise Reject(E_UNKNOWN)
        order = found[0]
        pair = order.spec
        if symbol != pair.symbol:
            raise Reject(f"{E_ARGS}:symbol")
        for flag in ("post_only", "reduce_only", "no_mpp"):
            if flag in params:
                rq.boolean(params[flag], flag)
        if "fee_preference" in params:
            rq.string(params["fee_preference"], "fee_preference", ("base", "quote"))
        qty = (
            rq.amount(params["order_qty"], pair.qty_precision, "order_qty")
            if params.get("order_qty") is not None
            else None
        )
        price_value = params.get("limit_price", params.get("price"))
        limit = (
            rq.price(price_value, pair.price_precision, pair.symbol, "limit_price")
            if price_value is not None
            else None
        )
        ref = (
            rq.userref(params["order_userref"], "order_userref")
            if params.get("order_userref") is not None
            else None
        )
        validate = rq.boolean(params.get("validate", False), "validate")
        if params.get("deadline") is not None:
            rq.check_deadline(params["deadline"], time_in)
        post_only = params.get("post_only")
        replacement = self.exchange.edit(
            order, qty, limit, ref, None if post_only is None else bool(post_only), validate
        )
        result = {
            "order_id": replacement.order_id if replacement is not None else "",
            "original_order_id": order.order_id,
        }
        self._ack("edit_order", req_id, time_in, result)

    def _cancel_order(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, frozenset(("order_id", "cl_ord_id", "order_userref", "token")))
        lookups: list[tuple[str, Any]] = []
        for key in ("order_id", "cl_ord_id", "order_userref"):
            values = params.get(key)
            if values is None:
                continue
            if not isinstance(values, list) or not values:
                raise Reject(f"{E_ARGS}:{key}")
            for value in values:
                if key == "order_userref":
                    lookups.append((key, rq.userref(value, key)))
                else:
                    lookups.append((key, rq.string(value, key)))
        if not lookups:
            raise Reject(f"{E_ARGS}:order_id")
        exchange = self.exchange
        for key, value in lookups:
            if key == "order_id":
                found = exchange.find(account, order_id=value)
            elif key == "cl_ord_id":
                found = exchange.find(account, cl_ord_id=value)
            else:
                found = exchange.find(account, userref=value)
            if not found:
                self._error("cancel_order", req_id, time_in, E_UNKNOWN)
                continue
            for order in found:
                try:
                    exchange.cancel(order)
                except Reject as refusal:
                    self._error("cancel_order", req_id, time_in, refusal.code)
                    continue
                self._ack(
                    "cancel_order", req_id, time_in, _ids(order, {"order_id": order.order_id})
                )

    def _cancel_all(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, frozenset(("token",)))
        count = self.exchange.cancel_all(account)
        self._ack("cancel_all", req_id, time_in, {"count": count})

    def _cancel_all_orders_after(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, frozenset(("timeout", "token")))
        timeout = params.get("timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout < 86400:
            raise Reject(f"{E_ARGS}:timeout")
        current, trigger = self.exchange.cancel_after(account, timeout)
        self._ack(
            "cancel_all_orders_after",
            req_id,
            time_in,
            {
                "currentTime": _seconds_text(current),
                "triggerTime": _seconds_text(trigger) if trigger is not None else "0",
            },
        )

    def _batch_add(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, frozenset(("symbol", "orders", "deadline", "validate", "token")))
        entries = params.get("orders")
        if (
            not isinstance(entries, list)
            or not 2 <= len(entries) <= 15
            or not all(isinstance(e, dict) for e in entries)
        ):
            raise Reject(f"{E_ARGS}:orders")
        specs = []
        for entry in entries:
            _check_fields(entry, _ORDER_FIELDS)
            specs.append(order_spec(self.exchange, entry, params.get("symbol")))
        validate = rq.boolean(params.get("validate", False), "validate")
        if params.get("deadline") is not None:
            rq.check_deadline(params["deadline"], time_in)
        results = self.exchange.place_batch(account, specs, validate)
        answer = []
        for entry, spec, outcome in zip(entries, specs, results, strict=True):
            item: dict[str, Any] = {}
            if isinstance(outcome, Reject):
                item["error"] = outcome.code
            else:
                item["order_id"] = outcome.order_id if outcome is not None else ""
            if spec.cl_ord_id is not None:
                item["cl_ord_id"] = spec.cl_ord_id
            if "order_userref" in entry:
                item["order_userref"] = spec.userref
            answer.append(item)
        self._ack("batch_add", req_id, time_in, answer)

    def _batch_cancel(
        self, account: Account, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        _check_fields(params, frozenset(("orders", "cl_ord_id", "token")))
        ids = params.get("orders") or []
        cl_ids = params.get("cl_ord_id") or []
        if (
            not isinstance(ids, list)
            or not isinstance(cl_ids, list)
            or not all(isinstance(i, str) for i in ids + cl_ids)
            or not 2 <= len(ids) + len(cl_ids) <= 50
        ):
            raise Reject(f"{E_ARGS}:orders")
        exchange = self.exchange
        targets: dict[str, ExOrder] = {}
        for value in ids:
            found = exchange.find(account, order_id=value)
            if not found and value.lstrip("-").isdigit():
                found = exchange.find(account, userref=int(value))
            targets.update((o.order_id, o) for o in found)
        for value in cl_ids:
            targets.update((o.order_id, o) for o in exchange.find(account, cl_ord_id=value))
        if not targets:
            raise Reject(E_UNKNOWN)
        for order in targets.values():
            exchange.cancel(order)
        self._ack("batch_cancel", req_id, time_in, {"count": len(targets)})

    # -- channels --------------------------------------------------------------------------------

    def subscription(
        self, method: str, channel: str, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        """(Un)subscribe ``executions`` or ``balances``."""
        try:
            account = self._account(params, use=method == "subscribe")
            if account is None:
                raise Reject(ERR_TOKEN_MISSING)
            held = self.sinks.get(channel)
            if method == "unsubscribe":
                if held is None:
                    raise Reject(ERR_NOT_FOUND)
                self.exchange.detach(held)
                del self.sinks[channel]
                self._ack(method, req_id, time_in, {"channel": channel})
                return
            if held is not None:
                raise Reject(ERR_ALREADY)
            flags: dict[str, bool] = {}
            defaults = (
                {
                    "snap_orders": True,
                    "snap_trades": False,
                    "order_status": True,
                    "ratecounter": False,
                }
                if channel == "executions"
                else {"snapshot": True}
            )
            for name, default in defaults.items():
                flags[name] = rq.boolean(params.get(name, default), name)
            if channel == "executions":
                if "snapshot" in params:  # deprecated spelling of snap_orders
                    flags["snap_orders"] = rq.boolean(params["snapshot"], "snapshot")
                if "snapshot_trades" in params:  # deprecated spelling of snap_trades
                    flags["snap_trades"] = rq.boolean(params["snapshot_trades"], "snapshot_trades")
        except Reject as refusal:
            self._error(method, req_id, time_in, refusal.code)
            return
        sink: ExecutionsSink | BalancesSink
        if channel == "executions":
            sink = ExecutionsSink(
                self.exchange,
                self.host,
                account,
                snap_orders=flags["snap_orders"],
                snap_trades=flags["snap_trades"],
                order_status=flags["order_status"],
                ratecounter=flags["ratecounter"],
            )
            result: dict[str, Any] = {
                "channel": channel,
                "maxratecount": int(account.tier.max_rate),
                "snap_orders": flags["snap_orders"],
                "snap_trades": flags["snap_trades"],
            }
        else:
            sink = BalancesSink(self.exchange, self.host, account)
            result = {"channel": channel, "snapshot": flags["snapshot"]}
        self.sinks[channel] = sink
        self.exchange.attach(sink)
        self._ack(method, req_id, time_in, result)
        wanted = ("snap_orders", "snap_trades") if channel == "executions" else ("snapshot",)
        if any(flags[name] for name in wanted):
            sink.snapshot()
