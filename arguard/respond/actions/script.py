"""The `script` action: run a custom active-response executable as Wazuh's execd does.

Only executables from the configured active-response bin directory run, and only when
nobody but root could have changed them: the file (after resolving symlinks) must be a
regular file directly in the directory, owned by root, executable and not group- or
world-writable; the directory must be owned by root and not group- or world-writable, and
each directory above it must be owned by root and not group- or world-writable unless it is
sticky (like /tmp). These checks run on every call, so a file swapped later is caught.

Protocol (Wazuh >= 4.2 execd, src/os_execd/execd.c and src/active-response/
active_responses.c): the script is started with argv `[path, *extra_args]` and gets one
line of JSON on stdin,

    {"version":1,"origin":{"name":"","module":"arguard"},"command":"add"|"delete",
     "parameters":{"extra_args":[…],"alert":{…alerts.json form…},"program":"<path>"}}

It may answer one line on stdout,
`{"version":1,"origin":{…},"command":"check_keys","parameters":{"keys":[…]}}`, and then
reads one more line, arguard's decision `{"version":1,"origin":{…},"command":"continue"|
"abort","parameters":{}}` (Wazuh echoes the whole message back; the short form passes the
same checks in Wazuh's parser and stays under the 64 KiB line its C scripts read). arguard
answers `abort` when `is_active(keys)` says the keys are already being acted on, else
`continue`. Right after the exchange arguard closes stdin. A script that never sends
check_keys has stdin closed when it closes stdout or exits, or after `reply_timeout`
seconds, so a script that reads stdin to EOF is not left waiting. As in execd, the exchange
is for `add` only: for `delete` stdin is closed as soon as the message is written.

`legacy_args = true` runs Wazuh 2.x-4.1 scripts instead: argv `[path, ACTION, USER, IP, ALERT_ID, RULE_ID,
LOCATION, FILENAME, *extra_args]` ('-' for what is unknown, and a single '-' when there are
no extra args, as analysisd's string message gave them) and stdin closed at once.

The alert sent is the alert that caused the response (alerts.alert_to_dict), with the
`expect` field of `data` set to the validated target (for `expect = "filename"`,
`syscheck.path`, where Wazuh's FIM alerts carry it; in legacy argv, FILENAME), so the script
acts on exactly what arguard decided; `delete`, and `add` without an alert (manual blocks),
send a minimal alert carrying just the target. Alert fields in legacy argv other than the target are passed only
when they are themselves a valid address or user name.

No shell is involved. The environment is empty but for a fixed PATH; the working directory
is `/`; the script runs in its own session, and when `exec_timeout` expires its whole
process group is killed. stdout and stderr are captured (at most `output_limit` bytes
each), logged and returned by `run()`.

`add`/`delete` block until the script has finished: the caller runs them in a worker thread
(the responder uses asyncio.to_thread), so the daemon's event loop never waits on a script.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from arguard.alerts import alert_to_dict, format_time
from arguard.respond.actions.base import NUMBER, ActionError, ActionType, Option
from arguard.respond.targets import (EXPECT_KINDS, TargetKind, check_file, check_user,
                                    normalise_address)

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

log = logging.getLogger(__name__)

ORIGIN = {"name": "", "module": "arguard"}
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LIMIT = 64 * 1024
#: Wazuh's scripts read each stdin line with fgets(…, OS_MAXSTR = 65536)
MAX_MESSAGE = 65535

#: is_active(keys) -> True when the keys a script reported are already being acted on
IsActive = Callable[[Sequence[str]], bool]
Verb = Literal["add", "delete"]


@dataclass(frozen=True)
class ScriptResult:
    argv: tuple[str, ...]
    returncode: int | None          # None when killed on timeout
    stdout: str
    stderr: str
    timed_out: bool = False
    keys: tuple[str, ...] | None = None   # from check_keys; None when none was sent
    answer: Literal["continue", "abort"] | None = None

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.returncode == 0


class ScriptAction:
    def __init__(self, command: Command, ar_bin_dir: Path, is_active: IsActive | None = None,
                 reply_timeout: float = 10.0, output_limit: int = OUTPUT_LIMIT):
        """`is_active` decides the check_keys answer (default: always continue);
        `reply_timeout` is how long a script may take to send check_keys before its stdin
        is closed (at most `exec_timeout`)."""
        if not command.executable:
            raise ActionError(f"command {command.name!r} has no executable")
        self.command = command
        self.bin_dir = Path(ar_bin_dir)
        self.kind: TargetKind = EXPECT_KINDS[command.expect]
        self.exec_timeout = float(ACTION.options_of(command)["exec_timeout"])
        self.reply_timeout = min(reply_timeout, self.exec_timeout)
        self.is_active = is_active or (lambda keys: False)
        self.output_limit = output_limit

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        self._raise_on_failure(self.run("add", target, alert))

    def delete(self, target: str) -> None:
        self._raise_on_failure(self.run("delete", target, None))

    def check(self, target: str) -> bool:
        return False

    def list_targets(self) -> set[str] | None:
        return None

    def run(self, verb: Verb, target: str, alert: Alert | None) -> ScriptResult:
        """Run the script once for `verb` on `target`; failures to start raise ActionError,
        the script's own outcome is in the result."""
        target = self._checked_target(target)
        program = self.program()
        alert_json = self._alert_json(target, alert)
        if self.command.legacy_args:
            argv = [program, verb, *self._legacy_args(target, alert, alert_json)]
            message = None
        else:
            argv = [program, *self.command.extra_args]
            message = _encode({"version": 1, "origin": ORIGIN, "command": verb,
                               "parameters": {"extra_args": list(self.command.extra_args),
                                              "alert": alert_json, "program": program}})
        result = _Run(argv, message, verb == "add", self.exec_timeout, self.reply_timeout,
                      self.is_active, self.output_limit).run()
        self._log(verb, target, result)
        return result

    def program(self) -> str:
        """The executable's real path, after the ownership and permission checks."""
        name = self.command.executable or ""
        if "/" in name or name in ("", ".", ".."):
            raise ActionError(f"executable {name!r} must be a bare file name")
        directory = os.path.realpath(self.bin_dir)
        _check_directory(directory)
        real = os.path.realpath(os.path.join(directory, name))
        if os.path.dirname(real) != directory:
            raise ActionError(f"{self.bin_dir / name} resolves to {real}, outside {directory}")
        try:
            info = os.lstat(real)
        except OSError as exc:
            raise ActionError(f"cannot run {real}: {exc.strerror}") from exc
        if not stat.S_ISREG(info.st_mode):
            raise ActionError(f"{real} is not a regular file")
        _check_owner(real, info, group_sticky_ok=False)
        if not info.st_mode & stat.S_IXUSR:
            raise ActionError(f"{real} is not executable")
        return real

    def _checked_target(self, target: str) -> str:
        if self.kind == "file":
            refused = check_file(target).refused
            if refused:
                raise ActionError(f"not a file path: {target!r} ({refused})")
            return target
        if self.kind == "ip":
            address = normalise_address(target)
            if address is None or "%" in address or target != target.strip():
                raise ActionError(f"not an IP address: {target!r}")
            return address
        refused = check_user(target).refused
        if refused:
            raise ActionError(f"not a valid user name: {target!r} ({refused})")
        return target

    def _alert_json(self, target: str, alert: Alert | None) -> dict[str, Any]:
        if alert is None:
            result: dict[str, Any] = {
                "timestamp": format_time(time.time()),
                "rule": {"level": 0, "description": "arguard: manual or scheduled response",
                         "id": "0", "firedtimes": 1, "groups": []},
                "agent": {"id": "000", "name": socket.gethostname()},
                "id": "", "full_log": "", "location": "arguard"}
        else:
            result = alert_to_dict(alert)
        if self.kind == "file":
            result["syscheck"] = {**result.get("syscheck", {}), "path": target}
        else:
            result["data"] = {**result.get("data", {}), self.command.expect: target}
        return result

    def _legacy_args(self, target: str, alert: Alert | None,
                     alert_json: dict[str, Any]) -> list[str]:
        data = alert_json.get("data", {})
        user = target if self.kind == "user" else _valid_user(data.get("dstuser"))
        ip = target if self.kind == "ip" else _valid_address(data.get("srcip"))
        filename = target if self.kind == "file" else data.get("filename")
        return [user, ip,
                alert.id if alert and alert.id else "-",
                str(alert.rule.id) if alert else "-",
                alert.event.line.location if alert and alert.event.line.location else "-",
                filename if isinstance(filename, str) and filename else "-",
                *(self.command.extra_args or ("-",))]

    def _log(self, verb: str, target: str, result: ScriptResult) -> None:
        name = self.command.name
        outcome = ("killed after exec_timeout" if result.timed_out
                   else f"exit {result.returncode}")
        answered = f", check_keys {list(result.keys)} -> {result.answer}" if result.keys else ""
        log.log(logging.INFO if result.ok else logging.WARNING, "script %s %s %s: %s%s",
                name, verb, target, outcome, answered)
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text.strip():
                log.info("script %s %s %s %s: %s", name, verb, target, stream, text.rstrip())

    def _raise_on_failure(self, result: ScriptResult) -> None:
        if result.timed_out:
            raise ActionError(f"{result.argv[0]} killed after {self.exec_timeout:g} s "
                              "(exec_timeout)")
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-1:] or ["no error output"]
            raise ActionError(f"{result.argv[0]} exited with status {result.returncode}: "
                              f"{detail[0][:500]}")


