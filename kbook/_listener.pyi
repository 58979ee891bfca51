"""Type stubs for the picows listener :mod:`kbook._listener` (see its docstrings)."""

from typing import Any

import numpy as np
import numpy.typing as npt
from picows import WSListener

from kbook._core import Feed

class FeedListener(WSListener):
    @property
    def frames(self) -> int: ...
    recorder: Any
    max_message_size: int
    wall_offset_ns: int
    def __init__(self, feed: Feed, owner: Any, ping_message: bytes) -> None: ...
    def record_latency(
        self,
        callback_ring: npt.NDArray[np.int64] | None = None,
        exchange_ring: npt.NDArray[np.int64] | None = None,
        counts: npt.NDArray[np.int64] | None = None,
        every: int = 8,
    ) -> None: ...
    def _handle_bytes(self, data: bytes | bytearray | memoryview) -> None: ...
