"""copytruncate races, driven step by step: the file source is polled directly with a small
batch limit, and the rotations happen exactly between two polls."""

from __future__ import annotations

import os
import shutil

from arguard.config import Source
from arguard.sources.counters import SourceCounters
from arguard.sources.files import RETIRE_QUIET_SECONDS, FileSource
from arguard.sources.positions import PendingPositions


def append(path, first: int, last: int) -> None:
    with open(path, "a") as f:
        f.writelines(f"L {number}\n" for number in range(first, last))


def copy_to_first_generation(path) -> None:
    """The first half of logrotate's copytruncate: shift the numbered copies, copy."""
    for number in (3, 2, 1):
        if os.path.exists(f"{path}.{number}"):
            os.rename(f"{path}.{number}", f"{path}.{number + 1}")
    shutil.copyfile(path, f"{path}.1")


def copytruncate(path) -> None:
    copy_to_first_generation(path)
    os.truncate(path, 0)


def followed_from_start(log) -> FileSource:
    source = FileSource(Source(path=str(log), start_at="beginning"),
                        SourceCounters("app", "file"), PendingPositions())
    source.start([], set(), 0.0)
    source.place(0.0)
    return source


def poll_once(source: FileSource, delivered: list, limit: int, now: float) -> bool:
    out: list = []
    more = source.poll(out, limit, now)
    delivered.extend(line.text for line in out)
    return more


def poll_until_done(source: FileSource, delivered: list, limit: int, now: float) -> None:
    for step in range(1000):
        out: list = []
        source.poll(out, limit, now + step * (RETIRE_QUIET_SECONDS + 1))
        delivered.extend(line.text for line in out)
        if not out and not any(f.retiring for f in source.followers.values()):
            return


def test_second_copytruncate_before_the_truncated_file_was_read_loses_nothing(tmp_path):
    """After a truncation arguard finishes the copy first, in batches; if the log is copied
    and truncated again before arguard got back to it (it had read nothing of it yet, so
    neither its size nor its last bytes can tell), the newer copy is read whole."""
    log = tmp_path / "app.log"
    append(log, 0, 3000)
    source = followed_from_start(log)
    delivered: list[str] = []
    poll_once(source, delivered, 10_000, 0.0)
    assert len(delivered) == 3000

    append(log, 3000, 6000)
    copytruncate(log)
    append(log, 6000, 6100)
    assert poll_once(source, delivered, 1000, 1.0)  # stopped at the limit inside the first copy

    append(log, 6100, 9000)
    copytruncate(log)                           # again, before app.log itself was read
    append(log, 9000, 9010)
    poll_until_done(source, delivered, 1000, 2.0)
    assert delivered == [f"L {number}" for number in range(9010)]


def test_truncated_and_rewritten_before_anything_was_consumed_is_noticed(tmp_path):
    """A file followed from its start whose first bytes were seen (a partial line, no newline
    yet) and which is then truncated and written again: its new content is read from 0, the
    old partial line is not glued to it, and the copy gives the complete old line."""
    log = tmp_path / "app.log"
    log.write_text("L 0 partial")
    source = followed_from_start(log)
    delivered: list[str] = []
    poll_once(source, delivered, 1000, 0.0)
    assert delivered == []
    with open(log, "a") as f:
        f.write(" and its end\n")
    copytruncate(log)
    log.write_text("M 0 a much longer first line of the new content\n")
    poll_until_done(source, delivered, 1000, 1.0)
    assert delivered == ["L 0 partial and its end", "M 0 a much longer first line of the new content"]


def test_two_copytruncates_between_two_checks_lose_nothing(tmp_path):
    """Read partway, then the log is copied and truncated twice before arguard looks again:
    the older copy (now app.log.2) holds the bytes last read and is finished from there, and
    the newer copy (app.log.1), made in between, is read whole before app.log."""
    log = tmp_path / "app.log"
    append(log, 0, 1000)
    source = followed_from_start(log)
    delivered: list[str] = []
    poll_once(source, delivered, 10_000, 0.0)
    append(log, 1000, 2000)
    copytruncate(log)
    append(log, 2000, 3000)
    copytruncate(log)
    append(log, 3000, 3050)
    poll_until_done(source, delivered, 1000, 1.0)
    assert delivered == [f"L {number}" for number in range(3050)]


def test_a_copy_seen_before_its_truncation_is_still_read(tmp_path):
    """arguard looks while the next rotation is half done (the copy exists, the log is not
    truncated yet); after the truncation that copy must still count as unread."""
    log = tmp_path / "app.log"
    append(log, 0, 3000)
    source = followed_from_start(log)
    delivered: list[str] = []
    poll_once(source, delivered, 10_000, 0.0)
    append(log, 3000, 6000)
    copytruncate(log)
    append(log, 6000, 6100)
    copy_to_first_generation(log)               # the second rotation, up to its copy
    assert poll_once(source, delivered, 1000, 1.0)
    os.truncate(log, 0)                         # ... and its truncation
    append(log, 6100, 6200)
    poll_until_done(source, delivered, 1000, 2.0)
    assert delivered == [f"L {number}" for number in range(6200)]
