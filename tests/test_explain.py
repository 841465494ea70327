"""`arguard explain TARGET`: the offences behind a real block of a real daemon, with the log
lines that caused it; the bounds on what is kept; a database from before explain."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from arguard.config import load_config
from arguard.explain import explain, render
from arguard.model import Block, Offence
from arguard.ruleset.files import load_ruleset
from arguard.store import MIGRATIONS, Store
from tests.conftest import write_config
from tests.daemon_process import (ATTACKER, ArguardProcess, arguard, failed_password,
                                  hosts_deny_config, status, syslog_line, wait_for)


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A daemon that blocked ATTACKER for a password brute force (rule 5763), then extended
    the block for a non-existent-user brute force (5712, its 2nd offence: 30 minutes)."""
    directory = tmp_path_factory.mktemp("explain")
    log = directory / "auth.log"
    log.write_text("")
    config = hosts_deny_config(directory, """
        [[source]]
        path = "auth.log"
        """)
    passwords = [failed_password(ATTACKER, 40000 + i) for i in range(8)]
    users = [syslog_line(f"Invalid user guest{i} from {ATTACKER} port {41000 + i}")
             for i in range(8)]
    process = ArguardProcess(directory, config)
    try:
        process.wait_notified("READY=1")
        with open(log, "a") as out:
            out.write("".join(passwords))
        wait_for(lambda: status(config)["blocks"]["active"], what="the block")
        with open(log, "a") as out:
            out.write("".join(users))
        wait_for(lambda: status(config)["responses"]["host-deny"].get("extend"),
                 what="the block extended")
        yield config, [line.rstrip("\n") for line in passwords], \
            [line.rstrip("\n") for line in users], status(config)
    finally:
        process.close()


def test_explain_shows_the_lines_that_caused_a_real_block(blocked):
    config, passwords, users, state = blocked
    result = arguard(config, "explain", ATTACKER, "--json", check=True)
    record = json.loads(result.stdout)
    assert record["target"] == ATTACKER and record["blocked"] is True
    [block] = record["blocks"]
    [active] = state["blocks"]["active"]
    assert (block["command"], block["state"], block["expires_at"], block["offence"]) == \
        ("host-deny", "active", active["expires_at"], 2)
    first, second = block["offences"]
    assert (first["verb"], first["offence"], first["rule"]["id"], first["rule"]["level"],
            first["timeout"]) == ("add", 1, 5763, 10, 600)
    assert first["rule"]["description"] == "sshd: password brute force from one source"
    assert first["lines"] == passwords
    assert (second["verb"], second["offence"], second["rule"]["id"], second["timeout"]) == \
        ("extend", 2, 5712, 1800)
    assert second["lines"] == users
    alerts = [json.loads(line) for line in
              (config.parent / "log" / "alerts.json").read_text().splitlines()]
    fired = {alert["id"] for alert in alerts if alert["rule"]["id"] in ("5763", "5712")}
    assert {first["alert_id"], second["alert_id"]} == fired
    assert block["next"]["offence"] == 3 and block["next"]["timeout"] == 3600
    assert block["next"]["remembered_until"] == pytest.approx(second["at"] + 86_400, abs=1)


def test_explain_for_people(blocked):
    config, passwords, users, _ = blocked
    text = arguard(config, "explain", ATTACKER, check=True).stdout
    assert text.startswith(f"{ATTACKER}: blocked by host-deny since ")
    assert "If it offends again: offence 3, blocked for 1h" in text
    assert "add     rule 5763 (level 10): sshd: password brute force from one source" in text
    assert "extend  rule 5712 (level 10): " in text
    for line in passwords + users:
        assert f"      | {line}\n" in text
    other = arguard(config, "explain", "198.51.100.99", check=True).stdout
    assert other.startswith("198.51.100.99: not blocked, and no block of it on record")


