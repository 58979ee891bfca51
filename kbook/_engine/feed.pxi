# The feed: frames in, books updated and verified. It owns the stage, the symbol index that maps
# a frame's symbol bytes to its book without a Python object per message, and the books; it
# resolves each staged message to its book (creating books from snapshots), scales every
# number, then commits, and it learns precisions and depths from instrument messages and
# subscribe acks. The grammars decode; the books apply; this file decides which book.


# --------------------------------------------------------------------------------------------
# The symbol index: frame symbol bytes -> book, without creating a Python object per message.

cdef inline uint64_t _fnv1a(const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>p[i]) * 1099511628211ULL
    return h


cdef class _SymbolIndex:
    def __cinit__(self):
        self.slots = <SymSlot*>PyMem_Malloc(16 * sizeof(SymSlot))
        if self.slots == NULL:
            raise MemoryError()
        memset(self.slots, 0, 16 * sizeof(SymSlot))
        self.mask = 15
        self.count = 0
        self.overflow = {}

    def __dealloc__(self):
        PyMem_Free(self.slots)

    cdef PyObject* get(self, const char* k, Py_ssize_t n) noexcept:
        cdef uint64_t h
        cdef uint32_t i
        cdef SymSlot* s
        if n > KEYCAP:
            o = self.overflow.get(PyBytes_FromStringAndSize(k, n))
            return NULL if o is None else <PyObject*>o
        h = _fnv1a(k, n)
        i = <uint32_t>h & self.mask
        while True:
            s = &self.slots[i]
            if s.obj == NULL:
                return NULL
            if s.h == h and s.n == n and memcmp(s.key, k, n) == 0:
                return s.obj
            i = (i + 1) & self.mask

    cdef int put(self, bytes key, object obj) except -1:
        cdef Py_ssize_t n = len(key)
        cdef uint64_t h
        cdef uint32_t i
        cdef SymSlot* s
        if n > KEYCAP:
            self.overflow[key] = obj
            return 0
        if (self.count + 1) * 2 > self.mask + 1:
            self._grow()
        h = _fnv1a(PyBytes_AS_STRING(key), n)
        i = <uint32_t>h & self.mask
        while True:
            s = &self.slots[i]
            if s.obj == NULL or (s.h == h and s.n == n
                                 and memcmp(s.key, PyBytes_AS_STRING(key), n) == 0):
                if s.obj == NULL:
                    self.count += 1
                s.h = h
                s.n = <int32_t>n
                memcpy(s.key, PyBytes_AS_STRING(key), n)
                s.obj = <PyObject*>obj
                return 0
            i = (i + 1) & self.mask

    cdef int _grow(self) except -1:
        cdef SymSlot* old = self.slots
        cdef uint32_t oldn = self.mask + 1, i, j
        cdef uint32_t newn = oldn * 2
        self.slots = <SymSlot*>PyMem_Malloc(newn * sizeof(SymSlot))
        if self.slots == NULL:
            self.slots = old
            raise MemoryError()
        memset(self.slots, 0, newn * sizeof(SymSlot))
        self.mask = newn - 1
        for i in range(oldn):
            if old[i].obj != NULL:
                j = <uint32_t>old[i].h & self.mask
                while self.slots[j].obj != NULL:
                    j = (j + 1) & self.mask
                self.slots[j] = old[i]
        PyMem_Free(old)
        return 0


# --------------------------------------------------------------------------------------------
# The feed

cdef object _other_decoder = None    # msgspec's decoder, made on the first non-book frame
cdef object _other_error = None      # ... and msgspec.DecodeError


cdef object _decoder():
    """The general decoder of non-book frames: msgspec is imported when first needed, which
    keeps it out of ``import kbook``."""
    global _other_decoder, _other_error
    if _other_decoder is None:
        import msgspec
        _other_error = msgspec.DecodeError
        _other_decoder = msgspec.json.Decoder(float_hook=Decimal)
    return _other_decoder


cdef inline bint _depth_ok(int32_t depth) noexcept nogil:
    return depth == 10 or depth == 25 or depth == 100 or depth == 500 or depth == 1000


