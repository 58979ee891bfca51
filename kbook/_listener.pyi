"""Type stubs for the picows listener :mod:`kbook._listener` (see its docstrings)."""

from typing import Any

from picows import WSListener

from kbook._core import Feed

class FeedListener(WSListener):
    @property
    def frames(self) -> int: ...
    recorder: Any
    max_message_size: int
    def __init__(self, feed: Feed, owner: Any, ping_message: bytes) -> None: ...
