"""A private PID namespace for tests that end processes.

`ProcessLab` starts `unshare --pid --fork --mount-proc --kill-child` with this module as the
namespace's PID 1 (`python -m tests.pidns lab`). The lab starts the processes a test asks
for, under the UID and GID it asks for (`setpriv --reuid --regid --clear-groups` with
numeric ids: no account is created anywhere), is their parent, and so says how each one
ended (by which signal). What a test runs inside the namespace (`lab.enter()`, a command
prefix: nsenter into its PID and mount namespaces, where /proc is the namespace's) sees and
can signal only the lab's processes; when the lab ends, the kernel kills whatever is left
in the namespace.

PID namespace tests skip on a machine where they cannot run (not root, no unshare or
setpriv), except under CI (`CI=true`), where that is a failure. The pids a test sees are
the namespace's, as arguard inside it sees them.

Run as `python -m tests.pidns lab` this module is the lab.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.netns import JsonChild

#: how long a started process may take to reach its program (seconds; a bound for a hung
#: test, not a speed assertion)
START_DEADLINE = 10.0


def require_pidns() -> None:
    """Skip the test when PID namespaces cannot be used here; under CI, fail it instead."""
    reason = None
    if os.geteuid() != 0:
        reason = "PID namespace tests need root"
    else:
        missing = [tool for tool in ("unshare", "nsenter", "setpriv") if shutil.which(tool) is None]
        if missing:
            reason = f"PID namespace tests need {', '.join(missing)} (util-linux)"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PID namespace tests must run)")
    pytest.skip(reason)


def unused_ids(count: int, start: int = 2_000_100) -> list[int]:
    """`count` numeric ids that name no account on this host (processes run under them;
    no passwd entry is made)."""
    found = []
    candidate = start
    while len(found) < count:
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            found.append(candidate)
        candidate += 1
    return found


class ProcessLab(JsonChild):
    """The namespace's PID 1, driven over a pipe: `spawn` starts a process, `ended` says how
    it ended (None while it runs)."""

    what = "the process lab"

    def __init__(self) -> None:
        require_pidns()
        super().__init__(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                          sys.executable, "-m", "tests.pidns", "lab"])
        self._call("ping")
        self.host_pid = _child_of(self._process.pid)

    def enter(self) -> list[str]:
        """The prefix that runs a command inside the namespace (it sees its /proc)."""
        return ["nsenter", f"--target={self.host_pid}", "--pid", "--mount", "--"]

    def spawn(self, uid: int, gid: int | None = None, argv: tuple[str, ...] = ("sleep", "600"),
              ignore_term: bool = False, pid: int | None = None) -> int:
        """Start `argv` as uid:gid (SIGTERM ignored if asked); its pid once it runs the
        program. `pid`: the pid it must get (a free one: a reused pid)."""
        return self._call("spawn", uid, uid if gid is None else gid, list(argv), ignore_term,
                          pid)

    def kill(self, pid: int) -> None:
        """SIGKILL one of the lab's processes and reap it: its pid is free again."""
        self._call("kill", pid)

    def ended(self, pid: int, wait: float = 0.0) -> str | None:
        """How the process ended ("SIGTERM", "SIGKILL", "exit 0"), waiting up to `wait`
        seconds for it; None while it runs."""
        return self._call("ended", pid, wait)

    def _call(self, method: str, *args: Any) -> Any:
        self._send(method, *args)
        reply = self._receive()
        if "error" in reply:
            raise AssertionError(f"process lab: {reply['error']}")
        return reply["result"]


def _child_of(parent: int) -> int:
    """The pid (in our namespace) of `parent`'s only child: the lab, as unshare forked it."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
            except OSError:
                continue
            if int(fields["PPid"]) == parent:
                return int(name)
    raise AssertionError(f"no child of unshare ({parent}) found")


# --- the lab's side --------------------------------------------------------------------------

def _how(returncode: int | None) -> str | None:
    if returncode is None:
        return None
    if returncode < 0:
        return signal.Signals(-returncode).name
    return f"exit {returncode}"


def _lab() -> None:
    """PID 1 of the namespace: one JSON call per stdin line, one JSON reply per line."""
    children: dict[int, subprocess.Popen] = {}

    def spawn(uid: int, gid: int, argv: list[str], ignore_term: bool, pid: int | None) -> int:
        program = os.path.realpath(shutil.which(argv[0]) or argv[0])
        before = signal.SIG_IGN if ignore_term else signal.SIG_DFL
        if pid is not None:  # the namespace's next pid is the one after the last given
            with open("/proc/sys/kernel/ns_last_pid", "w") as last:
                last.write(str(pid - 1))
        child = subprocess.Popen(
            ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGTERM, before))  # kept across exec
        if pid is not None and child.pid != pid:
            raise RuntimeError(f"asked for pid {pid}, got {child.pid}")
        children[child.pid] = child
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                if os.readlink(f"/proc/{child.pid}/exe") == program:
                    return child.pid
            except OSError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv} as {uid}:{gid} did not start "
                                   f"({_how(child.poll()) or 'still starting'})")
            time.sleep(0.01)

    def ended(pid: int, wait: float) -> str | None:
        try:
            return _how(children[pid].wait(timeout=wait) if wait else children[pid].poll())
        except subprocess.TimeoutExpired:
            return None

    def kill(pid: int) -> None:
        children[pid].kill()
        children[pid].wait()

    calls = {"ping": lambda: None, "spawn": spawn, "ended": ended, "kill": kill}
    for line in sys.stdin:
        method, *args = json.loads(line)
        try:
            result = {"result": calls[method](*args)}
        except Exception as error:  # reported to the test, which fails with it
            result = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(result), flush=True)
        _reap_orphans(children)


def _reap_orphans(children: dict[int, subprocess.Popen]) -> None:
    """As PID 1, reap processes reparented to the lab (not its own children)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:  # ours: keep the status for `ended`
            children[pid].returncode = os.waitstatus_to_exitcode(status)


if __name__ == "__main__" and sys.argv[1:2] == ["lab"]:
    _lab()
