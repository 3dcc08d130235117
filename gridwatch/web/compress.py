"""``/metrics`` in gzip, without compressing the grids' series on every scrape.

The page is three parts: a few dozen live lines about gridwatch itself, the grids' series (most
of it, rendered once per change) and, for OpenMetrics, ``# EOF``. The middle part is compressed
once per change into raw deflate blocks that end on a byte boundary (a sync flush) and do not
refer back to anything before them; each scrape compresses only the small parts around it and
joins the three into one gzip stream (a single member, which every client decodes). The CRC of
the whole is the live part's CRC carried across the middle by an operator computed with it
(zlib's ``crc32_combine``), so not a byte of the middle is read again per scrape either.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 6
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, deflate, no name, no time, unknown OS
_POLY = 0xEDB88320  # CRC-32, reversed


def _times(matrix: Sequence[int], vector: int) -> int:
    """A 32×32 matrix over GF(2) (its columns as ints) times a vector."""
    out, i = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _square(matrix: Sequence[int]) -> list[int]:
    return [_times(matrix, column) for column in matrix]


def crc32_shift(length: int) -> tuple[int, ...]:
    """The operator ``S`` with ``crc32(a + b) == apply(S, crc32(a)) ^ crc32(b)`` for any ``b`` of
    ``length`` bytes: zlib's ``crc32_combine``, its steps gathered into one matrix."""
    odd = [_POLY] + [1 << n for n in range(31)]  # one zero bit
    even = _square(odd)  # two
    odd = _square(even)  # four
    shift = [1 << n for n in range(32)]  # the identity
    while length:
        even = _square(odd)  # one zero byte, then 4, 16… in turn with ``odd``
        if length & 1:
            shift = [_times(even, column) for column in shift]
        length >>= 1
        if not length:
            break
        odd = _square(even)
        if length & 1:
            shift = [_times(odd, column) for column in shift]
        length >>= 1
    return tuple(shift)


def crc32_combine(crc_a: int, crc_b: int, shift: Sequence[int]) -> int:
    """``crc32(a + b)`` from ``crc32(a)``, ``crc32(b)`` and ``crc32_shift(len(b))``."""
    return _times(shift, crc_a) ^ crc_b


@dataclass(frozen=True)
class Deflated:
    """A part compressed to join others in one gzip stream."""

    data: bytes  # raw deflate blocks, not final, ending on a byte boundary
    crc: int
    size: int
    shift: tuple[int, ...]  # crc32_shift(size)


def deflate(body: bytes) -> Deflated:
    """``body`` compressed on its own, to sit between other parts of a stream (once per change)."""
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return Deflated(c.compress(body) + c.flush(zlib.Z_SYNC_FLUSH), zlib.crc32(body), len(body), crc32_shift(len(body)))


def gzip_chunks(head: bytes, middle: Deflated, tail: bytes) -> list[bytes]:
    """One gzip stream of ``head + middle + tail``; ``middle`` as :func:`deflate` made it."""
    first = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    last = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    crc = zlib.crc32(tail, crc32_combine(zlib.crc32(head), middle.crc, middle.shift))
    size = (len(head) + middle.size + len(tail)) & 0xFFFFFFFF
    return [
        HEADER + first.compress(head) + first.flush(zlib.Z_SYNC_FLUSH),
        middle.data,
        last.compress(tail) + last.flush(zlib.Z_FINISH) + struct.pack("<II", crc, size),
    ]


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` takes gzip: named (or ``*``) with a q-value above zero."""
    named: float | None = None
    anything: float | None = None
    for item in accept_encoding.split(","):
        coding, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            named = q
        elif coding == "*":
            anything = q
    chosen = named if named is not None else anything
    return chosen is not None and chosen > 0
