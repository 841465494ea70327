"""Private network namespaces for tests that change kernel state.

Netlink sockets and libiptc act in the network namespace of the process that opens them, so
the test process never enters a namespace: everything that touches the kernel runs in a child
started with `ip netns exec NAME …` — a command (`ipset list`, `iptables-legacy -S`), a Python
snippet whose last output line is JSON, or `ActionProcess`, a child that builds one real
action with `build_action` and runs the calls the test sends it.

Namespace tests skip on a machine where namespaces cannot be created (not root, no `ip`),
except under CI (`CI=true`), where that is a failure.

Run as `python -m tests.netns serve` (inside a namespace) this module is that child.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
_names = itertools.count()


@functools.cache
def _unavailable() -> str | None:
    """Why namespaces cannot be used here (None: they can): tries to create one."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    probe = f"arguard-probe-{os.getpid()}"
    try:
        done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=True)
    return None


def require_netns() -> None:
    """Skip the test when namespaces are unavailable; under CI, fail it instead."""
    reason = _unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: namespace tests must run)")
    pytest.skip(reason)


@contextmanager
def namespace(prefix: str = "arguard-test") -> Iterator[str]:
    """A fresh network namespace with `lo` up, deleted afterwards (with everything in it)."""
    require_netns()
    name = f"{prefix}-{os.getpid()}-{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run_in(name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def exec_prefix(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def child_env() -> dict[str, str]:
    """The environment for a child Python: this worktree first on the path."""
    return dict(os.environ, PYTHONPATH=str(REPO))


def run_in(ns: str, *argv: str, check: bool = True, timeout: float = 60) -> str:
    """Run a command inside the namespace; its stdout."""
    done = subprocess.run([*exec_prefix(ns), *argv], capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} in {ns} failed ({done.returncode}): "
                             f"{done.stderr.strip()}")
    return done.stdout


