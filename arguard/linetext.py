"""Turning raw bytes into a line of text: bad input is repaired and counted, never fatal."""

from __future__ import annotations

from dataclasses import dataclass


#: what an empty line may hold (the same whichever way a line is decoded)
ASCII_SPACE = " \t\r\x0b\x0c"


@dataclass
class TextCounters:
    """Every line read counts in `lines`, whatever it held; the others count kinds."""

    lines: int = 0
    empty: int = 0
    cut: int = 0
    invalid_utf8: int = 0
    nul: int = 0


def to_text(raw: bytes, max_bytes: int, counters: TextCounters) -> str | None:
    """Decode one line (without its newline); None for an empty line.

    Lines longer than `max_bytes` are cut; invalid UTF-8 becomes U+FFFD; NUL bytes become
    spaces (they would end the string in C tools and hide what follows).
    """
    counters.lines += 1
    if len(raw) > max_bytes:
        raw = raw[:max_bytes]
        counters.cut += 1
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if not raw.strip(ASCII_SPACE.encode()):
        counters.empty += 1
        return None
    if b"\0" in raw:
        counters.nul += 1
        raw = raw.replace(b"\0", b" ")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        counters.invalid_utf8 += 1
        return raw.decode("utf-8", errors="replace")


def iter_raw_lines(stream, max_bytes: int, chunk_size: int = 1 << 20):
    """Yield the lines of a binary stream without their newlines, never holding more than
    `max_bytes` of one line: the rest of an over-long line is dropped (the caller's
    to_text() sees a line of exactly max_bytes + 1 bytes and counts it as cut)."""
    pending = b""
    skipping = False
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                break
            if skipping:
                skipping = False
            else:
                piece = chunk[start:newline]
                yield pending + piece if pending else piece
            pending = b""
            start = newline + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > max_bytes:
                yield pending[: max_bytes + 1]
                pending = b""
                skipping = True
    if pending and not skipping:
        yield pending


def iter_text_lines(stream, max_bytes: int, counters: TextCounters,
                    chunk_size: int = 1 << 20):
    """Yield the non-empty lines of a binary stream as text, counting what was repaired.

    Clean input (valid UTF-8, no NUL, no CR) is decoded a whole chunk at a time, which is
    several times cheaper than line by line; anything else goes through to_text() per line.
    """
    pending = b""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        last = data.rfind(b"\n")
        if last < 0 or len(data) - last > max_bytes + 1:
            # no complete line, or an over-long tail: let the careful reader handle it
            pending = b""
            yield from _careful(iter_raw_lines(_Once(data, stream), max_bytes), max_bytes,
                                counters)
            return
        pending = data[last + 1:]
        block = data[:last]
        text = None
        if b"\0" not in block and b"\r" not in block:
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            yield from _careful(block.split(b"\n"), max_bytes, counters)
            continue
        for line in text.split("\n"):
            if len(line) * 4 > max_bytes and len(line.encode("utf-8")) > max_bytes:
                yield from _careful([line.encode("utf-8")], max_bytes, counters)
                continue
            counters.lines += 1
            if not line.strip(ASCII_SPACE):
                counters.empty += 1
                continue
            yield line
    if pending:
        yield from _careful([pending], max_bytes, counters)


def _careful(raw_lines, max_bytes: int, counters: TextCounters):
    for raw in raw_lines:
        text = to_text(raw, max_bytes, counters)
        if text is not None:
            yield text


class _Once:
    """A stream that first returns `head`, then continues with `rest`."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def read(self, size: int) -> bytes:
        if self.head:
            head, self.head = self.head, b""
            return head
        return self.rest.read(size)