def _valid_user(value: Any) -> str:
    return value if isinstance(value, str) and check_user(value).refused is None else "-"


def _valid_address(value: Any) -> str:
    address = normalise_address(value) if isinstance(value, str) else None
    return address if address is not None and "%" not in address else "-"


def _encode(message: dict[str, Any]) -> bytes:
    """One JSON line, shortening the alert's full_log if the line would be too long for
    Wazuh's fgets-based scripts."""
    line = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    alert = message["parameters"].get("alert") or {}
    while len(line) > MAX_MESSAGE and alert.get("full_log"):
        excess = len(line) - MAX_MESSAGE
        alert["full_log"] = alert["full_log"][:max(0, len(alert["full_log"]) - excess - 16)]
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    return line + b"\n"


def _reply(command: str) -> bytes:
    return _encode({"version": 1, "origin": ORIGIN, "command": command, "parameters": {}})


def _check_directory(directory: str) -> None:
    """The bin directory and every directory above it must be writable by root only
    (sticky directories above it excepted: others cannot rename what they do not own)."""
    path = directory
    group_sticky_ok = False
    while True:
        try:
            info = os.stat(path)
        except OSError as exc:
            raise ActionError(f"cannot use {path}: {exc.strerror}") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise ActionError(f"{path} is not a directory")
        _check_owner(path, info, group_sticky_ok)
        parent = os.path.dirname(path)
        if parent == path:
            return
        path, group_sticky_ok = parent, True


