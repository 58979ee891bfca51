"""The bounded fuzz smoke run CI does: 100,000 seeded mutants, every invariant held.

See ``tests/fuzz/README.md`` for the invariants and for longer runs
(``python -m tests.fuzz --frames N --seed S``).
"""

from __future__ import annotations

from .harness import run

SMOKE_MUTANTS = 100_000


def test_fuzz_smoke_100k_mutants_only_typed_errors_and_no_divergence() -> None:
    stats = run(SMOKE_MUTANTS, seed=20261204)
    assert stats.failures == [], "\n".join(stats.failures[:20])
    assert stats.mutants >= SMOKE_MUTANTS
    # every kind of outcome was exercised: refusals, applied frames, reference comparisons
    assert stats.accepted > 0 and stats.differential > 0 and stats.raised.get("DecodeError")
    assert all(
        stats.mutations.get(name)
        for name in (
            "bit_flip",
            "byte_flip",
            "truncate",
            "splice",
            "invalid_utf8",
            "interesting_number",
            "repeated_key",
            "type_swap",
            "deep_nesting",
            "checksum_variant",
            "multi_entry_merge",
        )
    )
