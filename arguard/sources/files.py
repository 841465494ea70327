"""Following log files: rotation, truncation, globs and symlinks, with offsets kept by
device + inode so that nothing is lost or read twice.

A configured path (or each file a glob matches) has a `PathFollower`. It reads the file the
path names now (`current`) and, after a rotation, finishes the files rotated away from it
(`retiring`) before the new one. Each open file is a `FileReader` that splits what it reads
into lines and holds a partial last line until its newline arrives.

Offsets: the row of the followed path is its current file; a rotated-away file still being
read has a row under its rotated name. Rows are matched to files by device + inode, so a file
rotated while arguard was down is found again among its rotated siblings (`auth.log.1`).

Everything here runs on the event loop; nothing blocks: files are opened non-blocking and
only after `stat` says they are regular files (a FIFO is never opened for reading).
"""

from __future__ import annotations

import errno
import glob
import io
import logging
import os
import stat as stat_module
from dataclasses import dataclass

from arguard.config import Source
from arguard.linetext import iter_text_lines, to_text
from arguard.model import Line
from arguard.sources.counters import SourceCounters
from arguard.sources.positions import PendingPositions
from arguard.sources.recent import RecentWindow, recent_start

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
# A rotated-away file is closed once it has been at its end, unchanged, for this long: the
# writer may still append to it for a moment after the rotation (until it reopens its log).
RETIRE_QUIET_SECONDS = 2.0
# The last bytes read are kept to recognise a file that was truncated and grew again, and to
# find the copy that copytruncate made.
TAIL_BYTES = 256
START_WINDOW_BYTES = 64 * 1024
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".z", ".zip")
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY

FileId = tuple[int, int]


@dataclass(frozen=True, slots=True)
class SavedOffset:
    path: str
    file_id: FileId
    offset: int


def is_rotated_name(name: str, base: str) -> bool:
    """Whether logrotate (or a logger) could have given an old `base` this name:
    auth.log.1, auth.log-20260101, auth.log_old, app-20260101.log (dateext + extension)."""
    if name == base or name.lower().endswith(COMPRESSED_SUFFIXES):
        return False
    if name.startswith(base) and name[len(base)] in ".-_":
        return True
    stem, extension = os.path.splitext(base)
    return bool(extension) and name.startswith(stem + "-") and name.endswith(extension)


def rotation_owner(path: str, followed: set[str]) -> str | None:
    """The followed (resolved) path whose rotated file `path` would be: the longest name
    that fits (auth.log.err.1 is auth.log.err's when both are followed, not auth.log's)."""
    directory, name = os.path.split(path)
    best = None
    for candidate in followed:
        if (os.path.dirname(candidate) == directory
                and is_rotated_name(name, os.path.basename(candidate))
                and (best is None or len(candidate) > len(best))):
            best = candidate
    return best


def describe_kind(mode: int) -> str:
    if stat_module.S_ISDIR(mode):
        return "a directory"
    if stat_module.S_ISFIFO(mode):
        return "a FIFO"
    if stat_module.S_ISSOCK(mode):
        return "a socket"
    if stat_module.S_ISCHR(mode) or stat_module.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


