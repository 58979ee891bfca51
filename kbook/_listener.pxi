# The picows listener: included into _core.pyx so that a frame goes from picows' read buffer to
# the decoder with no copy and no Python object, and a book callback is one call.
#
# What it is not: connection management (subscriptions, reconnects, pacing) is Python, in
# kbook.client; this class only moves frames and reports what happened to its owner.

from picows.picows cimport WSFrame, WSListener, WSMsgType, WSTransport, WSCloseCode


cdef object _NOT_BOOK = object()   # _process_raw's answer for a frame the scanner hands back


@cython.final
cdef class FeedListener(WSListener):
    """A picows listener that applies book frames to a :class:`Feed` straight from the socket.

    ``owner`` receives everything that is not a verified book update:
    ``_on_connected(transport)``, ``_on_disconnected(transport)``, ``_on_message(obj)`` (every
    non-book message, decoded), ``_on_book_error(exc)`` (a :class:`KBookError` raised while
    applying a frame; the frame was not applied, or the book is now invalid), and
    ``_on_callback_error(book, exc)`` (a book callback raised; the feed goes on).

    A book that was updated is passed to its own ``on_update`` callback when one is set and its
    last message changed one of its ``notify_depth`` best levels.

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
        cdef object result
        if self.recorder is not None:
            self.recorder(PyBytes_FromStringAndSize(<const char*>p, n))
        try:
            result = self.feed._process_raw(p, n)
        except KBookError as exc:
            self._on_error(exc)
            return
        if result is _NOT_BOOK:
            try:
                obj = self.feed._decode_other(PyBytes_FromStringAndSize(<const char*>p, n))
            except KBookError as exc:
                self._on_error(exc)
                return
            self._on_message(obj)
        elif result is not None:
            try:
                _notify(result)
            except Exception as exc:   # a strategy's bug must not take the feed down
                self.owner._on_callback_error(result, exc)


cdef inline int _notify(object book) except -1:
    cdef L2Book l2
    cdef Level3Book l3
    if type(book) is L2Book:
        l2 = <L2Book>book
        if l2.on_update is not None and l2.valid and l2.top_changed < l2.notify_depth:
            l2.on_update(l2)
    else:
        l3 = <Level3Book>book
        if l3.on_update is not None and l3.valid and l3.top_changed < l3.notify_depth:
            l3.on_update(l3)
    return 0
