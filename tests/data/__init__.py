"""Test data kept inside the repository: Kraken's published example messages.

``VECTORS`` is the one place the tests find them (see ``kraken/README.md`` for where each file
came from and which defects it carries); :func:`vector` reads one by file name.

What it is not: generated data. Seeded streams come from the simulator, recorded captures live
in ``samples/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["VECTORS", "vector"]

#: Kraken's example messages, one JSON file each (``v1_*``, ``v2_*``, ``rest_*``).
VECTORS = Path(__file__).resolve().parent / "kraken"


def vector(name: str) -> dict[str, Any]:
    """Load one vector file by name (``.json`` may be left out).

    :raises FileNotFoundError: for a name that is not in :data:`VECTORS`.
    """
    if not name.endswith(".json"):
        name += ".json"
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data
