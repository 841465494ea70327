"""The journal source against real journal files: systemd-journal-remote turns journal export
format into a .journal file, the source's journalctl reads that directory."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from arguard.config import Source
from arguard.sources.recent import RecentWindow
from arguard.store import Store
from tests.sources.helpers import follow, texts, until

JOURNAL_REMOTE = next((p for p in ("/lib/systemd/systemd-journal-remote",
                                   "/usr/lib/systemd/systemd-journal-remote")
                       if os.path.exists(p)), None)
if JOURNAL_REMOTE is None or shutil.which("journalctl") is None:
    pytest.skip("needs journalctl and systemd-journal-remote", allow_module_level=True)

BOOT_ID = "0123456789abcdef0123456789abcdef"
BASE_TIME = 1_790_000_000_000_000   # microseconds


def export_entry(number: int, fields: dict[str, str | bytes],
                 realtime: int | None = None) -> bytes:
    """One entry in journal export format; bytes values go in the binary form. `realtime`:
    when it was written (microseconds since the epoch; default: a fixed time + `number`)."""
    realtime = BASE_TIME + number if realtime is None else realtime
    out = [f"__REALTIME_TIMESTAMP={realtime}\n".encode(),
           f"__MONOTONIC_TIMESTAMP={number + 1}\n".encode(), f"_BOOT_ID={BOOT_ID}\n".encode()]
    for key, value in fields.items():
        if isinstance(value, bytes):
            out.append(key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n")
        else:
            out.append(f"{key}={value}\n".encode())
    return b"".join(out) + b"\n"


def add_entries(directory: Path, entries: list[bytes]) -> None:
    subprocess.run([JOURNAL_REMOTE, f"--output={directory / 'test.journal'}", "-"],
                   input=b"".join(entries), check=True, capture_output=True)


def sshd(number: int, message: str) -> bytes:
    return export_entry(number, {"MESSAGE": message, "SYSLOG_IDENTIFIER": "sshd",
                                 "_COMM": "sshd", "_HOSTNAME": "web1", "_PID": "812"})


def journal_source(directory: Path, start_at: str = "beginning") -> Source:
    return Source(journal_matches=("_COMM=sshd",), journal_directory=str(directory),
                  start_at=start_at)


def test_entries_become_lines_with_the_journals_fields(tmp_path):
    journal = tmp_path / "journal"
    journal.mkdir()
    add_entries(journal, [
        sshd(1, "Invalid user admin from 192.0.2.7 port 40022"),
        export_entry(2, {"MESSAGE": "pam_unix(cron:session): session opened", "_COMM": "cron",
                         "SYSLOG_IDENTIFIER": "CRON"}),
        export_entry(3, {"MESSAGE": b"Invalid user \xff\x00x from 192.0.2.8",
                         "_COMM": "sshd", "_HOSTNAME": "web1"}),
    ])

    async def scenario(manager, delivered):
        await until(lambda: len(delivered) >= 2)
        add_entries(journal, [sshd(4, "Connection closed by 192.0.2.9 port 5000")])
        await until(lambda: len(delivered) >= 3)

    delivered, status, _ = follow([journal_source(journal)], tmp_path / "db", scenario)
    assert [(l.text, l.location, l.program_name, l.hostname, l.timestamp) for l in delivered] == [
        ("Invalid user admin from 192.0.2.7 port 40022", "journald", "sshd", "web1",
         (BASE_TIME + 1) / 1e6),
        ("Invalid user \ufffd x from 192.0.2.8", "journald", "sshd", "web1",
         (BASE_TIME + 3) / 1e6),
        ("Connection closed by 192.0.2.9 port 5000", "journald", "sshd", "web1",
         (BASE_TIME + 4) / 1e6),
    ]
    entry = status[0]
    assert (entry["kind"], entry["lines"], entry["invalid_utf8"], entry["nul_bytes"],
            entry["errors"]) == ("journal", 3, 1, 1, 0)
    assert entry["cursor"] is not None and entry["pid"] is not None


def test_cursor_resumes_after_the_last_delivered_entry(tmp_path):
    journal, db = tmp_path / "journal", tmp_path / "db"
    journal.mkdir()
    add_entries(journal, [sshd(1, "one"), sshd(2, "two")])

    def once(expect: int, start_at: str = "end") -> list[str]:
        async def scenario(manager, delivered):
            await until(lambda: len(delivered) >= expect)
        delivered, _, _ = follow([journal_source(journal, start_at)], db, scenario)
        return texts(delivered)

    assert once(2, "beginning") == ["one", "two"]
    source = journal_source(journal)
    assert Store(db).journal_cursor(source.name) is not None
    add_entries(journal, [sshd(3, "three")])
    assert once(1) == ["three"]


def test_start_at_end_reads_what_is_logged_while_stopped_before_any_match(tmp_path):
    """start_at = end saves the journal's tail cursor at once: entries logged after the first
    start are read even if arguard was stopped before any of them arrived."""
    journal, db = tmp_path / "journal", tmp_path / "db"
    journal.mkdir()
    add_entries(journal, [sshd(1, "before the first start")])

    async def nothing(manager, delivered):
        await until(lambda: manager.status()[0]["cursor"] is not None)

    delivered, _, _ = follow([journal_source(journal, "end")], db, nothing)
    assert delivered == []
    add_entries(journal, [sshd(2, "while stopped")])

    async def one(manager, delivered):
        await until(lambda: len(delivered) >= 1)

    delivered, _, _ = follow([journal_source(journal, "end")], db, one)
    assert texts(delivered) == ["while stopped"]


def test_start_at_recent_reads_the_entries_of_the_window(tmp_path):
    journal = tmp_path / "journal"
    journal.mkdir()
    now = int(time.time() * 1e6)
    add_entries(journal, [sshd(1, "long ago"), sshd(now - 5_000_000 - BASE_TIME, "just now")])

    async def scenario(manager, delivered):
        await until(lambda: len(delivered) >= 1)

    window = RecentWindow(120, lambda text: None)
    delivered, _, _ = follow([journal_source(journal, "recent")], tmp_path / "db", scenario,
                             recent=window)
    assert texts(delivered) == ["just now"]


def test_journalctl_that_dies_is_restarted_and_continues_after_its_cursor(tmp_path):
    journal = tmp_path / "journal"
    journal.mkdir()
    add_entries(journal, [sshd(1, "one")])

    async def scenario(manager, delivered):
        await until(lambda: len(delivered) >= 1)
        os.kill(manager.status()[0]["pid"], signal.SIGKILL)
        add_entries(journal, [sshd(2, "two")])
        await until(lambda: len(delivered) >= 2)

    delivered, status, _ = follow([journal_source(journal)], tmp_path / "db", scenario)
    assert texts(delivered) == ["one", "two"]
    assert status[0]["restarts"] == 1
    assert status[0]["errors"] == 1
    assert "journalctl exited with status -9" in status[0]["last_error"]


def test_a_journal_directory_journalctl_cannot_open_is_an_error_not_a_crash(tmp_path):
    file_log = tmp_path / "app.log"
    file_log.touch()

    async def scenario(manager, delivered):
        with open(file_log, "a") as f:
            f.write("file line\n")
        await until(lambda: len(delivered) >= 1 and manager.status()[0]["errors"] >= 1)

    delivered, status, _ = follow([journal_source(tmp_path / "missing"),
                                   Source(path=str(file_log))], tmp_path / "db", scenario)
    assert texts(delivered) == ["file line"]
    assert "journalctl exited with status 1" in status[0]["last_error"]
    assert "restarting journalctl in 1 s" in status[0]["last_error"]


def test_only_the_journals_own_pid_is_attested(tmp_path):
    """_PID comes from the kernel (journald reads the writer's credentials); SYSLOG_PID and
    the text are the writer's choice: only _PID becomes the line's attested pid."""
    journal = tmp_path / "journal"
    journal.mkdir()
    add_entries(journal, [
        sshd(1, "from sshd itself"),
        export_entry(2, {"MESSAGE": "forged by logger --id=1", "SYSLOG_IDENTIFIER": "sshd",
                         "_COMM": "sshd", "SYSLOG_PID": "1", "_PID": "4711"}),
        export_entry(3, {"MESSAGE": "imported without a sender", "_COMM": "sshd",
                         "SYSLOG_PID": "4242"}),
    ])

    async def scenario(manager, delivered):
        await until(lambda: len(delivered) >= 3)

    delivered, _, _ = follow([journal_source(journal)], tmp_path / "db", scenario)
    assert [(l.pid, l.attested_pid) for l in delivered] == [
        ("812", 812), ("1", 4711), ("4242", None)]
