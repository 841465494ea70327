"""ipset action in a private network namespace: what the kernel holds after each call, read
back with `ipset save`, `iptables-legacy -S` and `ip6tables-legacy -S`; and a peer in a
second namespace whose TCP connections are dropped while it is blocked."""

from __future__ import annotations

import time

import pytest

from arguard.respond.actions import ActionError
from arguard.respond.actions.ipset import MAX_TIMEOUT
from tests.netns import ActionProcess, connect, namespace, run_in, tcp_listener, veth

SET = "ag"


@pytest.fixture
def ns():
    with namespace() as name:
        yield name


@pytest.fixture
def ipset(ns):
    with ActionProcess(ns, "ipset", {"set_name": SET}) as action:
        yield action


def members(ns: str, name: str = SET) -> dict[str, int]:
    """address → remaining kernel timeout, from `ipset save`."""
    entries = {}
    for line in run_in(ns, "ipset", "save", name).splitlines():
        words = line.split()
        if words[0] == "add":
            entries[words[2]] = int(words[words.index("timeout") + 1])
    return entries


def rules(ns: str, version: int = 4) -> list[str]:
    return run_in(ns, "iptables-legacy" if version == 4 else "ip6tables-legacy",
                  "-S").splitlines()


def test_add_puts_the_address_in_the_set_with_its_timeout(ns, ipset):
    ipset.add("203.0.113.5", 600)
    entries = members(ns)
    assert list(entries) == ["203.0.113.5"]
    assert 590 <= entries["203.0.113.5"] <= 600  # the kernel counts down
    assert "-A INPUT -j arguard-ipset" in rules(ns)
    assert f"-A arguard-ipset -m set --match-set {SET} src -j DROP" in rules(ns)
    assert ipset.check("203.0.113.5")
    assert not ipset.check("203.0.113.6")
    assert ipset.list_targets() == {"203.0.113.5"}


def test_ipv6_goes_to_the_inet6_set_and_mapped_ipv4_to_the_inet_set(ns, ipset):
    ipset.add("2001:db8::5", 600)
    ipset.add("::ffff:203.0.113.7", 600)
    assert list(members(ns, f"{SET}6")) == ["2001:db8::5"]
    assert list(members(ns)) == ["203.0.113.7"]
    assert f"-A arguard-ipset -m set --match-set {SET}6 src -j DROP" in rules(ns, 6)
    assert ipset.list_targets() == {"2001:db8::5", "203.0.113.7"}
    assert ipset.check("2001:db8::5")
    ipset.delete("2001:db8::5")
    assert members(ns, f"{SET}6") == {}


def test_permanent_and_overlong_blocks_have_no_kernel_timeout(ns, ipset):
    ipset.add("203.0.113.5", None)
    ipset.add("203.0.113.6", MAX_TIMEOUT + 1)  # the kernel would cap it and lift it early
    ipset.add("203.0.113.7", MAX_TIMEOUT)
    entries = members(ns)
    assert entries["203.0.113.5"] == 0
    assert entries["203.0.113.6"] == 0
    assert MAX_TIMEOUT - 10 <= entries["203.0.113.7"] <= MAX_TIMEOUT


def test_adding_again_sets_the_new_timeout(ns, ipset):
    ipset.add("203.0.113.5", 600)
    ipset.add("203.0.113.5", 3000)
    assert 2990 <= members(ns)["203.0.113.5"] <= 3000
    ipset.add("203.0.113.5", 100)
    assert members(ns).keys() == {"203.0.113.5"}
    assert 90 <= members(ns)["203.0.113.5"] <= 100


def test_delete_removes_exactly_that_address_and_is_idempotent(ns, ipset):
    ipset.add("1.2.3.4", 600)
    ipset.add("1.2.3.45", 600)
    ipset.delete("1.2.3.4")
    assert members(ns).keys() == {"1.2.3.45"}
    ipset.delete("1.2.3.4")
    ipset.delete("198.51.100.1")  # never added
    ipset.delete("2001:db8::99")
    assert members(ns).keys() == {"1.2.3.45"}
    assert not ipset.check("1.2.3.4")
    assert ipset.list_targets() == {"1.2.3.45"}


