"""Mutators for Kraken WebSocket frames: byte-level damage and structure-aware rewrites.

Byte mutators work on any bytes (bit and byte flips, truncation, splices, invalid UTF-8).
Structural mutators parse a valid JSON frame into a tree that keeps every number's literal text
and every object's member order (so repeated keys survive), rewrite it (interesting numbers,
repeated keys, type swaps, deep nesting, checksum variants, multi-entry merges) and write it
back. Every mutator is a pure function of a :class:`random.Random` and its inputs.

What it is not: a general JSON library; :func:`dump` writes only what :func:`parse` builds.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from typing import Any


class Num(str):
    """A JSON number kept as its literal text."""


class Obj(list[tuple[str, Any]]):
    """A JSON object as its members in order; a key may repeat."""


def parse(frame: bytes) -> Any:
    """The tree of a valid JSON frame (numbers as :class:`Num`, objects as :class:`Obj`)."""
    return json.loads(
        frame, object_pairs_hook=Obj, parse_float=Num, parse_int=Num, parse_constant=Num
    )


def dump(node: Any) -> bytes:
    """Write a tree back to bytes, numbers exactly as their literal text."""
    parts: list[str] = []
    _dump(node, parts)
    return "".join(parts).encode("utf-8", "surrogatepass")


def _dump(node: Any, out: list[str]) -> None:
    if isinstance(node, Num):
        out.append(str(node))
    elif isinstance(node, str):
        out.append(json.dumps(node, ensure_ascii=False))
    elif isinstance(node, Obj):
        out.append("{")
        for i, (key, value) in enumerate(node):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _dump(value, out)
        out.append("}")
    elif isinstance(node, list):
        out.append("[")
        for i, value in enumerate(node):
            if i:
                out.append(",")
            _dump(value, out)
        out.append("]")
    elif node is True:
        out.append("true")
    elif node is False:
        out.append("false")
    elif node is None:
        out.append("null")
    else:
        out.append(json.dumps(node))


# -- byte mutators ---------------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\x00",
    b"\\ud800",
    b"\\u00",
]


def bit_flip(rng: random.Random, frame: bytes, _corpus: list[bytes]) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def byte_flip(rng: random.Random, frame: bytes, _corpus: list[bytes]) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.choice(
                [rng.randrange(256), ord(rng.choice('{}[]",:0123456789.-eE '))]
            )
    return bytes(data)


def truncate(rng: random.Random, frame: bytes, _corpus: list[bytes]) -> bytes:
    return frame[: rng.randrange(len(frame) + 1)]


def splice(rng: random.Random, frame: bytes, corpus: list[bytes]) -> bytes:
    other = rng.choice(corpus)
    a, b = sorted(rng.randrange(len(frame) + 1) for _ in range(2))
    c, d = sorted(rng.randrange(len(other) + 1) for _ in range(2))
    return frame[:a] + other[c:d] + frame[b:]


def invalid_utf8(rng: random.Random, frame: bytes, _corpus: list[bytes]) -> bytes:
    quotes = [i for i, c in enumerate(frame) if c == 34]
    at = rng.choice(quotes) + 1 if quotes and rng.random() < 0.8 else rng.randrange(len(frame) + 1)
    return frame[:at] + rng.choice(INVALID_UTF8) + frame[at:]


# -- structural mutators ---------------------------------------------------------------------

INTERESTING = [
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "0.00000001",
    "1e-08",
    "1E-8",
    "1e8",
    "1e+2",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "4294967295",
    "4294967296",
    "-4294967296",
    "99999999999999999999999999999999999999",
    "100000000000000000000000000000000000000",
    "9" * 29,
    "1" + "0" * 29,
    "1e999999999",
    "1e-999999999",
    "0e999999999",
    "1" + "0" * 120,
    "0." + "0" * 120 + "1",
    "45283.5",
    "45283.50000000000000000001",
    "1.5e-1",
    "123456789012345678",
    "1234567890123456789",
    "0.1e1",
    "10e-1",
    "1e18",
    "1e17",
    "340282366920938463463374607431768211456",
]
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    "",
    "x",
    "1.0",
    "-1",
    "1e5",
    " 1",
    "NaN",
    [],
    [[]],
    Obj(),
    Obj([("price", Num("1"))]),
    Num("1"),
    Num("-1"),
    "\u0000",
    "a" * 300,
]


def _nodes(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, node); a path step is a list index or an object member index."""
    out = [(path, node)]
    if isinstance(node, Obj):
        for i, (_, value) in enumerate(node):
            out += _nodes(value, (*path, i))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _nodes(value, (*path, i))
    return out


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for step in path[:-1]:
        parent = parent[step][1] if isinstance(parent, Obj) else parent[step]
    last = path[-1]
    if isinstance(parent, Obj):
        parent[last] = (parent[last][0], value)
    else:
        parent[last] = value
    return root


