"""The modes of what arguard writes, whatever the umask: the state directory and what it
holds are root's alone (the database names every blocked address and the owner of every
kernel object), logs are readable by the log group (adm), never by everyone.

A mode found wrong at start (a state directory made 0755 by a permissive umask, a database
copied in with 0644) is corrected and logged. Directories that other programs share are
never changed: arguard's state or log directory may be configured as /var/log itself.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

STATE_DIR = 0o700
DATABASE = 0o600          # arguard.db and its -wal and -shm files, the dry run's database
LOCK = 0o600
PRIVATE_FILE = 0o600      # the copy of the last good configuration
LOG_DIR = 0o750
LOG_FILE = 0o640
SOCKET = 0o600

#: directories other programs use too: their mode is the system's, never arguard's
SHARED_DIRS = frozenset(map(Path, ("/", "/etc", "/home", "/root", "/run", "/tmp", "/usr",
                                   "/var", "/var/lib", "/var/log", "/var/run", "/var/tmp")))


def ensure_dir(path: Path, mode: int) -> None:
    """Create `path` (and missing parents) with `mode`, or correct the mode it has."""
    try:
        path.mkdir(parents=True, mode=mode)
    except FileExistsError:
        pass
    else:
        os.chmod(path, mode)   # mkdir's mode went through the umask
        return
    if Path(os.path.realpath(path)) in SHARED_DIRS:
        return
    correct(path, mode)


def correct(path: Path, mode: int) -> bool:
    """Give an existing file or directory `mode` if it has another one, and log it; False
    when there is no such file."""
    try:
        current = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
    if current != mode:
        os.chmod(path, mode)
        log.warning("%s had mode %04o; corrected to %04o", path, current, mode)
    return True


def correct_fd(fd: int, path: Path, mode: int) -> None:
    """The same for a file arguard has open (a log file it appends to)."""
    current = stat.S_IMODE(os.fstat(fd).st_mode)
    if current != mode:
        os.fchmod(fd, mode)
        log.warning("%s had mode %04o; corrected to %04o", path, current, mode)


def open_log(path: Path) -> int:
    """Open a log file for appending (and reading its end), created LOG_FILE in a LOG_DIR
    directory; its mode is corrected if it had another one."""
    if not path.parent.is_dir():
        ensure_dir(path.parent, LOG_DIR)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE)
    try:
        correct_fd(fd, path, LOG_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


def create_private(path: Path, mode: int) -> None:
    """Create an empty file with `mode` unless it exists (SQLite gives its -wal and -shm
    files the mode of the database file, so creating that one right is enough)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
