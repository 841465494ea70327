"""Replacing a small system file atomically (hosts.deny, shadow), and removing the temp
copies a crash left behind.

A change is written to a temp file beside the file (`.NAME.` and 8 random characters, what
`tempfile.mkstemp` makes), fsynced and renamed over it, so readers see the old file or the
new one, never half of one. A process killed between creating the temp file and the rename
leaves the temp file behind; the action owning the file removes such leftovers when it is
built (at every start), holding the lock every writer of that file holds, so that no temp
file of a write in progress is taken for one.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from arguard.respond.actions.base import ActionError

#: what tempfile.mkstemp appends to the prefix
_RANDOM = r"[a-z0-9_]{8}"


def write_atomically(path: Path, data: bytes, default_mode: int = 0o644) -> None:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync of
    the directory. The file's mode and owner are kept (`default_mode` for a new file). The
    caller holds whatever lock protects the file."""
    try:
        current = os.stat(path)
        mode, owner = stat.S_IMODE(current.st_mode), (current.st_uid, current.st_gid)
    except FileNotFoundError:
        mode, owner = default_mode, None
    except OSError as exc:
        raise ActionError(f"cannot stat {path}: {exc.strerror}") from exc
    directory = path.parent
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise ActionError(f"cannot create a temp file in {directory}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            created = os.fstat(handle.fileno())
            if owner is not None and owner != (created.st_uid, created.st_gid):
                os.fchown(handle.fileno(), *owner)
            os.fchmod(handle.fileno(), mode)  # after fchown, which may clear set-id bits
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        _unlink_quietly(temp)
        raise ActionError(f"cannot write {path}: {exc.strerror}") from exc
    _fsync_directory(directory)


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temp copies of `path` that interrupted writes left (`.NAME.XXXXXXXX`
    regular files); the ones removed. The caller holds the file's lock."""
    pattern = re.compile(re.escape(f".{path.name}.") + _RANDOM)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError as exc:
        raise ActionError(f"cannot list {path.parent}: {exc.strerror}") from exc
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ActionError(f"cannot remove {entry.path}: {exc.strerror}") from exc
            removed.append(Path(entry.path))
    return removed


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
