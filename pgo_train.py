"""The training run of the engine's profile-guided build (``setup.py`` runs it; see there).

``python pgo_train.py PATH/TO/_core.so`` loads that build of ``kbook._core`` (compiled with
``-fprofile-generate``) and feeds it book traffic as Kraken sends it (book frames only: it runs in
the build environment, which has the generators' one dependency, sortedcontainers, but not msgspec):
v2 and v1 L2 books and level3 books at several depths and two pairs' precisions, each a snapshot and
then updates with their checksums verified. The compiler then lays out and inlines the engine for
the paths this traffic takes. Malformed frames and other error paths are not trained: code the run
never reaches is compiled as without a profile (``-fprofile-partial-training``).

The frames come from the package's own stream generators (:mod:`kbook.sim.streams`) with seeds
that neither the benchmarks nor the bundled samples use, so the build is not tuned to the streams
it is measured on. Exits 0 when every stream verified; anything else makes ``setup.py`` fall back
to a plain build.
"""

from __future__ import annotations

import importlib.util
import sys

SEED = 9_176  # not the benchmarks' seed (1), nor the samples'
UPDATES = 2_000
# (symbol, price decimals, quantity decimals): BTC/USD- and ETH/USD-like pairs
PAIRS = (("BTC/USD", 1, 8), ("ETH/USD", 2, 8))


def load_engine(path: str) -> object:
    """Import the extension at ``path`` as ``kbook._core`` (before ``kbook`` is imported)."""
    spec = importlib.util.spec_from_file_location("kbook._core", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kbook._core"] = module
    spec.loader.exec_module(module)
    return module


def _check_valid(book: object, name: str) -> None:
    if book is None or not getattr(book, "valid", False):
        raise RuntimeError(f"training stream {name}: the book is missing or invalid")


def train(updates: int = UPDATES) -> int:
    """Feed every training stream (``updates`` updates each) through a fresh feed; return the
    checksums verified. A stream whose book ends invalid or disagrees with a checksum raises."""
    from kbook._core import Feed
    from kbook.sim.streams import BookStream, Level3Stream

    verified = 0
    for i, (symbol, pp, qp) in enumerate(PAIRS):
        mid = 450_000 if pp == 1 else 250_000
        for depth in (10, 100, 1000):
            l3 = Level3Stream(
                symbol,
                depth=depth,
                price_precision=pp,
                qty_precision=qp,
                seed=SEED + i,
                mid_ticks=mid,
            )
            feed = Feed(precisions={symbol: (pp, qp)})
            feed.set_level3_depth(symbol, depth)  # what the ack says (non-book frames need msgspec)
            for frame in l3.frames(updates + 1):
                feed.process(frame)
            _check_valid(feed.level3_book(symbol), f"level3 {symbol} depth {depth}")
            verified += feed.checksums_verified
        for protocol, depths in (("v2", (10, 100, 1000)), ("v1", (10, 1000))):
            for depth in depths:
                l2 = BookStream(
                    symbol,
                    protocol=protocol,
                    depth=depth,
                    price_precision=pp,
                    qty_precision=qp,
                    seed=SEED + i,
                    mid_ticks=mid,
                )
                if protocol == "v2":
                    feed = Feed(precisions={symbol: (pp, qp)}, default_depth=depth)
                else:
                    feed = Feed()
                for frame in l2.frames(updates + 1):
                    feed.process(frame)
                _check_valid(
                    feed.book(l2.wire_symbol, depth if protocol == "v1" else 0),
                    f"{protocol} {symbol} depth {depth}",
                )
                verified += feed.checksums_verified
    return verified


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python pgo_train.py PATH/TO/_core.so", file=sys.stderr)
        return 2
    load_engine(argv[1])
    verified = train()
    print(f"kbook: profile-guided build trained on {verified:,} verified book messages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
