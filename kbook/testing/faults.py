"""Fault scripts: when each fault of the simulator's menu happens, written down once.

A :class:`FaultScript` is an ordered list of :class:`FaultStep` objects, each a fault of
:data:`kbook.sim.FAULTS` with its arguments and a trigger: a time after the script starts
(``at_seconds``) or the N-th channel message the simulator sends (``at_message``, counted over
every connection and channel, from 1). Steps with the same trigger fire in the order written.
The same script runs on an in-process :class:`~kbook.sim.Simulator` (:meth:`FaultScript.start`)
and on ``kbook sim --faults FILE`` (JSON, or TOML for a ``.toml`` file).

"At message 500 corrupt BTC/USD's checksum, at 2 s drop the connection, then refuse 3
reconnects":

>>> script = (FaultScript()
...           .at_message(500, "corrupt_checksum", symbol="BTC/USD")
...           .at(2.0, "drop")
...           .at(2.0, "refuse_upgrades", count=3))
>>> for step in script.to_dict()["faults"]:
...     print(step)
{'at_message': 500, 'fault': 'corrupt_checksum', 'symbol': 'BTC/USD'}
{'at_seconds': 2.0, 'fault': 'drop'}
{'at_seconds': 2.0, 'fault': 'refuse_upgrades', 'count': 3}
>>> FaultScript.from_json(script.to_json()) == script
True

The same in TOML::

    [[faults]]
    at_message = 500
    fault = "corrupt_checksum"
    symbol = "BTC/USD"

    [[faults]]
    at_seconds = 2
    fault = "drop"

    [[faults]]
    at_seconds = 2
    fault = "refuse_upgrades"
    count = 3

Arguments are those of the :class:`kbook.sim.faults.Faults` method of the same name (``symbol``,
``channel``, ``count``, ``seconds``, ``status``, ``code``, ``kind``, ``conn``), and are checked
when the script is built, not when it fires. A fault that finds nothing to act on when it fires
(no connection open) is logged as an ``error`` record in ``sim.fault_log``, as the CLI's
``--fault`` schedule does.

What it is not: random. A script is the same faults at the same points every run; vary it with
Hypothesis (``st.builds``) when you want it to vary. Message triggers count the messages the
simulator's markets publish; frames a ``Simulator.replay`` stream writes in batches are not counted.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbook.sim.faults import FAULTS, Faults

if TYPE_CHECKING:
    from kbook.sim.server import Simulator

__all__ = ["FaultScript", "FaultStep", "RunningScript"]

_TRIGGERS = ("at_seconds", "at_message")


def _accepted(name: str) -> set[str]:
    """The keyword arguments of fault ``name``'s method (``conn`` included)."""
    method = getattr(Faults, name)
    params = set(inspect.signature(method).parameters) - {"self"}
    return params | {"conn"} if name != "refuse_upgrades" else params


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One fault and when it happens; exactly one of ``at_seconds`` and ``at_message`` is set.

    :param fault: a name of :data:`kbook.sim.FAULTS`.
    :param at_seconds: seconds after the script starts.
    :param at_message: fire when the simulator sends its N-th channel message (from 1), before
        that message goes out, so a message fault armed here can hit that very message.
    :param args: the fault's keyword arguments.
    :raises ValueError: for an unknown fault or argument, or not exactly one trigger.
    """

    fault: str
    at_seconds: float | None = None
    at_message: int | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; faults are {', '.join(FAULTS)}")
        if (self.at_seconds is None) == (self.at_message is None):
            raise ValueError(f"{self.fault}: give exactly one of at_seconds and at_message")
        if self.at_seconds is not None and self.at_seconds < 0:
            raise ValueError(f"{self.fault}: at_seconds must be >= 0")
        if self.at_message is not None and self.at_message < 1:
            raise ValueError(f"{self.fault}: at_message must be >= 1")
        unknown = set(self.args) - _accepted(self.fault)
        if unknown:
            raise ValueError(f"{self.fault} takes no argument {', '.join(sorted(unknown))}")
        object.__setattr__(self, "args", dict(self.args))

    def to_dict(self) -> dict[str, Any]:
        """Return the step as the JSON/TOML table it is read from."""
        trigger = (
            {"at_seconds": self.at_seconds}
            if self.at_seconds is not None
            else {"at_message": self.at_message}
        )
        return {**trigger, "fault": self.fault, **self.args}

    def fire(self, faults: Faults) -> None:
        """Inject the fault now (on the simulator's loop)."""
        args = dict(self.args)
        conn = args.pop("conn", None)
        if self.fault == "refuse_upgrades":
            faults.refuse_upgrades(**args)
        else:
            faults.inject(self.fault, conn, **args)


@dataclass(frozen=True, slots=True)
class FaultScript:
    """An ordered, immutable list of :class:`FaultStep`; builders return a new script."""

    steps: tuple[FaultStep, ...] = ()

    def at(self, seconds: float, fault: str, **args: Any) -> FaultScript:
        """Return this script with ``fault`` at ``seconds`` after the start."""
        return FaultScript((*self.steps, FaultStep(fault, at_seconds=float(seconds), args=args)))

    def at_message(self, n: int, fault: str, **args: Any) -> FaultScript:
        """Return this script with ``fault`` when the simulator sends its ``n``-th message."""
        return FaultScript((*self.steps, FaultStep(fault, at_message=n, args=args)))

    # -- reading and writing ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> FaultScript:
        """Read ``{"faults": [{"at_seconds"|"at_message": ..., "fault": ..., ...}, ...]}``.

        :raises ValueError: on a malformed document or step.
        """
        tables = document.get("faults")
        if not isinstance(tables, list) or set(document) - {"faults"}:
            raise ValueError('a fault script is {"faults": [step, ...]} and nothing else')
        steps = []
        for i, table in enumerate(tables):
            if not isinstance(table, dict) or not isinstance(table.get("fault"), str):
                raise ValueError(f"step {i}: a table with a 'fault' name")
            args = {k: v for k, v in table.items() if k not in ("fault", *_TRIGGERS)}
            try:
                steps.append(
                    FaultStep(
                        table["fault"], table.get("at_seconds"), table.get("at_message"), args
                    )
                )
            except (TypeError, ValueError) as exc:
                raise ValueError(f"step {i}: {exc}") from None
        return cls(tuple(steps))

    @classmethod
    def from_json(cls, text: str) -> FaultScript:
        """Read a script from JSON text."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_toml(cls, text: str) -> FaultScript:
        """Read a script from TOML text (``[[faults]]`` tables)."""
        return cls.from_dict(tomllib.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> FaultScript:
        """Read a script file: TOML if its name ends in ``.toml``, JSON otherwise.

        :raises OSError: if the file cannot be read.
        :raises ValueError: if it is not a valid script.
        """
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith(".toml"):
            return cls.from_toml(text)
        return cls.from_json(text)

    def to_dict(self) -> dict[str, Any]:
        """Return the script as the document :meth:`from_dict` reads."""
        return {"faults": [step.to_dict() for step in self.steps]}

    def to_json(self) -> str:
        """Return the script as JSON text."""
        return json.dumps(self.to_dict())

    # -- running ---------------------------------------------------------------------------------

    def start(self, sim: Simulator) -> RunningScript:
        """Start the script on a running simulator; call it on the simulator's event loop.

        :return: the running script, to wait for or cancel (the simulator's exit cancels the
            timers but not a message trigger: cancel it when the script should stop).
        """
        return RunningScript(self, sim)


class RunningScript:
    """A fault script running on one simulator: which steps fired, and a way to stop it."""

    def __init__(self, script: FaultScript, sim: Simulator) -> None:
        self.script = script
        self.sim = sim
        #: Steps that have fired, in order.
        self.fired: list[FaultStep] = []
        self._done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._timers: list[asyncio.TimerHandle] = []
        self._by_message = sorted(
            (s for s in script.steps if s.at_message is not None),
            key=lambda s: s.at_message or 0,
        )
        self._base = sim.messages_delivered
        for step in script.steps:
            if step.at_seconds is not None:
                self._timers.append(self._loop.call_later(step.at_seconds, self._fire, step))
        self._hook: Callable[..., None] | None = None
        if self._by_message:
            self._hook = self._on_message
            sim.delivery_hooks.append(self._hook)
        self._check_done()

    @property
    def done(self) -> bool:
        """Whether every step has fired (or the script was cancelled)."""
        return self._done.is_set()

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until every step has fired.

        :raises TimeoutError: if they have not within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._done.wait()

    def cancel(self) -> None:
        """Forget the steps that have not fired."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._remove_hook()
        self._done.set()

    def _remove_hook(self) -> None:
        if self._hook is not None and self._hook in self.sim.delivery_hooks:
            self.sim.delivery_hooks.remove(self._hook)
        self._hook = None

    def _on_message(self, conn: object, symbol: str | None, channel: str) -> None:
        count = self.sim.messages_delivered - self._base
        while self._by_message and (self._by_message[0].at_message or 0) <= count:
            self._fire(self._by_message.pop(0))
        if not self._by_message:
            self._remove_hook()

    def _fire(self, step: FaultStep) -> None:
        try:
            step.fire(self.sim.faults)
        except (LookupError, ValueError) as exc:
            self.sim.faults.record("error", None, name=step.fault, error=str(exc))
        self.fired.append(step)
        self._check_done()

    def _check_done(self) -> None:
        if len(self.fired) == len(self.script.steps):
            self._remove_hook()
            self._done.set()
