"""``python -m tests.fuzz --frames N --seed S``: a longer fuzz run for developers."""

from __future__ import annotations

import argparse
import sys

from .harness import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--frames", type=int, default=1_000_000, help="mutants to feed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    parser.add_argument(
        "--per-frame", type=int, default=8, help="mutants made of each unmutated frame"
    )
    args = parser.parse_args(argv)
    stats = run(args.frames, seed=args.seed, per_frame=args.per_frame)
    print(stats.summary())
    print("mutations:", ", ".join(f"{k} {v}" for k, v in sorted(stats.mutations.items())))
    for failure in stats.failures:
        print("FAIL", failure)
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
