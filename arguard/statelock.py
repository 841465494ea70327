"""The lock on the state directory: one daemon at a time, and CLI changes made while the
daemon is down never race a daemon that is starting."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from arguard import modes


class StateLocked(Exception):
    """Another process holds the state directory."""


class StateLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> None:
        if not self.path.parent.is_dir():
            modes.ensure_dir(self.path.parent, modes.STATE_DIR)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, modes.LOCK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateLocked(f"{self.path} is held by pid {holder}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "StateLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