class FileReader:
    """One open file: `offset` is just after the last line handed out (what may be
    committed), `pos` is where the next read starts (after a held partial line)."""

    __slots__ = ("fd", "file_id", "key", "offset", "pos", "partial", "skipping", "tail",
                 "head", "last_growth", "retired_at")

    def __init__(self, fd: int, file_id: FileId, offset: int, now: float):
        self.fd = fd
        self.file_id = file_id
        self.key: str | None = None
        self.offset = offset
        self.pos = offset
        self.partial = b""
        self.skipping = False
        self.tail = b""
        #: while nothing is consumed (offset 0): the file's first bytes as last seen, the
        #: only way to notice a truncation and rewrite before its first line was read
        self.head = b""
        self.last_growth = now
        self.retired_at: float | None = None

    def prime(self) -> None:
        """Starting inside a file: remember the bytes before `offset` (to recognise a
        truncation), and if `offset` falls inside a line (start_at = "end" while a line is
        being written) begin at the start of that line, or skip to its end if it is longer
        than the look-back window."""
        if self.offset == 0:
            return
        window = min(self.offset, START_WINDOW_BYTES)
        start = self.offset - window
        before = os.pread(self.fd, window, start)
        if not before.endswith(b"\n"):
            newline = before.rfind(b"\n")
            if newline >= 0 or start == 0:
                self.restart_at(start + newline + 1)
                before = before[:newline + 1]
            else:
                self.skipping = True
                return
        self.tail = before[-TAIL_BYTES:]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def restart_at(self, offset: int) -> None:
        self.offset = self.pos = offset
        self.partial = b""
        self.skipping = False
        self.tail = b""
        self.head = b""

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def was_replaced(self) -> bool:
        """True when the file shrank below what was read, or its bytes before `offset` are no
        longer the ones read (truncated and written again before we looked)."""
        if os.fstat(self.fd).st_size < self.pos:
            return True
        if self.tail:
            start = self.offset - len(self.tail)
            if os.pread(self.fd, len(self.tail), start) != self.tail:
                return True
            return bool(self.partial) and \
                os.pread(self.fd, len(self.partial), self.offset) != self.partial
        known = self.known_start()
        return bool(known) and os.pread(self.fd, len(known), 0) != known

    def known_start(self) -> bytes:
        """At offset 0, the first bytes of the file seen so far (a held partial line, or
        what the last check peeked); empty once lines were consumed."""
        if self.offset != 0:
            return b""
        return self.partial if len(self.partial) >= len(self.head) else self.head

    def peek_head(self) -> None:
        if self.offset == 0 and len(self.head) < TAIL_BYTES:
            self.head = os.pread(self.fd, TAIL_BYTES, 0)

    def read(self, out: list[Line], limit: int, location: str, max_bytes: int,
             counters: SourceCounters, now: float) -> bool:
        """Append complete lines to `out` until it holds `limit` lines or the file ends.
        True when it stopped at the limit (more may be waiting)."""
        text_counters = counters.text
        while len(out) < limit:
            chunk = os.pread(self.fd, CHUNK_BYTES, self.pos)
            if not chunk:
                return False
            if self.pos > 0 and self.retired_at is None and self.was_replaced():
                # (the current file) truncated and written again since the check before
                # this read: the chunk is new content, not the continuation; stop here and
                # let the next check, right away, find the copy
                return True
            chunk_start = self.pos
            self.pos += len(chunk)
            counters.bytes += len(chunk)
            counters.last_read = now
            self.last_growth = now
            start = 0
            if self.skipping:
                newline = chunk.find(b"\n")
                if newline < 0:
                    continue
                # the rest of an over-long line ends here; resume after it
                self.skipping = False
                start = newline + 1
                self.offset = chunk_start + start
                self.tail = chunk[:start][-TAIL_BYTES:]
            data = self.partial + chunk[start:] if self.partial else chunk[start:]
            last = data.rfind(b"\n")
            if last < 0:
                self.partial = data
            else:
                block = data[:last + 1]
                self.partial = data[last + 1:]
                self.offset += len(block)
                self.tail = (self.tail + block[-TAIL_BYTES:])[-TAIL_BYTES:]
                for text in iter_text_lines(io.BytesIO(block), max_bytes, text_counters,
                                            chunk_size=len(block)):
                    out.append(Line(text, location, now))
            if len(self.partial) > max_bytes:
                # Hand out the first max_bytes now (counted as cut) and drop the rest up to the
                # newline. `offset` stays at the start of this line until its end is read, so a
                # restart never starts inside it (its tail is not a line of its own).
                text = to_text(self.partial[:max_bytes + 1], max_bytes, text_counters)
                if text is not None:
                    out.append(Line(text, location, now))
                self.partial = b""
                self.skipping = True
        return True

    def flush_partial(self, out: list[Line], location: str, max_bytes: int,
                      counters: SourceCounters, now: float) -> None:
        """A file that will not grow any more: its unterminated last line is a line too."""
        if self.partial and not self.skipping:
            text = to_text(self.partial, max_bytes, counters.text)
            if text is not None:
                out.append(Line(text, location, now))
            self.offset += len(self.partial)
            self.partial = b""


