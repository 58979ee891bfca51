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
from libc.string cimport memcmp
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
    # Latency samples (kbook.client.latency), written only while _lat_on: two rings of ns and
    # the count of samples ever written to each (index = count & _lat_mask).
    cdef int64_t[::1] _lat_cb       # receive -> callback
    cdef int64_t[::1] _lat_ex       # exchange timestamp -> receive (v2 book frames)
    cdef int64_t[::1] _lat_n        # [receive->callback count, exchange->receive count]
    cdef int64_t _lat_mask
    cdef bint _lat_on
    cdef uint64_t _lat_tick         # frames seen while recording
    cdef uint64_t _lat_every        # sample one frame in _lat_every + 1 (a power of two - 1)
    cdef bint _lat_now              # the frame being handled is sampled
    cdef int64_t _t_recv            # monotonic ns at which the sampled frame arrived
    cdef public int64_t wall_offset_ns   # CLOCK_REALTIME - CLOCK_MONOTONIC, kept by the owner

    def __init__(self, Feed feed, owner, bytes ping_message):
        self.feed = feed
        self.owner = owner
        self._on_message = owner._on_message
        self._on_error = owner._on_book_error
        self._ping = ping_message
        self._fragments = bytearray()
        self._fragmented = False
        self.max_message_size = 10 * 1024 * 1024

    def record_latency(self, callback_ring=None, exchange_ring=None, counts=None,
                       int every=8):
        """Sample latencies of one frame in ``every`` into the given int64 rings (None: stop).

        ``callback_ring`` gets receive → callback ns of sampled book frames (arrival to the
        moment their books' callbacks start), ``exchange_ring`` exchange → receive ns of sampled
        v2 ``book`` frames (their ``timestamp`` against :attr:`wall_offset_ns` + the arrival
        time); ``counts[0]`` and ``counts[1]`` count the samples ever written to each. Both
        rings have one power-of-two length, and ``every`` is a power of two: a sampled frame
        costs a clock read (tens of ns on a VM) and a short backward scan, so sampling keeps
        the cost per message a few ns.
        """
        if callback_ring is None:
            self._lat_on = self._lat_now = False
            return
        cdef Py_ssize_t size = len(callback_ring)
        if size < 1 or size & (size - 1) or len(exchange_ring) != size or len(counts) < 2:
            raise ValueError("rings of one power-of-two length and two counts expected")
        if every < 1 or every & (every - 1):
            raise ValueError("every must be a power of two")
        self._lat_every = every - 1
        self._lat_cb = callback_ring
        self._lat_ex = exchange_ring
        self._lat_n = counts
        self._lat_mask = size - 1
        self._lat_on = True

    def _handle_bytes(self, data):
        """Handle one complete message as if it had arrived (benchmarks and tests)."""
        cdef bytes b = bytes(data)
        self._handle(<const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

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
        cdef int64_t ex_ns
        if self._lat_on:
            self._lat_tick += 1
            self._lat_now = (self._lat_tick & self._lat_every) == 0
            if self._lat_now:
                self._t_recv = _now_ns()
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
            if self._lat_now:
                ex_ns = _v2_book_time_ns(p, n)
                if ex_ns:
                    self._lat_ex[self._lat_n[1] & self._lat_mask] = (
                        self._t_recv + self.wall_offset_ns - ex_ns)
                    self._lat_n[1] += 1
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
        if self._lat_now:
            self._lat_cb[self._lat_n[0] & self._lat_mask] = now - self._t_recv
            self._lat_n[0] += 1
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


cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    # days since 1970-01-01 of a proleptic Gregorian date (the era arithmetic of H. Hinnant's
    # "chrono-compatible low-level date algorithms")
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int _digits(const uint8_t* p, int count, int64_t* out) noexcept nogil:
    cdef int i
    cdef int64_t v = 0
    for i in range(count):
        if p[i] < 48 or p[i] > 57:
            return -1
        v = v * 10 + (p[i] - 48)
    out[0] = v
    return 0


cdef int64_t _v2_book_time_ns(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Epoch ns of the last ``"timestamp":"YYYY-MM-DDTHH:MM:SS[.f]Z"`` of a v2 ``book`` frame,
    found from the frame's end (Kraken writes it last in each book); 0 when there is none."""
    cdef const uint8_t* end = p + n
    cdef const uint8_t* q = end - 1
    cdef const uint8_t* t
    cdef int64_t y, mo, d, h, mi, s, frac = 0, scale = 1000000000
    if n < 60 or memcmp(p, b'{"channel":"book"', 17) != 0:
        return 0
    # the closing quote of the timestamp is within the last few bytes: `Z"}]}`
    while q > end - 8 and q[0] != 34:
        q -= 1
    if q[0] != 34 or q[-1] != 90:   # '"' after 'Z'
        return 0
    t = q - 1
    while t > q - 40 and t[0] != 34:
        t -= 1
    if t[0] != 34 or memcmp(t - 12, b'"timestamp":', 12) != 0:
        return 0
    t += 1   # YYYY-MM-DDTHH:MM:SS
    if q - t < 20 or (_digits(t, 4, &y) or _digits(t + 5, 2, &mo) or _digits(t + 8, 2, &d)
                      or _digits(t + 11, 2, &h) or _digits(t + 14, 2, &mi)
                      or _digits(t + 17, 2, &s)):
        return 0
    t += 19
    if t[0] == 46:   # '.': up to nine fraction digits
        t += 1
        while t < q - 1 and scale > 1 and 48 <= t[0] <= 57:
            scale //= 10
            frac += (t[0] - 48) * scale
            t += 1
    return ((_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000000000
            + frac)
