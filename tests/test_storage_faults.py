"""Storage faults are handled, not crashed on: a damaged database is moved aside and the
daemon starts on a fresh one, adopting the blocks the kernel holds for its instance; a
database another process keeps locked: one clear line (unwritable directories:
test_daemon_faults.py); a full disk while running: blocking goes on, what cannot be written is counted, one warning a
minute, and writing resumes when space returns."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from arguard.model import Block
from arguard.storage import open_database
from arguard.store import Store
from tests.conftest import REPO
from tests.daemon_process import (ATTACKER, AUTH_LOG, ArguardProcess, arguard, deny_targets,
                                  failed_password, hosts_deny_config, status, wait_for)
from tests.netns import namespace, run_in
from tests.test_daemon_instances import instance_config


def require_unshare() -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("unshare and root are needed (CI=true: this test must run)")
        pytest.skip("needs root and unshare (a private mount namespace)")


# --- a damaged database ---------------------------------------------------------------------

BINDINGS = """
    [[active_response]]
    command = "drop"
    rules_id = [5763]
    timeout = 600
    repeated_offenders = [30]

    [[active_response]]
    command = "null"
    rules_id = [5712]
    timeout = 900
    """
BLOCKED = {"drop": "203.0.113.11", "rules": "203.0.113.12", "null": "2001:db8::13",
           "deny": "203.0.113.14"}


def kernel_blocks(ns: str, hosts_deny: Path) -> dict[str, set[str]]:
    return {
        "drop": {line.split()[2] for line in run_in(ns, "ipset", "save", "ag-robust").splitlines()
                 if line.startswith("add ")},
        "rules": {line.split()[3].split("/")[0] for line in
                  run_in(ns, "iptables-legacy", "-S", "arguard").splitlines()
                  if line.startswith("-A arguard -s ")},
        "null": {line.split()[1] for line in
                 run_in(ns, "ip", "-6", "route", "show", "proto", "152").splitlines()},
        "deny": {line.split(": ")[1] for line in hosts_deny.read_text().splitlines()
                 if line.startswith("ALL: ")},
    }


def test_corrupt_database_repro_the_kernel_blocks_are_adopted(tmp_path: Path):
    """The issue's repro: `head -c 3000 /dev/urandom > state/arguard.db; rm -f
    state/arguard.db-wal state/arguard.db-shm; arguard run -c CFG`."""
    hosts_deny = tmp_path / "hosts.deny"
    hosts_deny.write_text("")
    config = instance_config(tmp_path / "robust", "ag-robust", hosts_deny)
    config.write_text(config.read_text() + textwrap.dedent(BINDINGS))
    state = config.parent / "state"
    with namespace("arguard-robust") as ns:
        wrapper = ["ip", "netns", "exec", ns]
        first = ArguardProcess(config.parent, config, wrapper=wrapper)
        try:
            first.wait_notified("READY=1")
            for command, address in BLOCKED.items():
                arguard(config, "block", address, "--command", command, "--timeout", "1h",
                        check=True)
            assert first.terminate() == 0
        finally:
            first.close()
        assert kernel_blocks(ns, hosts_deny) == {c: {a} for c, a in BLOCKED.items()}

        garbage = os.urandom(3000)
        (state / "arguard.db").write_bytes(garbage)
        for suffix in ("-wal", "-shm"):
            Path(f"{state}/arguard.db{suffix}").unlink(missing_ok=True)

        second = ArguardProcess(config.parent, config, wrapper=wrapper)
        try:
            second.wait_notified("READY=1")
            [kept] = state.glob("arguard.db.corrupt-*")
            assert kept.read_bytes() == garbage
            assert f"moved it aside to {kept}" in second.stderr
            assert "4 adopted from the backends" in second.stderr
            assert kernel_blocks(ns, hosts_deny) == {c: {a} for c, a in BLOCKED.items()}
            current = status(config)
            blocks = {b["command"]: b for b in current["blocks"]["active"]}
            assert {c: b["target"] for c, b in blocks.items()} == BLOCKED
            # its own time is lost: the longest its bindings give (600 s, then 30 min; 900 s),
            # or permanent for a command no binding uses
            assert 1700 < blocks["drop"]["expires_in"] <= 1800
            assert 800 < blocks["null"]["expires_in"] <= 900
            assert blocks["rules"]["expires_at"] is None
            [recovery] = current["storage"]["recoveries"]
            assert (recovery["moved_to"], recovery["adopted"]) == (str(kept), 4)
            assert "file is not a database" in recovery["problem"]
            assert "database replaced at" in arguard(config, "status", check=True).stdout
        finally:
            second.close()


def corrupt_index(path: Path, index: str) -> None:
    """Overwrite the root page of one index with garbage: the integrity check fails, the
    tables can still be read."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()[0]
    db.close()
    with open(path, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)


def test_a_database_failing_its_integrity_check_keeps_what_can_be_read(tmp_path: Path):
    database = tmp_path / "arguard.db"
    store = Store(database)
    store.record_owner_tag("1a2b3c4d")
    store.insert_block(Block(ATTACKER, "ip", "drop", 5763, "1.1", 100.0, 2e9, 2))
    store.save_positions({"/var/log/auth.log": (1, 2, 3000)}, set(), {"journal:": "s=ab"}, 1.0)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    corrupt_index(database, "offenders_last_seen")

    fresh, recovery = open_database(database, owner_hint="ffffffff", now=1_800_000_000)
    try:
        assert recovery is not None and recovery.problem != ""
        assert Path(recovery.moved_to).name.startswith("arguard.db.corrupt-")
        assert (recovery.blocks, recovery.offsets) == (1, 2)
        assert fresh.integrity_problem() is None
        assert fresh.owner_tag() == "1a2b3c4d", "the damaged file's own tag wins"
        assert [(b.target, b.offence) for b in fresh.active_blocks()] == [(ATTACKER, 2)]
        assert fresh.file_offsets() == [("/var/log/auth.log", 1, 2, 3000)]
        assert fresh.journal_cursor("journal:") == "s=ab"
        # until reconciliation has adopted the backends' blocks, the next start still will
        assert fresh.unfinished_recovery() == recovery
        fresh.record_adopted(0)
        assert fresh.unfinished_recovery() is None
    finally:
        fresh.close()
    # a sound database is left as it is
    again, none = open_database(database)
    again.close()
    assert none is None and len(list(tmp_path.glob("arguard.db.corrupt-*"))) == 1


# --- a database another process keeps locked ----------------------------------------------

def test_database_locked_by_another_process_waits_then_says_who(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, AUTH_LOG)
    Store(tmp_path / "state/arguard.db").close()
    holder = sqlite3.connect(tmp_path / "state/arguard.db", isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "arguard.cli", "run", "-c", str(config)],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        waited = time.monotonic() - started
    finally:
        holder.close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "is locked by another process" in line and f"pid {os.getpid()}" in line
    assert waited >= 9, "it waited for the lock first"


# --- a full disk ----------------------------------------------------------------------------

def test_full_disk_keeps_blocking_counts_and_resumes(tmp_path: Path):
    """State and logs on one small tmpfs (a private mount namespace, the daemon's own view),
    filled up while the daemon runs; hosts.deny lives elsewhere."""
    require_unshare()
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, AUTH_LOG)
    shared = tmp_path / "var"
    shared.mkdir()
    config.write_text(config.read_text().replace('state_dir = "state"', 'state_dir = "var/state"')
                      .replace('log_dir = "log"', 'log_dir = "var/log"'))
    mount = f"mount -t tmpfs -o size=4m tmpfs {shared} && exec \"$@\""
    process = ArguardProcess(tmp_path, config, wrapper=[
        "unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"])
    try:
        process.wait_notified("READY=1")
        inside = Path(f"/proc/{process.process.pid}/root") / shared.relative_to("/")
        filler = inside / "filler"
        with open(filler, "wb") as fill:
            try:
                while True:
                    fill.write(b"\0" * 65536)
                    fill.flush()
            except OSError:
                pass
        attackers = ["198.51.100.21", "198.51.100.22"]
        for number, address in enumerate(attackers):
            with open(tmp_path / "auth.log", "a") as log:
                log.write("".join(failed_password(address, 42000 + 10 * number + i)
                                  for i in range(8)))
            wait_for(lambda: address in deny_targets(tmp_path), what=f"{address} blocked")
        storage = status(config)["storage"]
        assert storage["alerts_not_written"] >= 2 * 8
        assert "No space left on device" in storage["alerts_error"]
        assert storage["blocks_not_recorded"] == 2
        warnings = [line for line in process.stderr.splitlines()
                    if "cannot write" in line and "alerts.json" in line]
        assert len(warnings) == 1, "one warning a minute, not one per batch"

        filler.unlink()
        with open(tmp_path / "auth.log", "a") as log:
            log.write("".join(failed_password(ATTACKER, 43000 + i) for i in range(8)))
        wait_for(lambda: {b["target"] for b in status(config)["blocks"]["active"]}
                 == {*attackers, ATTACKER}, what="every block recorded once space returned")
        alerts = (inside / "log/alerts.json").read_text().splitlines()
        assert alerts and all(ATTACKER in line for line in alerts)
        assert "alerts.json can be written again" in process.stderr
        assert status(config)["storage"]["blocks_table_error"] is None
    finally:
        process.close()
