"""Policy: which bindings an alert matches, which target, which timeout (Wazuh semantics).

The helpers at the top (`make_config`, `make_alert`) are shared by the other respond tests.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from arguard.config import Config, load_config
from arguard.model import Alert, Event, Line, Predecoded, RuleInfo
from arguard.respond.policy import Policy
from arguard.store import Store
from tests.conftest import write_config

COMMANDS = """
    [[command]]
    name = "firewall-drop"
    action = "hosts-deny"
    expect = "srcip"
    timeout_allowed = true
    path = "hosts.deny"

    [[command]]
    name = "deny-dst"
    action = "hosts-deny"
    expect = "dstip"
    timeout_allowed = true
    path = "hosts.deny"
    daemon = "sshd"

    [[command]]
    name = "lock-user"
    action = "disable-account"
    expect = "user"
    timeout_allowed = true
    shadow = "shadow"
    passwd = "passwd"
"""


def make_config(directory: Path, bindings: str, global_: str = "") -> Config:
    """A configuration in `directory` with the test commands and the given bindings."""
    extra = textwrap.dedent(global_) + textwrap.dedent(COMMANDS) + textwrap.dedent(bindings)
    return load_config(write_config(directory, shipped=False, extra=extra))


def make_alert(rule_id: int = 5712, level: int = 10,
               groups: tuple[str, ...] = ("sshd", "authentication_failures"),
               time: float = 1_000.0, alert_id: str | None = None, **fields: str) -> Alert:
    line = Line(text="test line", location="test", received=time)
    event = Event(line, Predecoded(message="test line"), time, decoder="sshd",
                  fields=dict(fields))
    return Alert(id=alert_id or f"{int(time)}.1",
                 rule=RuleInfo(rule_id, level, "test rule", groups, ()),
                 event=event, firedtimes=1)


def decided(policy: Policy, alert: Alert) -> list[tuple[str, str, int | None, str | None]]:
    return [(r.command, r.target, r.timeout, r.skipped) for r in policy.decide(alert)]


@pytest.fixture
def policy_for(tmp_path):
    def build(bindings: str, global_: str = "") -> Policy:
        return Policy(make_config(tmp_path, bindings, global_))
    return build


def test_rules_id(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        rules_id = [5712, 5763]
        timeout = 600
    """)
    assert decided(policy, make_alert(5763, srcip="203.0.113.5")) == [
        ("firewall-drop", "203.0.113.5", 600, None)]
    assert decided(policy, make_alert(5710, srcip="203.0.113.5")) == []


def test_level_is_a_minimum(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        level = 10
    """)
    assert len(policy.decide(make_alert(1, level=10, srcip="203.0.113.5"))) == 1
    assert len(policy.decide(make_alert(1, level=12, srcip="203.0.113.5"))) == 1
    assert policy.decide(make_alert(1, level=9, srcip="203.0.113.5")) == []


def test_rules_group_exact_names_and_alternatives(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        rules_group = "authentication_failures|web_scan"
    """)
    assert len(policy.decide(make_alert(1, groups=("web_scan",), srcip="203.0.113.5"))) == 1
    assert len(policy.decide(make_alert(1, groups=("sshd", "authentication_failures"),
                                        srcip="203.0.113.5"))) == 1
    assert policy.decide(make_alert(1, groups=("authentication_failed",),
                                    srcip="203.0.113.5")) == []
    assert policy.decide(make_alert(1, groups=("web",), srcip="203.0.113.5")) == []


def test_level_and_group_together_are_and_ed_and_rules_id_is_or_ed(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        rules_id = [100]
        level = 10
        rules_group = "authentication_failures"
    """)
    both = make_alert(1, level=10, groups=("authentication_failures",), srcip="203.0.113.5")
    level_only = make_alert(1, level=12, groups=("other",), srcip="203.0.113.5")
    group_only = make_alert(1, level=5, groups=("authentication_failures",), srcip="203.0.113.5")
    by_id = make_alert(100, level=1, groups=(), srcip="203.0.113.5")
    assert len(policy.decide(both)) == 1
    assert policy.decide(level_only) == []
    assert policy.decide(group_only) == []
    assert len(policy.decide(by_id)) == 1


def test_expect_picks_the_target_field(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "deny-dst"
        rules_id = [1]

        [[active_response]]
        command = "lock-user"
        rules_id = [1]
    """)
    alert = make_alert(1, srcip="203.0.113.5", dstip="203.0.113.9", srcuser="mallory",
                       dstuser="alice")
    assert decided(policy, alert) == [("deny-dst", "203.0.113.9", None, None),
                                      ("lock-user", "alice", None, None)]
    assert decided(policy, make_alert(1, dstip="203.0.113.9", srcuser="mallory")) == [
        ("deny-dst", "203.0.113.9", None, None), ("lock-user", "mallory", None, None)]


