"""Crash tests: a real arguard process is SIGKILLed at each point between the SQLite write and
the backend change, and the next start (another real process) reconciles both ways.

The child is this module run as a script (`python -m tests.respond.test_crash ...`). It uses
the real Responder, Scheduler, store and action; the only test hook is a wrapper around the
action (in this file, not in arguard) that kills the process just before or just after the
backend change named by $CRASH_AT. Time is wall-clock plus $CLOCK_OFFSET so that an
expiry can be reached without sleeping.

Backends: hosts-deny on a temp file, ipset inside a private network namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from arguard.config import load_config
from arguard.respond.actions import ActionContext, build_action
from arguard.respond.owner import instance_owner
from arguard.respond.stage import build_respond_stage
from arguard.store import Store
from tests.conftest import REPO
from tests.netns import require_netns
from tests.respond.test_policy import make_config

TARGET = "203.0.113.5"


# --- the child process ----------------------------------------------------------------------

class Crashing:
    """Wraps a real action; kills the process around the backend change named `point`:
    before-add, after-add, before-delete, after-delete."""

    def __init__(self, action, point: str | None):
        self.action, self.point = action, point

    def _maybe_die(self, when: str) -> None:
        if self.point == when:
            os.kill(os.getpid(), signal.SIGKILL)

    def add(self, target, timeout, alert):
        self._maybe_die("before-add")
        self.action.add(target, timeout, alert)
        self._maybe_die("after-add")

    def delete(self, target):
        self._maybe_die("before-delete")
        self.action.delete(target)
        self._maybe_die("after-delete")

    def check(self, target):
        return self.action.check(target)

    def list_targets(self):
        return self.action.list_targets()


def child(config_path: str, operation: str, *args: str) -> None:
    config = load_config(Path(config_path))
    offset = float(os.environ.get("CLOCK_OFFSET", "0"))
    store = Store(config.paths.database)
    context = ActionContext(config.paths, instance_owner(store, config.paths.state_dir))
    actions = {name: Crashing(build_action(command, context), os.environ.get("CRASH_AT"))
               for name, command in config.commands.items() if name == "block"}
    stage = build_respond_stage(config, store, clock=lambda: time.time() + offset,
                                actions=actions)
    if operation == "block":
        print(stage.block(args[0], "block", int(args[1])).verb)
    elif operation == "unblock":
        print([a.verb for a in stage.unblock(args[0], "block")])
    elif operation == "expire":
        print([a.verb for a in stage.responder.lift_expired()])
    elif operation == "start":
        print(json.dumps(stage.responder.reconcile().counts()))
    elif operation == "list":
        print(json.dumps(sorted(stage.responder.action("block").list_targets())))


# --- the tests ------------------------------------------------------------------------------

@dataclass
class Backend:
    """One backend under test: its [[command]] keys, and the command prefix that runs a
    process where the backend's state lives (a network namespace)."""

    command: str
    prefix: list[str]


def hosts_deny(tmp_path: Path) -> Iterator[Backend]:
    path = tmp_path / "hosts.deny"
    path.write_text("sshd: 198.51.100.1\n")
    yield Backend(f'action = "hosts-deny"\npath = "{path}"', [])


def ipset(tmp_path: Path) -> Iterator[Backend]:
    require_netns()
    name = f"arguard-crash-{os.getpid()}-{tmp_path.name[-20:]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield Backend('action = "ipset"\nset_name = "arguard-crash"',
                      ["ip", "netns", "exec", name])
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture(params=["hosts-deny", "ipset"])
def backend(request, tmp_path):
    yield from {"hosts-deny": hosts_deny, "ipset": ipset}[request.param](tmp_path)


class Arguard:
    """Runs the child in the backend's place, against one config and database."""

    def __init__(self, directory: Path, backend: Backend):
        self.backend = backend
        self.config = make_config(directory, f"""
            [[command]]
            name = "block"
            expect = "srcip"
            timeout_allowed = true
            {backend.command}
        """)
        self.store = Store(self.config.paths.database)

    def run(self, *args: str, crash_at: str | None = None, offset: float = 0) -> str:
        env = dict(os.environ, PYTHONPATH=str(REPO), CLOCK_OFFSET=str(offset))
        if crash_at:
            env["CRASH_AT"] = crash_at
        done = subprocess.run([*self.backend.prefix, sys.executable, "-m", "tests.respond.test_crash",
                               str(self.config.path), *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        if crash_at:
            assert done.returncode == -signal.SIGKILL, done.stderr
            return ""
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def row(self) -> str | None:
        block = self.store.active_block("block", TARGET)
        return None if block is None else block.state

    def kernel(self) -> bool:
        return TARGET in json.loads(self.run("list"))

    def start(self) -> dict:
        return json.loads(self.run("start"))


@pytest.fixture
def arguard(tmp_path, backend) -> Arguard:
    return Arguard(tmp_path, backend)


def test_killed_after_the_row_before_the_backend_change(arguard):
    arguard.run("block", TARGET, "600", crash_at="before-add")
    assert (arguard.row(), arguard.kernel()) == ("active", False)
    assert arguard.start() == {"lifted": 0, "restored": 1, "removed": 0, "adopted": 0, "failed": 0}
    assert (arguard.row(), arguard.kernel()) == ("active", True)


def test_killed_right_after_the_backend_change(arguard):
    arguard.run("block", TARGET, "600", crash_at="after-add")
    assert (arguard.row(), arguard.kernel()) == ("active", True)
    assert arguard.start() == {"lifted": 0, "restored": 0, "removed": 0, "adopted": 0, "failed": 0}
    assert (arguard.row(), arguard.kernel()) == ("active", True)


def test_killed_before_an_unblock_reaches_the_backend(arguard):
    arguard.run("block", TARGET, "600")
    arguard.run("unblock", TARGET, crash_at="before-delete")
    # the intent is on record: the row is due now, the backend still blocks
    assert (arguard.row(), arguard.kernel()) == ("active", True)
    assert arguard.start()["lifted"] == 1
    assert (arguard.row(), arguard.kernel()) == (None, False)


def test_killed_after_an_expiry_reached_the_backend(arguard):
    arguard.run("block", TARGET, "600")
    arguard.run("expire", offset=601, crash_at="after-delete")
    assert (arguard.row(), arguard.kernel()) == ("active", False)
    assert json.loads(arguard.run("start", offset=601))["lifted"] == 1
    assert (arguard.row(), arguard.kernel()) == (None, False)


def test_a_block_that_expired_while_arguard_was_down(arguard):
    arguard.run("block", TARGET, "600")
    assert json.loads(arguard.run("start", offset=3600))["lifted"] == 1
    assert (arguard.row(), arguard.kernel()) == (None, False)


def test_backend_entries_the_table_does_not_know_are_removed(arguard, tmp_path):
    """The other way round: the backend holds an arguard entry that the table does not (a
    process killed after the backend change, then the database restored from a copy taken
    before it). The next start removes it and keeps the admin's own entries."""
    database = arguard.config.paths.database
    arguard.store.close()
    backup = tmp_path / "backup.db"
    shutil.copy(database, backup)
    arguard.run("block", TARGET, "600", crash_at="after-add")
    assert arguard.kernel()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, database)
    arguard.store = Store(database)
    assert arguard.row() is None
    assert arguard.start() == {"lifted": 0, "restored": 0, "removed": 1, "adopted": 0, "failed": 0}
    assert not arguard.kernel()


if __name__ == "__main__":
    child(*sys.argv[1:])