def test_add_many_restores_thousands_with_their_timeouts(ns, ipset):
    v4 = [(f"10.{i >> 8}.{i & 255}.1", 600 + i % 7) for i in range(3000)]
    v6 = [(f"2001:db8::{i:x}", None) for i in range(1, 501)]
    ipset.add_many(v4 + v6)
    entries, entries6 = members(ns), members(ns, f"{SET}6")
    assert len(entries) == 3000 and len(entries6) == 500
    assert 590 <= entries["10.0.6.1"] <= 606
    assert set(entries6.values()) == {0}
    assert ipset.list_targets() == {t for t, _ in v4 + v6}
    ipset.add_many([])


def test_rejects_what_is_not_one_address_or_network(ns, ipset):
    for target in ("example.com", "203.0.113.0/33", "", "203.0.113.5 ", "fe80::1%eth0"):
        with pytest.raises(ActionError, match="not"):
            ipset.add(target, 600)
    with pytest.raises(ActionError):
        ipset.add_many([("203.0.113.9", 600), ("not-an-address", 600)])
    assert members(ns) == {}


def test_reject_target_and_forward_jump(ns):
    with ActionProcess(ns, "ipset", {"set_name": SET, "target": "REJECT",
                                     "jump_from": ["INPUT", "FORWARD"]}) as action:
        action.add("203.0.113.5", 60)
        assert action.check("203.0.113.5")
    v4, v6 = rules(ns), rules(ns, 6)
    for family_rules in (v4, v6):
        assert {"-A INPUT -j arguard-ipset", "-A FORWARD -j arguard-ipset"} <= set(family_rules)
    assert (f"-A arguard-ipset -m set --match-set {SET} src -j REJECT "
            "--reject-with icmp-port-unreachable") in v4
    assert (f"-A arguard-ipset -m set --match-set {SET}6 src -j REJECT "
            "--reject-with icmp6-port-unreachable") in v6
    assert not any("-j DROP" in line for line in v4 + v6)


