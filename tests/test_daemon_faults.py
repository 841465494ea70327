"""Faults around the daemon: a stale socket, a missing or read-only state directory, SQLite
locked by another process, SIGTERM in the middle of a burst."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.daemon_process import (ATTACKER, AUTH_LOG, ArguardProcess, arguard, deny_targets,
                                  failed_password, hosts_deny_config, status, syslog_line,
                                  wait_for)

SOURCES = AUTH_LOG


def test_stale_socket_and_missing_state_directory(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, SOURCES)
    shutil.rmtree(tmp_path / "state")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "run/control.sock"))
    stale.close()  # the file stays, nobody listens: what a crashed daemon leaves behind

    down = arguard(config, "status")
    assert down.returncode == 3 and "not running" in down.stdout

    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        assert status(config)["running"]
        assert (tmp_path / "state/arguard.db").exists()
    finally:
        process.close()


@pytest.mark.parametrize("name, what", [("state", "state directory"),
                                        ("log", "log directory")])
def test_read_only_state_or_log_directory_is_a_one_line_error(tmp_path: Path, name: str,
                                                              what: str):
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, SOURCES)
    directory = tmp_path / name
    # a private mount namespace, so the read-only bind mount is seen by this child only
    script = (f"mount --bind -o ro {directory} {directory} && "
              f"exec {sys.executable} -m arguard.cli run -c {config}")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: not starting: cannot write to the {what} {directory}: Read-only file system")
    assert "Traceback" not in result.stderr


def test_sqlite_locked_by_another_process_delays_but_loses_nothing(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, SOURCES)
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        holder = sqlite3.connect(tmp_path / "state/arguard.db", isolation_level=None,
                                 check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(2.0, lambda: holder.execute("COMMIT"))
        release.start()
        with open(tmp_path / "auth.log", "a") as log:
            log.write("".join(failed_password(ATTACKER, 44000 + i) for i in range(8)))
        release.join()
        wait_for(lambda: deny_targets(tmp_path) == {ATTACKER}, deadline=20,
                 what="the block after the lock was released")
        holder.close()
        assert [b["target"] for b in status(config)["blocks"]["active"]] == [ATTACKER]
    finally:
        process.close()


def test_sigterm_during_a_burst_leaves_kernel_and_table_in_agreement(tmp_path: Path):
    """100 000 lines from 500 attackers; SIGTERM arrives while they are being read. After
    the stop, every hosts.deny entry is an active block in SQLite and vice versa; a restart
    reads the rest and again agrees."""
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, SOURCES)
    attackers = [f"198.51.{i // 250}.{i % 250 + 1}" for i in range(500)]
    lines = [failed_password(attackers[i % 500], 1024 + i % 60000) for i in range(96_000)]
    lines += [syslog_line(f"pam_unix(cron:session): session opened for user root(uid=0) "
                          f"by (uid=0) #{i}", "CRON", 99) for i in range(4_000)]
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        with open(tmp_path / "auth.log", "a") as log:
            log.write("".join(lines))
        wait_for(lambda: status(config)["lines"] > 0, what="reading to start")
        assert process.terminate(deadline=5.0) == 0
    finally:
        process.close()

    def agree() -> set[str]:
        table = {b["target"] for b in status(config)["blocks"]["active"]}
        assert deny_targets(tmp_path) == table
        return table

    first = agree()
    restarted = ArguardProcess(tmp_path, config)
    try:
        restarted.wait_notified("READY=1")
        wait_for(lambda: len(status(config)["blocks"]["active"]) == 500, deadline=60,
                 what="all 500 attackers blocked after the restart")
        assert restarted.terminate() == 0
    finally:
        restarted.close()
    assert first <= agree() == set(attackers)


KILLED_IN_THE_RENAME = """
import os, signal, sys
import arguard.respond.actions.atomicfile as atomicfile

def killed(*args):
    os.kill(os.getpid(), signal.SIGKILL)

atomicfile.os.replace = killed   # the temp file is written and fsynced, not yet renamed
from arguard.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_in_the_middle_of_a_hosts_deny_write(tmp_path: Path):
    """`arguard block` (daemon down) is killed after writing the new hosts.deny to its temp
    file and before the rename: the file is intact, the temp file is left. The next start
    removes it and, from the row written before the write, puts the block in place."""
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, SOURCES)
    before = (tmp_path / "hosts.deny").read_bytes()
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_THE_RENAME, "block", ATTACKER,
                             "--timeout", "1h", "-c", str(config)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert killed.returncode == -9, killed.stderr
    [leftover] = [p for p in tmp_path.glob(".hosts.deny.*") if p.name != ".hosts.deny.lock"]
    assert ATTACKER in leftover.read_text()
    assert (tmp_path / "hosts.deny").read_bytes() == before

    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        assert sorted(p.name for p in tmp_path.glob(".hosts.deny*")) == [".hosts.deny.lock"]
        assert (tmp_path / "hosts.deny").read_bytes().startswith(before)
        assert deny_targets(tmp_path) == {ATTACKER}
        assert f"removed {leftover}, left by a write that was interrupted" in process.stderr
    finally:
        process.close()