class PathFollower:
    """Follows one path (a configured path or one match of a glob)."""

    def __init__(self, path: str, owner: FileSource):
        self.path = path
        self.owner = owner
        # A file that existed when arguard started is placed from the saved offsets or
        # start_at on its first successful open; a file that appears later is new: read whole.
        self.initial = False
        self.current: FileReader | None = None
        self.retiring: list[FileReader] = []
        self.known_family: set[FileId] = set()
        self.problem: str | None = None

    # --- faults ------------------------------------------------------------------------------

    def report(self, message: str) -> None:
        if message != self.problem:
            self.problem = message
            self.owner.counters.fault(message)

    def clear_problem(self) -> None:
        if self.problem is not None:
            log.info("%s: readable again", self.path)
            self.problem = None

    # --- rotated siblings ---------------------------------------------------------------------

    def family(self) -> list[tuple[str, os.stat_result]]:
        """The rotated siblings: regular, uncompressed files next to the (resolved) path named
        as rotation names old files, that no source follows as a log of its own."""
        real = os.path.realpath(self.path)
        directory, base = os.path.split(real)
        found = []
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return found
        followed = self.owner.followed
        for entry in entries:
            if not is_rotated_name(entry.name, base) or entry.path in followed:
                continue
            if rotation_owner(entry.path, followed | {real}) != real:
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            if stat_module.S_ISREG(st.st_mode):
                found.append((entry.path, st))
        return found

    def rename_retiring(self) -> None:
        """Key each rotated-away file's offset row by the name it has now."""
        if not self.retiring:
            return
        names = {(st.st_dev, st.st_ino): path for path, st in self.family()}
        pending = self.owner.pending
        renamed = []
        for reader in self.retiring:
            name = names.get(reader.file_id)
            if name != reader.key:
                if reader.key is not None:
                    pending.forget_offset(reader.key)
                reader.key = name
                renamed.append(reader)
        for reader in renamed:
            if reader.key is not None:
                pending.set_offset(reader.key, reader.file_id, reader.offset)

    def place_initial(self, now: float) -> None:
        self.start_backlog(now)
        self.initial = os.path.lexists(self.path)

    def retire(self, reader: FileReader, now: float, replaced_by: FileId | None = None) -> None:
        """Finish `reader` (rotated away) before the path's new file. With `replaced_by`,
        files that appeared among the rotated siblings since the old file was opened were
        rotated in between (two rotations between two checks): they are read whole too."""
        reader.retired_at = now
        reader.key = None
        self.retiring.append(reader)
        if replaced_by is not None:
            self.open_unseen_siblings(replaced_by, now, "was rotated away before it was read")
        # its row, under the name it has now: a stop before it is finished resumes it there
        self.rename_retiring()

    def open_unseen_siblings(self, except_id: FileId | None, now: float, why: str) -> None:
        """Read whole, oldest first, the rotated siblings that appeared since the last check
        other than `except_id` (the file already accounted for): two rotations, or two
        copy-and-truncates, happened between two checks, and they hold lines not read yet."""
        owner = self.owner
        unseen = [(path, st) for path, st in self.family()
                  if (st.st_dev, st.st_ino) not in self.known_family
                  and (st.st_dev, st.st_ino) != except_id
                  and not owner.is_open((st.st_dev, st.st_ino))]
        for path, st in sorted(unseen, key=lambda item: item[1].st_mtime_ns):
            if self.open_rotated(path, (st.st_dev, st.st_ino), 0, now):
                log.info("%s: %s %s; reading it whole", self.path, path, why)

    def remember_family(self) -> None:
        """The rotated siblings there are now: any other that appears before the next
        rotation is noticed was rotated in between."""
        self.known_family = {(st.st_dev, st.st_ino) for _, st in self.family()}

    def find_copy(self, reader: FileReader) -> FileReader | None:
        """After a truncation: the copy copytruncate made, recognised by holding the bytes we
        read last at the same offset; it is finished from there before the truncated file.
        A reader that consumed nothing yet (offset 0) knows at most the file's first bytes:
        its copy is a rotated sibling that appeared since the last check and starts with
        them, read whole."""
        if reader.offset > 0:
            if not reader.tail:
                return None
            expected, start, new_only = reader.tail, reader.offset - len(reader.tail), False
        else:
            expected, start, new_only = reader.known_start(), 0, True
        minimum = max(reader.offset, len(expected), 1)
        # the newest copy holding our last bytes; with only the first bytes known, the oldest
        # new copy (any newer ones are read whole after it)
        candidates = sorted(self.family(), key=lambda item: item[1].st_mtime_ns,
                            reverse=not new_only)
        for path, st in candidates:
            file_id = (st.st_dev, st.st_ino)
            if (st.st_size < minimum or self.owner.is_open(file_id)
                    or (new_only and file_id in self.known_family)):
                continue
            try:
                fd = os.open(path, OPEN_FLAGS)
            except OSError:
                continue
            try:
                same = os.pread(fd, len(expected), start) == expected
            except OSError:
                same = False
            if same and stat_module.S_ISREG(os.fstat(fd).st_mode):
                copy = FileReader(fd, file_id, reader.offset, reader.last_growth)
                copy.tail = reader.tail
                self.owner.register(copy, self)
                return copy
            os.close(fd)
        return None

    # --- placing, checking and reading ------------------------------------------------------------

    def open_current(self, now: float) -> FileReader | None:
        try:
            fd = os.open(self.path, OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            self.report(f"{self.path}: cannot open: {exc.strerror}")
            return None
        st = os.fstat(fd)
        if not stat_module.S_ISREG(st.st_mode):
            os.close(fd)
            self.report(f"{self.path} is {describe_kind(st.st_mode)}, not a log file; "
                        "not read")
            return None
        file_id = (st.st_dev, st.st_ino)
        offset = 0
        if self.initial:
            try:
                offset = self.initial_offset(fd, file_id, st.st_size, now)
            except OSError as exc:
                os.close(fd)
                self.report(f"{self.path}: cannot read: {exc.strerror}")
                return None
            self.initial = False
        reader = FileReader(fd, file_id, offset, now)
        try:
            reader.prime()
        except OSError as exc:
            reader.close()
            self.report(f"{self.path}: cannot read: {exc.strerror}")
            return None
        self.owner.register(reader, self)
        return reader

    def same_place(self, saved: SavedOffset) -> bool:
        """A saved row can only describe a file of this path's directory (or its resolved
        target's): an inode number reused elsewhere on the disk is not our file."""
        directory = os.path.dirname(saved.path)
        return directory in (os.path.dirname(self.path),
                             os.path.dirname(os.path.realpath(self.path)))

    def owns(self, saved: SavedOffset) -> bool:
        """A saved row of this path: its own, or one of its rotated files."""
        if saved.path == self.path:
            return True
        real = os.path.realpath(self.path)
        return rotation_owner(saved.path, self.owner.followed | {real}) == real

    def start_backlog(self, now: float) -> None:
        """At startup: rotated siblings that hold a saved offset were rotated while arguard
        was stopped; finish them before the file the path names now. If the path's own file
        is among them, siblings rotated after it (newer, no saved offset) were never read:
        read them whole. Oldest first."""
        owner = self.owner
        own = owner.saved_by_path.get(self.path)
        family = sorted(self.family(), key=lambda item: item[1].st_mtime)
        backlog: list[tuple[str, FileId, int]] = []
        rotated_at = None
        for path, st in family:
            sibling_id = (st.st_dev, st.st_ino)
            old = owner.saved_by_id.get(sibling_id)
            if (old is None or not self.owns(old) or owner.is_open(sibling_id)
                    or st.st_size < old.offset):
                continue
            backlog.append((path, sibling_id, old.offset))
            if own is not None and own.file_id == sibling_id:
                rotated_at = st.st_mtime
        if rotated_at is not None:
            for path, st in family:
                sibling_id = (st.st_dev, st.st_ino)
                if (st.st_mtime > rotated_at and sibling_id not in owner.saved_by_id
                        and not owner.is_open(sibling_id)):
                    backlog.append((path, sibling_id, 0))
        for path, sibling_id, offset in backlog:
            if self.open_rotated(path, sibling_id, offset, now):
                log.info("%s: finishing %s (rotated while arguard was stopped) from offset %d",
                         self.path, path, offset)

    def open_rotated(self, path: str, file_id: FileId, offset: int, now: float) -> bool:
        """Open a rotated-away file to be finished from `offset` before the current one."""
        owner = self.owner
        try:
            fd = os.open(path, OPEN_FLAGS)
        except OSError as exc:
            owner.counters.fault(f"{path}: cannot open rotated file: {exc.strerror}")
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != file_id or not stat_module.S_ISREG(st.st_mode):
            os.close(fd)
            return False
        reader = FileReader(fd, file_id, offset, now)
        try:
            reader.prime()
        except OSError:
            reader.close()
            return False
        reader.retired_at = now
        reader.key = path
        owner.register(reader, self)
        owner.pending.set_offset(path, file_id, offset)
        self.retiring.append(reader)
        return True

    def initial_offset(self, fd: int, file_id: FileId, size: int, now: float) -> int:
        """Where to start the file the path names at startup."""
        owner = self.owner
        saved = owner.saved_by_id.get(file_id)
        if saved is not None and self.same_place(saved):
            if size >= saved.offset:
                return saved.offset
            log.info("%s: shorter than its saved offset (truncated while arguard was "
                     "stopped); reading from the start", self.path)
            return 0
        if self.path in owner.saved_by_path:
            return 0  # followed before; this is a new file since then
        start_at = owner.source.start_at
        if start_at == "beginning":
            return 0
        if start_at == "recent" and owner.recent is not None:
            offset = recent_start(fd, size, owner.recent, now)
            if offset < size:
                log.info("%s: never read before; reading its last %d bytes, the lines of "
                         "the last %g s", self.path, size - offset, owner.recent.seconds)
            return offset
        return size

    def check(self, now: float) -> None:
        """Notice a rotation (the path names another file), a deletion, a truncation."""
        owner = self.owner
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                self.path_missing(now)
            else:
                self.report(f"{self.path}: cannot stat: {exc.strerror}")
            return
        if not stat_module.S_ISREG(st.st_mode):
            if self.current is not None:
                self.retire(self.current, now)
                self.current = None
            self.report(f"{self.path} is {describe_kind(st.st_mode)}, not a log file; "
                        "not read")
            return
        file_id = (st.st_dev, st.st_ino)
        current = self.current
        if current is not None and current.file_id == file_id:
            self.check_truncation(current, now)
            return
        reader = owner.adopt(file_id, self)
        if reader is None:
            reader = self.open_current(now)
            if reader is None:
                return
        elif reader.retired_at is not None:
            reader.retired_at = None
        if current is not None:
            self.retire(current, now, replaced_by=reader.file_id)
        self.current = reader
        reader.key = self.path
        owner.pending.set_offset(self.path, reader.file_id, reader.offset)
        self.remember_family()
        self.clear_problem()

    def path_missing(self, now: float) -> None:
        current = self.current
        if current is None:
            return
        # A file renamed away stays current (the writer may go on writing to it until it
        # reopens the new file); a deleted one, or a glob match gone, is finished and closed.
        if self.owner.is_glob or os.fstat(current.fd).st_nlink == 0:
            self.retire(current, now)
            self.current = None

    def check_truncation(self, reader: FileReader, now: float) -> None:
        """A truncation shows as the file being shorter than what was read, or holding other
        bytes where the last ones read were. A reader that consumed nothing yet (offset 0,
        e.g. still finishing an earlier copy) may have missed a whole copy-and-truncate:
        a new copy starting with the bytes it saw is the sign."""
        replaced = reader.was_replaced()
        if not replaced and reader.offset != 0:
            return
        copy = self.find_copy(reader)
        if not replaced and copy is None:
            reader.peek_head()
            return
        if copy is not None:
            copy.retired_at = now
            self.retiring.append(copy)
            self.rename_retiring()
            log.info("%s was truncated; finishing its copy %s first", self.path, copy.key)
        else:
            log.info("%s was truncated; reading it from the start", self.path)
        self.open_unseen_siblings(copy.file_id if copy is not None else None, now,
                                  "was copied and truncated away before it was read")
        reader.restart_at(0)
        self.owner.pending.set_offset(self.path, reader.file_id, 0)
        self.remember_family()
        reader.peek_head()

    def poll(self, out: list[Line], limit: int, now: float) -> bool:
        """Check and read: the rotated-away files first, then the current one. True when the
        limit stopped reading."""
        try:
            self.check(now)
        except OSError as exc:
            self.report(f"{self.path}: {exc.strerror or exc}")
        owner = self.owner
        source = owner.source
        pending = owner.pending
        for reader in list(self.retiring):
            try:
                more = reader.read(out, limit, self.path, source.max_line_bytes,
                                   owner.counters, now)
            except OSError as exc:
                owner.counters.fault(f"{self.path}: read error in rotated file: {exc.strerror}")
                more = False
                reader.last_growth = reader.retired_at = now - RETIRE_QUIET_SECONDS
            if more:
                if reader.key is not None:
                    pending.set_offset(reader.key, reader.file_id, reader.offset)
                return True
            if (now - reader.last_growth >= RETIRE_QUIET_SECONDS
                    and now - (reader.retired_at or now) >= RETIRE_QUIET_SECONDS):
                reader.flush_partial(out, self.path, source.max_line_bytes, owner.counters, now)
                self.retiring.remove(reader)
                owner.forget_open(reader)
                reader.close()
                if reader.key is not None:
                    pending.forget_offset(reader.key)
            elif reader.key is not None:
                pending.set_offset(reader.key, reader.file_id, reader.offset)
        current = self.current
        if current is None:
            return False
        before = current.offset
        try:
            more = current.read(out, limit, self.path, source.max_line_bytes, owner.counters,
                                now)
        except OSError as exc:
            self.report(f"{self.path}: read error: {exc.strerror}")
            return False
        if current.offset != before:
            pending.set_offset(self.path, current.file_id, current.offset)
        return more

    def readers(self) -> list[FileReader]:
        return self.retiring + ([self.current] if self.current is not None else [])

    def close(self) -> None:
        for reader in self.readers():
            reader.close()
        self.retiring.clear()
        self.current = None


class FileSource:
    """One configured `[[source]] path = ...` (a path or a glob)."""

    def __init__(self, source: Source, counters: SourceCounters, pending: PendingPositions,
                 recent: RecentWindow | None = None):
        """`recent`: how far back start_at = "recent" reads a file never seen before
        (without it, such a file starts at its end)."""
        assert source.path is not None
        self.source = source
        self.recent = recent
        self.counters = counters
        self.pending = pending
        self.is_glob = glob.has_magic(source.path)
        self.followers: dict[str, PathFollower] = {}
        self.saved_by_path: dict[str, SavedOffset] = {}
        self.saved_by_id: dict[FileId, SavedOffset] = {}
        # resolved paths every file source follows (shared): never someone's rotated sibling
        self.followed: set[str] = set()
        self.scanned = False
        self.open_by_id: dict[FileId, tuple[FileReader, PathFollower]] = {}

    def keys_in_use(self) -> set[str]:
        """Offset rows that describe files being read, or a path not opened yet (unreadable
        at startup): the other saved rows are stale once every source is placed."""
        keys = set()
        for follower in self.followers.values():
            if follower.initial:
                keys.add(follower.path)
            keys.update(reader.key for reader in follower.readers() if reader.key is not None)
        return keys

    def is_open(self, file_id: FileId) -> bool:
        return file_id in self.open_by_id

    def adopt(self, file_id: FileId, follower: PathFollower) -> FileReader | None:
        """A file already open under another name (renamed into a glob's matches): keep
        reading it where it is instead of starting it again."""
        found = self.open_by_id.get(file_id)
        if found is None:
            return None
        reader, previous = found
        if previous.current is reader:
            previous.current = None
        elif reader in previous.retiring:
            previous.retiring.remove(reader)
        if reader.key is not None and reader.key != follower.path:
            self.pending.forget_offset(reader.key)
        self.open_by_id[file_id] = (reader, follower)
        return reader

    def register(self, reader: FileReader, follower: PathFollower) -> None:
        self.open_by_id[reader.file_id] = (reader, follower)

    def forget_open(self, reader: FileReader) -> None:
        self.open_by_id.pop(reader.file_id, None)

    def matches(self) -> list[str]:
        pattern = self.source.path
        if not self.is_glob:
            return [pattern]
        return sorted(path for path in glob.glob(pattern) if os.path.isfile(path))

    def start(self, saved: list[SavedOffset], followed: set[str], now: float) -> None:
        """Follow what the path or glob names now (placed from the saved offsets by
        place(), once every source has scanned)."""
        self.saved_by_path = {row.path: row for row in saved}
        self.saved_by_id = {row.file_id: row for row in saved}
        self.followed = followed
        self.scan(now)

    def place(self, now: float) -> None:
        for follower in self.followers.values():
            follower.place_initial(now)

    def scan(self, now: float) -> None:
        """Follow new matches of the path or glob; drop glob matches that are gone."""
        paths = self.matches()
        for path in paths:
            if path not in self.followers:
                if self.is_glob and self.scanned:
                    log.info("%s: now following %s", self.source.path, path)
                self.followers[path] = PathFollower(path, self)
                self.followed.add(os.path.realpath(path))
        if self.is_glob:
            wanted = set(paths)
            for path, follower in list(self.followers.items()):
                if path not in wanted and not follower.readers():
                    del self.followers[path]
                    self.followed.discard(os.path.realpath(path))
        self.scanned = True

    def poll(self, out: list[Line], limit: int, now: float) -> bool:
        more = False
        for follower in list(self.followers.values()):
            if len(out) >= limit:
                return True
            more = follower.poll(out, limit, now) or more
        return more

    def watch_dirs(self) -> set[str]:
        """Directories whose changes concern this source: each path's directory (it may be
        created, replaced, re-linked) and its resolved target's directory (it is written)."""
        dirs = set()
        pattern = self.source.path
        if self.is_glob:
            head = os.path.dirname(pattern)
            if not glob.has_magic(head):
                dirs.add(head)
        for path in self.followers:
            dirs.add(os.path.dirname(path))
            dirs.add(os.path.dirname(os.path.realpath(path)))
        return dirs

    def status(self) -> list[dict]:
        files = []
        for follower in self.followers.values():
            for reader in follower.readers():
                try:
                    size = reader.size()
                except OSError:
                    size = None
                files.append({
                    "path": follower.path, "rotated_name": reader.key
                    if reader is not follower.current else None,
                    "device": reader.file_id[0], "inode": reader.file_id[1],
                    "offset": reader.offset, "size": size,
                    "lag_bytes": None if size is None else max(size - reader.offset, 0),
                })
            if follower.problem is not None and follower.current is None:
                files.append({"path": follower.path, "problem": follower.problem})
        return files

    def close(self) -> None:
        for follower in self.followers.values():
            follower.close()
        self.open_by_id.clear()
