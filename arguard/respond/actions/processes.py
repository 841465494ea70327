"""Finding and ending processes without ever signalling the wrong one.

A pid names a process only until the process is reaped: by the time a signal is sent, a pid
read from /proc may belong to another process. So every process is first pinned with
pidfd_open(2); what /proc says about it (its UIDs, its executable) is read after that and
believed only if the pidfd still shows the process alive (a pid is reused only after its
process exited), and signals go through pidfd_send_signal(2), which reaches the pinned
process or nothing. Waiting for processes to end is a poll(2) on their pidfds.

Used by `terminate-sessions` (every process of a UID) and `kill-process` (one pid the
journal attested). arguard's own process, its parent and PID 1 are never signalled.
"""

from __future__ import annotations

import math
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from arguard.respond.actions.base import NUMBER, Option

PROC = "/proc"
#: how long SIGKILLed processes get to be gone before they count as surviving it (seconds)
KILL_WAIT = 2.0
#: rounds of "find what is left, SIGKILL it" after the grace, for processes forked meanwhile
KILL_ROUNDS = 5


def grace_option(meaning: str) -> Option:
    """The `grace` option of an action that ends processes: 5 seconds by default."""
    return Option("grace", NUMBER, 5, meaning,
                  check=lambda value: None if value >= 0 else "must not be negative")


class Pinned:
    """One process held by a pidfd: signals and waits reach this process or nothing."""

    __slots__ = ("pid", "fd")

    def __init__(self, pid: int, fd: int):
        self.pid = pid
        self.fd = fd

    def alive(self) -> bool:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return not poller.poll(0)

    def send(self, signum: int) -> bool:
        """Send `signum`; False when the process is gone already."""
        try:
            signal.pidfd_send_signal(self.fd, signum)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def pin(pid: int, accept: Callable[[int], bool] = lambda pid: True) -> Pinned | None:
    """The process `pid` pinned, if it exists and `accept(pid)` — which reads /proc — holds
    for it while it is pinned; None otherwise."""
    if pid in spared():
        return None
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, PermissionError):
        return None
    process = Pinned(pid, fd)
    try:
        if accept(pid) and process.alive():
            return process
    except OSError:  # it went away while /proc was read
        pass
    process.close()
    return None


def spared() -> set[int]:
    """Pids never signalled: arguard's own process, its parent, PID 1."""
    return {os.getpid(), os.getppid(), 1}


def uids(pid: int) -> tuple[int, int]:
    """The real and effective UIDs of a process (OSError when it is gone)."""
    with open(f"{PROC}/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"Uid:"):
                real, effective = line.split()[1:3]
                return int(real), int(effective)
    raise ProcessLookupError(pid)


def executable(pid: int) -> str:
    """What /proc/PID/exe points at, as the kernel shows it (a deleted file ends in
    " (deleted)"); OSError when it cannot be read (a kernel thread, a gone process)."""
    return os.readlink(f"{PROC}/{pid}/exe")


def started_at(pid: int) -> float:
    """When the process started, in seconds since the epoch: the boot time (/proc/stat
    `btime`, a whole second) plus its start in clock ticks after boot (/proc/PID/stat);
    OSError when it is gone."""
    with open(f"{PROC}/{pid}/stat", "rb") as stat:
        after_name = stat.read().rsplit(b")", 1)[1].split()
    with open(f"{PROC}/stat", "rb") as stat:
        boot = next(int(line.split()[1]) for line in stat if line.startswith(b"btime "))
    return boot + int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime


def processes_of(uid: int) -> list[Pinned]:
    """Every live process whose real or effective UID is `uid`, pinned."""
    found = []
    for name in os.listdir(PROC):
        if name.isdigit():
            process = pin(int(name), lambda pid: uid in uids(pid))
            if process is not None:
                found.append(process)
    return found


def wait_gone(processes: Iterable[Pinned], seconds: float) -> list[Pinned]:
    """Wait up to `seconds` for the processes to end; those still alive then."""
    waiting = {process.fd: process for process in processes}
    deadline = time.monotonic() + seconds
    poller = select.poll()
    for fd in waiting:
        poller.register(fd, select.POLLIN)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(math.ceil(left * 1000)):
            poller.unregister(fd)
            del waiting[fd]
    return list(waiting.values())


@dataclass
class Ended:
    """Which signal (or which service) ended each process; the pids that outlived SIGKILL."""

    by: dict[int, str] = field(default_factory=dict)
    surviving: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """`12 13 (SIGTERM), 14 (SIGKILL)`, or `none`."""
        groups: dict[str, list[int]] = {}
        for pid, how in sorted(self.by.items()):
            groups.setdefault(how, []).append(pid)
        return ", ".join(" ".join(map(str, pids)) + f" ({how})"
                         for how, pids in groups.items()) or "none"


def end(processes: list[Pinned], grace: float, again: Callable[[], list[Pinned]],
        asked_by: str | None = None) -> Ended:
    """SIGTERM each process — unless `asked_by` (logind) has already asked them to stop —,
    SIGKILL those still alive after `grace` seconds, then SIGKILL whatever `again()` finds
    left (the survivors, and processes forked meanwhile), round after round until nothing
    is. Closes every pidfd it was given or found."""
    ended = Ended()
    held = list(processes)
    try:
        for process in processes:
            if asked_by is not None or process.send(signal.SIGTERM):
                ended.by[process.pid] = asked_by or "SIGTERM"
        wait_gone(processes, grace)
        for round_ in range(KILL_ROUNDS + 1):
            left = again()
            held.extend(left)
            if not left:
                break
            if round_ == KILL_ROUNDS:
                ended.surviving = sorted(process.pid for process in left)
                for pid in ended.surviving:
                    ended.by.pop(pid, None)
                break
            for process in left:
                if process.send(signal.SIGKILL):
                    ended.by[process.pid] = "SIGKILL"
            wait_gone(left, KILL_WAIT)
    finally:
        for process in held:
            process.close()
    return ended
