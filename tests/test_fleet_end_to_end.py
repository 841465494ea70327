"""A fleet end to end: three real arguard daemons (a, b, c), each in its own network
namespace with the ipset backend, share their decisions through a private PostgreSQL
cluster (tests/fleet_lab.py); the attacker's connections to each host show what its kernel
does."""

from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack

import pytest

from tests.conftest import write_config
from tests.daemon_process import arguard, wait_for
from tests.fleet_lab import (ATTACKER, ATTACKER_2, ATTACKER_3, FRIEND, HOSTS, FleetLab,
                             dump)
from tests.netns import require_netns
from tests.postgres import PostgresCluster, require_postgres

BLOCK = 6   # seconds a block lasts in these tests


@pytest.fixture(scope="module")
def cluster():
    require_postgres()
    cluster = PostgresCluster()
    yield cluster
    cluster.close()


@pytest.fixture
def lab(tmp_path, cluster):
    require_netns()
    if not cluster.running:
        cluster.start()
    with ExitStack() as stack:
        lab = FleetLab(tmp_path, cluster, stack)
        try:
            yield lab
        except BaseException:
            print(dump(lab))
            raise


def dropped_everywhere(lab: FleetLab, address: str, hosts=HOSTS) -> bool:
    return all(lab.reaches(host, address) == "timeout" for host in hosts)


def let_in_everywhere(lab: FleetLab, address: str, hosts=HOSTS) -> bool:
    return all(lab.reaches(host, address) == "connected" for host in hosts)


def test_attack_on_one_host_is_dropped_by_all_lifts_on_time_and_unblock_anywhere_lifts_it(lab):
    for host in HOSTS:
        lab.configure(host, timeout=BLOCK)
    assert "created" in lab.init_schema()
    assert "up to date" in lab.init_schema(), "fleet init is idempotent"
    lab.start(*HOSTS)
    assert let_in_everywhere(lab, ATTACKER)

    lab.attack("a")
    wait_for(lambda: dropped_everywhere(lab, ATTACKER), what="the attacker dropped by a, b, c")
    blocks = {host: lab.blocks(host)[ATTACKER] for host in HOSTS}
    assert {b["rule_id"] for b in blocks.values()} == {5763}
    # one absolute expiry: every host lifts at the same time
    assert max(b["expires_at"] for b in blocks.values()) - \
        min(b["expires_at"] for b in blocks.values()) < 0.5
    for host in ("b", "c"):
        [line] = lab.added(host, ATTACKER)
        assert re.search(r"rule=5763 .* origin=a decision=\d+$", line), line
    # explain on b: the block came from a's decision, with a's rule and alert (the log
    # lines stay on a)
    here, there = (json.loads(arguard(lab.config(host), "explain", ATTACKER, "--json",
                                      check=True).stdout)["blocks"][0]["offences"]
                   for host in ("a", "b"))
    assert [(o["verb"], o["rule"]["id"]) for o in here + there] == [("add", 5763)] * 2
    assert here[0]["alert_id"] == there[0]["alert_id"] and here[0]["lines"]
    assert there[0]["lines"] == []
    print("block latency a -> b, c:",
          {h: round(blocks[h]["since"] - blocks["a"]["since"], 3) for h in ("b", "c")})

    expires = blocks["a"]["expires_at"]
    wait_for(lambda: let_in_everywhere(lab, ATTACKER), deadline=BLOCK + 10,
             what="the block lifted everywhere")
    assert time.time() >= expires - 0.5, "not before its time"
    assert all(ATTACKER not in lab.blocks(host) for host in HOSTS)

    # an unblock on b lifts the block on a and c (long before its timeout)
    lab.attack("a", ATTACKER_2)
    wait_for(lambda: dropped_everywhere(lab, ATTACKER_2), what="the second attacker dropped")
    result = arguard(lab.config("b"), "unblock", ATTACKER_2, check=True)
    assert f"unblocked {ATTACKER_2}" in result.stdout
    wait_for(lambda: let_in_everywhere(lab, ATTACKER_2), deadline=BLOCK - 2,
             what="the unblock on b to lift the block on a and c")
    for host in ("a", "c"):
        assert any(f"firewall-drop delete {ATTACKER_2} " in line and "origin=b " in line
                   for line in lab.responses_log(host)), lab.responses_log(host)
        assert not lab.in_kernel(host, ATTACKER_2)


