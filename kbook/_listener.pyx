"""The picows listener: frames go from picows' read buffer to the engine with no copy and no
Python object, and a book callback is one call.

Its own extension module, so that ``import kbook`` does not import picows: it cimports the
engine's types through ``kbook/_core.pxd`` and calls their C methods directly. What it is not:
connection management (subscriptions, reconnects, pacing) is Python, in :mod:`kbook.client`;
this class only moves frames and reports what happened to its owner.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint64_t
from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from kbook._core cimport FRAME_OTHER, BookBase, Feed, _now_ns

from kbook._core import DecodeError, KBookError, UnknownPrecision


@cython.final
cdef class FeedListener(WSListener):
    """A picows listener that applies book frames to a :class:`Feed` straight from the socket.

    ``owner`` receives everything that is not a verified book update:
    ``_on_connected(transport)``, ``_on_disconnected(transport)``, ``_on_message(obj)`` (every
    non-book message, decoded), ``_on_book_error(exc)`` (a :class:`KBookError` raised while
    applying a frame, once per failed book of the frame; the frame was not applied, or those
    books are now invalid; a failure of the owner's own message handling arrives here too, as a
    :class:`DecodeError` that affects no book), ``_on_callback_error(book, exc)`` (a book
    callback raised; the feed goes on) and ``_on_internal_error(exc)`` (the owner's own error
    handler raised). No exception ever propagates to picows.

    Every book a frame updated (a v2 frame can carry several) is stamped with the receive time
    (``received_ns``) and passed to its own ``on_update`` callback when one is set, the book is
    valid, and the message changed one of its ``notify_depth`` best levels.

    A message reassembled from fragments may hold at most :attr:`max_message_size` bytes
    (10 MiB, picows' default ``max_frame_size``, so a fragmented message gets the same limit as
    a single frame): past it the listener closes with 1009 (message too big) and disconnects,
    and the owner's reconnect policy takes over.

    .. DANGER:: the frame payload is only valid during :meth:`on_ws_frame`; nothing here keeps it.
    """

    cdef Feed feed
    cdef object owner
    cdef object _on_message
    cdef object _on_error
    cdef bytes _ping
    cdef bytearray _fragments
    cdef bint _fragmented
    cdef readonly uint64_t frames
    cdef public Py_ssize_t max_message_size   # bytes of one reassembled message, at most
    cdef public object recorder     # called with each complete message's bytes (recording)

    def __init__(self, Feed feed, owner, bytes ping_message):
        self.feed = feed
        self.owner = owner
        self._on_message = owner._on_message
        self._on_error = owner._on_book_error
        self._ping = ping_message
        self._fragments = bytearray()
        self._fragmented = False
        self.max_message_size = 10 * 1024 * 1024

    cpdef on_ws_connected(self, WSTransport transport):
        self.owner._on_connected(transport)

    cpdef on_ws_disconnected(self, WSTransport transport):
        self.owner._on_disconnected(transport)

    cpdef send_user_specific_ping(self, WSTransport transport):
        # Kraken's liveness rule is about its application ping, not WebSocket PING frames
        transport.send(WSMsgType.TEXT, self._ping)

    cpdef is_user_specific_pong(self, WSFrame frame):
        return False   # the JSON pong arrives as a message; the owner reports it

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType kind = frame.msg_type
        self.frames += 1
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            if not frame.fin:
                self._fragmented = True
                self._fragments = bytearray()   # a fresh buffer: a past outsized one is freed
                if frame.payload_size > self.max_message_size:
                    self._too_big(transport)
                    return
                self._fragments += frame.get_payload_as_memoryview()
                return
            self._handle(<const uint8_t*>frame.payload_ptr, frame.payload_size)
        elif kind == WSMsgType.CONTINUATION:
            if not self._fragmented:
                return
            if len(self._fragments) + frame.payload_size > self.max_message_size:
                self._too_big(transport)
                return
            self._fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                self._fragmented = False
                data = bytes(self._fragments)
                self._fragments = bytearray()
                self._handle(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        elif kind == WSMsgType.CLOSE:
            # picows' core API leaves the closing handshake to the listener
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    cdef _too_big(self, WSTransport transport):
        """A fragmented message outgrew max_message_size: drop it, close 1009, disconnect."""
        self._fragmented = False
        self._fragments = bytearray()
        transport.send_close(WSCloseCode.MESSAGE_TOO_BIG, b"message too big")
        transport.disconnect()

    cdef _handle(self, const uint8_t* p, Py_ssize_t n):
        # Nothing raised here may reach picows: a frame that cannot be handled is reported to
        # the owner as a typed error, and the connection goes on.
        cdef object result
        if self.recorder is not None:
            try:
                self.recorder(PyBytes_FromStringAndSize(<const char*>p, n))
            except Exception as exc:
                self._fail(exc, "recorder")
        try:
            result = self.feed._process_raw(p, n)
        except KBookError as exc:
            self._report(exc)
            if not isinstance(exc, (DecodeError, UnknownPrecision)):
                # a checksum or integrity failure: the frame's other books were applied
                self._notify_all(self.feed._frame_many, None)
            return
        except Exception as exc:   # an engine bug: no book of this frame can be trusted
            self._fail(exc, "engine")
            return
        if self.feed._frame_kind == FRAME_OTHER:
            try:
                obj = self.feed._decode_other(PyBytes_FromStringAndSize(<const char*>p, n))
            except KBookError as exc:
                self._report(exc)
                return
            except Exception as exc:
                self._fail(exc, "decoder")
                return
            try:
                self._on_message(obj)
            except Exception as exc:   # a message the typed layer could not read
                self._fail(exc, "message")
        else:
            self._notify_all(self.feed._frame_many, result)

    cdef _report(self, exc):
        try:
            self._on_error(exc)
            for other in getattr(exc, "also", ()):
                self._on_error(other)
        except Exception as bug:
            self.owner._on_internal_error(bug)

    cdef _fail(self, exc, str where):
        """A failure that is not the frame's fault alone: the owner decides what it costs."""
        err = DecodeError(f"{where} failed on a frame: {exc!r}")
        err.__cause__ = exc
        if where in ("message", "recorder"):
            err.may_affect_books = False
        self._report(err)

    cdef _notify_all(self, tuple many, object result):
        cdef int64_t now = _now_ns()
        if many is None:
            if result is not None:
                self._notify_one(result, now)
            return
        for book in many:
            self._notify_one(book, now)

    cdef inline _notify_one(self, object book, int64_t now):
        try:
            (<BookBase>book)._notify(now)
        except Exception as exc:   # a strategy's bug must not take the feed down
            try:
                self.owner._on_callback_error(book, exc)
            except Exception as bug:
                self.owner._on_internal_error(bug)
