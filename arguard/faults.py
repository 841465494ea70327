"""A lasting fault (a full disk, a database that cannot be written) reported as an operator
wants it: a warning when it starts, then at most one a minute saying what it has cost so far,
and one line when it ends — never a line per alert."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable

#: seconds between two warnings about the same lasting fault
WARN_INTERVAL = 60.0


class LastingFault:
    def __init__(self, logger: logging.Logger, what: str,
                 clock: Callable[[], float] = time.monotonic):
        """`what`: the thing that fails, as the warnings name it ("alerts.json")."""
        self.log = logger
        self.what = what
        self.clock = clock
        #: how many things were lost to the fault (alerts not written …), over the whole run
        self.lost = 0
        self.error: str | None = None
        self._lost_since_warning = 0
        self._lost_in_episode = 0
        self._warned_at: float | None = None

    def failed(self, error: object, lost: int = 0, consequence: str = "") -> None:
        """One more failure (`lost`: how many things it cost)."""
        self.lost += lost
        self._lost_since_warning += lost
        self._lost_in_episode += lost
        self.error = str(error)
        now = self.clock()
        if self._warned_at is not None and now - self._warned_at < WARN_INTERVAL:
            return
        self._warned_at = now
        cost = f"; {self._lost_since_warning} {consequence}" if consequence else ""
        self.log.warning("cannot write %s: %s%s", self.what, self.error, cost)
        self._lost_since_warning = 0

    def succeeded(self) -> None:
        if self.error is None:
            return
        self.log.warning("%s can be written again (after: %s)%s", self.what, self.error,
                         f"; {self._lost_in_episode} lost meanwhile"
                         if self._lost_in_episode else "")
        self.error = None
        self._warned_at = None
        self._lost_since_warning = self._lost_in_episode = 0


def append_whole(fd: int, data: bytes) -> None:
    """Append all of `data` to a file opened O_APPEND, or nothing: a write cut short (a disk
    that fills up) is taken back before the OSError is raised, so no half line stays."""
    size = os.fstat(fd).st_size
    written = 0
    try:
        while written < len(data):
            written += os.write(fd, data[written:])
    except OSError:
        if written:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
        raise
