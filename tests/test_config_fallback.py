"""A configuration file broken on disk never locks the operator out: status, block, unblock
and reload name each problem (file:line) as a warning and use the configuration the daemon
loaded, which it keeps in its state directory (also when it is down)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.daemon_process import (AUTH_LOG, ArguardProcess, arguard, deny_targets,
                                  hosts_deny_config, status)

ADDRESSES = ("203.0.113.5", "203.0.113.6")


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1)
                if text in line)


@pytest.fixture
def running(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, AUTH_LOG)
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        for address in ADDRESSES:
            arguard(config, "block", address, "--timeout", "1h", check=True)
        yield process
    finally:
        process.close()


def test_broken_file_while_running_status_and_unblock_all_still_work(running):
    directory, config = running.directory, running.config
    config.write_text(config.read_text().replace("timeout = 600", "timeout = -5"))
    where = f"{config}:{line_of(config, 'timeout = -5')}"
    warning = f"warning: {where}: active_response.timeout must be a positive duration"

    shown = arguard(config, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    current = json.loads(shown.stdout)
    assert {b["target"] for b in current["blocks"]["active"]} == set(ADDRESSES)
    assert warning in shown.stderr
    assert current["config_on_disk"]["state"] == "broken"
    assert any(p.startswith(where) for p in current["config_on_disk"]["problems"])
    people = arguard(config, "status")
    assert people.returncode == 0 and "config on disk: BROKEN" in people.stdout

    lifted = arguard(config, "unblock", "--all")
    assert lifted.returncode == 0, lifted.stderr
    assert warning in lifted.stderr
    assert deny_targets(directory) == set()
    assert status(config)["blocks"]["active"] == []

    refused = arguard(config, "reload")
    assert refused.returncode == 1 and f"error: {where}" in refused.stderr


def test_with_the_daemon_down_the_copy_it_ran_with_is_used(running):
    directory, config = running.directory, running.config
    assert running.terminate() == 0
    config.write_text(config.read_text() + "\n[global\n")   # not even TOML any more
    where = f"{config}:{len(config.read_text().splitlines())}"

    shown = arguard(config, "status", "--json")
    assert shown.returncode == 3, shown.stderr   # not running
    assert {b["target"] for b in json.loads(shown.stdout)["blocks"]["active"]} == set(ADDRESSES)
    assert re.search(rf"warning: {re.escape(where)}: TOML syntax error", shown.stderr)
    assert "config.last-good.json" in shown.stderr

    # the copy has the commands: a direct block works, and so does a direct unblock
    assert arguard(config, "block", "198.51.100.9").returncode == 0
    assert deny_targets(directory) == {*ADDRESSES, "198.51.100.9"}
    assert arguard(config, "unblock", ADDRESSES[0]).returncode == 0
    assert deny_targets(directory) == {ADDRESSES[1], "198.51.100.9"}


def test_status_says_when_the_file_on_disk_differs(running):
    """(The running daemon reloads a changed file by itself within seconds; stopped, it
    cannot.)"""
    config = running.config
    assert status(config)["config_on_disk"] == {"state": "same"}
    assert running.terminate() == 0
    config.write_text(config.read_text().replace("timeout = 600", "timeout = 900"))
    on_disk = status(config)["config_on_disk"]
    assert on_disk == {"state": "differs", "files": [f"{config} (changed)"]}
    assert "config on disk: differs" in arguard(config, "status").stdout
