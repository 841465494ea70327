"""nftables action in a private network namespace: what the kernel holds after each call,
read back with the real `nft` tool (`nft -j list …`, read only), and firewalld's reload —
its own table deleted and made again — leaving arguard's table and blocks alone."""

from __future__ import annotations

import json
import shutil

import pytest

from arguard.respond.actions import ActionError
from tests.netns import ActionProcess, namespace, python_in, run_in

NAME = "fw"


@pytest.fixture
def ns():
    if shutil.which("nft") is None:
        pytest.fail("the nft tool (Debian package nftables) is needed to read the ruleset")
    with namespace() as name:
        yield name


@pytest.fixture
def nft(ns):
    with ActionProcess(ns, "nftables", {}, name=NAME) as action:
        yield action


def elements(ns: str, set_name: str, table: str = "arguard") -> dict[str, int | None]:
    """element → timeout (seconds, None: permanent), from `nft -j list set`."""
    listed = json.loads(run_in(ns, "nft", "-j", "list", "set", "inet", table, set_name))
    found: dict[str, int | None] = {}
    for item in listed["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            if isinstance(element, dict) and "elem" in element:
                value, timeout = element["elem"]["val"], element["elem"].get("timeout")
            else:
                value, timeout = element, None
            if isinstance(value, dict) and "prefix" in value:
                value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
            found[value] = timeout
    return found


def ruleset(ns: str) -> str:
    return run_in(ns, "nft", "list", "ruleset")


def test_blocks_are_elements_with_their_timeouts(ns, nft):
    nft.add("203.0.113.5", 600)
    nft.add("2001:db8::5", None)
    nft.add("198.51.100.0/24", 3600)
    nft.add("2001:db8:1:2::/64", 300)
    assert elements(ns, f"{NAME}-ip4") == {"203.0.113.5": 600}
    assert elements(ns, f"{NAME}-ip6") == {"2001:db8::5": None}
    assert elements(ns, f"{NAME}-net4") == {"198.51.100.0/24": 3600}
    assert elements(ns, f"{NAME}-net6") == {"2001:db8:1:2::/64": 300}
    listing = ruleset(ns)
    assert "203.0.113.5 timeout 10m expires" in listing
    assert "flags interval,timeout" in listing
    assert f'ip saddr @{NAME}-ip4 counter packets 0 bytes 0 drop comment "{NAME}"' in listing
    assert "type filter hook input priority filter - 10; policy accept;" in listing
    assert nft.list_targets() == {"203.0.113.5", "2001:db8::5", "198.51.100.0/24",
                                  "2001:db8:1:2::/64"}
    assert nft.check("198.51.100.0/24") and not nft.check("198.51.100.7")


def test_add_again_sets_the_new_timeout_and_delete_is_idempotent(ns, nft):
    nft.add("203.0.113.5", 60)
    nft.add("203.0.113.5", 7200)
    nft.add("2001:db8:1:2::/64", 60)
    nft.add_many([("2001:db8:1:2::/64", 900), ("203.0.113.6", 30)])
    assert elements(ns, f"{NAME}-ip4") == {"203.0.113.5": 7200, "203.0.113.6": 30}
    assert elements(ns, f"{NAME}-net6") == {"2001:db8:1:2::/64": 900}
    nft.delete("203.0.113.5")
    nft.delete("203.0.113.5")
    nft.delete("2001:db8:1:2::/64")
    assert nft.list_targets() == {"203.0.113.6"}


def test_add_many_restores_thousands_in_both_families(ns, nft):
    v4 = [(f"10.0.{i // 250}.{i % 250 + 1}", 600) for i in range(3000)]
    v6 = [(f"2001:db8::{i:x}", None) for i in range(1, 501)]
    nft.add_many(v4 + v6 + [("192.0.2.0/28", 60)])
    assert len(elements(ns, f"{NAME}-ip4")) == 3000
    assert set(elements(ns, f"{NAME}-ip6").values()) == {None}
    assert nft.list_targets() == {t for t, _ in v4 + v6} | {"192.0.2.0/28"}


def test_a_nested_prefix_is_refused_naming_the_blocked_one(ns, nft):
    nft.add("198.51.100.0/24", 600)
    nft.add("198.51.100.7", 600)  # an address inside: the address set, no conflict
    with pytest.raises(ActionError, match=r"198\.51\.0\.0/16 overlaps the blocked prefix "
                                          r"198\.51\.100\.0/24"):
        nft.add("198.51.0.0/16", 600)
    assert nft.list_targets() == {"198.51.100.0/24", "198.51.100.7"}


def test_rejects_what_is_not_an_address_or_network(ns, nft):
    for target in ("example.com", "203.0.113.0/33", "", "fe80::1%eth0"):
        with pytest.raises(ActionError, match="not"):
            nft.add(target, 600)
    assert nft.list_targets() == set()


def test_ports_reject_and_forward_rules_and_a_restart_rewrites_them(ns):
    with ActionProcess(ns, "nftables", {"ports": [22, 2222], "protocol": "tcp",
                                        "target": "REJECT", "hooks": ["input", "forward"]},
                       name=NAME) as action:
        action.add("203.0.113.5", 60)
    listing = ruleset(ns)
    assert f"tcp dport 22 ip saddr @{NAME}-ip4 counter packets 0 bytes 0 reject" in listing
    assert f"tcp dport 2222 ip6 saddr @{NAME}-net6" in listing
    assert "type filter hook forward priority filter - 10" in listing
    with ActionProcess(ns, "nftables", {}, name=NAME):
        pass
    listing = ruleset(ns)
    assert "dport" not in listing and "reject" not in listing
    assert listing.count(f'comment "{NAME}"') == 4  # one rule per set, input only
    assert elements(ns, f"{NAME}-ip4").keys() == {"203.0.113.5"}


def test_a_flushed_ruleset_is_set_up_again_by_the_next_add(ns, nft):
    nft.add("203.0.113.5", 600)
    run_in(ns, "nft", "flush", "ruleset")
    nft.add("203.0.113.6", 600)
    assert elements(ns, f"{NAME}-ip4") == {"203.0.113.6": 600}
    assert f'comment "{NAME}"' in ruleset(ns)


def test_the_table_carries_its_owner_and_another_instance_is_refused(ns):
    with ActionProcess(ns, "nftables", {}, name=NAME, owner="1a2b3c4d") as action:
        action.add("203.0.113.5", 60)
    assert 'comment "arguard:1a2b3c4d"' in ruleset(ns)
    with pytest.raises(ActionError, match=r"table inet arguard belongs to another arguard "
                                          r"instance, the instance tagged 1a2b3c4d"):
        ActionProcess(ns, "nftables", {}, name="other")
    with ActionProcess(ns, "nftables", {"table": "arguard-second"}, name=NAME) as second:
        second.add("203.0.113.9", 60)
    assert elements(ns, f"{NAME}-ip4", "arguard-second") == {"203.0.113.9": 60}
    assert elements(ns, f"{NAME}-ip4") == {"203.0.113.5": 60}


def test_a_firewalld_reload_leaves_arguards_table_alone(ns, nft):
    """firewalld (nftables backend, 1.x) keeps its rules in `table inet firewalld` and on
    reload deletes that table and makes it again (firewall/core/nftables.py:
    build_flush_rules). Here that table is made with firewalld's base chains and a
    zone-style reject, and "reloaded" the same way, while arguard blocks an address."""
    nft.add("203.0.113.5", 600)
    firewalld = """
from pyroute2.nftables.main import NFTables
nft = NFTables(nfgen_family=1)
def make():
    nft.table("add", name="firewalld")
    for name, hook in (("filter_INPUT", "input"), ("filter_FORWARD", "forward")):
        nft.chain("add", table="firewalld", name=name, hook=hook, type="filter",
                  priority=10, policy=1)
make()
nft.table("del", name="firewalld")
make()
print('"reloaded"')
"""
    assert python_in(ns, firewalld) == "reloaded"
    listing = ruleset(ns)
    assert "table inet firewalld" in listing and "chain filter_INPUT" in listing
    assert elements(ns, f"{NAME}-ip4") == {"203.0.113.5": 600}
    assert nft.check("203.0.113.5")
