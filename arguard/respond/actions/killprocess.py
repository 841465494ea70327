"""The `kill-process` action: end the process that wrote the journal entry which fired the
rule, as the kernel attested it — and only if it still runs an allowed program.

The target is never a pid or a process name taken from message text: whoever writes a log
line could name any process there. It is the journal's `_PID` of the entry, a field journald
takes from the kernel (the sender's socket credentials) and the writer cannot choose (unlike
`SYSLOG_PID` or a `prog[pid]:` header). The journal source carries it on the line as
`attested_pid`; `expect = "_PID"` makes it the target, and is the only kind of target this
action takes. The action checks again that the target is the attested pid of the alert's
entry, so a pid from anywhere else (an operator's `arguard block`, a decoded field) is
refused.

When the rule fires, the process may have exited and its pid been reused by another one.
`exe` is a pattern (Python `regex`, matched against the whole path) that the process's
executable must match: /proc/PID/exe as the kernel shows it, " (deleted)" included when the
file was removed. And a process that started after the entry was written (the journal's
time of it, give or take the boot time's second) cannot have written it. Both are read
after the process is pinned by a pidfd, so a pid that now runs another program, or the same
program started anew, is refused, and the signals reach only the process that was checked:
SIGTERM, then SIGKILL after `grace` seconds. PID 1, arguard itself and its parent are never
ended.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from arguard.respond.actions import processes
from arguard.respond.actions.base import REQUIRED, STRING, ActionError, ActionType, Option

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert


#: seconds a process may seem to have started after the entry it wrote: the boot time in
#: /proc/stat is a whole second
START_SLACK = 1.0


def _pattern_problem(pattern: str) -> str | None:
    import regex

    try:
        regex.compile(pattern)
    except regex.error as error:
        return f"is not a valid pattern: {error}"
    return None


class KillProcess:
    def __init__(self, command: Command):
        import regex

        options = ACTION.options_of(command)
        self.exe_pattern: str = options["exe"]
        self.exe = regex.compile(self.exe_pattern)
        self.grace: float = options["grace"]

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> str:
        pid = self._attested(target, alert)
        assert alert is not None
        written = alert.event.line.timestamp
        if pid in processes.spared():
            raise ActionError(f"refusing to end pid {pid}: PID 1, arguard or its parent")
        seen: dict[str, str] = {}

        def allowed(pid: int) -> bool:
            try:
                seen["exe"] = processes.executable(pid)
                started = processes.started_at(pid)
            except OSError as error:
                seen["error"] = error.strerror or str(error)
                return False
            if written is not None and started > written + START_SLACK:
                seen["started"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
                return False
            return bool(self.exe.fullmatch(seen["exe"]))

        process = processes.pin(pid, allowed)
        if process is None:
            if "started" in seen:
                raise ActionError(f"refusing to end pid {pid}: it started at {seen['started']}, "
                                  "after the entry was written (the pid was reused)")
            if "exe" in seen:
                raise ActionError(f"refusing to end pid {pid}: it runs {seen['exe']!r}, which "
                                  f"does not match exe {self.exe_pattern!r} (the pid may have "
                                  "been reused)")
            if "error" in seen:
                raise ActionError(f"refusing to end pid {pid}: cannot read its executable "
                                  f"({seen['error']})")
            raise ActionError(f"pid {pid} is not running")
        ended = processes.end([process], self.grace,
                              lambda: [process] if process.alive() else [])
        if ended.surviving:
            raise ActionError(f"pid {pid} ({seen['exe']}) still runs after SIGKILL")
        return f"ended pid {pid} ({seen['exe']}): {ended.describe()}"

    @staticmethod
    def _attested(target: str, alert: Alert | None) -> int:
        """The target as a pid, if it is the kernel-attested pid of the alert's entry."""
        attested = alert.event.line.attested_pid if alert is not None else None
        if attested is None or not target.isdigit() or int(target) != attested:
            raise ActionError(f"refusing to end pid {target!r}: not the kernel-attested pid "
                              "(the journal's _PID) of the entry that fired the rule")
        return attested

    def delete(self, target: str) -> None:
        return None

    def check(self, target: str) -> bool:
        return False

    def list_targets(self) -> set[str] | None:
        return None


ACTION = ActionType(
    summary="end the process that wrote the journal entry that fired the rule (its _PID), "
            "if its executable matches exe",
    kinds=("process",),
    build=lambda command, context: KillProcess(command),
    options=(Option("exe", STRING, REQUIRED, "a pattern the whole path of the process's "
                    "executable must match (/proc/PID/exe)", check=_pattern_problem),
             processes.grace_option("seconds between SIGTERM and SIGKILL")),
    stateless=True,
    default_expect="_PID",
)