def python_in(ns: str, code: str, timeout: float = 60) -> Any:
    """Run a Python snippet inside the namespace; the JSON value of its last output line."""
    out = run_in(ns, sys.executable, "-c", code, timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


def veth(ns_a: str, addresses_a: list[str], ns_b: str, addresses_b: list[str]) -> None:
    """A veth pair between two namespaces; each end gets its addresses (CIDR; IPv6 without
    duplicate address detection, so that it is usable at once) and is up."""
    name_a, name_b = f"va{next(_names)}", f"vb{next(_names)}"
    run_in(ns_a, "ip", "link", "add", name_a, "type", "veth", "peer", "name", name_b,
           "netns", ns_b)
    for ns, name, addresses in ((ns_a, name_a, addresses_a), (ns_b, name_b, addresses_b)):
        for address in addresses:
            run_in(ns, "ip", "address", "add", address, "dev", name,
                   *(["nodad"] if ":" in address else []))
        run_in(ns, "ip", "link", "set", name, "up")


@contextmanager
def namespace_pair(server_addresses: list[str],
                   client_addresses: list[str]) -> Iterator[tuple[str, str]]:
    """A "server" and a "client" namespace joined by a veth pair (addresses as for veth):
    the lab of the end-to-end tests."""
    with namespace("arguard-srv") as server, namespace("arguard-cli") as client:
        veth(server, server_addresses, client, client_addresses)
        yield server, client


@contextmanager
def tcp_listener(ns: str, port: int) -> Iterator[None]:
    """A TCP server on every address of the namespace that accepts and closes connections."""
    code = f"""
import socket
server = socket.create_server(("::", {port}), family=socket.AF_INET6, dualstack_ipv6=True)
print("listening", flush=True)
while True:
    server.accept()[0].close()
"""
    process = subprocess.Popen([*exec_prefix(ns), sys.executable, "-c", code],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "listening"
        yield
    finally:
        process.kill()
        process.wait()


def connect(ns: str, address: str, port: int, timeout: float = 1.0,
            source: str | None = None) -> str:
    """Try one TCP connection from the namespace (from `source`, one of its addresses):
    "connected", "timeout" or the error."""
    bind = None if source is None else (source, 0)
    return python_in(ns, f"""
import json, socket
try:
    socket.create_connection(({address!r}, {port}), timeout={timeout},
                             source_address={bind!r}).close()
    print(json.dumps("connected"))
except TimeoutError:
    print(json.dumps("timeout"))
except OSError as error:
    print(json.dumps(type(error).__name__))
""")


class JsonChild:
    """A child process driven over a pipe: one JSON call per line on its stdin, one JSON
    reply per line on its stdout."""

    #: what the child is, for the message when it dies
    what = "the child process"

    def __init__(self, argv: list[str]):
        self._process = subprocess.Popen(argv, cwd=REPO, env=child_env(),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, method: str, *args: Any) -> None:
        self._process.stdin.write(json.dumps([method, *args]) + "\n")
        self._process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        line = self._process.stdout.readline()
        if not line:
            raise AssertionError(f"{self.what} died (exit {self._process.wait()})")
        return json.loads(line)


class ActionProcess(JsonChild):
    """One real action, built by `build_action` in a child process inside a namespace; the
    methods forward to it. An ActionError in the child is raised here as ActionError with
    the same message."""

    what = "the action process"

    def __init__(self, ns: str | None, action: str, options: dict[str, Any] | None = None,
                 name: str = "test-command", owner: str = "", *, expect: str = "srcip",
                 prefix: list[str] | None = None):
        """`owner`: the owner tag of the instance the action works for ("": untagged).
        `prefix`: what runs the child instead of `ip netns exec NS` (tests.pidns: a PID
        namespace's)."""
        spec = json.dumps({"name": name, "action": action, "options": options or {},
                           "owner": owner, "expect": expect})
        super().__init__([*(prefix if prefix is not None else exec_prefix(ns)),
                          sys.executable, "-m", "tests.netns", "serve", spec])
        self._reply()  # built (or the construction error)

    def add(self, target: str, timeout: int | None = None,
            attested_pid: int | None = None) -> str | None:
        """`attested_pid`: the call gets an alert whose line the journal attested as
        written by that pid (else no alert); what the action said it did."""
        return self._call("add", target, timeout, attested_pid)

    def add_many(self, items: list[tuple[str, int | None]]) -> None:
        self._call("add_many", [list(item) for item in items])

    def delete(self, target: str) -> None:
        self._call("delete", target)

    def check(self, target: str) -> bool:
        return self._call("check", target)

    def list_targets(self) -> set[str]:
        return set(self._call("list_targets"))

    def _call(self, method: str, *args: Any) -> Any:
        self._send(method, *args)
        return self._reply()

    def _reply(self) -> Any:
        from arguard.respond.actions import ActionError

        reply = self._receive()
        if "error" in reply:
            raise ActionError(reply["error"])
        return reply["result"]


def _serve(spec_json: str) -> None:
    """The child side of ActionProcess: build the action, then one JSON call per stdin line,
    one JSON reply per stdout line."""
    from arguard.config import Command, Paths
    from arguard.respond.actions import ActionContext, ActionError, build_action
    from arguard.respond.owner import Owner

    spec = json.loads(spec_json)
    command = Command(name=spec["name"], action=spec["action"], expect=spec["expect"],
                      timeout_allowed=True, options=MappingProxyType(spec["options"]))

    def reply(**message: Any) -> None:
        print(json.dumps(message), flush=True)

    try:
        action = build_action(command, ActionContext(Paths(), Owner(spec["owner"])))
    except ActionError as error:
        reply(error=str(error))
        return
    reply(result=None)
    for line in sys.stdin:
        method, *args = json.loads(line)
        if method == "add_many":
            args = [[tuple(item) for item in args[0]]]
        if method == "add":
            args[2] = None if args[2] is None else _alert_from(args[2])
        try:
            result = getattr(action, method)(*args)
        except ActionError as error:
            reply(error=str(error))
            continue
        reply(result=sorted(result) if isinstance(result, set) else result)


def _alert_from(pid: int) -> Any:
    """An alert for an entry the journal attested as written by process `pid`."""
    from arguard.model import Alert, Event, Line, Predecoded, RuleInfo

    line = Line("test entry", "journald", 0.0, attested_pid=pid)
    return Alert("0.1", RuleInfo(100100, 10, "test", (), ()),
                 Event(line, Predecoded("test entry"), 0.0), 1)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    _serve(sys.argv[2])
