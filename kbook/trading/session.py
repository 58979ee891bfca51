"""The private session: order entry, executions and balances, and a managed dead-man switch.

:class:`PrivateSession` opens the client's authenticated connection (a fresh token for every
connection), subscribes to ``executions`` and ``balances`` (v1: ``openOrders`` and
``ownTrades``), keeps local views of open orders and balances that are rebuilt from the snapshot
after every reconnect, never reports a fill twice, and reports sequence gaps. Every request
returns an :class:`~kbook.trading.Outcome` correlated by ``req_id``; a request that got no
answer in time is ``UNKNOWN``, to be reconciled from the executions stream.

What it is not: a strategy or a risk system. It sends what it is asked to, after checking the
rules the exchange would enforce.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kbook.client import Client, Connection
from kbook.messages import Ack, BalanceSnapshot, Execution, LedgerEntry, Message
from kbook.trading.orders import (
    AddOrder,
    Outcome,
    OutcomeState,
    ValidationError,
    check_batch_cancel,
    check_cancel_after,
    chunk_batch,
    encode_request,
    error_for,
    v1_add_order,
    validate_add,
)

__all__ = ["OrderView", "PrivateSession"]

log = logging.getLogger("kbook.trading.session")
_CLOSED = ("filled", "canceled", "expired")


@dataclass
class OrderView:
    """What the session knows of one order, merged from its execution reports."""

    order_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    fills: list[Execution] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        value = self.fields.get("order_status")
        return value if isinstance(value, str) else None

    @property
    def cl_ord_id(self) -> str | None:
        value = self.fields.get("cl_ord_id")
        return value if isinstance(value, str) else None

    @property
    def filled_qty(self) -> Decimal:
        return sum((f.last_qty or Decimal(0) for f in self.fills), Decimal(0))


class PrivateSession:
    """Trading and private channels over one authenticated connection of ``client``.

    :param client: a started :class:`~kbook.client.Client`; its ``token`` (a string or an async
        token provider such as :class:`~kbook.trading.auth.TokenProvider`) authenticates
    :param url: the private endpoint (default the client's ``private_url``: Kraken's
        ``ws-auth`` for Kraken's public endpoint, the client's own URL otherwise)
    :param request_timeout: seconds before a request's outcome is declared unknown
    """

    def __init__(
        self,
        client: Client,
        *,
        url: str | None = None,
        request_timeout: float = 5.0,
        max_closed: int = 10_000,
    ) -> None:
        self.client = client
        self.url = url
        self.request_timeout = request_timeout
        self.protocol = client.protocol
        self.orders: dict[str, OrderView] = {}
        self.closed: OrderedDict[str, OrderView] = OrderedDict()
        self.balances: dict[str, Decimal] = {}
        self.max_closed = max_closed
        self.fills_seen: OrderedDict[str, None] = OrderedDict()
        self.duplicate_fills = 0
        self.sequence_gaps: list[tuple[str, int, int]] = []
        self._sequences: dict[str, int] = {}
        self._conn: Connection | None = None
        self._listeners: list[Callable[[Message], Any]] = []
        self._dms_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(
        self,
        *,
        executions: bool = True,
        balances: bool = True,
        snap_trades: bool = True,
        order_status: bool = True,
        ratecounter: bool = False,
    ) -> None:
        """Open the private connection and subscribe to the private channels.

        :param snap_trades: include the latest fills in the executions snapshot (they are
            deduplicated against fills already seen, so a reconnect never reports one twice)
        :param order_status: stream every status transition (False: open/close only)
        :param ratecounter: include Kraken's trading rate counter in execution reports
        """
        conn = await self.client.open_private(self.url)
        conn.private_handler = self._on_private
        self._conn = conn
        if self.protocol == "v2":
            if executions:
                params: dict[str, Any] = {"snap_orders": True, "snap_trades": snap_trades}
                if not order_status:
                    params["order_status"] = False
                if ratecounter:
                    params["ratecounter"] = True
                await conn.subscribe("executions", [None], params)
            if balances:
                await conn.subscribe("balances", [None], {"snapshot": True})
        else:
            if executions:
                await conn.subscribe("openOrders", [None], {})
                await conn.subscribe("ownTrades", [None], {})

    async def close(self) -> None:
        """Disarm the dead-man switch (if armed by this session) and stop its task."""
        if self._dms_task is not None:
            self._dms_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dms_task
            self._dms_task = None
            with contextlib.suppress(Exception):
                await self.cancel_all_orders_after(0)

    def on_message(self, callback: Callable[[Message], Any]) -> None:
        """Call ``callback`` with every private message (executions, balances)."""
        self._listeners.append(callback)

    # -- views ---------------------------------------------------------------------------

    def _check_sequence(self, channel: str, sequence: int | None, snapshot: bool) -> None:
        if sequence is None:
            return
        last = self._sequences.get(channel)
        if not snapshot and last is not None and sequence != last + 1 and sequence > last:
            self.sequence_gaps.append((channel, last, sequence))
            self._connection().emit("sequence_gap", None, (channel, last, sequence))
        self._sequences[channel] = sequence

    def _on_private(self, msg: Message) -> None:
        if isinstance(msg, Execution):
            self._check_sequence("executions", msg.sequence, msg.snapshot)
            if not self._apply_execution(msg):
                return  # a fill seen before (a snapshot replays it): listeners had it once
        elif isinstance(msg, BalanceSnapshot):
            self._check_sequence("balances", msg.sequence, True)
            self.balances = dict(msg.balances)  # the snapshot is authoritative
        elif isinstance(msg, LedgerEntry):
            self._check_sequence("balances", msg.sequence, False)
            self.balances[msg.asset] = msg.balance
        for callback in self._listeners:
            try:
                callback(msg)
            except Exception as exc:
                self._connection().callback_failed("on_message", None, exc)

    def _apply_execution(self, msg: Execution) -> bool:
        """Fold one execution report into the views; False for a fill already seen."""
        if (
            msg.snapshot
            and msg.exec_type != "trade"
            and msg.order_id is not None
            and self._sequences.get("executions_snapshot") != msg.sequence
        ):
            # a new snapshot replaces the open-order view: reconcile after a reconnect
            self._sequences["executions_snapshot"] = msg.sequence or 0
            for order_id in list(self.orders):
                self._close(order_id)
        if msg.order_id is None:
            return True
        if msg.exec_type == "trade":
            key = msg.exec_id or f"{msg.order_id}:{msg.trade_id}"
            if key in self.fills_seen:
                self.duplicate_fills += 1  # replayed by a snapshot after a reconnect
                return False
            self.fills_seen[key] = None
            if len(self.fills_seen) > 100_000:
                self.fills_seen.popitem(last=False)
        view = (
            self.orders.get(msg.order_id)
            or self.closed.pop(msg.order_id, None)
            or OrderView(msg.order_id)
        )
        raw = msg.raw if isinstance(msg.raw, dict) else {}
        view.fields.update({k: v for k, v in raw.items() if v is not None})
        if msg.exec_type == "trade":
            view.fills.append(msg)
        self.orders[msg.order_id] = view
        if msg.exec_type in _CLOSED or view.status in _CLOSED:
            self._close(msg.order_id)
        return True

    def _close(self, order_id: str) -> None:
        view = self.orders.pop(order_id, None)
        if view is not None:
            self.closed[order_id] = view
            while len(self.closed) > self.max_closed:
                self.closed.popitem(last=False)

    def find(self, cl_ord_id: str) -> OrderView | None:
        """The order with this client id (open or recently closed): how an UNKNOWN outcome
        is reconciled."""
        for view in [*self.orders.values(), *reversed(self.closed.values())]:
            if view.cl_ord_id == cl_ord_id:
                return view
        return None

    # -- requests ------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("private session not started")
        return self._conn

    async def _request(
        self, method: str, params: Any, expected: int | None = 1, cl_ord_id: str | None = None
    ) -> Outcome:
        conn = self._connection()
        req_id = conn.next_req_id()
        if self.protocol == "v2":
            message = encode_request(method, params, req_id)
        else:
            message = params(req_id)
        sent_ns = time.monotonic_ns()
        answers = await conn.call(req_id, message, expected, self.request_timeout)
        if not answers:
            return Outcome(
                OutcomeState.UNKNOWN, method, req_id, cl_ord_id=cl_ord_id, sent_ns=sent_ns
            )
        outcome = self._outcome(method, req_id, answers, cl_ord_id)
        outcome.sent_ns, outcome.answered_ns = sent_ns, time.monotonic_ns()
        last = answers[-1].raw if isinstance(answers[-1].raw, dict) else {}
        time_in, time_out = last.get("time_in"), last.get("time_out")
        outcome.time_in = time_in if isinstance(time_in, str) else None
        outcome.time_out = time_out if isinstance(time_out, str) else None
        return outcome

    def _outcome(
        self, method: str, req_id: int, answers: list[Ack], cl_ord_id: str | None
    ) -> Outcome:
        failed = [a for a in answers if not a.success]
        if failed:
            return Outcome(
                OutcomeState.REJECTED,
                method,
                req_id,
                error=error_for(failed[0].error or "refused", method),
                cl_ord_id=cl_ord_id,
            )
        results = []
        warnings: list[str] = []
        for answer in answers:
            raw = answer.raw if isinstance(answer.raw, dict) else {}
            result = raw.get("result", raw)  # v1 answers carry their fields at top level
            if isinstance(result, dict):
                warnings.extend(result.get("warnings") or ())
                if "txid" in result and "order_id" not in result:
                    result = {**result, "order_id": result["txid"]}
            results.append(result)
        return Outcome(
            OutcomeState.ACCEPTED,
            method,
            req_id,
            result=results[0] if len(results) == 1 else results,
            cl_ord_id=cl_ord_id,
            warnings=warnings,
        )

    def _token(self) -> str:
        token = self._connection().token
        if token is None:
            raise RuntimeError("the private connection has no token")
        return token

    def _precisions(self, symbol: str | None) -> tuple[int, int] | None:
        return None if symbol is None else self.client.precisions.get(symbol)

    async def add_order(self, order: AddOrder) -> Outcome:
        """Send one order (validated first); see :class:`~kbook.trading.AddOrder`."""
        validate_add(order, self._precisions(order.symbol))
        if order.symbol is None:
            raise ValidationError("add_order needs a symbol", "add_order")
        if self.protocol == "v1":
            token = self._token()
            return await self._request(
                "addOrder", lambda rid: v1_add_order(order, token, rid), cl_ord_id=order.cl_ord_id
            )
        # the caller's request is never written to: the token goes only into the wire copy
        wire = _with_token(order, self._token())
        return await self._request("add_order", wire, cl_ord_id=order.cl_ord_id)

    async def batch_add(
        self,
        orders: Sequence[AddOrder],
        *,
        deadline: str | None = None,
        validate: bool | None = None,
    ) -> list[Outcome]:
        """Send orders for one pair in batches of 2–15 (a lone order goes as ``add_order``)."""
        if self.protocol != "v2":
            raise ValidationError("batch_add is a v2 method", "batch_add")
        for order in orders:
            validate_add(order, self._precisions(order.symbol))
        outcomes = []
        for chunk in chunk_batch(orders):
            if len(chunk) == 1:
                outcomes.append(await self.add_order(chunk[0]))
                continue
            symbol = chunk[0].symbol
            entries = [_without_symbol(o) for o in chunk]
            params: dict[str, Any] = {"symbol": symbol, "orders": entries, "token": self._token()}
            if deadline is not None:
                params["deadline"] = deadline
            if validate is not None:
                params["validate"] = validate
            outcomes.append(await self._request("batch_add", params))
        return outcomes

    async def amend_order(
        self,
        *,
        order_id: str | None = None,
        cl_ord_id: str | None = None,
        order_qty: Decimal | None = None,
        **params: Any,
    ) -> Outcome:
        """Change an order in place (queue priority kept where the exchange can)."""
        if (order_id is None) == (cl_ord_id is None):
            raise ValidationError("give exactly one of order_id and cl_ord_id", "amend_order")
        if order_qty is None:
            raise ValidationError("amend_order needs order_qty", "amend_order")
        body: dict[str, Any] = {"order_qty": order_qty, **params, "token": self._token()}
        body["order_id" if order_id is not None else "cl_ord_id"] = order_id or cl_ord_id
        return await self._request("amend_order", body, cl_ord_id=cl_ord_id)

    async def edit_order(self, order_id: str, symbol: str, **params: Any) -> Outcome:
        """Cancel and replace (a new order id; queue position lost): prefer amend_order."""
        if self.protocol == "v1":
            token = self._token()

            def build(rid: int) -> bytes:
                body = {
                    "event": "editOrder",
                    "token": token,
                    "orderid": order_id,
                    "pair": symbol,
                    "reqid": rid,
                }
                for key, wire in (("order_qty", "volume"), ("limit_price", "price")):
                    if params.get(key) is not None:
                        body[wire] = str(params[key])
                return _dump(body)

            return await self._request("editOrder", build)
        body = {"order_id": order_id, "symbol": symbol, **params, "token": self._token()}
        return await self._request("edit_order", body)

    async def cancel_order(
        self, order_ids: Sequence[str] = (), cl_ord_ids: Sequence[str] = ()
    ) -> Outcome:
        """Cancel orders; Kraken answers once per cancelled order."""
        count = len(order_ids) + len(cl_ord_ids)
        if count == 0:
            raise ValidationError("nothing to cancel", "cancel_order")
        if self.protocol == "v1":
            token = self._token()
            return await self._request(
                "cancelOrder",
                lambda rid: _dump(
                    {"event": "cancelOrder", "token": token, "txid": list(order_ids), "reqid": rid}
                ),
            )
        body: dict[str, Any] = {"token": self._token()}
        if order_ids:
            body["order_id"] = list(order_ids)
        if cl_ord_ids:
            body["cl_ord_id"] = list(cl_ord_ids)
        return await self._request("cancel_order", body, expected=count)

    async def batch_cancel(self, ids: Sequence[str]) -> Outcome:
        """Cancel 2–50 orders (order ids or order_userref values) in one request."""
        check_batch_cancel(ids)
        return await self._request("batch_cancel", {"orders": list(ids), "token": self._token()})

    async def cancel_all(self) -> Outcome:
        """Cancel every open order of the account."""
        if self.protocol == "v1":
            token = self._token()
            return await self._request(
                "cancelAll", lambda rid: _dump({"event": "cancelAll", "token": token, "reqid": rid})
            )
        return await self._request("cancel_all", {"token": self._token()})

    async def cancel_all_orders_after(self, timeout: int) -> Outcome:
        """Arm (or push back, or with 0 disarm) the exchange's dead-man switch."""
        check_cancel_after(timeout)
        if self.protocol == "v1":
            token = self._token()
            return await self._request(
                "cancelAllOrdersAfter",
                lambda rid: _dump(
                    {
                        "event": "cancelAllOrdersAfter",
                        "token": token,
                        "timeout": timeout,
                        "reqid": rid,
                    }
                ),
            )
        return await self._request(
            "cancel_all_orders_after", {"timeout": timeout, "token": self._token()}
        )

    @contextlib.asynccontextmanager
    async def dead_man_switch(
        self, timeout: int = 60, interval: float = 20.0
    ) -> AsyncIterator[None]:
        """Keep ``cancel_all_orders_after(timeout)`` armed every ``interval`` s while inside.

        If the process stalls or dies, the exchange cancels every order ``timeout`` seconds
        after the last refresh; leaving the block cleanly disarms it.
        """
        if interval >= timeout:
            raise ValidationError(
                "refresh the switch well inside its timeout", "cancel_all_orders_after"
            )
        (await self.cancel_all_orders_after(timeout)).raise_for_error()

        async def refresh() -> None:
            while True:
                await asyncio.sleep(interval)
                started = time.monotonic()
                outcome = await self.cancel_all_orders_after(timeout)
                if outcome.state is not OutcomeState.ACCEPTED:
                    self._connection().emit(
                        "dead_man_switch", None, (outcome.state.value, time.monotonic() - started)
                    )

        self._dms_task = asyncio.ensure_future(refresh())
        try:
            yield
        finally:
            await self.close()


def _with_token(order: AddOrder, token: str) -> AddOrder:
    import msgspec

    return msgspec.structs.replace(order, token=token)


def _without_symbol(order: AddOrder) -> AddOrder:
    import msgspec

    return msgspec.structs.replace(order, symbol=None, token=None, deadline=None, validate=None)


def _dump(obj: Any) -> bytes:
    import msgspec

    return msgspec.json.encode(obj)
