"""Running a real `arguard run` process for tests: its own config directory, readiness read
from systemd's notify protocol on a socket the test owns, and the CLI run as a subprocess."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO, write_config

ATTACKER = "203.0.113.5"
_started = itertools.count()


def syslog_line(message: str, program: str = "sshd", pid: int = 4242) -> str:
    stamp = time.strftime("%b %e %H:%M:%S")
    return f"{stamp} server {program}[{pid}]: {message}\n"


def failed_password(address: str, port: int = 50000) -> str:
    return syslog_line(f"Failed password for root from {address} port {port} ssh2")


#: the [[source]] of the tests' daemons: auth.log in their directory
AUTH_LOG = """
    [[source]]
    path = "auth.log"
    """


def deny_targets(directory: Path) -> set[str]:
    """The addresses the hosts.deny of a test's directory blocks."""
    return {line.split(": ", 1)[1] for line in (directory / "hosts.deny").read_text().splitlines()
            if line.startswith("ALL: ")}


def wait_for(predicate, deadline: float = 10.0, what: str = "condition"):
    """Poll until `predicate()` is truthy; fail with `what` after `deadline` seconds (a
    bound for a hung test, not a speed assertion)."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class ArguardProcess:
    """`arguard run -c CONFIG` as a child process, started with NOTIFY_SOCKET pointing at a
    datagram socket of ours, so that the test sees READY=1 / STOPPING=1 as systemd would."""

    def __init__(self, directory: Path, config: Path, *extra_args: str,
                 wrapper: list[str] | None = None, module: str = "arguard.cli"):
        """`module`: what `python -m` runs (a test's launcher may register more actions
        before running arguard's command line)."""
        self.directory = directory
        self.config = config
        self.notify_path = directory / f"notify-{next(_started)}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "PYTHONPATH": str(REPO)}
        self.stderr_path = directory / "daemon.stderr"
        self.process = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", module, "run", "-c", str(config),
             *extra_args],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "w"))

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_notified(self, message: str, deadline: float = 15.0) -> None:
        end = time.monotonic() + deadline
        while not any(message in m.split("\n") for m in self.messages):
            if self.process.poll() is not None and message != "STOPPING=1":
                raise AssertionError(f"arguard exited with {self.process.returncode} before "
                                     f"{message}:\n{self.stderr}")
            if time.monotonic() > end:
                raise AssertionError(f"no {message} within {deadline} s:\n{self.stderr}")
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except TimeoutError:
                pass

    def terminate(self, deadline: float = 5.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(deadline)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.notify.close()


@contextmanager
def running_in(ns: str, directory: Path, config: Path) -> Iterator[ArguardProcess]:
    """`arguard run -c CONFIG` inside network namespace `ns`, once it has said READY=1;
    killed at the end unless the test stopped it."""
    process = ArguardProcess(directory, config, wrapper=["ip", "netns", "exec", ns])
    try:
        process.wait_notified("READY=1")
        yield process
    finally:
        process.close()


def arguard(config: Path, *args: str, check: bool = False, module: str = "arguard.cli",
            wrapper: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The CLI, run as the operator would (`wrapper`, `module`: as for ArguardProcess)."""
    result = subprocess.run([*(wrapper or []), sys.executable, "-m", module, *args, "-c",
                             str(config)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, **kwargs)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def status(config: Path) -> dict:
    result = arguard(config, "status", "--json")
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)


def hosts_deny_config(directory: Path, sources: str, responses: str | None = None) -> Path:
    """A config in `directory` whose firewall stand-in is hosts.deny on a temp file."""
    (directory / "hosts.deny").write_text("# test hosts.deny\n")
    responses = responses if responses is not None else """
        [[active_response]]
        command = "host-deny"
        rules_id = [5712, 5763, 31151]
        timeout = 600
        repeated_offenders = [30, 60]
        """
    return write_config(directory, extra=textwrap.dedent("""
        [global]
        white_list = ["127.0.0.0/8", "::1", "192.0.2.10"]

        [[command]]
        name = "host-deny"
        action = "hosts-deny"
        expect = "srcip"
        timeout_allowed = true
        path = "hosts.deny"
        """) + textwrap.dedent(sources) + textwrap.dedent(responses))
