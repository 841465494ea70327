"""The file integrity baseline: which files are watched, what they were, and what changed.

`Roots` says which watched path (and so which [[integrity]] settings) a file belongs to: the
longest watched path that covers it, unless an `ignore` pattern, `recursive = false` or
arguard's own directories rule it out. `Baseline` compares files with the states recorded in
SQLite (arguard.store) and turns differences into FileChange records:

- a scan walks a watched path (one directory at a time, so memory stays bounded by the
  largest directory, not by the tree) and yields the changes of each directory as it goes;
  the first scan of a path records its baseline silently, and takes the known-good copies
  of `keep_copies` entries;
- `check(path)` looks at one path a realtime event named: a file, a directory (its whole
  subtree), or a path that is gone (the file, or every recorded file under it);
- `accept(path)` makes the current state the recorded and known-good one.

Every file is read through arguard.integrity.files (no symlink followed unless configured,
bounded reads). Problems with a file (unreadable, vanished, changing while read, a name that
is not UTF-8) never stop a scan: the file is recorded as far as it could be read, or skipped,
and counted in `Faults`. Changed rows are written in batches; the caller delivers the changes
a scan yielded before the scan goes on, so a crash repeats a report rather than losing it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from arguard.config import Integrity
from arguard.integrity.copies import Copies, CopyError
from arguard.integrity.files import Reading, read_path, shown
from arguard.model import FileChange, FileState, FoundBy, KnownGood
from arguard.store import Store
from arguard.syscheck import changed_attributes

log = logging.getLogger(__name__)

#: rows written in one commit at most
BATCH_ROWS = 2000
#: paths whose problem is logged once (then only counted) at most
FAULTS_REMEMBERED = 4096


@dataclass(frozen=True)
class Root:
    """One watched path with the settings of its [[integrity]] table."""

    path: bytes
    entry: Integrity

    @property
    def shown(self) -> str:
        return shown(self.path)


class Roots:
    """The watched paths of a configuration; `never` are directories arguard writes itself
    (state, logs, socket), which are never watched (a change to alerts.json would report
    itself)."""

    def __init__(self, entries: Iterable[Integrity], never: Iterable[Path] = ()):
        self.by_path: dict[bytes, Root] = {}
        for entry in entries:
            for path in entry.paths:
                self.by_path[os.fsencode(path)] = Root(os.fsencode(path), entry)
        self.never = tuple(os.fsencode(os.path.normpath(p)) for p in never)
        self._patterns = {root.path: _patterns(root.entry.ignore)
                          for root in self.by_path.values()}

    def __iter__(self) -> Iterator[Root]:
        return iter(self.by_path.values())

    def __len__(self) -> int:
        return len(self.by_path)

    def owner(self, path: bytes) -> Root | None:
        """The root `path` belongs to, or None when it is not watched."""
        candidate = path
        while True:
            root = self.by_path.get(candidate)
            if root is not None:
                return root if self.covers(root, path) else None
            parent = os.path.dirname(candidate)
            if parent == candidate:
                return None
            candidate = parent

    def covers(self, root: Root, path: bytes) -> bool:
        """Whether `path` (at or under `root`) is watched as part of `root`."""
        if path != root.path:
            if not path.startswith(root.path + b"/"):
                return False
            if not root.entry.recursive and os.path.dirname(path) != root.path:
                return False
        if any(path == own or path.startswith(own + b"/") for own in self.never):
            return False
        names, globs = self._patterns[root.path]
        if not names and not globs:
            return True
        relative = path[len(root.path) + 1:].split(b"/") if path != root.path else []
        prefix = root.path
        for name in relative:
            prefix = prefix + b"/" + name
            if any(fnmatch.fnmatchcase(name, p) for p in names) or \
                    any(fnmatch.fnmatchcase(prefix, p) for p in globs):
                return False
        return True

    def nested(self, root: Root) -> set[bytes]:
        """The other watched paths inside `root` (a walk of `root` leaves them to their own)."""
        return {path for path in self.by_path
                if path != root.path and path.startswith(root.path + b"/")}


def _patterns(ignore: tuple[str, ...]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """`ignore` patterns: those without `/` match a name, the others a whole path."""
    names = tuple(os.fsencode(p) for p in ignore if "/" not in p)
    globs = tuple(os.fsencode(p) for p in ignore if "/" in p)
    return names, globs


class Interrupted(Exception):
    """A scan or check stopped because the source is stopping."""


@dataclass
class Faults:
    """Problems met while reading watched files: paths per kind of problem (each logged
    the first time)."""

    unreadable: int = 0
    unstable: int = 0
    not_utf8: int = 0
    errors: int = 0
    last_error: str | None = None
    _logged: set[tuple[bytes, str]] = field(default_factory=set)

    def report(self, path: bytes, kind: str, message: str) -> None:
        """Count a path's problem and log it, the first time it is met (a file that stays
        unreadable is one problem, not one per scan)."""
        text = f"{shown(path)}: {message}"
        self.last_error = text
        if (path, kind) in self._logged:
            return
        if len(self._logged) >= FAULTS_REMEMBERED:
            self._logged.clear()
        self._logged.add((path, kind))
        setattr(self, kind, getattr(self, kind) + 1)
        log.warning("file integrity: %s", text)

    def as_dict(self) -> dict:
        return {"unreadable": self.unreadable, "changing_while_read": self.unstable,
                "names_not_utf8": self.not_utf8, "errors": self.errors,
                "last_error": self.last_error}


@dataclass
class Accepted:
    """What `accept` did."""

    files: int = 0
    copies: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Walk:
    """One walk's bookkeeping."""

    root: Root
    found_by: FoundBy
    initial: bool
    visited: set[bytes] = field(default_factory=set)
    unlisted: list[bytes] = field(default_factory=list)
    inodes: set[tuple[int, int]] = field(default_factory=set)


