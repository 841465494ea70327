"""Reading one watched file: its attributes and the sha256 of its content, safely.

The file is opened without following a symlink and without blocking (a FIFO swapped in is
not waited on); its attributes are taken from the open descriptor, so they belong to the
content that was read. At most the size seen when it was opened is read, so a file that
keeps growing is hashed in bounded time; when its size or times changed while it was read,
it is read again (READ_ATTEMPTS in all) and the last reading is kept (`Reading.unstable`).
A file whose size, times, inode and device match the previous state is not read again: its
content cannot have changed without its ctime changing, which no user can set.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Literal

from arguard.model import FileState

READ_ATTEMPTS = 3
CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass(frozen=True, slots=True)
class Reading:
    """What reading a path gave.

    `state` is None when there is nothing to watch there (no such file, or a directory, FIFO,
    socket or device: `kind` says which) or when the path could not be looked at (`error`);
    `problem` says why the content could not be read (the state then has
    no sha256), `unstable` that it kept changing while it was read; `content` is the content
    read, when the caller asked for content of at most a given size."""

    state: FileState | None
    kind: Literal["file", "symlink", "directory", "other", "missing", "error"]
    problem: str | None = None
    unstable: bool = False
    content: bytes | None = None


def shown(path: bytes) -> str:
    """A path as alerts and logs show it: bytes that are not UTF-8 as `\\xNN`."""
    return path.decode("utf-8", "backslashreplace")


def _state(info: os.stat_result, kind: Literal["file", "symlink"], size: int,
           sha256: str | None) -> FileState:
    return FileState(kind, size, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                     info.st_ino, info.st_dev, info.st_mtime_ns, info.st_ctime_ns, sha256)


def unchanged_since(previous: FileState | None, info: os.stat_result) -> bool:
    """Whether `info` shows the same file, untouched, as `previous` (so its hash holds)."""
    return (previous is not None and previous.kind == "file" and previous.sha256 is not None
            and (previous.size, previous.mtime_ns, previous.ctime_ns, previous.inode,
                 previous.device) == (info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                                      info.st_ino, info.st_dev))


def read_path(path: bytes, *, hash_content: bool, follow_symlinks: bool = False,
              previous: FileState | None = None, keep_content: int = 0) -> Reading:
    """The state of `path` now. `previous`: the state recorded last, whose hash is reused
    when the file is untouched; `keep_content`: also return the content of a regular file
    of at most this many bytes (read again even when untouched)."""
    try:
        info = os.stat(path) if follow_symlinks else os.lstat(path)
    except FileNotFoundError:
        if not follow_symlinks:
            return Reading(None, "missing")
        try:
            info = os.lstat(path)  # a dangling symlink: watched as the link itself
        except FileNotFoundError:
            return Reading(None, "missing")
    except NotADirectoryError:
        return Reading(None, "missing")
    except OSError as exc:
        return Reading(None, "error", problem=exc.strerror or str(exc))
    if stat.S_ISLNK(info.st_mode):
        return _read_link(path, info, hash_content)
    if stat.S_ISDIR(info.st_mode):
        return Reading(None, "directory")
    if not stat.S_ISREG(info.st_mode):
        return Reading(None, "other")
    wants_content = 0 < keep_content and info.st_size <= keep_content
    if not hash_content:
        return Reading(_state(info, "file", info.st_size, None), "file")
    if unchanged_since(previous, info) and not wants_content:
        return Reading(_state(info, "file", info.st_size, previous.sha256), "file")
    return _read_file(path, info, follow_symlinks, keep_content)


def _read_link(path: bytes, info: os.stat_result, hash_content: bool) -> Reading:
    try:
        text = os.readlink(path)
    except FileNotFoundError:
        return Reading(None, "missing")
    except OSError as exc:
        return Reading(_state(info, "symlink", info.st_size, None), "symlink",
                       problem=exc.strerror or str(exc))
    digest = hashlib.sha256(text).hexdigest() if hash_content else None
    return Reading(_state(info, "symlink", len(text), digest), "symlink")


def _open(path: bytes, follow_symlinks: bool) -> int:
    flags = _OPEN_FLAGS & ~os.O_NOFOLLOW if follow_symlinks else _OPEN_FLAGS
    if _NOATIME:
        try:
            return os.open(path, flags | _NOATIME)
        except PermissionError:
            pass  # O_NOATIME is only for the file's owner (or CAP_FOWNER)
    return os.open(path, flags)


def _read_file(path: bytes, info: os.stat_result, follow_symlinks: bool,
               keep_content: int) -> Reading:
    try:
        fd = _open(path, follow_symlinks)
    except FileNotFoundError:
        return Reading(None, "missing")
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symlink since lstat: read it as one
            return read_path(path, hash_content=True)
        return Reading(_state(info, "file", info.st_size, None), "file",
                       problem=exc.strerror or str(exc))
    try:
        return _hash_open_file(fd, keep_content)
    finally:
        os.close(fd)


def _hash_open_file(fd: int, keep_content: int) -> Reading:
    attempt = 0
    while True:
        attempt += 1
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return Reading(None, "other")
        keep = before.st_size <= keep_content if keep_content else False
        try:
            digest, content, read = _digest(fd, before.st_size, keep)
        except OSError as exc:
            return Reading(_state(before, "file", before.st_size, None), "file",
                           problem=exc.strerror or str(exc))
        after = os.fstat(fd)
        stable = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == \
            (after.st_size, after.st_mtime_ns, after.st_ctime_ns) and read == before.st_size
        if stable or attempt >= READ_ATTEMPTS:
            # the attributes of what was read: the size read, the times seen before reading
            return Reading(_state(before, "file", read, digest), "file", unstable=not stable,
                           content=content)


def _digest(fd: int, size: int, keep: bool) -> tuple[str, bytes | None, int]:
    """sha256 of the first `size` bytes (fewer if the file shrank meanwhile), the content
    when `keep`, and how many bytes were read."""
    digest = hashlib.sha256()
    parts: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK, size - offset), offset)
        if not chunk:
            break
        digest.update(chunk)
        if keep:
            parts.append(chunk)
        offset += len(chunk)
    return digest.hexdigest(), b"".join(parts) if keep else None, offset
