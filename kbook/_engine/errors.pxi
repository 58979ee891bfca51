# The engine's typed errors, all under KBookError. Python classes: the public names are
# re-exported by kbook; the engine raises them, the listener and the client catch them.


class KBookError(Exception):
    """Base class of every error kbook raises."""


class DecodeError(KBookError, ValueError):
    """A frame is not valid JSON, or not a valid message of the kind it claims to be.

    The books a frame addresses are left exactly as they were, so a dropped book frame means
    those books missed an update. ``channel`` (``"book"``, ``"level3"`` or None when the frame
    could not be attributed) and ``symbols`` say which: every symbol the frame named, also in
    entries after the one that failed (``symbol`` is the first of them). ``may_affect_books``
    is False when the frame certainly was not a book or level3 message (it named another
    channel, or has no book marker at all), so no book missed anything.
    """

    channel = None
    symbol = None
    symbols = ()
    may_affect_books = True


class NumberError(DecodeError):
    """A price or quantity that the book cannot hold exactly.

    Raised for negative values, values with more decimals than the pair's precision,
    non-numeric values and values out of range. Nothing is rounded.
    """

    def __init__(self, symbol, text, reason, channel=None):
        self.symbol = symbol
        self.text = text
        self.reason = reason
        self.channel = channel
        super().__init__(f"{symbol}: {reason}: {text!r}")


class UnknownPrecision(KBookError):
    """A v2 book arrived for a symbol whose price/qty precision is not known.

    Kraken's v2 checksum needs the pair's ``price_precision`` and ``qty_precision``: subscribe
    to the ``instrument`` channel first, or give them explicitly.
    """

    def __init__(self, symbol):
        self.symbol = symbol
        super().__init__(
            f"{symbol}: price/qty precision unknown (subscribe to 'instrument' or set it)")


class ChecksumMismatch(KBookError):
    """The book disagrees with the exchange's checksum; it stays invalid until a new snapshot.

    :ivar symbol: the book's symbol
    :ivar expected: the checksum the exchange sent
    :ivar computed: the CRC32 of the local book
    :ivar checksum_input: the exact string the local CRC32 was computed over
    """

    def __init__(self, symbol, expected, computed, checksum_input):
        self.symbol = symbol
        self.expected = expected
        self.computed = computed
        self.checksum_input = checksum_input
        super().__init__(f"{symbol}: checksum mismatch: expected {expected}, computed {computed}")


class BookIntegrityError(KBookError):
    """A book broke an invariant that a verified exchange state cannot break (e.g. crossed)."""

    def __init__(self, symbol, reason):
        self.symbol = symbol
        self.reason = reason
        super().__init__(f"{symbol}: {reason}")
