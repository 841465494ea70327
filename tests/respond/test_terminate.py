"""terminate-sessions on real processes: each test's processes run in a PID namespace of its
own (tests/pidns.py) under numeric UIDs that name no account on this host, and arguard —
the CLI, the action, a daemon — runs inside that namespace, so nothing else can be
signalled. Accounts come from a passwd copy in the test's directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from arguard.respond.actions import ActionError
from tests.conftest import write_config
from tests.daemon_process import ArguardProcess, arguard, syslog_line, wait_for
from tests.netns import ActionProcess
from tests.pidns import ProcessLab, unused_ids

ALICE, BOB, DEPLOY, SERVICE = unused_ids(4)


def passwd_text() -> str:
    return textwrap.dedent(f"""\
        root:x:0:0:root:/root:/bin/bash
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
        alice:x:{ALICE}:{ALICE}::/home/alice:/bin/bash
        bob:x:{BOB}:{BOB}::/home/bob:/bin/bash
        deploy:x:{DEPLOY}:{DEPLOY}:white-listed:/home/deploy:/bin/bash
        arguard:x:{SERVICE}:{SERVICE}:what arguard runs as:/nonexistent:/usr/sbin/nologin
        """)


TERMINATE = """
    [[command]]
    name = "terminate"
    action = "terminate-sessions"
    passwd = "passwd"
    grace = 0.5
    logind = false
    """


def config_in(directory: Path, extra: str = "", shipped: bool = False) -> Path:
    (directory / "passwd").write_text(passwd_text())
    return write_config(directory, shipped=shipped, extra=textwrap.dedent("""
        [global]
        white_list_users = ["deploy"]
        """) + textwrap.dedent(TERMINATE) + textwrap.dedent(extra))


@pytest.fixture
def lab():
    with ProcessLab() as lab:
        yield lab


def responses(directory: Path) -> list[str]:
    path = directory / "log/active-responses.log"
    return path.read_text().splitlines() if path.exists() else []


def test_ends_exactly_the_accounts_processes_and_logs_each_pid(lab, tmp_path):
    config = config_in(tmp_path)
    first, second = lab.spawn(ALICE), lab.spawn(ALICE)
    stubborn = lab.spawn(ALICE, ignore_term=True)
    other = lab.spawn(BOB)

    done = arguard(config, "block", "--user", "alice", "--command", "terminate",
                   wrapper=lab.enter(), check=True)

    assert [lab.ended(pid, wait=5) for pid in (first, second, stubborn)] == \
        ["SIGTERM", "SIGTERM", "SIGKILL"]
    assert lab.ended(other) is None
    ended = (f"ended 3 processes of UID {ALICE}: {' '.join(map(str, sorted([first, second])))}"
             f" (SIGTERM), {stubborn} (SIGKILL)")
    assert done.stdout.strip() == f"terminate alice: {ended}"
    [line] = responses(tmp_path)
    assert " terminate add alice " in line and line.endswith(f'detail="{ended}"')


@pytest.mark.parametrize("name, uid, reason", [
    ("root", 0, "refusing to terminate the processes of root"),
    ("daemon", 1, "UID 1 is below min_uid 1000"),
    ("deploy", DEPLOY, "white-listed"),
])
def test_refused_accounts_keep_their_processes(lab, tmp_path, name, uid, reason):
    config = config_in(tmp_path)
    running = [lab.spawn(uid), lab.spawn(uid, ignore_term=True)]

    done = arguard(config, "block", "--user", name, "--command", "terminate", wrapper=lab.enter())

    assert done.returncode != 0 and reason in done.stdout + done.stderr
    [line] = responses(tmp_path)
    assert f" terminate {'skip' if reason == 'white-listed' else 'fail'} {name} " in line
    assert reason in line
    assert [lab.ended(pid, wait=0.5) for pid in running] == [None, None]


def test_the_uid_arguard_runs_as_is_refused(lab, tmp_path):
    """arguard's process runs with real UID SERVICE (effective root): terminating that
    account would end arguard itself."""
    (tmp_path / "passwd").write_text(passwd_text())
    running = [lab.spawn(SERVICE), lab.spawn(SERVICE, ignore_term=True)]
    options = {"passwd": str(tmp_path / "passwd"), "grace": 0.5, "logind": False}
    with ActionProcess(None, "terminate-sessions", options, expect="user",
                       prefix=[*lab.enter(), "setpriv", f"--ruid={SERVICE}", "--"]) as action, \
            pytest.raises(ActionError, match=f"UID {SERVICE} is the one arguard runs as"):
        action.add("arguard")
    assert [lab.ended(pid, wait=0.5) for pid in running] == [None, None]


def test_lock_then_terminate_bound_to_one_rule(lab, tmp_path):
    """A real daemon, in the namespace: after 8 failed passwords for alice (rule 5763),
    the copy of shadow shows her account locked, and her processes are gone; bob's run."""
    shadow = tmp_path / "shadow"
    shadow.write_text("alice:$6$salt$hash:19800:0:99999:7:::\n"
                      "bob:$6$salt$bobs:19800:0:99999:7:::\n")
    auth_log = tmp_path / "auth.log"
    auth_log.touch()
    config = config_in(tmp_path, shipped=True, extra=f"""
        [[source]]
        path = "{auth_log}"

        [[command]]
        name = "lock"
        action = "disable-account"
        expect = "dstuser"
        shadow = "shadow"
        passwd = "passwd"
        timeout_allowed = true

        [[active_response]]
        command = ["lock", "terminate"]
        rules_id = [5763]
        timeout = 3600
        """)
    shell, stubborn = lab.spawn(ALICE), lab.spawn(ALICE, ignore_term=True)
    other = lab.spawn(BOB)
    daemon = ArguardProcess(tmp_path, config, wrapper=lab.enter())
    try:
        daemon.wait_notified("READY=1")
        with open(auth_log, "a") as log:
            for port in range(50001, 50009):
                log.write(syslog_line(f"Failed password for alice from 203.0.113.5 port "
                                      f"{port} ssh2"))
        wait_for(lambda: len(responses(tmp_path)) >= 2, what="both responses")
    finally:
        daemon.close()
    assert shadow.read_text().startswith("alice:!$6$salt$hash:")
    assert [lab.ended(shell, wait=5), lab.ended(stubborn, wait=5)] == ["SIGTERM", "SIGKILL"]
    assert lab.ended(other) is None
    lock, terminate = responses(tmp_path)
    assert " lock add alice rule=5763 " in lock and "timeout=3600" in lock
    assert " terminate add alice rule=5763 " in terminate and "timeout=-" in terminate
    assert f"{shell} (SIGTERM), {stubborn} (SIGKILL)" in terminate
