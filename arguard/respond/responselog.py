"""active-responses.log: one line per add, extend, delete, skip and failure.

    2026-03-01T10:00:07+00:00 firewall-drop add 203.0.113.1 rule=5763 alert=1772359207.8
        timeout=600 offence=1 reason=-

(one line in the file). An action that says what it did (the pids `terminate-sessions`
ended) adds it at the end: `detail="ended 2 processes of UID 1001: 4711 4712 (SIGTERM)"`.
Targets and reasons may be attacker-controlled text, so a field is written bare only when it
is plain, and JSON-quoted otherwise: no log line can be forged.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Callable, Literal

from arguard import modes
from arguard.faults import LastingFault, append_whole

log = logging.getLogger(__name__)

#: failure lines kept for `arguard status`
RECENT_FAILURES = 20

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


class ResponseLog:
    """active-responses.log: one line per add, extend, delete, skip and failure.

    Opened for append on first write; `reopen()` closes it so that the next write opens the
    file again (after logrotate moved it; the daemon calls it on SIGHUP). With no path, lines
    only go to the `logging` record.
    """

    def __init__(self, path: Path | None, clock: Callable[[], float]):
        self.path = path
        self.clock = clock
        self._fd: int | None = None
        #: lines that could not be written (a full disk): warned about once a minute
        self.fault = LastingFault(log, str(path))
        #: the last failure lines, for `arguard status`
        self.recent_failures: deque[str] = deque(maxlen=RECENT_FAILURES)

    def write(self, verb: Verb, command: str, target: str, *, rule_id: int | None = None,
              alert_id: str | None = None, timeout: int | float | None = None,
              offence: int | None = None, reason: str | None = None,
              detail: str | None = None) -> None:
        when = datetime.fromtimestamp(self.clock()).astimezone().isoformat(timespec="seconds")
        if timeout is not None:
            timeout = int(round(timeout))
        line = (f"{when} {_field(command)} {verb} {_field(target)} rule={_field(rule_id)} "
                f"alert={_field(alert_id)} timeout={_field(timeout)} "
                f"offence={_field(offence)} reason={_field(reason)}"
                + ("" if detail is None else f" detail={_field(detail)}"))
        if verb == "fail":
            self.recent_failures.append(line)
        log.log(logging.ERROR if verb == "fail" else logging.INFO, "%s", line)
        if self.path is None:
            return
        try:
            if self._fd is None:
                self._fd = modes.open_log(self.path)
            append_whole(self._fd, (line + "\n").encode("utf-8", errors="surrogateescape"))
        except OSError as error:
            self.fault.failed(error.strerror or error, 1, "lines not written")
            self.reopen()
            return
        self.fault.succeeded()

    def reopen(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    close = reopen