def test_defined_agent_reaches_only_the_named_hosts(lab):
    for host in HOSTS:
        lab.configure(host, responses="""
            [[active_response]]
            command = "firewall-drop"
            location = "defined-agent"
            agent = ["b"]
            rules_id = [5763]
            timeout = 600
            """)
    lab.init_schema()
    lab.start(*HOSTS)
    lab.attack("a")
    wait_for(lambda: lab.reaches("b") == "timeout", what="b to drop the attacker")
    decision = lab.fleet("b")["cursor"]
    wait_for(lambda: lab.fleet("c")["cursor"] >= decision, what="c to have seen the decision")
    assert lab.reaches("a") == "connected", "a is not named: it does not block"
    assert lab.reaches("c") == "connected"
    assert lab.blocks("a") == {} and lab.blocks("c") == {}
    assert lab.fleet("a")["out"] == 1


def test_partition_loses_nothing_and_applies_each_decision_once(lab):
    for host in HOSTS:
        lab.configure(host)
    lab.init_schema()
    lab.start(*HOSTS)
    lab.attack("a", ATTACKER)
    wait_for(lambda: dropped_everywhere(lab, ATTACKER), what="the first attacker dropped")

    lab.cluster.stop()
    wait_for(lambda: not any(lab.fleet(host)["connected"] for host in HOSTS),
             what="every host to see the database gone")
    assert "DISCONNECTED" in arguard(lab.config("a"), "status").stdout
    lab.attack("a", ATTACKER_2)
    wait_for(lambda: lab.reaches("a", ATTACKER_2) == "timeout",
             what="a to block locally while the database is down")
    assert lab.fleet("a")["outbox"] == 1
    assert lab.reaches("b", ATTACKER_2) == "connected"
    # c restarts while the database is down: it starts, works locally, and waits
    lab.stop("c")
    lab.start("c", connected=False)
    assert lab.fleet("c")["connected"] is False

    lab.cluster.start()
    wait_for(lambda: dropped_everywhere(lab, ATTACKER_2), deadline=20,
             what="b and c to get the decision made while the database was down")
    assert lab.fleet("a")["outbox"] == 0
    time.sleep(1)  # anything applied twice would show by now
    for host in ("b", "c"):
        assert len(lab.added(host, ATTACKER)) == 1, lab.responses_log(host)
        assert len(lab.added(host, ATTACKER_2)) == 1, lab.responses_log(host)
    assert lab.fleet("b")["in"] == {"add": 2}
    assert lab.fleet("c")["in"] == {"add": 1}, "since its restart, c applied one"


def test_a_host_that_white_lists_the_attacker_refuses_logs_and_reports(lab):
    for host in HOSTS:
        lab.configure(host, white_list=f', "{ATTACKER}"' if host == "c" else "")
    lab.init_schema()
    lab.start(*HOSTS)
    lab.attack("a")
    wait_for(lambda: lab.reaches("b") == "timeout", what="b to drop the attacker")
    wait_for(lambda: lab.fleet("c")["in"].get("skip") == 1, what="c to refuse the decision")
    assert lab.reaches("a") == "timeout"
    assert lab.reaches("c") == "connected"
    assert not lab.in_kernel("c", ATTACKER)
    [refusal] = [line for line in lab.responses_log("c") if " skip " in line]
    assert f"firewall-drop skip {ATTACKER} " in refusal and "white-listed" in refusal
    assert "origin=a " in refusal
    shown = arguard(lab.config("c"), "status").stdout
    assert "1 refused" in shown and "white-listed" in shown and ATTACKER in shown


