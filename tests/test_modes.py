"""Permissions whatever the umask: state directory 0700, database (and its -wal, -shm) and
lock 0600, log directory 0750, every log file 0640, control socket 0600; a wrong mode found
at start is corrected and logged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.daemon_process import (ATTACKER, AUTH_LOG, ArguardProcess, arguard, failed_password,
                                  hosts_deny_config, status, wait_for)

UMASK_000 = ["sh", "-c", 'umask 000 && exec "$@"', "sh"]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def expected(directory: Path) -> dict[Path, int]:
    state, logs = directory / "state", directory / "log"
    return {state: 0o700, state / "arguard.db": 0o600, state / "arguard.db-wal": 0o600,
            state / "arguard.db-shm": 0o600, state / "arguard.lock": 0o600,
            state / "config.last-good.json": 0o600, logs: 0o750,
            logs / "alerts.json": 0o640, logs / "active-responses.log": 0o640,
            directory / "run/control.sock": 0o600}


def test_with_umask_000_every_path_has_its_mode(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, AUTH_LOG)
    for name in ("state", "log"):
        (tmp_path / name).rmdir()   # made by arguard, under the umask below
    process = ArguardProcess(tmp_path, config, wrapper=UMASK_000)
    try:
        process.wait_notified("READY=1")
        with open(tmp_path / "auth.log", "a") as log:
            log.write("".join(failed_password(ATTACKER, 40000 + i) for i in range(8)))
        wait_for(lambda: status(config)["blocks"]["active"], what="the block")
        assert {path: mode(path) for path in expected(tmp_path)} == expected(tmp_path)
    finally:
        process.close()
    # the operator's direct commands too (the daemon is down)
    os.unlink(tmp_path / "state/arguard.lock")
    arguard(config, "unblock", ATTACKER, check=True, preexec_fn=lambda: os.umask(0))
    assert mode(tmp_path / "state/arguard.lock") == 0o600


def test_wrong_modes_found_at_start_are_corrected_and_logged(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, AUTH_LOG)
    first = ArguardProcess(tmp_path, config)
    try:
        first.wait_notified("READY=1")
        arguard(config, "block", ATTACKER, check=True)
        assert first.terminate() == 0
    finally:
        first.close()
    wrong = {tmp_path / "state": 0o755, tmp_path / "state/arguard.db": 0o644,
             tmp_path / "log": 0o777, tmp_path / "log/alerts.json": 0o666,
             tmp_path / "log/active-responses.log": 0o644}
    for path, bad in wrong.items():
        os.chmod(path, bad)
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        for path, bad in wrong.items():
            right = expected(tmp_path)[path]
            assert mode(path) == right
            assert f"{path} had mode {bad:04o}; corrected to {right:04o}" in process.stderr
    finally:
        process.close()
