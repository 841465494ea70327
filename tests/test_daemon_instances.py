"""Two arguard daemons with their own state directories in one private network namespace:
each blocks its own addresses (and one address both block) through an ipset set of its own,
the shared iptables chain, the main routing table and one hosts.deny file; after restarts of
both, in either order, every block of each is still in the kernel and in the file. A second
daemon that would take over the first one's ipset set, or that has the same owner, refuses
to start and says why."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.daemon_process import ArguardProcess, arguard, status
from tests.netns import namespace, run_in

ADDRESSES = {"a": "203.0.113.1", "b": "203.0.113.2"}
BOTH = "203.0.113.9"
COMMANDS = ("drop", "rules", "null", "deny")


def instance_config(directory: Path, set_name: str, hosts_deny: Path) -> Path:
    directory.mkdir()
    (directory / "auth.log").write_text("")
    return write_config(directory, extra=textwrap.dedent(f"""
        [[source]]
        path = "auth.log"

        [[command]]
        name = "drop"
        action = "ipset"
        set_name = "{set_name}"
        timeout_allowed = true

        [[command]]
        name = "rules"
        action = "iptables"
        timeout_allowed = true

        [[command]]
        name = "null"
        action = "route"
        timeout_allowed = true

        [[command]]
        name = "deny"
        action = "hosts-deny"
        path = "{hosts_deny}"
        timeout_allowed = true
        """))


@pytest.fixture
def lab(tmp_path: Path):
    with namespace("arguard-two") as ns:
        hosts_deny = tmp_path / "hosts.deny"
        hosts_deny.write_text("sshd: 198.51.100.1\n")
        configs = {name: instance_config(tmp_path / name, f"ag-{name}", hosts_deny)
                   for name in ADDRESSES}
        yield ns, configs, hosts_deny


def start(ns: str, config: Path) -> ArguardProcess:
    process = ArguardProcess(config.parent, config, wrapper=["ip", "netns", "exec", ns])
    process.wait_notified("READY=1")
    return process


def in_kernel(ns: str, hosts_deny: Path) -> dict[str, set[str]]:
    """Per backend, the addresses arguard's objects block (whoever owns them)."""
    found: dict[str, set[str]] = {"drop": set(), "rules": set(), "null": set(), "deny": set()}
    for name in ADDRESSES:
        found["drop"] |= {line.split()[2] for line in
                          run_in(ns, "ipset", "save", f"ag-{name}").splitlines()
                          if line.startswith("add ")}
    found["rules"] = {line.split()[3].split("/")[0] for line in
                      run_in(ns, "iptables-legacy", "-S", "arguard").splitlines()
                      if line.startswith("-A arguard -s ")}
    found["null"] = {line.split()[1] for line in
                     run_in(ns, "ip", "route", "show", "proto", "152").splitlines()}
    found["deny"] = {line.split(": ")[1] for line in hosts_deny.read_text().splitlines()
                     if line.startswith("ALL: ")}
    return found


def counts(ns: str, name: str, hosts_deny: Path) -> dict[str, int]:
    """How many objects each backend holds: instance `name`'s set members, and the rules,
    routes and hosts.deny lines of both instances (each has its own for a shared address)."""
    members = [line for line in run_in(ns, "ipset", "save", f"ag-{name}").splitlines()
               if line.startswith("add ")]
    rules = [line for line in run_in(ns, "iptables-legacy", "-S", "arguard").splitlines()
             if line.startswith("-A arguard -s ")]
    routes = run_in(ns, "ip", "route", "show", "proto", "152").splitlines()
    lines = [line for line in hosts_deny.read_text().splitlines() if line.startswith("ALL: ")]
    return {"drop": len(members), "rules": len(rules), "null": len(routes), "deny": len(lines)}


def test_two_instances_keep_each_others_blocks_across_restarts(lab):
    ns, configs, hosts_deny = lab
    processes = {name: start(ns, config) for name, config in configs.items()}
    try:
        for name, config in configs.items():
            for command in COMMANDS:
                for target in (ADDRESSES[name], BOTH):
                    arguard(config, "block", target, "--command", command, "--timeout", "1h",
                            check=True)
        expected = {command: set(ADDRESSES.values()) | {BOTH} for command in COMMANDS}
        assert in_kernel(ns, hosts_deny) == expected
        owners = {status(config)["owner"] for config in configs.values()}
        assert len(owners) == 2
        assert all(f"# BEGIN {owner} --" in hosts_deny.read_text() for owner in owners)
        assert counts(ns, "a", hosts_deny) == {"drop": 2, "rules": 4, "null": 4, "deny": 4}

        for order in (["a", "b"], ["b", "a"]):
            for name in order:
                assert processes[name].terminate() == 0
                processes[name].close()
            for name in order:  # each start reconciles with the other's objects in place
                processes[name] = start(ns, configs[name])
                assert in_kernel(ns, hosts_deny) == expected
        assert counts(ns, "b", hosts_deny) == {"drop": 2, "rules": 4, "null": 4, "deny": 4}
        assert hosts_deny.read_text().startswith("sshd: 198.51.100.1\n")
    finally:
        for process in processes.values():
            process.close()
    for config in configs.values():
        log = (config.parent / "log/active-responses.log").read_text()
        assert "reconcile: not in the blocks table" not in log
        assert " fail " not in log


def test_a_second_instance_refuses_the_first_ones_ipset_set(lab, tmp_path):
    ns, configs, hosts_deny = lab
    first = start(ns, configs["a"])
    try:
        arguard(configs["a"], "block", ADDRESSES["a"], "--command", "drop", check=True)
        taker = instance_config(tmp_path / "taker", "ag-a", hosts_deny)
        second = ArguardProcess(taker.parent, taker, wrapper=["ip", "netns", "exec", ns])
        try:
            assert second.process.wait(30) == 1
        finally:
            second.close()
        assert "not starting: ipset 'ag-a' belongs to another arguard instance" \
            in second.stderr
        assert "give command 'drop' a set_name (and chain) of its own" in second.stderr
        assert ADDRESSES["a"] in run_in(ns, "ipset", "list", "ag-a")
    finally:
        first.close()


def test_a_second_daemon_of_the_same_owner_refuses_to_start(lab):
    """A copied state directory is the same instance: two of it would undo each other."""
    ns, configs, hosts_deny = lab
    first = start(ns, configs["a"])
    try:
        with sqlite3.connect(configs["a"].parent / "state/arguard.db") as source, \
                sqlite3.connect(configs["b"].parent / "state/arguard.db") as copy:
            source.backup(copy)
        second = ArguardProcess(configs["b"].parent, configs["b"],
                                wrapper=["ip", "netns", "exec", ns])
        try:
            assert second.process.wait(30) == 1
        finally:
            second.close()
        assert "another arguard daemon of the same owner" in second.stderr
        assert f"(pid {first.process.pid})" in second.stderr
    finally:
        first.close()