def _check_owner(path: str, info: os.stat_result, group_sticky_ok: bool) -> None:
    if info.st_uid != 0:
        raise ActionError(f"{path} is not owned by root (uid {info.st_uid})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        if not (group_sticky_ok and info.st_mode & stat.S_ISVTX):
            raise ActionError(f"{path} is group- or world-writable")


@dataclass
class _Stream:
    """Bounded capture of one output pipe."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[:max(room, 0)]
        self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        return text + (f"\n[{self.dropped} more bytes not kept]" if self.dropped else "")


class _Run:
    """One execution: the stdin/stdout exchange, output capture and the hard timeout, in a
    single thread driven by a selector (pipes, and a pidfd for the exit)."""

    def __init__(self, argv: list[str], message: bytes | None, exchange: bool,
                 exec_timeout: float, reply_timeout: float, is_active: IsActive,
                 output_limit: int):
        self.argv = argv
        self.exec_timeout = exec_timeout
        self.reply_timeout = reply_timeout
        self.is_active = is_active
        self.stdout = _Stream(output_limit)
        self.stderr = _Stream(output_limit)
        self.pending = message or b""       # bytes still to write to stdin
        self.awaiting = exchange and message is not None  # waiting for check_keys
        self.line = bytearray()              # partial stdout line while awaiting
        self.keys: tuple[str, ...] | None = None
        self.answer: Literal["continue", "abort"] | None = None

    def run(self) -> ScriptResult:
        try:
            proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env={"PATH": SAFE_PATH}, cwd="/",
                start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ActionError(f"cannot start {self.argv[0]}: {exc.strerror}") from exc
        self.proc = proc
        timed_out = False
        try:
            timed_out = self._exchange()
        finally:
            if proc.poll() is None:
                _kill_group(proc.pid)
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None and not pipe.closed:
                    pipe.close()
        return ScriptResult(tuple(self.argv), None if timed_out else proc.returncode,
                            self.stdout.text(), self.stderr.text(), timed_out,
                            self.keys, self.answer)

    def _exchange(self) -> bool:
        """Drive the pipes until the script has exited and its output is read; True when
        exec_timeout expired (the process group is then killed)."""
        proc = self.proc
        assert proc.stdin and proc.stdout and proc.stderr
        start = time.monotonic()
        deadline, reply_deadline = start + self.exec_timeout, start + self.reply_timeout
        self.selector = selectors.DefaultSelector()
        with self.selector:
            self.selector.register(proc.stdout, selectors.EVENT_READ, self.stdout)
            self.selector.register(proc.stderr, selectors.EVENT_READ, self.stderr)
            os.set_blocking(proc.stdin.fileno(), False)
            if self.pending:
                self.selector.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
            else:
                proc.stdin.close()
            pidfd = _pidfd(proc.pid)
            if pidfd is not None:
                self.selector.register(pidfd, selectors.EVENT_READ, "exit")
            try:
                exited = False
                while True:
                    now = time.monotonic()
                    if now >= deadline:
                        _kill_group(proc.pid)
                        return True
                    if self.awaiting and now >= reply_deadline:
                        self._stop_awaiting()
                    exited = exited or (pidfd is None and proc.poll() is not None)
                    if exited:
                        wait = 0.0  # drain what is there; children may keep pipes open
                    else:
                        wait = (reply_deadline if self.awaiting else deadline) - now
                        wait = min(wait, 0.1) if pidfd is None else wait
                    events = self.selector.select(max(wait, 0.0))
                    if exited and not events:
                        return False
                    for key, _ in events:
                        if key.data == "exit":
                            exited = True
                            self.selector.unregister(key.fileobj)
                        elif key.data == "stdin":
                            self._write_stdin()
                        else:
                            self._read(key.fileobj, key.data)
            finally:
                if pidfd is not None:
                    os.close(pidfd)

    def _read(self, pipe: Any, stream: _Stream) -> None:
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            self.selector.unregister(pipe)
            if stream is self.stdout and self.awaiting:
                self._stop_awaiting()
            return
        stream.add(chunk)
        if stream is self.stdout and self.awaiting:
            self.line += chunk
            while self.awaiting and b"\n" in self.line:
                line, _, rest = bytes(self.line).partition(b"\n")
                self.line = bytearray(rest)
                self._consider(line)
            if len(self.line) > MAX_MESSAGE:
                self._stop_awaiting()

    def _consider(self, line: bytes) -> None:
        """Answer a check_keys line; other output is only captured."""
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("command") != "check_keys":
            return
        parameters = message.get("parameters")
        keys = parameters.get("keys") if isinstance(parameters, dict) else None
        self.keys = tuple(k for k in keys if isinstance(k, str)) if isinstance(keys, list) else ()
        self.answer = "abort" if self.keys and self.is_active(self.keys) else "continue"
        self.awaiting = False
        self._send(_reply(self.answer))

    def _stop_awaiting(self) -> None:
        """No check_keys is coming: close stdin once the message is written."""
        self.awaiting = False
        if not self.pending:
            self._close_stdin()

    def _send(self, data: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            return
        was_idle = not self.pending
        self.pending += data
        if was_idle:
            self.selector.register(stdin, selectors.EVENT_WRITE, "stdin")

    def _write_stdin(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            written = os.write(stdin.fileno(), self.pending)
        except BrokenPipeError:
            self.pending = b""
            self.awaiting = False
            self._close_stdin()
            return
        self.pending = self.pending[written:]
        if not self.pending:
            self.selector.unregister(stdin)
            if not self.awaiting:
                self._close_stdin()

    def _close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.closed:
            if stdin in (key.fileobj for key in self.selector.get_map().values()):
                self.selector.unregister(stdin)
            stdin.close()


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when the process exits (Linux >= 5.3), or None,
    in which case the exit is polled."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


ACTION = ActionType(
    summary="run a custom active-response executable from paths.ar_bin_dir with Wazuh's 4.x "
            "JSON protocol (a [[command]] with `executable = …`)",
    kinds=("ip", "user", "file"),
    build=lambda command, context: ScriptAction(command, context.paths.ar_bin_dir),
    options=(Option("exec_timeout", NUMBER, 60, "seconds before the script's process group "
                    "is killed"),),
    detached=True,
)