def test_a_missing_field_is_a_skipped_response(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        rules_id = [1]
    """)
    assert decided(policy, make_alert(1, srcuser="alice")) == [
        ("firewall-drop", "", None, "no srcip in the alert")]


@pytest.mark.parametrize("target, normal, reason", [
    ("192.0.2.10", "192.0.2.10", "white-listed"),
    ("::ffff:10.9.8.7", "10.9.8.7", "white-listed"),
    ("127.0.0.1", "127.0.0.1", "loopback"),
    ("::1", "::1", "loopback"),
    ("evil.example.com", "evil.example.com", "hostname, not an IP address"),
    ("0.0.0.0/0", "0.0.0.0/0", "network, not an address"),
    ("", "", "empty target"),
    ("1.2.3.4 -j ACCEPT", "1.2.3.4 -j ACCEPT", "not an IP address"),
    ("::ffff:203.0.113.5", "203.0.113.5", None),
])
def test_targets_are_validated_and_white_listed(policy_for, target, normal, reason):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        rules_id = [1]
        timeout = 60
    """, """
        [global]
        white_list = ["192.0.2.10", "10.0.0.0/8"]
    """)
    [response] = policy.decide(make_alert(1, srcip=target))
    assert (response.target, response.skipped) == (normal, reason)
    assert (policy.store.offender("firewall-drop", normal) is None) == (reason is not None)


@pytest.mark.parametrize("user, reason", [
    ("../../etc/passwd", "'/' in user name"),
    ("..", "'..' in user name"),
    ("root:0", "':' in user name"),
    ("al ice", "whitespace in user name"),
])
def test_bad_user_names_are_skipped(policy_for, user, reason):
    policy = policy_for("""
        [[active_response]]
        command = "lock-user"
        rules_id = [1]
    """)
    assert decided(policy, make_alert(1, dstuser=user)) == [("lock-user", user, None, reason)]


ESCALATING = """
    [[active_response]]
    command = "firewall-drop"
    rules_id = [5712]
    timeout = 600
    repeated_offenders = [30, 60, 120]
"""


def test_repeated_offenders_escalate_in_minutes(policy_for):
    policy = policy_for(ESCALATING)
    timeouts = [(r.offence, r.timeout) for t in range(6)
                for r in policy.decide(make_alert(time=1000.0 + t, srcip="203.0.113.5"))]
    assert timeouts == [(1, 600), (2, 1800), (3, 3600), (4, 7200), (5, 7200), (6, 7200)]
    # another address starts at its own first offence
    [other] = policy.decide(make_alert(time=1010.0, srcip="203.0.113.6"))
    assert (other.offence, other.timeout) == (1, 600)


def test_without_repeated_offenders_the_timeout_stays(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        rules_id = [5712]
        timeout = 600
    """)
    assert [r.timeout for t in range(3)
            for r in policy.decide(make_alert(time=t, srcip="203.0.113.5"))] == [600] * 3


def test_offenders_are_forgotten_after_a_quiet_period(policy_for):
    policy = policy_for(ESCALATING, """
        [global]
        offender_forget = 3600
    """)

    def offence(time: float) -> int:
        return policy.decide(make_alert(time=time, srcip="203.0.113.5"))[0].offence

    assert [offence(0), offence(3000), offence(6000)] == [1, 2, 3]  # never 3600 s quiet
    assert offence(6000 + 3601) == 1
    assert offence(6000 + 3602) == 2


def test_offender_memory_is_in_the_given_store(tmp_path):
    config = make_config(tmp_path, ESCALATING)
    store = Store(tmp_path / "state" / "arguard.db")
    Policy(config, store).decide(make_alert(srcip="203.0.113.5"))
    [again] = Policy(config, store).decide(make_alert(time=1001.0, srcip="203.0.113.5"))
    assert again.offence == 2


def test_one_response_per_command_and_target(policy_for):
    policy = policy_for("""
        [[active_response]]
        command = "firewall-drop"
        rules_id = [5712]
        timeout = 600

        [[active_response]]
        command = "firewall-drop"
        level = 5
        timeout = 60

        [[active_response]]
        command = "lock-user"
        level = 5
    """)
    assert decided(policy, make_alert(srcip="203.0.113.5", srcuser="alice")) == [
        ("firewall-drop", "203.0.113.5", 600, None), ("lock-user", "alice", None, None)]
    assert policy.store.offender("firewall-drop", "203.0.113.5")[0] == 1


def test_shipped_default_configuration():
    """What `arguard logtest` shows with no config file: the shipped bindings."""
    policy = Policy(load_config(None))
    [response] = policy.decide(make_alert(5712, srcip="203.0.113.5"))
    assert (response.command, response.target, response.timeout) == (
        "firewall-drop", "203.0.113.5", 600)
    [loopback] = policy.decide(make_alert(5712, srcip="127.0.0.1"))
    assert loopback.skipped == "white-listed"