def test_admin_rules_stay_and_the_jump_comes_first(ns):
    run_in(ns, "iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    with ActionProcess(ns, "ipset", {"set_name": SET}) as action:
        action.add("203.0.113.5", 60)
    with ActionProcess(ns, "ipset", {"set_name": SET}):
        pass  # a second start adds nothing twice
    input_rules = [line for line in rules(ns) if line.startswith("-A INPUT")]
    assert input_rules == ["-A INPUT -j arguard-ipset",
                           "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"]
    assert len([line for line in rules(ns) if "--match-set" in line]) == 2  # addresses, prefixes
    assert members(ns).keys() == {"203.0.113.5"}


def test_a_compatible_set_made_by_the_admin_is_used(ns):
    run_in(ns, "ipset", "create", SET, "hash:ip", "timeout", "0", "maxelem", "2")
    with ActionProcess(ns, "ipset", {"set_name": SET}) as action:
        action.add("203.0.113.1", 60)
        action.add("203.0.113.2", 60)
        with pytest.raises(ActionError, match=f"set '{SET}': the set is full"):
            action.add("203.0.113.3", 60)
    assert members(ns).keys() == {"203.0.113.1", "203.0.113.2"}


@pytest.mark.parametrize("create", [["hash:net"], ["hash:ip"], ["hash:ip", "family", "inet6",
                                                                 "timeout", "0"]])
def test_an_incompatible_set_of_the_same_name_is_refused(ns, create):
    run_in(ns, "ipset", "create", SET, *create)
    with pytest.raises(ActionError, match=f"ipset destroy {SET}"):
        ActionProcess(ns, "ipset", {"set_name": SET})


def test_a_set_destroyed_behind_its_back_is_created_again(ns, ipset):
    ipset.add("203.0.113.5", 600)
    run_in(ns, "iptables-legacy", "-F", "arguard-ipset")
    assert not ipset.check("203.0.113.5")  # in the set, but no rule matches it any more
    run_in(ns, "ipset", "destroy", SET)
    ipset.add("203.0.113.6", 600)
    assert members(ns).keys() == {"203.0.113.6"}
    assert f"-A arguard-ipset -m set --match-set {SET} src -j DROP" in rules(ns)
    assert ipset.check("203.0.113.6")


def test_bad_options_are_refused(ns):
    for options in ({"set_name": "x" * 31}, {"set_name": "a b"}, {"target": "ACCEPT"},
                    {"jump_from": []}, {"jump_from": ["NO-SUCH-CHAIN"]},
                    {"chain": "INPUT"}):
        with pytest.raises(ActionError):
            ActionProcess(ns, "ipset", options)


# --- a peer in a second namespace ----------------------------------------------------------

PORT = 8022


@pytest.fixture
def peers():
    """(server namespace, client namespace, client's addresses) joined by a veth pair, with
    a TCP listener in the server namespace."""
    with namespace("arguard-server") as server, namespace("arguard-client") as client:
        veth(server, ["10.200.0.1/24", "fd00:200::1/64"],
             client, ["10.200.0.2/24", "fd00:200::2/64"])
        with tcp_listener(server, PORT):
            yield server, client


@pytest.mark.parametrize("server_address, client_address", [("10.200.0.1", "10.200.0.2"),
                                                            ("fd00:200::1", "fd00:200::2")])
def test_a_blocked_peer_cannot_connect_until_unblocked(peers, server_address, client_address):
    server, client = peers
    assert connect(client, server_address, PORT) == "connected"
    with ActionProcess(server, "ipset") as action:
        action.add(client_address, 600)
        assert connect(client, server_address, PORT, timeout=0.5) == "timeout"
        action.delete(client_address)
        assert connect(client, server_address, PORT) == "connected"


def test_the_kernel_lifts_a_block_when_its_timeout_runs_out(peers):
    server, client = peers
    with ActionProcess(server, "ipset") as action:
        action.add("10.200.0.2", 2)
        assert 1 <= members(server, "arguard")["10.200.0.2"] <= 2
        deadline = time.monotonic() + 30
        while connect(client, "10.200.0.1", PORT, timeout=0.5) != "connected":
            assert time.monotonic() < deadline, "the 2 s block was never lifted"
        assert action.list_targets() == set()


# --- owners ---------------------------------------------------------------------------------

def test_another_instance_refuses_a_set_that_is_not_its_own(ns, ipset):
    """One entry per address cannot serve two instances: the second one, with the same
    set_name, is refused and told why (OwnerConflict, an ActionError: the daemon refuses to
    start); with a set of its own it works beside the first."""
    ipset.add("203.0.113.5", 600)
    with pytest.raises(ActionError, match=f"ipset '{SET}' belongs to another arguard "
                                            "instance, the untagged instance"):
        ActionProcess(ns, "ipset", {"set_name": SET}, owner="1a2b3c4d")
    with ActionProcess(ns, "ipset", {"set_name": "other"}, owner="1a2b3c4d") as other:
        other.add("203.0.113.6", 600)
        assert other.list_targets() == {"203.0.113.6"}
        assert other.check("203.0.113.6")
        with pytest.raises(ActionError, match="the instance tagged 1a2b3c4d"):
            ActionProcess(ns, "ipset", {"set_name": "other"})
    assert ('-A arguard-ipset -m set --match-set other src -m comment --comment '
            '"arguard:1a2b3c4d" -j DROP') in rules(ns)
    assert f"-A arguard-ipset -m set --match-set {SET} src -j DROP" in rules(ns)
    assert ipset.list_targets() == {"203.0.113.5"} and members(ns).keys() == {"203.0.113.5"}
