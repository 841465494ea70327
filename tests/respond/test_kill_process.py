"""kill-process: only the pid the journal attested (_PID) for the entry that fired the rule,
only while it runs a program its `exe` pattern allows. A real daemon runs in a PID
namespace of the test's own (tests/pidns.py) with real journal files (systemd-journal-remote
writes them from export format, so the test chooses each entry's _PID: the pids of its own
processes in that namespace)."""

from __future__ import annotations

import textwrap
import time

import pytest

from arguard.respond.actions import ActionError
from tests.conftest import write_config
from tests.daemon_process import ArguardProcess, arguard, syslog_line, wait_for
from tests.netns import ActionProcess
from tests.pidns import ProcessLab, unused_ids
from tests.sources.test_journal import add_entries, export_entry

(UID,) = unused_ids(1)
NOT_RUNNING = 99_999
KILL = {"exe": ".*/sleep", "grace": 0.5}


@pytest.fixture
def lab():
    with ProcessLab() as lab:
        yield lab


def miner_entry(number: int, message: str, pid: int, ago: float = 0.0, **fields: str) -> bytes:
    """An entry process `pid` wrote `ago` seconds ago."""
    return export_entry(number, {"MESSAGE": message, "SYSLOG_IDENTIFIER": "miner",
                                 "_COMM": "miner", "_HOSTNAME": "web1", "_PID": str(pid),
                                 **fields}, realtime=int((time.time() - ago) * 1e6))


def test_only_the_journals_pid_is_ended_and_only_if_it_runs_an_allowed_program(lab, tmp_path):
    named = lab.spawn(UID)        # named in message text only: never a target
    writer = lab.spawn(UID)       # wrote its entry itself: the journal attests its pid
    gone = lab.spawn(UID)         # wrote an entry, exited; its pid now runs another program
    lab.kill(gone)
    reused = lab.spawn(UID, argv=("tail", "-f", "/dev/null"), pid=gone)
    restarted = lab.spawn(UID)    # wrote an entry a minute ago, exited; the same program
    lab.kill(restarted)           # started anew has its pid now
    anew = lab.spawn(UID, pid=restarted)
    journal = tmp_path / "journal"
    journal.mkdir()
    add_entries(journal, [
        miner_entry(1, f"miner started as pid {named}", NOT_RUNNING, SYSLOG_PID=str(named)),
        miner_entry(2, "miner started", writer),
        miner_entry(3, "miner started", gone),
        miner_entry(4, "miner started", restarted, ago=60),
    ])
    auth_log = tmp_path / "app.log"
    auth_log.touch()
    config = write_config(tmp_path, shipped=False, extra=textwrap.dedent(f"""
        [[source]]
        journal = {{ matches = ["_COMM=miner"], directory = "journal" }}
        start_at = "beginning"

        [[source]]
        path = "{auth_log}"

        [[command]]
        name = "kill"
        action = "kill-process"
        exe = '{KILL["exe"]}'
        grace = {KILL["grace"]}

        [[active_response]]
        command = "kill"
        rules_id = [100100]
        """))
    (tmp_path / "rules.d" / "miner.toml").write_text(textwrap.dedent("""
        [[rule]]
        id = 100100
        level = 10
        match = 'miner started'
        description = "a miner started"
        """))
    daemon = ArguardProcess(tmp_path, config, wrapper=lab.enter())
    log = tmp_path / "log/active-responses.log"
    try:
        daemon.wait_notified("READY=1")
        with open(auth_log, "a") as file:
            file.write(syslog_line("miner started", program="miner", pid=named))
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 5,
                 what="five responses")
        operator = arguard(config, "block", str(named), "--command", "kill")
    finally:
        daemon.close()

    assert lab.ended(writer, wait=5) == "SIGTERM"
    assert [lab.ended(pid) for pid in (named, reused, anew)] == [None, None, None]
    lines = log.read_text().splitlines()
    by_target = {line.split()[3]: line for line in lines[:5]}
    assert 'reason="no kernel-attested pid (_PID): the entry did not come from the journal"' \
        in by_target['""'], "the file's line: its pid is text"
    assert f" kill fail {NOT_RUNNING} " in by_target[str(NOT_RUNNING)]
    assert f"pid {NOT_RUNNING} is not running" in by_target[str(NOT_RUNNING)]
    assert by_target[str(writer)].endswith(
        f'detail="ended pid {writer} (/usr/bin/sleep): {writer} (SIGTERM)"')
    assert f" kill fail {gone} " in by_target[str(gone)]
    assert "it runs '/usr/bin/tail'" in by_target[str(gone)]
    assert f" kill fail {restarted} " in by_target[str(restarted)]
    assert "after the entry was written (the pid was reused)" in by_target[str(restarted)]
    assert operator.returncode != 0
    assert "only as the kernel-attested pid (_PID)" in operator.stdout + operator.stderr
    assert not any(f" {named} " in line for line in lines[:5])


def test_an_alert_whose_attested_pid_is_another_is_refused(lab):
    target, writer = lab.spawn(UID), lab.spawn(UID)
    with ActionProcess(None, "kill-process", KILL, expect="_PID",
                       prefix=lab.enter()) as action:
        for attested in (None, writer):
            with pytest.raises(ActionError, match="not the kernel-attested pid"):
                action.add(str(target), attested_pid=attested)
    assert lab.ended(target, wait=0.5) is None and lab.ended(writer) is None