class Baseline:
    """Compares watched files with their recorded states. `write = False`: a dry run,
    which records nothing and keeps no copy (`arguard integrity scan --dry-run`)."""

    def __init__(self, store: Store, roots: Roots, copies: Copies | None, *,
                 write: bool = True, clock: Callable[[], float] = time.time,
                 interrupted: Callable[[], bool] = lambda: False):
        self.store = store
        self.interrupted = interrupted
        self.roots = roots
        self.copies = copies
        self.write = write
        self.clock = clock
        self.faults = Faults()
        self._upserts: dict[bytes, list[tuple[bytes, bytes, FileState]]] = {}
        self._deletes: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self._buffered = 0
        self._known_good: list[KnownGood] = []
        self._baselined = set(store.integrity_roots())

    # --- state of the records ----------------------------------------------------------------

    def forget_unwatched(self) -> int:
        """Forget what no configured path watches any more (and the known-good records of
        paths without keep_copies); returns the files forgotten."""
        forgotten = self.store.forget_integrity_roots({root.path for root in self.roots})
        self._baselined = set(self.store.integrity_roots())
        for root in self.roots:
            if not root.entry.keep_copies:
                self.store.forget_known_good(root.path)
        self.prune_copies()
        return forgotten

    def has_baseline(self, root: Root) -> bool:
        return root.path in self._baselined

    def prune_copies(self) -> None:
        if self.copies is not None and self.write:
            self.copies.prune(self.store.known_good_digests())

    # --- scans -------------------------------------------------------------------------------

    def scan(self, root: Root, found_by: FoundBy = "scheduled") -> Iterator[list[FileChange]]:
        """Walk `root` and yield the changes of each directory (an empty list between
        directories without changes, so that the caller can do other work). The first
        scan of a root records its baseline and yields nothing."""
        started = self.clock()
        initial = not self.has_baseline(root)
        walk = _Walk(root, found_by, initial)
        if self.write and not initial:
            self.store.mark_integrity_scan(root.path, started=started)
        yield from self._walk(walk, root.path)
        self.flush()
        yield self._unvisited(walk, None)
        self.flush()
        if self.write:
            self.store.mark_integrity_scan(root.path, started=started, finished=self.clock())
            self._baselined.add(root.path)
            self.prune_copies()

    def check(self, path: bytes, found_by: FoundBy = "realtime") -> list[FileChange]:
        """The changes at one path a realtime event named (written when flushed)."""
        root = self.roots.owner(path)
        if root is None:
            return []
        if root.path not in self._baselined:
            return []  # its first scan has not finished: that scan records it
        walk = _Walk(root, found_by, initial=False)
        before = self._recorded_in(walk, path)
        reading = self._read(root, path, before, want_copy=False)
        if reading.kind == "directory":
            changes = list(self._unrecorded_file(walk, path, before))
            for batch in self._walk(walk, path):
                changes.extend(batch)
            changes.extend(self._unvisited(walk, path))
            return changes
        changes = list(self._compare(walk, path, before, reading))
        if reading.state is None:
            changes.extend(self._unvisited(walk, path))  # a directory that went away
        return changes

    def _walk(self, walk: _Walk, start: bytes) -> Iterator[list[FileChange]]:
        root = walk.root
        nested = self.roots.nested(root)
        if start == root.path:
            top = self._read(root, start, self._recorded_in(walk, start), want_copy=walk.initial)
            if top.kind == "symlink":
                self.faults.report(start, "errors", "the watched path is a symlink: only the "
                                   "link is watched (watch its target, or set "
                                   "follow_symlinks = true)")
            if top.kind != "directory":
                # a watched file, or a watched directory that does not exist (any more)
                yield list(self._compare(walk, start, self._recorded_in(walk, start), top))
                return
        stack = [start]
        while stack:
            directory = stack.pop()
            if self._buffered >= BATCH_ROWS:
                self.flush()
            changes: list[FileChange] = []
            listing = self._list(walk, directory)
            if listing is None or not self._first_visit(walk, directory):
                yield changes
                continue
            walk.visited.add(directory)
            recorded = self.store.integrity_entries(directory, root.path)
            seen: set[bytes] = set()
            for name, is_dir in listing:
                if self.interrupted():
                    raise Interrupted
                path = directory + b"/" + name
                if path in nested or not self.roots.covers(root, path):
                    continue
                self._check_name(path, name)
                if is_dir:
                    if root.entry.recursive:
                        stack.append(path)
                    continue
                before = recorded.get(name)
                reading = self._read(root, path, before, want_copy=walk.initial)
                if reading.kind == "directory":  # a symlink to a directory, followed
                    if root.entry.recursive:
                        stack.append(path)
                    continue
                seen.add(name)
                changes.extend(self._compare(walk, path, before, reading))
            for name, before in recorded.items():
                if name not in seen:
                    path = directory + b"/" + name
                    changes.extend(self._gone(walk, path, before))
            yield changes

    def _list(self, walk: _Walk, directory: bytes) -> list[tuple[bytes, bool]] | None:
        """(name, is a directory not reached through a symlink) of a directory's entries;
        None when it cannot be listed whole (then nothing in it is taken for deleted)."""
        try:
            with os.scandir(directory) as entries:
                return sorted((entry.name, entry.is_dir(follow_symlinks=False))
                              for entry in entries)
        except (FileNotFoundError, NotADirectoryError):
            return None  # gone: its recorded files are reported by _unvisited
        except OSError as exc:
            walk.unlisted.append(directory)
            self.faults.report(directory, "unreadable", f"cannot list: {exc.strerror}")
            return None

    def _first_visit(self, walk: _Walk, directory: bytes) -> bool:
        """Whether a directory is walked for the first time; only asked (one stat per
        directory) when symlinks are followed, where a link can lead back up the tree."""
        if not walk.root.entry.follow_symlinks:
            return True
        try:
            info = os.stat(directory)
        except OSError:
            return False
        key = (info.st_dev, info.st_ino)
        if key in walk.inodes:
            return False
        walk.inodes.add(key)
        return True

    def _check_name(self, path: bytes, name: bytes) -> None:
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            self.faults.report(path, "not_utf8", "name is not valid UTF-8 (reported with "
                                                 "its bytes as \\xNN)")

    def _recorded_in(self, walk: _Walk, path: bytes) -> FileState | None:
        directory, name = os.path.split(path)
        recorded = self.store.integrity_entry(directory, name)
        return recorded[1] if recorded is not None and recorded[0] == walk.root.path else None

    def _unrecorded_file(self, walk: _Walk, path: bytes,
                         before: FileState | None) -> Iterator[FileChange]:
        """A recorded file that is now a directory: gone as a file."""
        if before is not None:
            yield from self._gone(walk, path, before)

    def _unvisited(self, walk: _Walk, under: bytes | None) -> list[FileChange]:
        """Recorded files of the root (at or below `under`) in directories the walk did not
        list: gone, unless no longer watched (forgotten quietly) or in a directory that
        could not be listed (kept)."""
        changes: list[FileChange] = []
        root = walk.root
        for directory in self.store.integrity_directories(root.path, under):
            if directory in walk.visited or any(
                    directory == u or directory.startswith(u + b"/") for u in walk.unlisted):
                continue
            for name, before in self.store.integrity_entries(directory, root.path).items():
                path = directory + b"/" + name
                if under is not None and path != under and not path.startswith(under + b"/"):
                    continue
                changes.extend(self._gone(walk, path, before))
        return changes

    # --- one file ----------------------------------------------------------------------------

    def _read(self, root: Root, path: bytes, before: FileState | None,
              want_copy: bool) -> Reading:
        entry = root.entry
        keep = entry.keep_copies if want_copy and self.copies is not None else 0
        reading = read_path(path, hash_content="sha256" in entry.checks,
                            follow_symlinks=entry.follow_symlinks, previous=before,
                            keep_content=keep)
        if reading.problem is not None:
            kind = "unreadable" if reading.state is not None else "errors"
            self.faults.report(path, kind, f"cannot read: {reading.problem}")
        elif reading.unstable:
            self.faults.report(path, "unstable", "kept changing while it was read; the last "
                                                 "reading is recorded")
        return reading

    def _compare(self, walk: _Walk, path: bytes, before: FileState | None,
                 reading: Reading) -> Iterator[FileChange]:
        after = reading.state
        if after is None:
            if before is not None and reading.kind != "error":
                yield from self._gone(walk, path, before)
            return
        if before is not None and after.sha256 is None and before.sha256 is not None:
            # the content could not be read: keep the hash last known, so that a change is
            # still seen once it can be read again
            after = _with_sha256(after, before.sha256)
        directory, name = os.path.split(path)
        if before != after:
            self._stage(walk.root, directory, name, after)
        if walk.initial:
            self._keep_known_good(walk.root, path, after, reading.content)
            return
        checks = walk.root.entry.checks
        changed = () if before is None else changed_attributes(before, after, checks)
        if (before is not None and not changed) or self._back_to_known_good(walk.root, path,
                                                                            after):
            return
        if before is None:
            yield self._change(path, "added", walk.found_by, None, after, ())
        else:
            yield self._change(path, "modified", walk.found_by, before, after, changed)

    def _back_to_known_good(self, root: Root, path: bytes, after: FileState) -> bool:
        """Whether a file came back to its known-good content, mode and owner (restore-file
        put it back, or someone did by hand): recorded, not reported — so that a restore does
        not report, and trigger, itself."""
        if not root.entry.keep_copies or after.kind != "file" or after.sha256 is None:
            return False
        good = self.store.known_good(path)
        if good is None or (good.sha256, good.mode, good.uid, good.gid) != \
                (after.sha256, after.mode, after.uid, after.gid):
            return False
        log.info("file integrity: %s is back in its known-good state", shown(path))
        return True

    def _gone(self, walk: _Walk, path: bytes, before: FileState) -> Iterator[FileChange]:
        directory, name = os.path.split(path)
        if self.write:
            self._deletes.setdefault(walk.root.path, []).append((directory, name))
            self._buffered += 1
        if not walk.initial and self.roots.covers(walk.root, path):
            yield self._change(path, "deleted", walk.found_by, before, None, ())

    def _change(self, path: bytes, event, found_by: FoundBy, before: FileState | None,
                after: FileState | None, changed: tuple[str, ...]) -> FileChange:
        return FileChange(shown(path), event, found_by, before, after, changed, self.clock())

    def _stage(self, root: Root, directory: bytes, name: bytes, state: FileState) -> None:
        if self.write:
            self._upserts.setdefault(root.path, []).append((directory, name, state))
            self._buffered += 1

    def _keep_known_good(self, root: Root, path: bytes, state: FileState,
                         content: bytes | None) -> bool:
        """Keep `content` as the known-good copy of `path`; False when it is not kept (no
        keep_copies, too large, not a regular file, or the copy could not be written)."""
        if (not self.write or self.copies is None or not root.entry.keep_copies
                or state.kind != "file" or content is None or state.sha256 is None):
            return False
        try:
            self.copies.keep(state.sha256, content)
        except CopyError as exc:
            self.faults.report(path, "errors", f"no known-good copy kept: {exc}")
            return False
        self._known_good.append(KnownGood(path, root.path, state.size, state.mode, state.uid,
                                          state.gid, state.mtime_ns, state.sha256))
        return True

    def discard(self) -> None:
        """Forget what was gathered and not written (a stop cut a scan short: its changes
        were not all handed on, so they must be found again)."""
        self._upserts.clear()
        self._deletes.clear()
        self._known_good.clear()
        self._buffered = 0

    def flush(self) -> None:
        """Write the states and known-good records gathered so far."""
        if not self.write:
            return
        for root in set(self._upserts) | set(self._deletes):
            self.store.save_integrity(root, self._upserts.get(root, []),
                                      self._deletes.get(root, []))
        if self._known_good:
            self.store.save_known_good(self._known_good, self.clock())
        self.discard()

    # --- accept --------------------------------------------------------------------------------

    def accept(self, path: bytes) -> Accepted:
        """Record the current state of `path` (a file, or every file under a directory) as
        its baseline and, with keep_copies, as its known-good content."""
        result = Accepted()
        root = self.roots.owner(path)
        if root is None:
            result.notes.append(f"{shown(path)} is not watched by any [[integrity]] table")
            return result
        targets = self._files_under(root, path)
        for file in targets:
            directory, name = os.path.split(file)
            recorded = self.store.integrity_entry(directory, name)
            before = recorded[1] if recorded is not None else None
            reading = self._read(root, file, before, want_copy=True)
            if reading.state is None:
                continue
            self._stage(root, directory, name, reading.state)
            result.files += 1
            if self._keep_known_good(root, file, reading.state, reading.content):
                result.copies += 1
            elif root.entry.keep_copies and reading.state.kind == "file":
                result.notes.append(f"{shown(file)}: no known-good copy kept (larger than "
                                    f"keep_copies, or unreadable)")
        if not targets:
            result.notes.append(f"{shown(path)}: no watched file there")
        self.flush()
        self.prune_copies()
        return result

    def _files_under(self, root: Root, path: bytes) -> list[bytes]:
        if not os.path.isdir(path) or os.path.islink(path):
            return [path] if os.path.lexists(path) else []
        files = []
        nested = self.roots.nested(root)
        for directory, dirs, names in os.walk(path, followlinks=root.entry.follow_symlinks):
            dirs[:] = [d for d in dirs if root.entry.recursive
                       and directory + b"/" + d not in nested
                       and self.roots.covers(root, directory + b"/" + d)]
            files.extend(p for p in (directory + b"/" + n for n in names)
                         if p not in nested and self.roots.covers(root, p))
        return files


def _with_sha256(state: FileState, sha256: str) -> FileState:
    return FileState(state.kind, state.size, state.mode, state.uid, state.gid, state.inode,
                     state.device, state.mtime_ns, state.ctime_ns, sha256)
