"""Progress bars for long work (`replay`, `logtest --summary`, `import`), on stderr and only
when stderr is a terminal: piped or redirected, nothing is written. Drawn by tqdm, which is
imported only then, so commands run from scripts do not pay for it."""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator, TypeVar

from arguard.linetext import TextCounters

T = TypeVar("T")

#: seconds between two redraws
REFRESH = 0.2


class Progress:
    """One bar. For files, its position is the bytes read (of `total`, when known) and it
    shows the lines read and lines/s; for lists of items, the items done."""

    def __init__(self, description: str, total: int | None = None, unit: str = "B",
                 stream: IO[str] | None = sys.stderr):
        """`stream`: where to draw (None: nowhere)."""
        self.bar: Any = None
        self.started = time.monotonic()
        if stream is None or not _is_terminal(stream):
            return
        from tqdm import tqdm

        bytes_ = unit == "B"
        self.bar = tqdm(total=total, desc=description, unit=unit, unit_scale=bytes_,
                        unit_divisor=1024 if bytes_ else 1000, file=stream,
                        mininterval=REFRESH, dynamic_ncols=True, leave=False,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                   "{unit}{postfix} [{elapsed}<{remaining}]" if total else
                                   "{desc}: {n_fmt} {unit}{postfix} [{elapsed}]")

    @property
    def shown(self) -> bool:
        return self.bar is not None

    def reader(self, stream: IO[bytes], counters: TextCounters) -> IO[bytes]:
        """`stream`, reporting every read (bytes, and the lines `counters` has seen so far)."""
        return stream if self.bar is None else _Reporting(stream, self, counters)

    def items(self, iterable: Iterable[T]) -> Iterator[T]:
        """The items, counted as each is done; the bar is redrawn after the last one."""
        for item in iterable:
            yield item
            if self.bar is not None:
                self.bar.update(1)
        if self.bar is not None:
            self.bar.refresh()

    def read(self, count: int, lines: int) -> None:
        """`count` more bytes read, `lines` lines so far; at the end of a file (`count`
        0) the bar is redrawn, so that even a short run shows its figures."""
        elapsed = time.monotonic() - self.started
        rate = lines / elapsed if elapsed > 0 else 0.0
        self.bar.set_postfix_str(f"{lines:,} lines, {rate:,.0f} lines/s", refresh=count == 0)
        self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Reporting:
    def __init__(self, stream: IO[bytes], progress: Progress, counters: TextCounters):
        self.stream, self.progress, self.counters = stream, progress, counters

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.progress.read(len(data), self.counters.lines)
        return data


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
