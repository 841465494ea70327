"""Several log files read as one stream in time order (`arguard replay auth.log access.log`).

Each file is read by its own predecoder, whose reference time is the file's modification
time: a year-less syslog date takes the latest year that does not put it after the file was
last written, so a log that crosses New Year walks back into the year before at the turn,
and last December's auth.log and access.log keep last year however late they are replayed.
A heap over the files (heapq.merge) yields the earliest line of all first; ties keep the
order of the files as given, then of the lines (one file is read straight through). A line without a time of its own takes the
time of the line before it in its file (at the start of a file, of the first line that has
one), so that it stays where it was written.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path
from typing import Iterator

from arguard.decode.predecode import Predecoder
from arguard.linetext import TextCounters, iter_text_lines
from arguard.model import Line, Predecoded
from arguard.progress import Progress

#: lines without a time read at the start of a file before the first line that has one;
#: past this the file is taken to have no times, and its lines take its modification time
UNTIMED_LOOKAHEAD = 10_000

def merged_by_time(paths: list[Path], max_line_bytes: int, counters: TextCounters,
                   progress: Progress) -> Iterator[tuple[Line, Predecoded]]:
    """(line, its predecoded header) of every file, earliest first; `line.received` is the
    time it was placed at. heapq.merge keeps the files' order among equal times."""
    files = [_timed_lines(path, max_line_bytes, counters, progress) for path in paths]
    if len(files) == 1:
        return files[0]
    return heapq.merge(*files, key=_placed_at)


def _placed_at(item: tuple[Line, Predecoded]) -> float:
    return item[0].received


def _timed_lines(path: Path, max_line_bytes: int, counters: TextCounters,
                 progress: Progress) -> Iterator[tuple[Line, Predecoded]]:
    location = str(path)
    with open(path, "rb") as stream:
        modified = os.fstat(stream.fileno()).st_mtime
        predecode = Predecoder(reference_time=modified).predecode
        last: float | None = None
        untimed: list[tuple[Line, Predecoded]] = []
        for text in iter_text_lines(progress.reader(stream, counters), max_line_bytes,
                                    counters):
            line = Line(text, location, 0.0)
            pre = predecode(line)
            when = pre.time
            if when is None:
                if last is None and len(untimed) < UNTIMED_LOOKAHEAD:
                    untimed.append((line, pre))
                    continue
                when = last if last is not None else modified
            if untimed:
                for waiting in untimed:
                    waiting[0].received = when
                yield from untimed
                untimed.clear()
            last = line.received = when
            yield line, pre
        for waiting in untimed:
            waiting[0].received = modified
        yield from untimed