def test_fleet_scoped_rule_counts_failures_across_hosts_and_fires_once(lab):
    rules = """
        [[rule]]
        id = 5763
        overwrite = true
        level = 10
        if_matched_sid = 5760
        frequency = 8
        timeframe = 120
        ignore = 60
        same_srcip = true
        scope = "fleet"
        groups = ["sshd", "authentication_failures"]
        description = "sshd: password brute force from one source, across the fleet"
        """
    for host in HOSTS:
        lab.configure(host, rules=rules)
    lab.init_schema()
    lab.start(*HOSTS)
    lab.attack("a", ATTACKER_3, failures=3)
    wait_for(lambda: lab.fleet("b")["facts"].get("in", 0) == 3, what="b to count a's 3")
    lab.attack("b", ATTACKER_3, failures=3)
    wait_for(lambda: lab.fleet("c")["facts"].get("in", 0) == 6, what="c to count 6")
    assert not any(lab.status(host)["rules"].get("5763") for host in HOSTS), \
        "nothing fired yet"
    lab.attack("c", ATTACKER_3, failures=2)
    wait_for(lambda: dropped_everywhere(lab, ATTACKER_3), what="the 8th failure to block")
    time.sleep(1)
    fired = {host: lab.status(host)["rules"].get("5763", 0) for host in HOSTS}
    assert fired == {"a": 0, "b": 0, "c": 1}
    assert lab.blocks("a")[ATTACKER_3]["rule_id"] == 5763


def test_bad_rows_are_skipped_and_reported_never_applied(lab):
    lab.configure("b")
    lab.init_schema()
    lab.start("b")
    now = time.time()
    row = dict(origin="a", verb="add", command="firewall-drop", created=_when(now),
               expires=_when(now + 600), rule_id=5763)
    bad_target = lab.insert_row(uid="u1", target="203.0.113.5; rm -rf /", **row)
    unknown_command = lab.insert_row(uid="u2", target=ATTACKER, **{**row,
                                                                   "command": "rm-rf"})
    unknown_verb = lab.insert_row(uid="u3", target=ATTACKER, **{**row, "verb": "nuke"})
    expired = lab.insert_row(uid="u4", target=ATTACKER_3,
                             **{**row, "expires": _when(now - 1)})
    good = lab.insert_row(uid="u5", target=ATTACKER_2, **row)
    wait_for(lambda: lab.fleet("b")["cursor"] >= good, what="b to read every row")
    assert lab.reaches("b", ATTACKER_2) == "timeout", "the valid decision is applied"
    assert set(lab.blocks("b")) == {ATTACKER_2}
    fleet = lab.fleet("b")
    assert fleet["in"] == {"add": 1, "skip": 2, "malformed": 1, "expired": 1}
    recent = "\n".join(fleet["recent_refusals"])
    assert f"a#{bad_target}" in recent and "not an IP address" in recent
    assert f"a#{unknown_command}" in recent and "unknown command" in recent
    assert f"#{unknown_verb}" in recent and "unknown verb" in recent
    assert f"#{expired}" not in recent
    assert lab.reaches("b", ATTACKER) == "connected"


def test_wrong_password_is_a_clear_error_and_the_host_keeps_blocking_locally(lab, tmp_path):
    lab.configure("a")
    lab.init_schema()
    lab.cluster.write_password(lab.password_file, "not-the-password")
    lab.start("a", connected=False)
    wait_for(lambda: lab.fleet("a")["error"], what="the fleet error in status")
    assert "password authentication failed" in lab.fleet("a")["error"]
    assert "password authentication failed" in lab.processes["a"].stderr
    lab.attack("a")
    wait_for(lambda: lab.reaches("a") == "timeout", what="a to block locally")
    assert lab.fleet("a")["outbox"] == 1


def test_a_database_without_the_schema_says_to_run_fleet_init(lab):
    lab.configure("a")
    lab.start("a", connected=False)
    wait_for(lambda: lab.fleet("a")["error"], what="the fleet error in status")
    assert "arguard fleet init" in lab.fleet("a")["error"]
    assert lab.reaches("a", FRIEND) == "connected"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int(seconds % 1 * 1e6):06d}+00:00"


@pytest.mark.parametrize("database,password,expected", [
    ("arguard", "not-the-password", 'password authentication failed for user "arguard"'),
    ("nosuchdb", None, 'database "nosuchdb" does not exist'),
])
def test_fleet_init_says_what_is_wrong_with_the_database(tmp_path, cluster, database,
                                                         password, expected):
    password_file = cluster.write_password(tmp_path / "password",
                                           *(() if password is None else (password,)))
    config = write_config(tmp_path, extra=f"""
        [fleet]
        dsn = "{cluster.dsn(database)}"
        password_file = "{password_file}"
        """)
    result = arguard(config, "fleet", "init")
    assert result.returncode == 1
    assert expected in result.stderr and cluster.dsn(database) in result.stderr
    status = arguard(config, "status")
    assert "fleet:" in status.stdout and "not connected" in status.stdout