def _objects(tree: Any) -> list[tuple[tuple[Any, ...], Obj]]:
    return [(p, n) for p, n in _nodes(tree) if isinstance(n, Obj) and n]


def interesting_number(rng: random.Random, tree: Any, _corpus: list[Any]) -> Any:
    nums = [p for p, n in _nodes(tree) if isinstance(n, Num)]
    texts = [
        p
        for p, n in _nodes(tree)
        if isinstance(n, str) and not isinstance(n, Num) and n[:1].isdigit()
    ]
    candidates = nums + texts
    if not candidates:
        return tree
    path = rng.choice(candidates)
    value = rng.choice(INTERESTING)
    return _set(tree, path, Num(value) if path in nums or rng.random() < 0.3 else value)


def repeated_key(rng: random.Random, tree: Any, corpus: list[Any]) -> Any:
    objects = _objects(tree)
    if not objects:
        return tree
    _, obj = rng.choice(objects)
    i = rng.randrange(len(obj))
    key, value = obj[i]
    choice = rng.random()
    if choice < 0.4:
        new = copy.deepcopy(value)  # the same member twice
    elif choice < 0.7:
        new = _empty_like(value)  # a later, emptier member
    else:
        donor = [n for _, n in _nodes(rng.choice(corpus)) if type(n) is type(value)]
        new = copy.deepcopy(rng.choice(donor)) if donor else value
    obj.insert(rng.randint(i + 1, len(obj)), (key, new))
    return tree


def _empty_like(value: Any) -> Any:
    if isinstance(value, Obj):
        return Obj()
    if isinstance(value, list):
        return []
    return value


def type_swap(rng: random.Random, tree: Any, _corpus: list[Any]) -> Any:
    nodes = _nodes(tree)
    path, _ = rng.choice(nodes)
    return _set(tree, path, copy.deepcopy(rng.choice(ODD_VALUES)))


def deep_nesting(rng: random.Random, tree: Any, _corpus: list[Any]) -> Any:
    depth = rng.choice([10, 60, 63, 64, 65, 66, 130])  # past the engine's 64 levels
    inner: Any = Num("1")
    for k in range(depth):
        inner = [inner] if k % 2 else Obj([("x", inner)])
    objects = _objects(tree)
    if objects and rng.random() < 0.7:
        _, obj = rng.choice(objects)
        obj.insert(rng.randrange(len(obj) + 1), ("zz", inner))
        return tree
    path, _ = rng.choice(_nodes(tree))
    return _set(tree, path, inner)


