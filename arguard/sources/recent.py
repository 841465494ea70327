"""start_at = "recent": a file never seen before is read from the first of its recent lines,
so that an attack already under way when arguard first starts (or starts on a fresh
database) is caught — the failures of the last minutes count.

"Recent" is by the lines' own timestamps: scanning back from the end of the file, reading
stops at the first line older than the window (the longest `timeframe` of the loaded
correlation rules), and at most MAX_BYTES back. Lines without a timestamp are taken along
with the timed lines around them; a file whose lines carry no timestamp at all is started
at its end, as start_at = "end" would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

#: how far back from the end a first reading may start
MAX_BYTES = 8 * 1024 * 1024
#: bytes read at a time while scanning back
CHUNK_BYTES = 64 * 1024
#: the head of a line where its timestamp is looked for
TIME_HEAD_BYTES = 1024


@dataclass(frozen=True)
class RecentWindow:
    #: how old a line may be, by its own timestamp, to be read at a first start
    seconds: float
    #: a line's own time (None when it has no timestamp)
    line_time: Callable[[str], float | None]
    max_bytes: int = MAX_BYTES


def recent_start(fd: int, size: int, window: RecentWindow, now: float) -> int:
    """The offset at which to start reading a file of `size` bytes: the start of the
    earliest line, scanning back from the end, before the first one older than the window
    (the end of the file when there is none)."""
    if window.seconds <= 0 or size == 0:
        return size
    cutoff = now - window.seconds
    floor = max(0, size - window.max_bytes)
    start = size
    low = size
    data = b""   # the file's bytes from `low` to the end of the line looked at next
    while True:
        end = len(data) - 1 if data.endswith(b"\n") else len(data)
        newline = data.rfind(b"\n", 0, end)
        if newline < 0 and low > floor:
            more = max(floor, low - CHUNK_BYTES)
            data = os.pread(fd, low - more, more) + data
            low = more
            continue
        if newline < 0 and low > 0:
            return start   # the line began before the window
        head = data[newline + 1:newline + 1 + TIME_HEAD_BYTES]
        when = window.line_time(head.decode("utf-8", errors="replace").rstrip("\r\n"))
        if when is not None:
            if when < cutoff:
                return start
            start = low + newline + 1
        if newline < 0:
            return start   # the file's first line
        data = data[:newline + 1]
