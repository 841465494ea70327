"""active-responses.log: one line per add, extend, delete, skip and failure.

    2026-03-01T10:00:07+00:00 firewall-drop add 203.0.113.1 rule=5763 alert=1772359207.8
        timeout=600 offence=1 reason=-

(one line in the file). A request decided on another fleet host adds
` origin=web1 decision=42`: that host and the decision's id in the fleet's database. An
action that says what it did (the pids `terminate-sessions` ended) adds it at the end:
`detail="ended 2 processes of UID 1001: 4711 4712 (SIGTERM)"`. Targets and reasons may be
attacker-controlled text, so a field is written bare only when it is plain, and JSON-quoted
otherwise: no log line can be forged.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Literal

from arguard import modes
from arguard.faults import LastingFault, append_whole

log = logging.getLogger(__name__)

#: failure lines kept for `arguard status`
RECENT_FAILURES = 20
#: lines of one batch (`together()`) also sent to the `logging` record; the others are
#: summed up there in one line (a journal would rate-limit thousands anyway), failures
#: always go
ECHOED_PER_BATCH = 20

Verb = Literal["add", "extend", "delete", "skip", "fail"]

_BARE = re.compile(r"[A-Za-z0-9_.:@%/+\[\]-]{1,256}", re.ASCII)


def _field(value: object) -> str:
    """A log field that cannot break the line format: bare when plain, else JSON-quoted
    (targets and reasons may be attacker-controlled text)."""
    if value is None:
        return "-"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text[:256])


def _number(value: int | None) -> str:
    """A field that holds a whole number (or nothing)."""
    return str(value) if type(value) is int else _field(value)


class ResponseLog:
    """active-responses.log: one line per add, extend, delete, skip and failure.

    Opened for append on first write; `reopen()` closes it so that the next write opens the
    file again (after logrotate moved it; the daemon calls it on SIGHUP). With no path, lines
    only go to the `logging` record. Inside `together()` the lines wait and go to the file
    in one write when it ends (a batch of fleet decisions writes thousands), and only its
    first ECHOED_PER_BATCH lines and its failures go to the `logging` record too.
    """

    def __init__(self, path: Path | None, clock: Callable[[], float]):
        self.path = path
        self.clock = clock
        self._fd: int | None = None
        #: lines that could not be written (a full disk): warned about once a minute
        self.fault = LastingFault(log, str(path))
        #: the last failure lines, for `arguard status`
        self.recent_failures: deque[str] = deque(maxlen=RECENT_FAILURES)
        self._second: int | None = None
        self._stamp = ""
        self._waiting: list[str] | None = None
        self._echoed = self._unechoed = 0

    def write(self, verb: Verb, command: str, target: str, *, rule_id: int | None = None,
              alert_id: str | None = None, timeout: int | float | None = None,
              offence: int | None = None, reason: str | None = None,
              origin: str | None = None, decision: int | None = None,
              detail: str | None = None) -> None:
        when = self._when(int(self.clock()))
        if timeout is not None:
            timeout = int(round(timeout))
        line = (f"{when} {_field(command)} {verb} {_field(target)} rule={_number(rule_id)} "
                f"alert={_field(alert_id)} timeout={_number(timeout)} "
                f"offence={_number(offence)} reason={_field(reason)}")
        if origin is not None:
            line += f" origin={_field(origin)} decision={_number(decision)}"
        if detail is not None:
            line += f" detail={_field(detail)}"
        if verb == "fail":
            self.recent_failures.append(line)
            log.error("%s", line)
        elif self._waiting is None or self.path is None or self._echoed < ECHOED_PER_BATCH:
            self._echoed += 1
            log.info("%s", line)
        else:
            self._unechoed += 1
        if self._waiting is not None:
            self._waiting.append(line)
        else:
            self._append([line])

    @contextmanager
    def together(self) -> Iterator[None]:
        """Write the lines of a batch in one go when it ends (also when it ends by an
        exception: what was recorded is written)."""
        if self._waiting is not None:
            yield
            return
        self._waiting, self._echoed, self._unechoed = [], 0, 0
        try:
            yield
        finally:
            lines, self._waiting = self._waiting, None
            if lines:
                self._append(lines)
            if self._unechoed:
                log.info("and %d more responses (in %s)", self._unechoed, self.path)

    def _append(self, lines: list[str]) -> None:
        if self.path is None:
            return
        try:
            if self._fd is None:
                self._fd = modes.open_log(self.path)
            append_whole(self._fd, ("\n".join(lines) + "\n").encode("utf-8",
                                                                  errors="surrogateescape"))
        except OSError as error:
            self.fault.failed(error.strerror or error, len(lines), "lines not written")
            self.reopen()
            return
        self.fault.succeeded()

    def _when(self, second: int) -> str:
        """The local time of a line, formatted once per second (a catch-up of many fleet
        decisions writes thousands of lines in the same second)."""
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second).astimezone().isoformat(
                timespec="seconds")
        return self._stamp

    def reopen(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    close = reopen