def checksum_variant(rng: random.Random, tree: Any, _corpus: list[Any]) -> Any:
    spots = [
        (obj, i)
        for _, obj in _objects(tree)
        for i, (k, _) in enumerate(obj)
        if k in ("checksum", "c")
    ]
    variants: list[Any] = [
        Num("0"),
        Num("4294967295"),
        Num("4294967296"),
        Num("-1"),
        Num("1e3"),
        Num("1.5"),
        Num("4294967296e0"),
        "123",
        "0x10",
        None,
        True,
        Num("99999999999999999999"),
    ]
    if not spots:
        objects = _objects(tree)
        if objects:
            _, obj = rng.choice(objects)
            obj.append((rng.choice(["checksum", "c"]), rng.choice(variants)))
        return tree
    obj, i = rng.choice(spots)
    key, value = obj[i]
    if (
        isinstance(value, (Num, str))
        and str(value).isdigit()
        and len(value) < 40
        and rng.random() < 0.5
    ):
        new: Any = Num(str(int(value) + rng.choice([1, -1, 2**32, -(2**32)])))
    elif rng.random() < 0.2:
        del obj[i]
        return tree
    else:
        new = rng.choice(variants)
    obj[i] = (key, new)
    return tree


def multi_entry_merge(rng: random.Random, tree: Any, corpus: list[Any]) -> Any:
    """Merge book entries: v2 ``data`` arrays of two frames, or v1 payload objects."""
    if isinstance(tree, Obj):
        data = [i for i, (k, v) in enumerate(tree) if k == "data" and isinstance(v, list)]
        donors = [d for d in corpus if isinstance(d, Obj)]
        if data and donors:
            i = rng.choice(data)
            donor = rng.choice(donors)
            extra = [v for k, v in donor if k == "data" and isinstance(v, list)]
            entries = list(tree[i][1])
            if extra and extra[0]:
                entries += copy.deepcopy(extra[0])
            if entries and rng.random() < 0.5:
                entries.append(copy.deepcopy(entries[0]))  # the same symbol twice in a frame
            if rng.random() < 0.3:
                rng.shuffle(entries)
            tree[i] = ("data", entries)
        return tree
    if isinstance(tree, list) and len(tree) >= 4:
        payloads = [v for v in tree if isinstance(v, Obj)]
        donors = [v for d in corpus if isinstance(d, list) for v in d if isinstance(v, Obj)]
        if donors and rng.random() < 0.6:
            tree.insert(rng.randint(1, len(tree) - 2), copy.deepcopy(rng.choice(donors)))
        elif payloads:
            tree.insert(1, copy.deepcopy(payloads[0]))
    return tree


Bytes = Callable[[random.Random, bytes, list[bytes]], bytes]
Tree = Callable[[random.Random, Any, list[Any]], Any]

BYTE_MUTATORS: dict[str, Bytes] = {
    "bit_flip": bit_flip,
    "byte_flip": byte_flip,
    "truncate": truncate,
    "splice": splice,
    "invalid_utf8": invalid_utf8,
}
TREE_MUTATORS: dict[str, Tree] = {
    "interesting_number": interesting_number,
    "repeated_key": repeated_key,
    "type_swap": type_swap,
    "deep_nesting": deep_nesting,
    "checksum_variant": checksum_variant,
    "multi_entry_merge": multi_entry_merge,
}


def mutate(
    rng: random.Random, frame: bytes, corpus: list[bytes], trees: list[Any], counts: dict[str, int]
) -> bytes:
    """One mutant of ``frame``: 1-3 structural and/or byte mutations (``counts`` tallies them)."""
    out = frame
    if rng.random() < 0.65:
        try:
            tree = parse(frame)
            for _ in range(rng.randint(1, 2)):
                name = rng.choice(list(TREE_MUTATORS))
                counts[name] = counts.get(name, 0) + 1
                tree = TREE_MUTATORS[name](rng, tree, trees)
            out = dump(tree)
        except RecursionError:  # deep nestings stacked: Python's own limit, not a finding
            out = frame
    if out is frame or rng.random() < 0.3:
        name = rng.choice(list(BYTE_MUTATORS))
        counts[name] = counts.get(name, 0) + 1
        out = BYTE_MUTATORS[name](rng, out, corpus)
    return out
