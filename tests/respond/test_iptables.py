"""iptables action in a private network namespace: the rules the kernel holds after each
call, read back with `iptables-legacy -S` / `ip6tables-legacy -S`."""

from __future__ import annotations

import pytest

from arguard.respond.actions import ActionError
from tests.netns import ActionProcess, namespace, run_in


@pytest.fixture
def ns():
    with namespace() as name:
        yield name


@pytest.fixture
def iptables(ns):
    with ActionProcess(ns, "iptables") as action:
        yield action


def rules(ns: str, version: int = 4, chain: str = "arguard") -> list[str]:
    """The chain's rules, as `iptables-legacy -S CHAIN` prints them (without the -N line)."""
    tool = "iptables-legacy" if version == 4 else "ip6tables-legacy"
    return [line for line in run_in(ns, tool, "-S", chain).splitlines()
            if line.startswith("-A")]


def jumps(ns: str, version: int = 4) -> list[str]:
    tool = "iptables-legacy" if version == 4 else "ip6tables-legacy"
    return [line for line in run_in(ns, tool, "-S").splitlines() if line.endswith("-j arguard")]


def test_chain_and_jump_exist_from_the_start_for_both_versions(ns, iptables):
    for version in (4, 6):
        assert jumps(ns, version) == ["-A INPUT -j arguard"]
        assert rules(ns, version) == []
    assert iptables.list_targets() == set()


def test_add_inserts_one_drop_rule_per_address(ns, iptables):
    iptables.add("203.0.113.5", 600)
    iptables.add("198.51.100.7", None)
    assert rules(ns) == ["-A arguard -s 198.51.100.7/32 -j DROP",
                         "-A arguard -s 203.0.113.5/32 -j DROP"]
    assert iptables.check("203.0.113.5")
    assert not iptables.check("203.0.113.6")
    assert iptables.list_targets() == {"203.0.113.5", "198.51.100.7"}


def test_ipv6_rules_go_to_ip6tables(ns, iptables):
    iptables.add("2001:db8::5", 600)
    iptables.add("::ffff:203.0.113.7", 600)
    assert rules(ns, 6) == ["-A arguard -s 2001:db8::5/128 -j DROP"]
    assert rules(ns) == ["-A arguard -s 203.0.113.7/32 -j DROP"]
    assert iptables.list_targets() == {"2001:db8::5", "203.0.113.7"}
    iptables.delete("2001:db8::5")
    assert rules(ns, 6) == []


def test_double_add_and_delete_of_a_missing_rule_are_harmless(ns, iptables):
    iptables.add("1.2.3.4", 600)
    iptables.add("1.2.3.4", 600)
    iptables.add("1.2.3.45", 600)
    assert rules(ns) == ["-A arguard -s 1.2.3.45/32 -j DROP", "-A arguard -s 1.2.3.4/32 -j DROP"]
    iptables.delete("1.2.3.4")
    iptables.delete("1.2.3.4")
    iptables.delete("198.51.100.1")
    assert rules(ns) == ["-A arguard -s 1.2.3.45/32 -j DROP"]
    assert not iptables.check("1.2.3.4")


def test_reject_target_replaces_the_drop_rule_and_forward_is_jumped(ns, iptables):
    iptables.add("203.0.113.5", 600)
    with ActionProcess(ns, "iptables", {"target": "REJECT",
                                        "jump_from": ["INPUT", "FORWARD"]}) as reject:
        reject.add("203.0.113.5", 600)
        reject.add("2001:db8::5", 600)
        assert reject.check("203.0.113.5")
    assert rules(ns) == ["-A arguard -s 203.0.113.5/32 -j REJECT "
                         "--reject-with icmp-port-unreachable"]
    assert rules(ns, 6) == ["-A arguard -s 2001:db8::5/128 -j REJECT "
                            "--reject-with icmp6-port-unreachable"]
    assert jumps(ns) == ["-A INPUT -j arguard", "-A FORWARD -j arguard"]
    iptables.delete("203.0.113.5")  # the DROP command lifts whatever rule the address has
    assert rules(ns) == []


def test_admin_rules_elsewhere_are_untouched_and_a_flushed_jump_comes_back(ns):
    run_in(ns, "iptables-legacy", "-A", "INPUT", "-s", "203.0.113.5", "-j", "DROP")
    with ActionProcess(ns, "iptables", {"chain": "ag-block"}) as action:
        action.add("203.0.113.5", 600)
        action.delete("203.0.113.5")
        assert "-A INPUT -s 203.0.113.5/32 -j DROP" in run_in(ns, "iptables-legacy", "-S")
        run_in(ns, "iptables-legacy", "-F", "INPUT")
        assert not action.check("203.0.113.6")
        action.add("203.0.113.6", 600)
        assert action.check("203.0.113.6")
        assert run_in(ns, "iptables-legacy", "-S", "INPUT").splitlines()[1:] == [
            "-A INPUT -j ag-block"]
        assert rules(ns, chain="ag-block") == ["-A ag-block -s 203.0.113.6/32 -j DROP"]


def test_list_targets_ignores_rules_that_are_not_one_address(ns, iptables):
    iptables.add("203.0.113.5", 600)
    run_in(ns, "iptables-legacy", "-A", "arguard", "-s", "198.51.100.0/24", "-j", "DROP")
    run_in(ns, "iptables-legacy", "-A", "arguard", "-s", "198.51.100.9", "-p", "tcp",
           "--dport", "22", "-j", "DROP")
    assert iptables.list_targets() == {"203.0.113.5"}


def test_rejects_what_is_not_one_address_and_bad_options(ns, iptables):
    for target in ("example.com", "203.0.113.0/24", "", "1.2.3.4; iptables -F"):
        with pytest.raises(ActionError, match="not"):
            iptables.add(target, 600)
    assert rules(ns) == []
    for options in ({"chain": "DROP"}, {"chain": "x" * 29}, {"chain": "-F"},
                    {"target": "ACCEPT"}, {"jump_from": ["NO-SUCH-CHAIN"]},
                    {"jump_from": ["arguard"]}):
        with pytest.raises(ActionError):
            ActionProcess(ns, "iptables", options)


def test_instances_sharing_the_chain_keep_each_others_rules(ns, iptables):
    """The untagged instance's rules are as arguard always wrote them; another instance's
    carry its owner. Each lists and deletes only its own, for one address too."""
    with ActionProcess(ns, "iptables", owner="1a2b3c4d") as other:
        iptables.add("203.0.113.5", 600)
        other.add("203.0.113.5", 600)
        other.add("2001:db8::6", 600)
        assert rules(ns) == [
            '-A arguard -s 203.0.113.5/32 -m comment --comment "arguard:1a2b3c4d" -j DROP',
            "-A arguard -s 203.0.113.5/32 -j DROP"]
        assert rules(ns, 6) == [
            '-A arguard -s 2001:db8::6/128 -m comment --comment "arguard:1a2b3c4d" -j DROP']
        assert iptables.list_targets() == {"203.0.113.5"}
        assert other.list_targets() == {"203.0.113.5", "2001:db8::6"}
        iptables.delete("203.0.113.5")
        assert other.check("203.0.113.5") and not iptables.check("203.0.113.5")
        other.delete("203.0.113.5")
        other.delete("2001:db8::6")
    assert rules(ns) == rules(ns, 6) == []
    assert jumps(ns) == ["-A INPUT -j arguard"]
