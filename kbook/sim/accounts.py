"""Accounts of the simulated exchange: credentials, balances, tokens and the trading rate counter.

An :class:`Account` is what an API key opens: a base64 secret, a nonce high-water mark for the
REST endpoint, balances per asset, the account's open orders and recent fills (kept by
:mod:`kbook.sim.exchange`), one trading rate counter per pair, the dead man's switch and the
private subscriptions that stream its activity.

Balances are integers in *ledger units* of each asset (``10**-dp``, ``dp`` from
:meth:`Ledger.dp`): the asset's Kraken precision, raised where a pair trades the asset in finer
lots, so every fill moves an exact number of units and nothing is ever a float.

The rate counter follows Kraken's published rules (trading.md section 5.2): a fixed cost per
transaction, plus for amends, edits and cancels a cost that decays with the age of the order, a
per-tier decay per second and a per-tier ceiling. :data:`TIERS` holds the three tiers.

:class:`TokenBook` holds WebSocket tokens: those from ``GetWebSocketsToken`` belong to an account
(private channels and trading), those from ``Simulator.issue_token()`` to nobody (public level3
only). A token must be used within :data:`TOKEN_LIFETIME_S` of issue, and stays valid once a
private subscription has used it, as Kraken documents.

What it is not: order handling or matching (see :mod:`kbook.sim.exchange`), the HTTP endpoint
(see :mod:`kbook.sim.rest`), or a model of margin, staking or subaccounts.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from kbook.sim.pairs import ASSETS, PairSpec
from kbook.sim.wire import units_of

if TYPE_CHECKING:
    from kbook.sim.records import Account

__all__ = [
    "TIERS",
    "TOKEN_LIFETIME_S",
    "Ledger",
    "RateCounter",
    "Tier",
    "TokenBook",
    "amend_cost",
    "cancel_cost",
    "edit_cost",
]

#: Seconds within which a fresh token must be used (``expires`` in the REST answer).
TOKEN_LIFETIME_S = 900
#: Fills kept per account for the executions ``snap_trades`` and ownTrades snapshots.
RECENT_FILLS = 50


@dataclass(frozen=True, slots=True)
class Tier:
    """A verification tier's trading limits (trading.md section 5.2)."""

    name: str
    max_rate: float
    decay_per_s: float
    max_open_orders: int


TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier("starter", 60.0, 1.0, 60),
        Tier("intermediate", 125.0, 2.34, 80),
        Tier("pro", 180.0, 3.75, 225),
    )
}

# Age-dependent costs: (younger than seconds, cost), the first matching row applies.
_AMEND_DECAY = ((5.0, 3.0), (10.0, 2.0), (15.0, 1.0))
_EDIT_DECAY = ((5.0, 6.0), (10.0, 5.0), (15.0, 4.0), (45.0, 2.0), (90.0, 1.0))
_CANCEL_DECAY = ((5.0, 8.0), (10.0, 6.0), (15.0, 5.0), (45.0, 4.0), (90.0, 2.0), (300.0, 1.0))


def _decayed(table: tuple[tuple[float, float], ...], age_s: float) -> float:
    for limit, cost in table:
        if age_s < limit:
            return cost
    return 0.0


def amend_cost(age_s: float) -> float:
    """Counter cost of amending an order that has rested ``age_s`` seconds.

    >>> amend_cost(7.0), amend_cost(60.0)
    (3.0, 1.0)
    """
    return 1.0 + _decayed(_AMEND_DECAY, age_s)


def edit_cost(age_s: float) -> float:
    """Counter cost of editing (cancel/replace) an order that has rested ``age_s`` seconds."""
    return 1.0 + _decayed(_EDIT_DECAY, age_s)


def cancel_cost(age_s: float) -> float:
    """Counter cost of cancelling an order that has rested ``age_s`` seconds.

    >>> cancel_cost(36.0), cancel_cost(400.0)
    (4.0, 0.0)
    """
    return _decayed(_CANCEL_DECAY, age_s)


class RateCounter:
    """One account's trading rate counter for one pair, decaying continuously."""

    __slots__ = ("_at", "_value", "tier")

    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self._value = 0.0
        self._at = time.monotonic()

    def value(self, now: float | None = None) -> float:
        """The counter after decay up to ``now`` (monotonic seconds)."""
        now = time.monotonic() if now is None else now
        self._value = max(0.0, self._value - (now - self._at) * self.tier.decay_per_s)
        self._at = now
        return self._value

    def admit(self, cost: float, now: float | None = None) -> bool:
        """Charge ``cost`` unless it would take the counter over the tier's ceiling."""
        if self.value(now) + cost > self.tier.max_rate:
            return False
        self._value += cost
        return True

    def force(self, cost: float, now: float | None = None) -> None:
        """Charge ``cost`` whatever the counter (cancels are never refused for the rate)."""
        self._value = self.value(now) + cost


class Ledger:
    """Ledger precision per asset and conversions between decimals and ledger units.

    :param pairs: every traded pair; an asset's precision is raised to the finest lot any pair
        trades it in, so fills never need rounding on the base side.
    """

    def __init__(self, pairs: list[PairSpec]) -> None:
        self._dp: dict[str, int] = {}
        for spec in pairs:
            for asset in (spec.base, spec.quote):
                self._dp.setdefault(asset, ASSETS[asset].precision if asset in ASSETS else 8)
            self._dp[spec.base] = max(self._dp[spec.base], spec.qty_precision)

    def dp(self, asset: str) -> int:
        """Decimals of ``asset``'s ledger units (8 for an asset no pair trades)."""
        return self._dp.get(asset, ASSETS[asset].precision if asset in ASSETS else 8)

    def units(self, asset: str, amount: Decimal | int | str) -> int:
        """``amount`` of ``asset`` in ledger units.

        :raises ValueError: if it has more decimals than the asset's ledger precision.
        """
        return units_of(Decimal(amount), self.dp(asset))


def new_credentials() -> tuple[str, str]:
    """A fresh API key (56 characters, like Kraken's) and a 64-byte base64 secret."""
    key = base64.b64encode(secrets.token_bytes(42)).decode()
    secret = base64.b64encode(secrets.token_bytes(64)).decode()
    return key, secret


@dataclass(slots=True)
class _Token:
    account: Account | None
    issued: float
    used: bool = False


class TokenBook:
    """WebSocket tokens and whom they belong to."""

    def __init__(self, lifetime_s: float = TOKEN_LIFETIME_S) -> None:
        self.lifetime_s = lifetime_s
        self._tokens: dict[str, _Token] = {}

    def issue(self, account: Account | None) -> str:
        """A new token for ``account`` (None: public level3 only)."""
        token = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        self._tokens[token] = _Token(account, time.monotonic())
        return token

    def _live(self, token: str) -> _Token | None:
        found = self._tokens.get(token)
        if found is None:
            return None
        if not found.used and time.monotonic() - found.issued > self.lifetime_s:
            del self._tokens[token]
            return None
        return found

    def valid(self, token: str) -> bool:
        """Whether ``token`` was issued here and is still usable (for anything)."""
        return self._live(token) is not None

    def account(self, token: str, use: bool = False) -> Account | None:
        """The account ``token`` belongs to, or None (unknown, expired or public-only).

        :param use: mark the token used by a private subscription: it no longer expires.
        """
        found = self._live(token)
        if found is None or found.account is None:
            return None
        if use:
            found.used = True
        return found.account
