"""`arguard run` as a real process: readiness, detection to response, status, manual control,
reload (valid and invalid), log reopening, malformed control requests, clean stop.

The response backend here is hosts.deny on a temp file, so nothing needs a namespace; the
kernel end to end (veth pair, ipset) is in test_end_to_end.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.daemon_process import (ATTACKER, ArguardProcess, arguard, failed_password,
                                  hosts_deny_config, status, syslog_line, wait_for)

SOURCES = """
    [[source]]
    path = "auth.log"
    """


@pytest.fixture
def setup(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, SOURCES)
    return tmp_path, config


@pytest.fixture
def daemon(setup):
    directory, config = setup
    process = ArguardProcess(directory, config)
    try:
        process.wait_notified("READY=1")
        yield process
    finally:
        process.close()


def append(path: Path, text: str) -> None:
    with open(path, "a") as log:
        log.write(text)


def deny_lines(directory: Path) -> list[str]:
    return [line for line in (directory / "hosts.deny").read_text().splitlines()
            if line.startswith("ALL:")]


def test_attack_is_blocked_and_reported(daemon: ArguardProcess):
    directory, config = daemon.directory, daemon.config
    append(directory / "auth.log", "".join(failed_password(ATTACKER, 40000 + i)
                                           for i in range(7)))
    append(directory / "auth.log", syslog_line("Accepted publickey for alice from "
                                               "198.51.100.20 port 2222 ssh2"))
    append(directory / "auth.log", syslog_line("eth0: link becomes ready", program="kernel"))
    wait_for(lambda: status(config)["lines"] >= 9, what="9 lines read")
    assert deny_lines(directory) == [], "7 failures are below the 8 of rule 5763"

    append(directory / "auth.log", failed_password(ATTACKER, 40007))
    wait_for(lambda: deny_lines(directory), what="the hosts.deny entry")
    assert deny_lines(directory) == [f"ALL: {ATTACKER}"]

    alerts = [json.loads(line) for line in
              (directory / "log/alerts.json").read_text().splitlines()]
    assert [a["rule"]["id"] for a in alerts].count("5763") == 1
    brute = next(a for a in alerts if a["rule"]["id"] == "5763")
    assert brute["data"]["srcip"] == ATTACKER and brute["rule"]["level"] == 10
    responses = (directory / "log/active-responses.log").read_text()
    assert f"host-deny add {ATTACKER} rule=5763" in responses
    assert "timeout=600" in responses

    current = status(config)
    assert current["running"] and current["pid"] == daemon.process.pid
    [block] = current["blocks"]["active"]
    assert (block["target"], block["command"], block["rule_id"]) == (ATTACKER, "host-deny", 5763)
    assert 590 < block["expires_in"] <= 600
    assert current["rules"]["5763"] == 1
    assert current["blocks"]["totals"] == {"host-deny": 1}
    [source] = current["sources"]
    assert source["lines"] >= 10
    # the kernel line is one no decoder or rule can take: ruled out, counted as undecoded
    assert source["undecoded"] >= 1
    assert current["detection"].startswith("hyperscan prefilter of "), current["detection"]
    assert not current["detection"].endswith(" 0 lines ruled out"), current["detection"]

    people = arguard(config, "status", check=True).stdout
    assert "running" in people and ATTACKER in people and "5763" in people
    assert "detection: hyperscan prefilter of " in people


def test_manual_block_and_unblock_through_the_daemon(daemon: ArguardProcess):
    directory, config = daemon.directory, daemon.config
    result = arguard(config, "block", "198.51.100.77", "--timeout", "10m", check=True)
    assert "blocked 198.51.100.77 with host-deny until" in result.stdout
    assert deny_lines(directory) == ["ALL: 198.51.100.77"]

    refused = arguard(config, "block", "192.0.2.10")
    assert refused.returncode == 4 and "white" in refused.stderr.lower()
    refused = arguard(config, "block", "not an address")
    assert refused.returncode == 4
    assert deny_lines(directory) == ["ALL: 198.51.100.77"]

    listed = json.loads(arguard(config, "status", "--json", check=True).stdout)
    assert [b["target"] for b in listed["blocks"]["active"]] == ["198.51.100.77"]

    assert arguard(config, "unblock", "198.51.100.77", check=True).stdout.startswith("unblocked")
    assert deny_lines(directory) == []
    again = arguard(config, "unblock", "198.51.100.77")
    assert again.returncode == 4 and "no active block" in again.stderr


def test_clean_stop_keeps_blocks_and_status_reads_sqlite(daemon: ArguardProcess):
    directory, config = daemon.directory, daemon.config
    arguard(config, "block", "198.51.100.8", "--timeout", "1h", check=True)
    assert daemon.terminate() == 0
    daemon.wait_notified("STOPPING=1")
    assert not (directory / "run/control.sock").exists()

    down = arguard(config, "status")
    assert down.returncode == 3
    assert "not running" in down.stdout and "198.51.100.8" in down.stdout
    as_json = status(config)
    assert as_json["running"] is False
    assert [b["target"] for b in as_json["blocks"]["active"]] == ["198.51.100.8"]
    assert deny_lines(directory) == ["ALL: 198.51.100.8"], "blocks persist while stopped"

    # manual control works while the daemon is down, directly on SQLite and the backend
    arguard(config, "unblock", "198.51.100.8", check=True)
    arguard(config, "block", "198.51.100.9", "--timeout", "5m", check=True)
    assert deny_lines(directory) == ["ALL: 198.51.100.9"]
    assert [b["target"] for b in status(config)["blocks"]["active"]] == ["198.51.100.9"]


def test_invalid_reload_keeps_the_running_configuration(daemon: ArguardProcess):
    directory, config = daemon.directory, daemon.config
    broken = directory / "rules.d" / "local.toml"
    broken.write_text('[[rule]]\nid = 100100\nlevel = 5\nif_sid = [999999]\n'
                      'description = "refers to a rule that does not exist"\n')
    result = arguard(config, "reload")
    assert result.returncode == 1
    assert str(broken) in result.stderr and "999999" in result.stderr
    assert daemon.process.poll() is None
    assert "999999" in status(config)["reload"]["error"]

    # the old rules still detect
    append(directory / "auth.log", "".join(failed_password(ATTACKER, 41000 + i)
                                           for i in range(8)))
    wait_for(lambda: deny_lines(directory), what="a block under the old rules")

    broken.write_text('[[rule]]\nid = 100100\nlevel = 3\nif_sid = [5716]\n'
                      'match = "for admin"\ndescription = "failure for admin"\n')
    result = arguard(config, "reload", check=True)
    assert "reloaded" in result.stdout
    assert status(config)["reload"]["error"] is None


def test_changed_rule_file_is_reloaded_and_correlation_survives(daemon: ArguardProcess):
    directory, config = daemon.directory, daemon.config
    append(directory / "auth.log", "".join(failed_password(ATTACKER, 42000 + i)
                                           for i in range(4)))
    wait_for(lambda: status(config)["lines"] >= 4, what="4 lines read")
    (directory / "rules.d" / "local.toml").write_text(
        '[[rule]]\nid = 100200\nlevel = 12\nif_sid = [5700]\nmatch = "arguard-test-marker"\n'
        'description = "a marker line"\n')
    wait_for(lambda: "configuration files changed" in daemon.stderr, what="the watched reload")
    append(directory / "auth.log", syslog_line("arguard-test-marker from 198.51.100.1"))
    wait_for(lambda: status(config)["rules"].get("100200") == 1, what="the new rule")
    # the four failures before the reload still count towards 5763
    append(directory / "auth.log", "".join(failed_password(ATTACKER, 42100 + i)
                                           for i in range(4)))
    wait_for(lambda: deny_lines(directory), what="5763 across the reload")


def test_sighup_reopens_logs_for_logrotate(daemon: ArguardProcess):
    directory = daemon.directory
    alerts = directory / "log/alerts.json"
    append(directory / "auth.log", failed_password(ATTACKER))
    wait_for(alerts.exists, what="alerts.json")
    wait_for(lambda: alerts.read_text().strip(), what="the first alert")
    alerts.rename(directory / "log/alerts.json.1")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded (SIGHUP)" in daemon.stderr, what="the SIGHUP reload")
    append(directory / "auth.log", failed_password("198.51.100.3"))
    wait_for(alerts.exists, what="a new alerts.json")
    assert "198.51.100.3" in alerts.read_text()
    assert "198.51.100.3" not in (directory / "log/alerts.json.1").read_text()


def test_control_socket_is_root_only_and_survives_garbage(daemon: ArguardProcess):
    path = daemon.directory / "run/control.sock"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        replies = sock.makefile("rb")
        for request in (b"not json\n", b"[1, 2]\n", b'{"op": 5}\n', b'{"op": "fly"}\n',
                        b'{"op": "block"}\n', b'{"op": "block", "target": "1.2.3.4", '
                                              b'"timeout": -5}\n',
                        b"\xff\xfe\x00garbage\n"):
            sock.sendall(request)
            reply = json.loads(replies.readline())
            assert reply["ok"] is False and reply["error"], request
        sock.sendall(b"x" * (200 * 1024) + b"\n")
        assert json.loads(replies.readline())["error"] == "request too long"
    assert status(daemon.config)["running"]

    # another user is refused (by the socket's mode, and by SO_PEERCRED behind it)
    assert _connect_as_nobody(path).startswith("refused"), "a non-root peer got an answer"


def _connect_as_nobody(path: Path) -> str:
    """Fork, drop to uid/gid 65534 and ask for the status (no exec: the interpreter may live
    where nobody cannot read it)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                sock.sendall(b'{"op": "status"}\n')
                reply = json.loads(sock.makefile("rb").readline())
            outcome = "refused: " + reply["error"] if not reply["ok"] else "answered"
        except OSError as error:
            outcome = f"refused: {error.strerror}"
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        outcome = pipe.read()
    os.waitpid(pid, 0)
    return outcome