@cython.final
cdef class Feed:
    """Decode raw Kraken frames (v2 objects and v1 arrays) into verified L2 books.

    Book frames are scanned straight from the bytes and applied without building a Python
    object per level; every other frame is decoded by msgspec and returned (numbers that are
    not integers become ``Decimal``). The feed learns what books need from the stream itself:
    v2 precisions from ``instrument`` messages, v2 depths from subscribe acks, v1 depths from
    channel names and v1 precisions from the wire strings.

    Repeated keys follow one rule on every path (v2 objects, v1 payload objects, levels and
    orders): the last occurrence of a key in one JSON object wins, as JSON readers do; Kraken's
    separate ask and bid payload objects of one v1 frame both apply. A v1 frame that mixes
    snapshot (``as``/``bs``) and update (``a``/``b``) keys is refused.

    Work per frame is bounded: a book message addressing more than ``4 * depth + 64`` price
    levels on one side, a level3 update of more than ``4 * depth + 1024`` events, or a level3
    snapshot repeating an order id is refused (:class:`DecodeError`, no book changed); number
    literals longer than 100 characters are refused (:class:`NumberError`). Staging memory
    grown by an outsized frame is given back after it.

    :param precisions: ``{symbol: (price_precision, qty_precision)}`` for v2 pairs
    :param default_depth: v2 depth (and level3 depth, when it is 10, 100 or 1000) when no
        subscribe ack was seen; None infers an L2 depth from the snapshot's size and takes
        Kraken's default of 10 for level3
    :param timing: accumulate the time spent inside :meth:`process` in :attr:`engine_ns`
    :param autocreate: a snapshot for a symbol without a book creates its book; when False
        only books made with :meth:`add_book`/:meth:`add_level3_book` are kept, and any other
        book message is an orphan (counted in :attr:`orphan_updates`, ``process`` returns None)
    :param max_books: when set, a snapshot creates a book only while the feed holds fewer books
        than this (explicitly added ones included); beyond it the message is an orphan, as
        with ``autocreate=False``. Explicit :meth:`add_book` calls are never refused.

    >>> feed = Feed(precisions={"BTC/USD": (1, 8)})
    >>> book = feed.process(b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
    ...     b'"bids":[{"price":45283.5,"qty":0.1}],"asks":[{"price":45285.2,"qty":0.001}],'
    ...     b'"checksum":2383917627}]}')
    >>> book.valid, book.best_bid()
    (True, (452835, 10000000))
    """

    def __cinit__(self, precisions=None, default_depth=None, bint timing=False,
                  bint autocreate=True, max_books=None):
        _stage_init(&self._st)
        self._index_v2 = _SymbolIndex()
        self._index_v1 = _SymbolIndex()
        self._index_l3 = _SymbolIndex()
        self._books_l3 = {}
        self._l3_depths = {}
        self._books_v2 = {}
        self._books_v1 = {}
        self._created = []
        self._precisions = {}
        self._depths = {}
        self._instrument_symbols = set()
        self._acked_depths = {}
        self._acked_l3_depths = {}
        if default_depth is not None and default_depth not in ALLOWED_DEPTHS:
            raise ValueError(f"depth must be one of {ALLOWED_DEPTHS}")
        self._default_depth = default_depth
        self._timing = timing
        if max_books is not None and (isinstance(max_books, bool) or not isinstance(max_books, int)
                                      or max_books < 0):
            raise ValueError("max_books must be None or an int >= 0")
        self.autocreate = autocreate
        self.max_books = max_books
        self._last_len = -1
        for symbol, (pp, qp) in (precisions or {}).items():
            self.set_precision(symbol, pp, qp)

    def __dealloc__(self):
        _stage_free(&self._st)

    # -- configuration ---------------------------------------------------------------------

    def set_precision(self, str symbol, int price_precision, int qty_precision):
        """Record a v2 pair's precisions (and apply them to its book if it exists)."""
        if not (0 <= price_precision <= MAX_PRECISION and 0 <= qty_precision <= MAX_PRECISION):
            raise ValueError(f"precision must be within 0..{MAX_PRECISION}")
        self._precisions[symbol] = (price_precision, qty_precision)
        book = self._books_v2.get(symbol)
        if book is not None:
            (<L2Book>book).set_precision(price_precision, qty_precision)
        book = self._books_l3.get(symbol)
        if book is not None:
            (<Level3Book>book).set_precision(price_precision, qty_precision)

    def set_depth(self, str symbol, int depth):
        """Record the subscribed depth of a v2 symbol (as a subscribe ack would)."""
        if depth not in ALLOWED_DEPTHS:
            raise ValueError(f"depth must be one of {ALLOWED_DEPTHS}")
        self._depths[symbol] = depth
        book = self._books_v2.get(symbol)
        if book is not None and (<L2Book>book).depth != depth:
            (<L2Book>book).depth = depth
            (<L2Book>book).clear()

    def level3_book(self, str symbol):
        """The level3 book of ``symbol``, or None."""
        return self._books_l3.get(symbol)

    def book(self, str symbol, int depth=0):
        """The v2 book of ``symbol``, or with ``depth`` the v1 book of channel ``book-<depth>``."""
        if depth:
            return self._books_v1.get(f"book-{depth}|{symbol}")
        return self._books_v2.get(symbol)

    @property
    def books(self):
        """Every book, keyed ``("v2", symbol)``, ``("v1", "book-N|PAIR")`` or ``("l3", symbol)``."""
        out = {("v2", k): v for k, v in self._books_v2.items()}
        out.update({("v1", k): v for k, v in self._books_v1.items()})
        out.update({("l3", k): v for k, v in self._books_l3.items()})
        return out

    def add_book(self, str symbol, int depth=10, price_precision=None, qty_precision=None,
                 str protocol="v2"):
        """Create (or replace) the book of ``symbol``: v2, or v1 channel ``book-<depth>``.

        A v1 book without precisions learns them from its first snapshot's strings.
        """
        if protocol == "v1":
            book = L2Book(symbol, depth, price_precision, qty_precision)
            key = f"book-{depth}|{symbol}"
            self._books_v1[key] = book
            self._index_v1.put(key.encode(), book)
            self._last_len = -1
            return book
        if protocol != "v2":
            raise ValueError("protocol must be 'v2' or 'v1'")
        if price_precision is None and symbol in self._precisions:
            price_precision, qty_precision = self._precisions[symbol]
        book = L2Book(symbol, depth, price_precision, qty_precision)
        self._books_v2[symbol] = book
        self._index_v2.put(symbol.encode(), book)
        self._depths[symbol] = depth
        self._last_len = -1
        return book

    def add_level3_book(self, str symbol, int depth=10, price_precision=None,
                        qty_precision=None):
        """Create (or replace) the level3 book of ``symbol``, as its first snapshot would.

        Precisions default to those known for ``symbol`` (``instrument`` or
        :meth:`set_precision`); without them the book's snapshot raises
        :class:`UnknownPrecision` until they are known.

        :raises ValueError: a depth other than 10, 100 or 1000
        """
        if price_precision is None and symbol in self._precisions:
            price_precision, qty_precision = self._precisions[symbol]
        book = Level3Book(symbol, depth, price_precision, qty_precision)
        self._books_l3[symbol] = book
        self._index_l3.put(symbol.encode(), book)
        self._l3_depths[symbol] = depth
        self._last_len = -1
        return book

    def _staging(self):
        """``(levels, groups, arena bytes)`` the staging areas hold now (for tests)."""
        return self._st.caplv, self._st.capgr, self._st.caparena

    cdef bint _may_create(self):
        """Whether a snapshot for a symbol without a book may create one (see the class)."""
        if not self.autocreate:
            return False
        return self.max_books is None or (len(self._books_v2) + len(self._books_v1)
                                          + len(self._books_l3)) < self.max_books

    def set_level3_depth(self, str symbol, int depth):
        """Record the subscribed level3 depth of ``symbol`` (Kraken's ack does not echo it)."""
        if depth not in (10, 100, 1000):
            raise ValueError("level3 depth must be 10, 100 or 1000")
        self._l3_depths[symbol] = depth
        book = self._books_l3.get(symbol)
        if book is not None and (<Level3Book>book).depth != depth:
            (<Level3Book>book).depth = depth
            (<Level3Book>book).clear()

    # -- processing ------------------------------------------------------------------------

    @cython.binding(False)   # a plain method descriptor: no bound-method layer per call
    def process(self, frame):
        """Decode one frame and apply it.

        :param frame: ``bytes`` or any buffer (e.g. a ``memoryview``) holding one WebSocket
            message. It is only read during the call.
        :return: the :class:`L2Book` a book frame updated (also when the update was dropped
            because the book awaits a snapshot), None for an update of a symbol that has no
            book yet, or the decoded object for any other message
        :raises DecodeError: malformed frame; no book was changed
        :raises UnknownPrecision: a v2 snapshot for a pair without known precisions
        :raises ChecksumMismatch: after applying, a book disagrees with the exchange's checksum
            (the book is invalid until its next snapshot)
        :raises BookIntegrityError: a verified book is crossed (invalid until its next snapshot)
        """
        cdef Py_buffer view
        cdef int64_t t0 = 0
        if self._timing:
            t0 = _now_ns()
        if type(frame) is bytes:
            try:
                return self._process(<const uint8_t*>PyBytes_AS_STRING(frame),
                                     PyBytes_GET_SIZE(frame), frame)
            finally:
                if self._timing:
                    self.engine_ns += _now_ns() - t0
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            return self._process(<const uint8_t*>view.buf, view.len, frame)
        finally:
            PyBuffer_Release(&view)
            if self._timing:
                self.engine_ns += _now_ns() - t0

    cdef object _process(self, const uint8_t* p, Py_ssize_t n, object frame):
        cdef object result = self._process_raw(p, n)
        if self._frame_kind == FRAME_OTHER:
            return self._decode_other(frame)
        return result

    cdef object _process_raw(self, const uint8_t* p, Py_ssize_t n):
        """Apply a book frame and return its book (None: no book for it); for any other frame
        set :attr:`_frame_kind` to FRAME_OTHER and change nothing."""
        cdef Scan sc
        sc.base = p
        sc.end = p + n
        sc.err = NULL
        sc.at = NULL
        self.frames += 1
        _stage_reset(&self._st)
        self._frame_kind = FRAME_OTHER
        if self._frame_many is not None:
            self._frame_many = None
        if self._frame_last is not None:
            self._frame_last = None
        p = _ws(p, sc.end)
        try:
            return self._process_scan(&sc, p)
        finally:
            if _stage_outsized(&self._st):
                _stage_shrink(&self._st)

    cdef object _process_scan(self, Scan* sc, const uint8_t* p):
        try:
            if p < sc.end and p[0] == 123:
                self._frame_kind = _parse_v2(&self._st, sc, p)
            elif p < sc.end and p[0] == 91:
                self._frame_kind = _parse_v1(&self._st, sc, p)
            else:
                raise DecodeError(_describe(sc, p, "expected a JSON object or array"))
            if self._frame_kind == FRAME_BOOK:
                return self._commit(sc)
        except DecodeError as exc:
            self._attribute(exc, sc)
            raise
        return None

    cdef _attribute(self, exc, Scan* sc):
        """Say which books a refused frame concerned (the error path only: may be slow)."""
        cdef Channel channel = <Channel>self._st.channel
        named = ("book" if channel == CHAN_BOOK else "level3" if channel == CHAN_L3 else None)
        if exc.channel is None:
            exc.channel = named
        raw = (<const char*>sc.base)[:sc.end - sc.base]
        symbols = _stage_symbols(&self._st) if named is not None else []
        if raw[:1] != b"[":
            # entries after the failing one were never staged: find every symbol they name
            for m in _SYMBOL_FIELD.finditer(raw):
                name = m.group(1).decode("utf-8", "replace")
                if name not in symbols:
                    symbols.append(name)
        exc.symbols = tuple(symbols)
        if exc.symbol is None and symbols:
            exc.symbol = symbols[0]
        if named is None:
            # a frame that named another channel, or carries no book marker at all, cannot
            # have been a book message; a v1 array cut before its name, or a v2 object cut
            # inside its channel, can
            exc.may_affect_books = not self._st.chan_seen and (
                raw.lstrip()[:1] == b"[" or b'"channel"' in raw or b"book" in raw
                or b"level3" in raw)

    @property
    def learned(self):
        """What the stream itself told this feed, as opposed to the constructor or the setters:
        ``{"instrument": {symbols whose precision an instrument message set}, "book_acks":
        {symbol: depth}, "level3_acks": {symbol: depth}}`` (copies; a later message replaces an
        earlier one's depth).

        >>> feed = Feed()
        >>> _ = feed.process(b'{"method":"subscribe","success":true,'
        ...                  b'"result":{"channel":"book","symbol":"BTC/USD","depth":25}}')
        >>> feed.learned
        {'instrument': set(), 'book_acks': {'BTC/USD': 25}, 'level3_acks': {}}
        """
        return {"instrument": set(self._instrument_symbols),
                "book_acks": dict(self._acked_depths),
                "level3_acks": dict(self._acked_l3_depths)}

    @property
    def frame_books(self):
        """Every book the last book frame addressed (a v2 frame can carry several symbols).

        :meth:`process` returns the last of them; updates of books awaiting a snapshot are
        included (they were dropped), symbols without a book are not.
        """
        if self._frame_many is not None:
            return self._frame_many
        return () if self._frame_last is None else (self._frame_last,)

    cdef object _decode_other(self, object frame):
        decoder = _decoder()
        try:
            obj = decoder.decode(frame)
        except _other_error as exc:
            err = DecodeError(f"malformed frame: {exc}")
            err.may_affect_books = False   # the scanner read it whole: not a book message
            raise err from None
        self.other_messages += 1
        if type(obj) is dict:
            self._learn(obj)
        return obj

    cdef _forget_created(self, Py_ssize_t keep):
        """Drop the books created since ``self._created[keep]`` (their frame was refused)."""
        cdef Py_ssize_t i
        for i in range(len(self._created) - 1, keep - 1, -1):
            kind, key = self._created[i]
            table = self._books_v1 if kind == 1 else (self._books_l3 if kind == 2
                                                      else self._books_v2)
            table.pop(key, None)
        del self._created[keep:]
        self._rebuild_indexes()

    cdef _rebuild_indexes(self):
        self._index_v2 = _SymbolIndex()
        self._index_v1 = _SymbolIndex()
        self._index_l3 = _SymbolIndex()
        for key, book in self._books_v2.items():
            self._index_v2.put(key.encode(), book)
        for key, book in self._books_v1.items():
            self._index_v1.put(key.encode(), book)
        for key, book in self._books_l3.items():
            self._index_l3.put(key.encode(), book)
        self._last_len = -1

    cdef _learn(self, dict msg):
        """Take what books need from non-book messages: precisions and subscribed depths."""
        channel = msg.get("channel")
        if channel == "instrument":
            data = msg.get("data")
            pairs = data.get("pairs") if isinstance(data, dict) else None
            if isinstance(pairs, list):
                for pair in pairs:
                    # an instrument entry the engine cannot use is skipped, never fatal
                    try:
                        pp, qp = pair["price_precision"], pair["qty_precision"]
                        if not (_small_number(pp) and _small_number(qp)):
                            continue    # JSON true, 1e999999999 (int() would not end)...
                        if pp != int(pp) or qp != int(qp):
                            continue    # a fractional precision is no precision
                        self.set_precision(pair["symbol"], int(pp), int(qp))
                        self._instrument_symbols.add(pair["symbol"])
                    except (KeyError, TypeError, ValueError, OverflowError, ArithmeticError):
                        continue
        elif msg.get("method") == "subscribe" and msg.get("success") is True:
            result = msg.get("result")
            if isinstance(result, dict) and result.get("channel") == "book":
                depth = result.get("depth", 10)
                symbol = result.get("symbol")
                if isinstance(symbol, str) and type(depth) is int and depth in ALLOWED_DEPTHS:
                    self.set_depth(symbol, depth)
                    self._acked_depths[symbol] = depth
            elif isinstance(result, dict) and result.get("channel") == "level3":
                depth = result.get("depth", 10)
                symbol = result.get("symbol")
                if isinstance(symbol, str) and type(depth) is int and depth in (10, 100, 1000):
                    self.set_level3_depth(symbol, depth)
                    self._acked_l3_depths[symbol] = depth

    # -- commit ----------------------------------------------------------------------------

    cdef object _resolve_l3(self, Grp* g):
        """Create the level3 book of a snapshot that no book answers yet (None: not allowed)."""
        cdef const char* key = self._st.arena + g.sym_off
        cdef Level3Book book
        if g.kind != MSG_SNAPSHOT or not self._may_create():
            return None
        keyb = PyBytes_FromStringAndSize(key, g.sym_len)
        symbol = keyb.decode("utf-8")
        prec = self._precisions.get(symbol)
        if prec is None:
            raise UnknownPrecision(symbol)
        # an ack's depth, else the owner's default where level3 allows it, else Kraken's 10
        depth = self._l3_depths.get(
            symbol, self._default_depth if self._default_depth in (10, 100, 1000) else 10)
        book = Level3Book(symbol, depth, prec[0], prec[1])
        self._books_l3[symbol] = book
        self._index_l3.put(keyb, book)
        self._created.append((2, symbol))
        return book

    cdef object _resolve(self, Grp* g, bint v1):
        """Find (or, for a snapshot, create) the book a staged message addresses."""
        cdef const char* key = self._st.arena + g.sym_off
        cdef PyObject* found
        cdef L2Book book
        cdef int32_t i, nb = 0, na = 0
        cdef int which = 2 if g.l3 else v1
        if (self._last_len == g.sym_len and self._last_index == which
                and memcmp(self._last_key, key, g.sym_len) == 0):
            found = <PyObject*>self._last_book
        else:
            found = (self._index_l3 if g.l3 else self._index_v1 if v1 else self._index_v2).get(
                key, g.sym_len)
            if found != NULL and g.sym_len <= KEYCAP:
                self._last_book = <object>found
                self._last_index = which
                self._last_len = g.sym_len
                memcpy(self._last_key, key, g.sym_len)
        if g.l3:
            return <object>found if found != NULL else self._resolve_l3(g)
        if found != NULL:
            book = <L2Book>found
            if v1 and g.kind == MSG_SNAPSHOT and book.depth != g.depth:
                book.depth = g.depth
            return book
        if g.kind != MSG_SNAPSHOT or not self._may_create():
            return None
        keyb = PyBytes_FromStringAndSize(key, g.sym_len)
        if v1:
            symbol = keyb[g.name_len + 1:].decode("utf-8")
            book = L2Book(symbol, g.depth)
            self._books_v1[keyb.decode("utf-8")] = book
            self._index_v1.put(keyb, book)
            self._created.append((1, keyb.decode("utf-8")))
            return book
        symbol = keyb.decode("utf-8")
        prec = self._precisions.get(symbol)
        if prec is None:
            raise UnknownPrecision(symbol)
        depth = self._depths.get(symbol, self._default_depth)
        if depth is None:
            for i in range(g.first, g.first + g.count):
                if self._st.lv[i].side == SIDE_BID:
                    nb += 1
                elif self._st.lv[i].side == SIDE_ASK:
                    na += 1
            depth = _infer_depth(max(nb, na))
        book = L2Book(symbol, depth, prec[0], prec[1])
        self._books_v2[symbol] = book
        self._index_v2.put(keyb, book)
        self._created.append((0, symbol))
        return book

    cdef object _commit(self, Scan* sc):
        cdef int32_t gi, i
        cdef int pp, qp
        cdef Grp* g
        cdef L2Book book
        cdef Level3Book l3
        cdef object last = None, target
        cdef Lvl* lv
        cdef bint v1
        cdef ApplyResult code
        cdef list failures = None
        # phase 1: resolve books and scale every number; nothing is applied yet, and books
        # this frame created are dropped again if any of its numbers is refused
        # invariant: _created is empty between frames; it lists the books this frame created
        try:
            for gi in range(self._st.ngr):
                g = &self._st.gr[gi]
                v1 = g.name_len > 0
                g.pp = g.qp = -1
                target = self._resolve(g, v1)
                if target is None:
                    g.book = NULL
                    continue
                g.book = <PyObject*>target
                if g.l3:
                    l3 = <Level3Book>target
                    if g.kind != MSG_SNAPSHOT and not l3.valid:
                        continue
                    if l3.price_precision < 0:
                        raise UnknownPrecision(l3.symbol)
                    for i in range(g.first, g.first + g.count):
                        if (self._st.lv[i].side != SIDE_DEAD and _scale_fast(
                                &self._st.lv[i], l3.price_precision, l3.qty_precision,
                                L3_QTY_DIGITS)):
                            l3._scale_event(&self._st.lv[i], sc.base)   # raises with the details
                        # the apply below looks every id up: its index slots load meanwhile
                        l3._warm(self._st.lv[i].id_hash)
                    _check_l3_message(&self._st.lv[g.first], g.count, self._st.arena, l3.depth,
                                      g.kind == MSG_SNAPSHOT, l3.symbol)
                    continue
                book = <L2Book>target
                if g.kind != MSG_SNAPSHOT and not book.valid:
                    continue
                pp = book.price_precision
                qp = book.qty_precision
                if v1 and (g.kind == MSG_SNAPSHOT or pp < 0):
                    # v1 strings are written at the pair's full precision; every snapshot says
                    # it again (a pair's decimals can change)
                    for i in range(g.first, g.first + g.count):
                        lv = &self._st.lv[i]
                        if lv.side != SIDE_DEAD:
                            pp = min(lv.price.frac, MAX_PRECISION)
                            qp = min(lv.qty.frac, MAX_PRECISION)
                            break
                    if pp < 0:
                        continue        # nothing to scale, nothing learned
                    g.pp = <int8_t>pp
                    g.qp = <int8_t>qp
                elif pp < 0:
                    raise UnknownPrecision(book.symbol)
                for i in range(g.first, g.first + g.count):
                    if self._st.lv[i].side != SIDE_DEAD and _scale_fast(&self._st.lv[i], pp, qp):
                        _scale_staged(&self._st.lv[i], pp, qp, book.symbol, sc.base, None)
                _check_l2_message(&self._st.lv[g.first], g.count, g.depth if v1 else book.depth,
                                  book.symbol)
        except BaseException:
            if self._created:
                self._forget_created(0)
            raise
        if self._created:
            self._created.clear()
        # phase 2: apply
        many = [] if self._st.ngr > 1 else None
        for gi in range(self._st.ngr):
            g = &self._st.gr[gi]
            if g.book == NULL:
                self.orphan_updates += 1
                continue
            target = <object>g.book
            last = target
            if many is not None and target not in many:
                many.append(target)
            self.book_messages += 1
            if g.l3:
                code = (<Level3Book>target)._apply_staged(
                    &self._st.lv[g.first], g.count, self._st.arena, <MsgKind>g.kind, g.checksum)
            else:
                book = <L2Book>target
                if g.pp >= 0 and (g.pp != book.price_precision or g.qp != book.qty_precision):
                    book.set_precision(g.pp, g.qp)
                code = book._apply_staged(&self._st.lv[g.first], g.count, <MsgKind>g.kind,
                                          g.checksum)
            if g.checksum >= 0 and code != APPLY_DROPPED:
                if code == APPLY_MISMATCH:
                    self.checksum_mismatches += 1
                else:
                    self.checksums_verified += 1
            if code == APPLY_MISMATCH or code == APPLY_CROSSED:
                if code == APPLY_CROSSED:
                    self.integrity_errors += 1
                if failures is None:
                    failures = []
                failures.append((target, code, g.checksum))
        self._frame_last = last
        if many is not None:
            self._frame_many = tuple(many)
        if failures is not None:
            # the first failure is raised; the others of the same frame ride along in ``also``
            errors = [_apply_error(t, c, e) for t, c, e in failures]
            errors[0].also = tuple(errors[1:])
            raise errors[0]
        return last


_SYMBOL_FIELD = re.compile(rb'"symbol"\s*:\s*"((?:[^"\\]|\\.){1,100})"')
cdef bint _small_number(object v):
    """An int, or a finite Decimal below 1000 in magnitude: cheap to compare with int(v)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, Decimal) and v.is_finite() and v.adjusted() < 3
