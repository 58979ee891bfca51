"""``kbook watch``: live books in the terminal (ladder, trades, ticker, state, latency), then a
summary.

The venue is a URL, the embedded simulator (``--sim``, in-process on an ephemeral loopback port)
or a bus (``--bus nats://...``, through :class:`kbook.bus.BusClient`). On a terminal the screen is
drawn by ``rich``: one panel per symbol in a grid that fits the terminal, lines cropped to its
width (never wrapped), a status line and the keys (``q`` quits, ``p`` pauses, ``+``/``-`` change
the depth shown). When stdout is not a terminal it prints a one-line summary per symbol every
``every`` seconds instead.

What it is not: a trading screen. Nothing here sends orders; the screen reads books the client
keeps verified and never changes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from kbook._core import ALLOWED_DEPTHS, L2Book, Level3Book
from kbook.bus.corenats import redact
from kbook.cli._common import (
    add_connection_options,
    add_logging_args,
    connection_kwargs,
    open_venue,
    reconnects,
    setup_logging,
    within,
)
from kbook.client import ClientEvent
from kbook.client.latency import LatencyStats
from kbook.errors import KBookError

__all__ = ["WatchResult", "WatchState", "add_parser", "cmd_watch", "render_lines", "watch"]

#: depths ``+``/``-`` step through on the screen
SHOWN_DEPTHS = (3, 5, 10, 15, 20, 25, 50)


@dataclass
class WatchResult:
    """The summary :func:`watch` prints at the end (all watched symbols together)."""

    symbol: str
    seconds: float = 0.0
    messages: int = 0
    checksums_verified: int = 0
    checksum_mismatches: int = 0
    resyncs: int = 0
    reconnects: int = 0
    valid: bool = False
    live: bool = False
    status: str | None = None
    symbols: list[str] = field(default_factory=list)


@dataclass
class WatchState:
    """Everything the screen shows, updated by callbacks and read by :func:`render_lines`."""

    books: list[L2Book | Level3Book]
    levels: int = 10
    paused: bool = False
    live: bool = True
    status: str | None = None
    resyncs: int = 0
    reconnects: int = 0
    rate: float = 0.0
    resyncing: set[str] = field(default_factory=set)
    trades: dict[str, deque[Any]] = field(default_factory=dict)
    tickers: dict[str, Any] = field(default_factory=dict)
    exchange: LatencyStats = field(default_factory=LatencyStats)
    callback: LatencyStats = field(default_factory=LatencyStats)
    screen: LatencyStats = field(default_factory=LatencyStats)
    trades_available: bool = True
    # per book: {(side, price): qty} of the last drawn frame, to colour what changed
    drawn: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)
    # level3: when this screen first saw each order id (its age is measured from then)
    first_seen: dict[str, float] = field(default_factory=dict)

    def book_state(self, book: L2Book | Level3Book) -> str:
        """``valid``, ``resyncing``, ``stale`` (waiting for a snapshot) or ``disconnected``."""
        if not self.live:
            return "disconnected"
        if book.symbol in self.resyncing:
            return "resyncing"
        return "valid" if book.valid else "stale"


_STATE_STYLE = {
    "valid": "bold black on green",
    "resyncing": "bold black on yellow",
    "stale": "bold white on dark_orange3",
    "disconnected": "bold white on red",
}


def _fit(text: Any, width: int) -> Any:
    """``text`` (a rich Text) cut or padded to exactly ``width`` cells."""
    text.truncate(width, overflow="crop", pad=True)
    return text


def _bar(fraction: float, width: int) -> str:
    cells = max(0.0, min(1.0, fraction)) * width
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def _age(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds / 60:.0f}m"


def _book_panel(
    state: WatchState, book: L2Book | Level3Book, width: int, height: int, now: float
) -> list[Any]:
    """The lines of one symbol's panel, each exactly ``width`` cells."""
    from rich.text import Text

    level3 = isinstance(book, Level3Book)
    lines: list[Any] = []
    st = state.book_state(book)
    head = Text()
    head.append(f" {book.symbol} ", style="bold")
    head.append(f" {st.upper()} ", style=_STATE_STYLE[st])
    bid, ask = book.bids(1), book.asks(1)
    if bid and ask:
        spread = ask[0][0] - bid[0][0]
        mid = (ask[0][0] + bid[0][0]) / 2
        bps = spread / mid * 1e4 if mid else 0.0
        pp = book.price_precision
        head.append(f"  mid {mid / 10**pp:.{pp + 1}f}")
        head.append(f"  spread {book.price_text(spread)} ({bps:.2f} bps)")
    head.append(f"  {'L3 ' if level3 else ''}depth {book.depth}")
    lines.append(_fit(head, width))
    ticker = state.tickers.get(book.symbol)
    if ticker is not None:
        tk = Text(
            f" last {ticker.last}  24h vol {ticker.volume}  low {ticker.low}  high {ticker.high}",
            style="dim",
        )
        if getattr(ticker, "change_pct", None) is not None:
            tk.append(
                f"  {ticker.change_pct:+}%", style="green" if ticker.change_pct >= 0 else "red"
            )
        lines.append(_fit(tk, width))

    # the trades tape takes the right side when there is room, else the last trade gets a line
    tape_w = 38 if width >= 90 and state.trades_available else 0
    recent = state.trades.get(book.symbol)
    if not tape_w and recent:
        trade = recent[-1]
        tl = Text(" last trade ", style="dim")
        tl.append(
            f"{trade.side} {trade.price} x {trade.qty}",
            style="green" if trade.side == "buy" else "red",
        )
        tl.append(f" {str(trade.timestamp)[11:19]}", style="dim")
        lines.append(_fit(tl, width))
    ladder_w = width - tape_w - (1 if tape_w else 0)
    queue_rows = 3 if level3 else 0
    rows = max(0, height - len(lines) - 2 - queue_rows)  # -2: column titles and the spread
    per_side = max(0, min(state.levels, rows // 2))
    asks = book.asks(per_side)
    bids = book.bids(per_side)
    prev = state.drawn.get(book.symbol, {})
    seen: dict[tuple[str, int], int] = {}
    cum_max = max(sum(lv[1] for lv in asks), sum(lv[1] for lv in bids), 1)
    pw = max(len(book.price_text(lv[0])) for lv in (asks + bids)) if asks or bids else 10
    qw = max([10, *(len(book.qty_text(lv[1])) for lv in asks + bids), len(book.qty_text(cum_max))])
    cnt_w = 5 if level3 else 0
    bar_w = max(0, ladder_w - pw - 2 * qw - cnt_w - 6)
    title = Text(
        f" {'price':>{pw}} {'size':>{qw}} {'cum':>{qw}}"
        + (f" {'#':>{cnt_w - 1}}" if level3 else ""),
        style="dim",
    )
    ladder: list[Any] = [_fit(title, ladder_w)]

    def level_line(side: str, level: tuple[int, ...], cum: int) -> Any:
        price, qty = level[0], level[1]
        seen[(side, price)] = qty
        colour = "red" if side == "ask" else "green"
        old = prev.get((side, price))
        line = Text(" ")
        line.append(f"{book.price_text(price):>{pw}} ", style=colour)
        changed = old is None or old != qty
        line.append(
            f"{book.qty_text(qty):>{qw}}",
            style=f"bold {colour} reverse" if changed and prev else "",
        )
        line.append(f" {book.qty_text(cum):>{qw}}", style="dim")
        if level3:
            line.append(f" {level[2]:>{cnt_w - 1}}")
        line.append(" " + _bar(cum / cum_max, bar_w), style=colour)
        return _fit(line, ladder_w)

    cums = list(np.cumsum([lv[1] for lv in asks], dtype=object)) if asks else []
    for lv, cum in reversed(list(zip(asks, cums, strict=True))):
        ladder.append(level_line("ask", lv, cum))
    for _ in range(per_side - len(asks)):
        ladder.insert(1, _fit(Text(""), ladder_w))
    if bid and ask:
        sp = Text(f" {'':>{pw}} spread {book.price_text(ask[0][0] - bid[0][0])}", style="yellow")
    else:
        sp = Text(" (empty book)", style="dim")
    ladder.append(_fit(sp, ladder_w))
    cums = list(np.cumsum([lv[1] for lv in bids], dtype=object)) if bids else []
    for lv, cum in zip(bids, cums, strict=True):
        ladder.append(level_line("bid", lv, cum))
    state.drawn[book.symbol] = seen

    if level3 and isinstance(book, Level3Book):
        for side in ("bid", "ask"):
            q = Text(f" {side} queue:", style="green" if side == "bid" else "red")
            try:
                orders = book.level_orders(side, 0)
            except IndexError:
                orders = []
            for oid, lots in orders[:8]:
                first = state.first_seen.setdefault(oid, now)
                q.append(f" {oid[-8:]} {book.qty_text(lots)} ({_age(now - first)})")
            if len(orders) > 8:
                q.append(f" +{len(orders) - 8}")
            ladder.append(_fit(q, ladder_w))
        ladder.append(
            _fit(Text(" ages: since this screen first saw the order", style="dim"), ladder_w)
        )

    tape: list[Any] = []
    if tape_w:
        tape.append(_fit(Text(" trades", style="dim"), tape_w))
        for trade in reversed(state.trades.get(book.symbol, ())):
            colour = "green" if trade.side == "buy" else "red"
            clock = str(trade.timestamp)[11:19]
            t = Text(f" {clock} ")
            t.append(f"{trade.side:<4} {trade.price:>10} {trade.qty}", style=colour)
            tape.append(_fit(t, tape_w))
    for i in range(max(len(ladder), len(tape))):
        left = ladder[i] if i < len(ladder) else _fit(Text(""), ladder_w)
        if tape_w:
            right = tape[i] if i < len(tape) else _fit(Text(""), tape_w)
            left = Text.assemble(left, Text("│", style="dim"), right)
        lines.append(left)
    while len(lines) < height:
        lines.append(_fit(Text(""), width))
    return [_fit(line, width) for line in lines[:height]]


def render_lines(state: WatchState, width: int, height: int, now: float | None = None) -> list[Any]:
    """The whole screen: exactly ``height`` rich Text lines of exactly ``width`` cells.

    Symbols share a grid (as many columns as fit 60 cells each, rows to hold them all); the last
    three lines are the status line, the latency line and the keys (with the venue's status).
    """
    from rich.text import Text

    now = time.monotonic() if now is None else now
    width, height = max(20, width), max(5, height)
    n = max(1, len(state.books))
    cols = max(1, min(n, width // 60))
    rows = math.ceil(n / cols)
    panel_h = max(1, (height - 3) // rows)
    col_w = (width - (cols - 1)) // cols
    lines: list[Any] = []
    for r in range(rows):
        panels = [
            _book_panel(state, book, col_w, panel_h, now)
            for book in state.books[r * cols : (r + 1) * cols]
        ]
        for i in range(panel_h):
            row = Text()
            for c, panel in enumerate(panels):
                if c:
                    row.append("┃", style="dim")
                row.append_text(panel[i])
            lines.append(_fit(row, width))
    while len(lines) < height - 3:
        lines.append(_fit(Text(""), width))
    lines = lines[: height - 3]
    mismatches = sum(b.checksum_mismatches for b in state.books)
    status = Text()
    status.append(
        " CONNECTED " if state.live else " DISCONNECTED ",
        style="bold black on green" if state.live else "bold white on red",
    )
    verified = sum(b.checksums_verified for b in state.books)
    status.append(f" {state.rate:,.0f} msg/s  verified {verified}  mismatches ")
    status.append(str(mismatches), style="bold red" if mismatches else "")
    status.append(f"  resyncs {state.resyncs}  reconnects {state.reconnects}")
    latency = Text(
        f" p50/p99 exch→recv {_pair(state.exchange)}"
        f"  recv→screen {_pair(state.screen)}  recv→cb {_pair(state.callback)}"
    )
    keys = Text(f" q quit  p pause  +/- depth shown ({state.levels})", style="dim")
    if state.paused:
        keys.append("   PAUSED", style="bold yellow")
    if state.status:
        keys.append(
            f"   venue {state.status}", style="bold" if state.status == "online" else "bold yellow"
        )
    return [*lines, _fit(status, width), _fit(latency, width), _fit(keys, width)]


def _short(ns: float) -> str:
    """Three significant digits at most, no space: ``344ms``, ``17.4ms``, ``11.3µs``."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            value = ns / scale
            return f"{value:.0f}{unit}" if abs(value) >= 100 else f"{value:.1f}{unit}"
    return f"{ns:.0f}ns"


def _pair(stats: LatencyStats) -> str:
    if stats.p50 is None or stats.p99 is None:
        return "-"
    return f"{_short(stats.p50)}/{_short(stats.p99)}"


def summary_line(state: WatchState, book: L2Book | Level3Book) -> str:
    """One plain line about one book (what a non-terminal stdout gets periodically)."""
    bid, ask = book.bids(1), book.asks(1)
    top = "empty"
    if bid and ask:
        spread = ask[0][0] - bid[0][0]
        bps = spread / ((ask[0][0] + bid[0][0]) / 2) * 1e4
        top = (
            f"bid {book.price_text(bid[0][0])} x {book.qty_text(bid[0][1])} "
            f"ask {book.price_text(ask[0][0])} x {book.qty_text(ask[0][1])} "
            f"spread {book.price_text(spread)} ({bps:.2f} bps)"
        )
    return (
        f"{time.strftime('%H:%M:%S')} {book.symbol} {state.book_state(book)} {top} "
        f"{state.rate:.0f} msg/s verified {book.checksums_verified} "
        f"mismatches {book.checksum_mismatches} resyncs {state.resyncs} "
        f"reconnects {state.reconnects} exch->recv {state.exchange.text()} "
        f"recv->cb {state.callback.text()}"
    )


def make_client(
    url: str,
    protocol: str,
    token: str | None,
    on_event: Callable[[ClientEvent], Any],
    bus: str | None = None,
    venue: str = "kraken",
    connection: dict[str, Any] | None = None,
) -> Any:
    """The client ``watch`` reads from: a bus consumer of ``venue``'s relayed books for
    ``bus``, else a :class:`~kbook.client.Client` of ``url`` (``connection``: its TLS and proxy
    keywords)."""
    if bus is not None:
        from kbook.bus import BusClient

        return BusClient(bus, venue=venue, protocol=protocol, on_event=on_event)
    from kbook.client import Client

    return Client(
        url,
        protocol=protocol,  # type: ignore[arg-type]
        token=token,
        on_event=on_event,
        level3_url=url,
        **(connection or {}),
    )


async def watch(
    symbol: str | list[str],
    *,
    url: str = "sim",
    protocol: str = "v2",
    depth: int = 10,
    levels: int = 10,
    duration: float | None = None,
    refresh: float = 0.25,
    level3: bool = False,
    token: str | None = None,
    seed: int = 1,
    rate: float | None = 50.0,
    out: IO[str] = sys.stdout,
    live: bool | None = None,
    bus: str | None = None,
    venue: str = "kraken",
    every: float = 5.0,
    connection: dict[str, Any] | None = None,
) -> WatchResult:
    """Show books live until ``duration`` (or ``q``, or interrupted); return the summary.

    The whole run, connecting and subscribing included, ends by ``duration``. The summary's
    ``valid`` is every book's state at the end: a book whose connection was lost is invalid.
    Without a terminal (``live`` False) a summary line per symbol is written every ``every``
    seconds, and once more at the end.

    :raises ConnectFailed: the venue could not be reached
    :raises ClientError: the subscription was not confirmed in time
    """
    symbols = [symbol] if isinstance(symbol, str) else list(symbol)
    result = WatchResult(",".join(symbols), symbols=symbols)
    live = out.isatty() if live is None else live
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    state = WatchState([], levels=levels)

    def on_event(event: ClientEvent) -> None:
        if event.kind == "resync_started":
            result.resyncs += 1
            state.resyncs = result.resyncs
            if event.symbol:
                state.resyncing.add(event.symbol)
        elif event.kind == "resync_done" and event.symbol:
            state.resyncing.discard(event.symbol)
        elif event.kind == "status":
            result.status = state.status = event.detail

    def on_message(msg: Any) -> None:
        name = type(msg).__name__
        if name == "Trade":
            state.trades.setdefault(msg.symbol, deque(maxlen=64)).append(msg)
        elif name == "Ticker":
            state.tickers[msg.symbol] = msg

    async with open_venue(url if bus is None else "bus", protocol, seed, rate, token) as (
        endpoint,
        tok,
    ):
        client = make_client(endpoint, protocol, tok, on_event, bus, venue, connection)
        try:
            await within(
                deadline, f"connecting to {redact(bus) if bus else endpoint}", client.start()
            )
            if level3:
                books = await within(
                    deadline,
                    f"subscribing to {','.join(symbols)}",
                    client.subscribe_level3(symbols, depth),
                )
            else:
                books = await within(
                    deadline,
                    f"subscribing to {','.join(symbols)}",
                    client.subscribe_book(symbols, depth),
                )
            state.books = list(books)
            try:
                for channel in ("trade", "ticker"):
                    await within(
                        deadline,
                        f"subscribing to {channel}",
                        client.subscribe(channel, symbols, on_message=on_message),
                    )
            except (KBookError, OSError, TypeError, NotImplementedError):
                state.trades_available = False  # a venue (or bus) without them: no tape
            await _watch_loop(client, state, result, start, duration, refresh, out, live, every)
        finally:
            await client.close()
    return result


def _live_of(client: Any, books: list[Any]) -> bool:
    conns = getattr(client, "connections", None)
    if conns is None:
        return all(b.valid for b in books)  # a bus client: its books say it
    mine = [c for c in conns if any(b in c.feed.books.values() for b in books)]
    return all(c.connected.is_set() for c in mine)


def _terminal_size(out: IO[str], console: Any) -> tuple[int, int]:
    """The terminal's size now, asked of the terminal itself: COLUMNS and LINES inherited from
    a parent process would be stale after a resize."""
    try:
        size = os.get_terminal_size(out.fileno())
        return size.columns, size.lines
    except (OSError, ValueError, AttributeError):
        return console.size.width, console.size.height


@contextlib.contextmanager
def _keys(enabled: bool) -> Iterator[asyncio.Queue[str]]:
    """Single key presses from stdin (cbreak mode) while the screen is up."""
    keys: asyncio.Queue[str] = asyncio.Queue()
    if not enabled or not sys.stdin.isatty():
        yield keys
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        for ch in os.read(fd, 32).decode(errors="ignore"):
            keys.put_nowait(ch)

    tty.setcbreak(fd)
    loop.add_reader(fd, readable)
    try:
        yield keys
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _watch_loop(
    client: Any,
    state: WatchState,
    result: WatchResult,
    start: float,
    duration: float | None,
    refresh: float,
    out: IO[str],
    live: bool,
    every: float,
) -> None:
    books = state.books
    screen_ns: deque[int] = deque(maxlen=4096)
    last_count, last_time = sum(b.messages for b in books), time.monotonic()
    last_line = start
    paused_drawn = False
    console = live_screen = None
    if live:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out, highlight=False)
        live_screen = Live(
            console=console, screen=True, auto_refresh=False, vertical_overflow="crop"
        )
    with contextlib.ExitStack() as stack, _keys(live) as keys:
        if live_screen is not None:
            stack.enter_context(live_screen)
        try:
            while duration is None or time.monotonic() - start < duration:
                await asyncio.sleep(refresh)
                quit_now = False
                while not keys.empty():
                    key = keys.get_nowait()
                    if key in "qQ":
                        quit_now = True
                    elif key in "pP":
                        state.paused = not state.paused
                    elif key in "+=":
                        state.levels = next(
                            (d for d in SHOWN_DEPTHS if d > state.levels), state.levels
                        )
                    elif key in "-_":
                        state.levels = next(
                            (d for d in reversed(SHOWN_DEPTHS) if d < state.levels), state.levels
                        )
                if quit_now:
                    break
                now = time.monotonic()
                count = sum(b.messages for b in books)
                state.rate = (count - last_count) / max(now - last_time, 1e-9)
                last_count, last_time = count, now
                state.live = _live_of(client, books)
                result.reconnects = state.reconnects = (
                    reconnects(client) if hasattr(client, "connections") else 0
                )
                if hasattr(client, "latency"):
                    report = client.latency()
                    state.exchange, state.callback = (
                        report.exchange_to_receive,
                        report.receive_to_callback,
                    )
                now_ns = time.monotonic_ns()
                screen_ns.extend(now_ns - b.received_ns for b in books if b.received_ns)
                if screen_ns:
                    state.screen = LatencyStats.of(np.fromiter(screen_ns, np.int64), len(screen_ns))
                if state.paused and paused_drawn:
                    continue  # the screen stays as it was, PAUSED showing
                paused_drawn = state.paused
                if live_screen is not None and console is not None:
                    from rich.console import Group

                    width, height = _terminal_size(out, console)
                    console.size = (width, height)
                    live_screen.update(Group(*render_lines(state, width, height)), refresh=True)
                elif now - last_line >= every:
                    last_line = now
                    for book in books:
                        out.write(summary_line(state, book) + "\n")
                    out.flush()
        except asyncio.CancelledError:
            pass
    result.seconds = time.monotonic() - start
    result.messages = sum(b.messages for b in books)
    result.checksums_verified = sum(b.checksums_verified for b in books)
    result.checksum_mismatches = sum(b.checksum_mismatches for b in books)
    result.live = state.live = _live_of(client, books)
    result.valid = all(b.valid for b in books) and result.live
    if hasattr(client, "connections"):
        result.reconnects = reconnects(client)
    if not live:
        for book in books:
            out.write(summary_line(state, book) + "\n")
        out.flush()


def cmd_watch(args: argparse.Namespace) -> int:
    """Run ``kbook watch``: live books, then a summary."""
    setup_logging(args)
    url = "sim" if args.sim else (args.url or None)
    if url is None:
        from kbook.client import ENDPOINTS

        url = ENDPOINTS[(args.protocol, "level3" if args.level3 else "public", False)]
    symbols = [s.upper() for s in args.symbols]
    try:
        result = asyncio.run(
            watch(
                symbols,
                url=url,
                protocol=args.protocol,
                depth=args.depth,
                levels=args.levels,
                duration=args.duration,
                level3=args.level3,
                token=args.token,
                seed=args.seed,
                rate=args.rate,
                bus=args.bus,
                venue=args.venue,
                every=args.every,
                connection=connection_kwargs(args),
            )
        )
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # the reader went away (| head): main() ends quietly
    except (OSError, KBookError) as exc:
        print(f"kbook watch: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.symbol}: {result.messages} messages in {result.seconds:.1f} s, "
        f"{result.checksums_verified} checksums verified, "
        f"{result.checksum_mismatches} mismatches, {result.resyncs} resyncs, "
        f"{result.reconnects} reconnects, book{'s' if len(result.symbols) > 1 else ''} "
        f"{'valid' if result.valid else 'INVALID'}"
        f"{'' if result.live else ' (disconnected)'}"
    )
    return 0 if result.valid and result.checksums_verified > 0 else 1


_EXAMPLES = """examples:
  kbook watch BTC/USD --sim                  the embedded simulator, one book
  kbook watch BTC/USD ETH/USD SOL/USD --sim  several books in a grid
  kbook watch BTC/USD --sim --level3         order counts and the queue at the touch
  kbook watch BTC/USD                        Kraken's public endpoint
  kbook watch BTC/USD --bus nats://127.0.0.1:4222   books relayed over NATS
  kbook watch BTC/USD --sim | head           periodic one-line summaries

keys: q quits, p pauses, + and - change the depth shown.
"""


def add_parser(commands: Any) -> None:
    """Add ``kbook watch`` to the ``kbook`` subcommands."""
    wat = commands.add_parser(
        "watch",
        help="live terminal view of books, trades and latency",
        description="Live order books in the terminal: ladder with cumulative size and depth "
        "bars, spread and mid, trades tape and ticker, the book's state, "
        "checksums, resyncs, reconnects and latency percentiles. Without a "
        "terminal, periodic one-line summaries.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wat.add_argument("symbols", metavar="SYMBOL", nargs="+", help="e.g. BTC/USD (upper-cased)")
    wat.add_argument(
        "--sim", action="store_true", help="start the embedded simulator in-process and watch it"
    )
    wat.add_argument("--url", help="WebSocket URL (default: Kraken's public endpoint)")
    wat.add_argument("--bus", metavar="NATS_URL", help="read books relayed over NATS")
    wat.add_argument(
        "--venue",
        default="kraken",
        help="the relay's venue, with --bus (default kraken; a relay of the simulator uses sim)",
    )
    wat.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    wat.add_argument(
        "--depth",
        type=int,
        default=10,
        choices=ALLOWED_DEPTHS,
        help="subscribed depth: one of %(choices)s (level3: 10, 100, 1000)",
    )
    wat.add_argument("--levels", type=int, default=10, help="levels shown per side at first")
    wat.add_argument("--level3", action="store_true", help="watch the level3 book")
    wat.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    wat.add_argument(
        "--every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between summary lines when stdout is not a terminal",
    )
    wat.add_argument("--token", help="WebSocket token for level3")
    wat.add_argument("--seed", type=int, default=1, help="simulator seed (--sim)")
    wat.add_argument(
        "--rate", type=float, default=50.0, help="simulator messages per second per pair (--sim)"
    )
    add_logging_args(wat)
    add_connection_options(wat)
    wat.set_defaults(func=cmd_watch)
