"""The hand-written core-NATS protocol without a server: the parser against what a server sends,
cut at any byte, and against garbage; URL handling and the secrets in it.

What it is not: a test against ``nats-server`` (tests/integration/test_bus_corenats.py runs
one, with nats-py on the other end).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbook.bus.corenats import (
    MAX_CONTROL_LINE,
    CoreNatsError,
    Endpoint,
    Parser,
    endpoints,
    redact,
    secrets,
)

subjects = st.lists(
    st.text("abcxyzABC0189_-/", min_size=1, max_size=8), min_size=1, max_size=4
).map(".".join)
header_text = (
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters=":"),
        min_size=1,
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)
headers = st.dictionaries(header_text, header_text.map(lambda v: v.replace(":", "")), max_size=4)
payloads = st.binary(max_size=300) | st.sampled_from([b"\r\n", b"MSG x 1 3\r\n", b"PING\r\n"])


def _server_msg(subject: str, sid: int, hdrs: dict[str, str], payload: bytes, reply: str) -> bytes:
    """``MSG``/``HMSG`` as nats-server writes them."""
    r = f" {reply}" if reply else ""
    if not hdrs:
        return f"MSG {subject} {sid}{r} {len(payload)}\r\n".encode() + payload + b"\r\n"
    block = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode()
    size = len(block) + len(payload)
    return f"HMSG {subject} {sid}{r} {len(block)} {size}\r\n".encode() + block + payload + b"\r\n"


events = st.one_of(
    st.tuples(
        st.just("msg"),
        subjects,
        st.integers(1, 10**6),
        headers,
        payloads,
        st.sampled_from(["", "_INBOX.x"]),
    ),
    st.tuples(st.sampled_from(["PING", "PONG", "+OK"])),
    st.tuples(st.just("INFO"), st.just('{"server_id":"x","max_payload":1048576}')),
    st.tuples(st.just("-ERR"), st.just("'Slow Consumer'")),
)


def _encode(event: tuple[Any, ...]) -> tuple[bytes, tuple[Any, ...]]:
    if event[0] == "msg":
        _, subject, sid, hdrs, payload, reply = event
        # a header name ends at its first colon, and both sides are trimmed
        want = {k.strip(): v.strip() for k, v in hdrs.items()}
        return _server_msg(subject, sid, hdrs, payload, reply), (subject, sid, want, payload)
    if len(event) == 1:
        return f"{event[0]}\r\n".encode(), (event[0], "")
    return f"{event[0]} {event[1]}\r\n".encode(), (event[0], event[1])


@given(st.lists(events, max_size=12), st.data())
def test_parser_reads_every_message_whatever_the_cuts(evs: list[Any], data: st.DataObject) -> None:
    wire = b""
    want = []
    for ev in evs:
        raw, expected = _encode(ev)
        wire += raw
        want.append(expected)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    got: list[tuple[Any, ...]] = []
    parser = Parser(lambda *m: got.append(m), lambda *o: got.append(o))
    last = 0
    for cut in [*cuts, len(wire)]:
        parser.feed(wire[last:cut])
        last = cut
    assert got == want


@given(st.lists(events, max_size=6), st.binary(max_size=300))
def test_parser_delivers_everything_before_garbage_then_raises_its_own_error(
    evs: list[Any], junk: bytes
) -> None:
    encoded = [_encode(ev) for ev in evs]
    got: list[tuple[Any, ...]] = []
    parser = Parser(lambda *m: got.append(m), lambda *o: got.append(o))
    with contextlib.suppress(CoreNatsError):  # any other exception fails the test
        parser.feed(b"".join(raw for raw, _ in encoded) + junk)
    assert got[: len(encoded)] == [want for _, want in encoded]


@pytest.mark.parametrize(
    "wire",
    [
        b"MSG a 1 x\r\n",  # size not a number
        b"MSG a 1\r\n",  # too few fields
        b"HMSG a 1 9 4\r\nNATS/1.0\r\n\r\nxx\r\n",  # header block larger than the message
        b"MSG a 1 2\r\nabcd\r\n",  # payload not followed by CRLF
        b"HMSG a 1 6 8\r\nHTTP/1\r\nxx\r\n",  # not a NATS header block
        b"HMSG a 1 15 15\r\nNATS/1.0\r\nX\r\n\r\n\r\n",  # a header without a colon
        b"FOO bar\r\n",  # unknown operation
        b"PING extra\r\n",
        b"MSG a 1 -1\r\n",
    ],
)
def test_parser_malformed_lines_are_protocol_errors(wire: bytes) -> None:
    got: list[Any] = []
    with pytest.raises(CoreNatsError):
        Parser(lambda *m: got.append(m), lambda *o: got.append(o)).feed(wire)
    assert got == []


def test_parser_bounds_a_control_line_that_never_ends() -> None:
    parser = Parser(lambda *m: None, lambda *o: None)
    parser.feed(b"INFO " + b"x" * (MAX_CONTROL_LINE // 2))
    with pytest.raises(CoreNatsError, match="too long"):
        parser.feed(b"x" * MAX_CONTROL_LINE)


def test_parser_refuses_a_message_larger_than_it_accepts() -> None:
    parser = Parser(lambda *m: None, lambda *o: None, max_payload=10)
    with pytest.raises(CoreNatsError, match="impossible"):
        parser.feed(b"MSG a 1 11\r\n")


def test_endpoints_and_secrets_of_urls() -> None:
    assert endpoints("127.0.0.1:4333") == [Endpoint("127.0.0.1", 4333)]
    [e] = endpoints("nats://kb:pw-s3cr.w0rd@h:1") or []
    assert (e.user, e.password, e.token) == ("kb", "pw-s3cr.w0rd", None)
    assert "w0rd" not in repr(e)
    [t] = endpoints("nats://s3cr3t@h") or []
    assert (t.token, t.port) == ("s3cr3t", 4222) and "s3cr3t" not in repr(t)
    for url in ("tls://h:1", "nats://h:1/x", "nats://h:1?x=1", "ws://h", "nats://h:port"):
        assert endpoints(url) is None, url
    url = "nats://kb:pw-s3cr.w0rd@h:1,tls://tok@h2"
    assert secrets(url) == ["pw-s3cr.w0rd", "tok"]
    shown = redact(url)
    assert shown == "nats://***@h:1,tls://***@h2"
    assert not any(s in shown for s in secrets(url))