def test_dry_run_decides_but_applies_nothing(setup):
    directory, config = setup
    process = ArguardProcess(directory, config, "--dry-run")
    try:
        process.wait_notified("READY=1")
        append(directory / "auth.log", "".join(failed_password(ATTACKER, 43000 + i)
                                               for i in range(8)))
        wait_for(lambda: f"host-deny add {ATTACKER} rule=5763" in process.stderr,
                 what="the decided response in the log")
        assert deny_lines(directory) == []
        assert status(config)["dry_run"] is True
        assert process.terminate() == 0
    finally:
        process.close()
    assert status(config)["blocks"]["active"] == [], "a dry run leaves no block behind"


def test_second_daemon_on_the_same_state_is_refused(daemon: ArguardProcess):
    result = subprocess.run([sys.executable, "-m", "arguard.cli", "run", "-c",
                             str(daemon.config)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    assert result.returncode == 1
    assert f"pid {daemon.process.pid}" in result.stderr


def test_invalid_config_exits_before_starting(tmp_path: Path):
    config = hosts_deny_config(tmp_path, SOURCES)
    config.write_text(config.read_text() + "\n[global]\nmax_blocks = 'many'\n")
    result = subprocess.run([sys.executable, "-m", "arguard.cli", "run", "-c", str(config)],
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    assert result.returncode == 1
    assert str(config) in result.stderr


def test_status_counts_ambiguous_addresses_per_source(daemon: ArguardProcess):
    """A line with two candidate addresses (a forged ` port N ssh2:` in the user name and in
    the auth info) gives no address, and status says so in the source's counters."""
    directory, config = daemon.directory, daemon.config
    forged = ("Failed password for invalid user x from 198.51.100.7 port 1 ssh2: y from "
              f"{ATTACKER} port 22 ssh2: z")
    append(directory / "auth.log", syslog_line(forged) + syslog_line("plain text, no sshd"))
    wait_for(lambda: status(config)["lines"] >= 2, what="2 lines read")
    [source] = status(config)["sources"]
    assert source["ambiguous"] == 1 and source["undecoded"] == 0
    people = arguard(config, "status", check=True).stdout
    assert "AMBIGUOUS" in people
