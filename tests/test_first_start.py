"""The first start catches what is already happening: a file never read before is read back
over the longest timeframe of the loaded rules, by the lines' own timestamps and at most a
few megabytes; start_at = "end" and "beginning" keep their meaning."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from arguard.sources.recent import RecentWindow, recent_start
from tests.daemon_process import (ATTACKER, ArguardProcess, deny_targets, hosts_deny_config,
                                  status, wait_for)


def failed_login_at(when: float, address: str, port: int) -> str:
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(when))
    return (f"{stamp} server sshd[4242]: Failed password for root from {address} port {port} "
            "ssh2\n")


def start_on(directory: Path, start_at: str | None) -> tuple[ArguardProcess, Path]:
    option = "" if start_at is None else f'start_at = "{start_at}"\n'
    config = hosts_deny_config(directory, f'[[source]]\npath = "auth.log"\n{option}')
    process = ArguardProcess(directory, config)
    process.wait_notified("READY=1")
    return process, config


def test_failed_logins_written_before_the_very_first_start_are_blocked(tmp_path: Path):
    """8 failures 5 s before the first start (no state directory yet) are the attack of rule
    5763; failures from another address an hour old, further up the file, are not counted."""
    now = time.time()
    older = "198.51.100.77"
    (tmp_path / "auth.log").write_text(
        "".join(failed_login_at(now - 3600, older, 41000 + i) for i in range(8))
        + "".join(failed_login_at(now - 5, ATTACKER, 40000 + i) for i in range(8)))
    process, config = start_on(tmp_path, None)
    try:
        wait_for(lambda: ATTACKER in deny_targets(tmp_path), what="the attacker blocked")
        current = status(config)
        assert [b["target"] for b in current["blocks"]["active"]] == [ATTACKER]
        assert current["sources"][0]["lines"] == 8, "only the recent lines were read"
        assert "never read before; reading its last" in process.stderr
    finally:
        process.close()


@pytest.mark.parametrize("start_at, blocked", [("end", False), ("beginning", True)])
def test_end_and_beginning_keep_their_meaning(tmp_path: Path, start_at: str, blocked: bool):
    now = time.time()
    (tmp_path / "auth.log").write_text(
        "".join(failed_login_at(now - 3600, ATTACKER, 40000 + i) for i in range(8)))
    process, config = start_on(tmp_path, start_at)
    try:
        expected = 8 if blocked else 0
        wait_for(lambda: status(config)["sources"][0]["lines"] == expected,
                 what=f"{expected} lines read")
        if blocked:
            wait_for(lambda: deny_targets(tmp_path) == {ATTACKER}, what="the block")
        else:
            assert deny_targets(tmp_path) == set()
    finally:
        process.close()


def test_read_back_stops_at_the_window_the_size_bound_and_keeps_untimed_lines(tmp_path):
    now = 1_700_000_000.0
    path = tmp_path / "app.log"
    lines = ([f"{now - 500:.0f} old"] * 3 + [f"{now - 50:.0f} recent"] + ["no time here"]
             + [f"{now - 10:.0f} recent"] + ["unfinished"])
    path.write_bytes("\n".join(lines).encode())

    def line_time(text: str) -> float | None:
        head = text.split(" ", 1)[0]
        return float(head) if head.isdigit() else None

    with open(path, "rb") as file:
        fd, size = file.fileno(), os.fstat(file.fileno()).st_size
        start = recent_start(fd, size, RecentWindow(100, line_time), now)
        assert path.read_bytes()[start:].decode().splitlines() == lines[3:]
        assert recent_start(fd, size, RecentWindow(1000, line_time), now) == 0
        # bounded in bytes: never further back than max_bytes from the end
        bounded = recent_start(fd, size, RecentWindow(1000, line_time, max_bytes=30), now)
        assert size - 30 <= bounded < size
        # nothing recent: the end
        assert recent_start(fd, size, RecentWindow(5, line_time), now) == size