def test_an_unblocked_target_shows_its_last_block(blocked):
    config, *_ = blocked
    arguard(config, "block", "198.51.100.50", "--timeout", "1h", check=True)
    arguard(config, "unblock", "198.51.100.50", check=True)
    record = json.loads(arguard(config, "explain", "198.51.100.50", "--json",
                                check=True).stdout)
    assert record["blocked"] is False
    [block] = record["blocks"]
    assert block["state"] == "lifted"
    [offence] = block["offences"]
    assert (offence["verb"], offence["rule"], offence["timeout"]) == ("add", None, 3600)


def offence(number: int) -> Offence:
    return Offence(at=1000.0 + number, verb="extend", offence=number, rule_id=5763, level=10,
                   description="d", alert_id=f"1.{number}", timeout=600, expires_at=None,
                   lines=(f"line {number}",))


def test_offences_are_bounded_per_block_and_in_total(tmp_path: Path):
    store = Store(tmp_path / "arguard.db")
    store.write_blocks([Block(target, "ip", "drop", 5763, "1.1", 1000.0, None, 1)
                        for target in ("a", "b")])
    for number in range(1, 8):
        store.record_offence("drop", "a", offence(number), per_block=3, total=5)
    [(a_id, _)] = store.blocks_of("a", 0)
    assert [o.offence for o in store.offences_of(a_id)] == [5, 6, 7]
    for number in range(1, 5):
        store.record_offence("drop", "b", offence(number), per_block=3, total=5)
    [(b_id, _)] = store.blocks_of("b", 0)
    assert [o.offence for o in store.offences_of(b_id)] == [2, 3, 4]
    assert [o.offence for o in store.offences_of(a_id)] == [7], "5 kept in all"
    store.write_blocks((), (), [("drop", "a")])
    store.purge_lifted_blocks(created_before=2000.0)
    assert store.db.execute("SELECT COUNT(*) FROM offences WHERE block_id = ?",
                            (a_id,)).fetchone()[0] == 0, "deleted with their block"


def test_a_database_from_before_explain_is_migrated(tmp_path: Path):
    path = tmp_path / "arguard.db"
    old = sqlite3.connect(path)
    before = next(n for n, migration in enumerate(MIGRATIONS) if "CREATE TABLE offences" in
                  migration)
    for statement in ";".join(MIGRATIONS[:before]).split(";"):
        if statement.strip():
            old.execute(statement)
    old.execute("INSERT INTO instance VALUES (1, '')")
    old.execute("INSERT INTO blocks (target, kind, command, rule_id, created_at, expires_at, "
                "offence, state) VALUES ('203.0.113.7', 'ip', 'drop', 5763, 1, NULL, 1, "
                "'active')")
    old.execute(f"PRAGMA user_version = {before}")
    old.commit()
    old.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    [(block_id, block)] = store.blocks_of("203.0.113.7", 0)
    assert block.command == "drop" and store.offences_of(block_id) == []


def test_an_address_inside_a_blocked_network_is_explained_by_that_block(tmp_path: Path):
    """Prefix blocks (an IPv6 attacker's /64): explain of one of its addresses shows it."""
    config = load_config(write_config(tmp_path))
    store = Store(config.paths.database)
    store.write_blocks([Block("2001:db8:1::/64", "ip", "firewall-drop", 5763, "1.1", 1000.0,
                              None, 1)])
    store.record_offence("firewall-drop", "2001:db8:1::/64", offence(1), 10, 100)
    store.close()
    record = explain(config, load_ruleset(config), "2001:db8:1::5")
    assert record["blocked"] is True
    [block] = record["blocks"]
    assert block["target"] == "2001:db8:1::/64" and block["offences"][0]["lines"] == ["line 1"]
    assert "2001:db8:1::5: blocked (as part of 2001:db8:1::/64) by firewall-drop" in \
        render(record)
    assert explain(config, load_ruleset(config), "2001:db8:2::5")["blocks"] == []
