"""`arguard replay` over a generated day of auth.log whose blocks are known in advance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.conftest import REPO, write_config
from tests.netns import namespace, run_in

DAY = datetime(2026, 3, 1, tzinfo=timezone.utc)
REPEATER, SECOND, BELOW, FRIEND = "203.0.113.1", "203.0.113.2", "203.0.113.3", "192.0.2.10"


def line(when: datetime, message: str) -> str:
    return f"{when.isoformat()} srv sshd[4{when.second}]: {message}\n"


def failures(address: str, start: datetime, count: int) -> list[tuple[datetime, str]]:
    return [(start + timedelta(seconds=i),
             f"Failed password for root from {address} port {40000 + i} ssh2")
            for i in range(count)]


def generated_day(path: Path) -> None:
    events = [
        *failures(REPEATER, DAY.replace(hour=10), 8),
        *failures(REPEATER, DAY.replace(hour=11), 8),
        *failures(SECOND, DAY.replace(hour=13), 8),
        *failures(BELOW, DAY.replace(hour=14), 7),
        *failures(FRIEND, DAY.replace(hour=15), 8),
        *[(DAY.replace(hour=h), "Accepted publickey for alice from 192.0.2.20 port 5 ssh2")
          for h in range(0, 24, 2)],
    ]
    path.write_text("".join(line(when, message) for when, message in sorted(events)))


def replay(tmp_path: Path, *options: str,
           wrapper: list[str] | None = None) -> subprocess.CompletedProcess:
    config = write_config(tmp_path, extra=f"""
        [global]
        white_list = ["127.0.0.0/8", "{FRIEND}"]

        [[command]]
        name = "firewall-drop"
        action = "ipset"
        expect = "srcip"
        timeout_allowed = true

        [[active_response]]
        command = "firewall-drop"
        rules_id = [5763]
        timeout = 600
        repeated_offenders = [30, 60]
        """)
    log = tmp_path / "auth.log"
    generated_day(log)
    return subprocess.run([*(wrapper or []), sys.executable, "-m", "arguard.cli", "replay",
                           "-c", str(config), *options, str(log)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def at(hour: int, minute: int, second: int) -> str:
    return DAY.replace(hour=hour, minute=minute, second=second).astimezone().isoformat()


def test_replay_timeline_matches_the_known_blocks(tmp_path: Path):
    result = replay(tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(text) for text in result.stdout.splitlines()]
    *events, last = objects
    timeline = [(e["time"], e["action"], e["target"], e["timeout"], e["offence"])
                for e in events if e["action"] != "skip"]
    assert timeline == [
        (at(10, 0, 7), "add", REPEATER, 600.0, 1),
        (at(10, 10, 7), "delete", REPEATER, None, 1),
        (at(11, 0, 7), "add", REPEATER, 1800.0, 2),      # 2nd offence: 30 minutes
        (at(11, 30, 7), "delete", REPEATER, None, 2),
        (at(13, 0, 7), "add", SECOND, 600.0, 1),
        (at(13, 10, 7), "delete", SECOND, None, 1),
    ]
    [skipped] = [e for e in events if e["action"] == "skip"]
    assert skipped["target"] == FRIEND and "white" in skipped["reason"]
    assert all(e["command"] == "firewall-drop" for e in events)
    assert all(e["rule"] == 5763 for e in events if e["action"] != "skip")

    summary = last["summary"]
    assert summary["lines"] == 8 + 8 + 8 + 7 + 8 + 12
    assert summary["alerts"]["5763"] == 4
    assert summary["responses"] == {"firewall-drop add": 3, "firewall-drop delete": 3,
                                    "firewall-drop skip": 1}
    assert summary["active_at_end"] == 0
    assert list(summary["top_sources"])[0] == REPEATER


def test_replay_prints_a_readable_timeline_and_summary(tmp_path: Path):
    result = replay(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(at(10, 0, 7)) and f"add    firewall-drop    {REPEATER}" in lines[0]
    assert "Replayed 51 lines" in result.stdout
    assert "Blocks still active at the end: 0" in result.stdout
    assert result.stderr == "", "no progress display when stderr is not a terminal"


# --- several files: merged by time, year-less dates dated from their own file ---------------

SSH_A, WEB_B, SSH_C = "198.51.100.1", "198.51.100.2", "198.51.100.3"
NEW_YEAR = datetime(2025, 1, 1).astimezone()        # local midnight, as syslog writes it


def syslog_failures(address: str, start: datetime, count: int = 8) -> list[str]:
    """Year-less BSD syslog lines, as rsyslog writes auth.log."""
    return [f"{(start + timedelta(seconds=i)).strftime('%b %e %H:%M:%S')} srv sshd[9]: "
            f"Failed password for root from {address} port {40000 + i} ssh2\n"
            for i in range(count)]


def web_scan(address: str, start: datetime, count: int = 14) -> list[str]:
    return [f'{address} - - [{(start + timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S %z")}]'
            f' "GET /wp-{i}.php HTTP/1.1" 404 162 "-" "scanner"\n' for i in range(count)]


def test_replay_of_an_auth_log_and_an_access_log_gives_the_attacks_in_time_order(
        tmp_path: Path):
    """auth.log crosses New Year with year-less dates (its last line written on Jan 1st: the
    December lines are the year before); access.log's scan lies between its two attacks."""
    auth, access = tmp_path / "auth.log", tmp_path / "access.log"
    auth.write_text("".join(syslog_failures(SSH_A, NEW_YEAR - timedelta(minutes=10))
                            + syslog_failures(SSH_C, NEW_YEAR + timedelta(minutes=5))))
    access.write_text("".join(web_scan(WEB_B, NEW_YEAR - timedelta(minutes=3))))
    written = (NEW_YEAR + timedelta(minutes=6)).timestamp()
    os.utime(auth, (written, written))
    os.utime(access, (written, written))
    config = write_config(tmp_path, extra="""
        [[command]]
        name = "drop"
        action = "ipset"
        timeout_allowed = true

        [[active_response]]
        command = "drop"
        rules_id = [5763, 31151]
        timeout = "1h"
        """)
    result = subprocess.run([sys.executable, "-m", "arguard.cli", "replay", "--json", "-c",
                             str(config), str(auth), str(access)], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    *events, summary = [json.loads(text) for text in result.stdout.splitlines()]
    added = [(e["time"], e["target"], e["rule"]) for e in events if e["action"] == "add"]
    assert added == [
        ((NEW_YEAR - timedelta(minutes=10, seconds=-7)).isoformat(), SSH_A, 5763),
        ((NEW_YEAR - timedelta(minutes=3, seconds=-13)).isoformat(), WEB_B, 31151),
        ((NEW_YEAR + timedelta(minutes=5, seconds=7)).isoformat(), SSH_C, 5763),
    ]
    assert summary["summary"]["first"] == (NEW_YEAR - timedelta(minutes=10)).isoformat()
    assert summary["summary"]["last"] == (NEW_YEAR + timedelta(minutes=5, seconds=7)).isoformat()


def test_replay_touches_no_kernel_object(tmp_path: Path):
    """A replay with the ipset backend, run inside a fresh network namespace, leaves it as
    it was: no set, no chain, no rule."""
    with namespace("arguard-replay") as ns:
        before = run_in(ns, "iptables-legacy", "-S") + run_in(ns, "ip6tables-legacy", "-S")
        result = replay(tmp_path, "--json", wrapper=["ip", "netns", "exec", ns])
        assert result.returncode == 0, result.stderr
        assert '"action": "add"' in result.stdout
        assert run_in(ns, "ipset", "list", "-n") == ""
        assert run_in(ns, "iptables-legacy", "-S") + run_in(ns, "ip6tables-legacy", "-S") \
            == before
