"""route action in a private network namespace: the routes the kernel holds after each call,
read back with `ip route show table all` / `ip -6 route show table all`; routes that are not
arguard's are never touched; a blackholed peer in a second namespace cannot connect."""

from __future__ import annotations

import pytest

from arguard.respond.actions import ActionError
from arguard.respond.actions.route import ROUTE_PROTOCOL
from tests.netns import ActionProcess, connect, namespace, run_in, tcp_listener, veth


@pytest.fixture
def ns():
    with namespace() as name:
        yield name


@pytest.fixture
def route(ns):
    with ActionProcess(ns, "route") as action:
        yield action


def routes(ns: str, version: int = 4) -> list[str]:
    """Routes of the given kinds in every table, as `ip route` prints them."""
    argv = ["ip", "-4" if version == 4 else "-6", "route", "show", "table", "all"]
    return [line.strip() for line in run_in(ns, *argv).splitlines()
            if line.split()[0] in ("blackhole", "unreachable", "prohibit")]


def test_add_makes_a_marked_blackhole_host_route(ns, route):
    route.add("203.0.113.5", 600)
    assert routes(ns) == [f"blackhole 203.0.113.5 proto {ROUTE_PROTOCOL}"]
    assert route.check("203.0.113.5")
    assert not route.check("203.0.113.6")
    assert route.list_targets() == {"203.0.113.5"}


def test_ipv6(ns, route):
    route.add("2001:db8::5", None)
    assert routes(ns, 6) == [f"blackhole 2001:db8::5 dev lo proto {ROUTE_PROTOCOL} "
                             "metric 1024 pref medium"]
    route.add("::ffff:203.0.113.7", 600)
    assert routes(ns) == [f"blackhole 203.0.113.7 proto {ROUTE_PROTOCOL}"]
    assert route.list_targets() == {"2001:db8::5", "203.0.113.7"}
    route.delete("2001:db8::5")
    assert routes(ns, 6) == []


def test_double_add_and_delete_of_a_missing_route_are_harmless(ns, route):
    route.add("1.2.3.4", 600)
    route.add("1.2.3.4", 600)
    route.add("1.2.3.45", 600)
    route.delete("1.2.3.4")
    route.delete("1.2.3.4")
    route.delete("198.51.100.1")
    route.delete("2001:db8::1")
    assert routes(ns) == [f"blackhole 1.2.3.45 proto {ROUTE_PROTOCOL}"]


@pytest.mark.parametrize("route_type", ["unreachable", "prohibit"])
def test_other_route_types_and_a_type_change(ns, route, route_type):
    route.add("203.0.113.5", 600)
    with ActionProcess(ns, "route", {"route_type": route_type}) as other:
        other.add("203.0.113.5", 600)
        other.add("2001:db8::5", 600)
        assert other.check("203.0.113.5")
        assert not route.check("203.0.113.5")  # no longer a blackhole
    assert routes(ns) == [f"{route_type} 203.0.113.5 proto {ROUTE_PROTOCOL}"]
    assert routes(ns, 6)[0].startswith(f"{route_type} 2001:db8::5 dev lo proto "
                                       f"{ROUTE_PROTOCOL}")
    route.delete("203.0.113.5")  # deletes arguard's route whatever its type
    assert routes(ns) == []


def test_routes_that_are_not_arguards_are_never_touched(ns, route):
    run_in(ns, "ip", "route", "add", "blackhole", "198.51.100.9/32")
    run_in(ns, "ip", "route", "add", "prohibit", "198.51.100.10/32", "proto", "static")
    run_in(ns, "ip", "-6", "route", "add", "blackhole", "2001:db8::9/128")
    route.add("203.0.113.5", 600)
    assert route.list_targets() == {"203.0.113.5"}
    for target in ("198.51.100.9", "198.51.100.10", "2001:db8::9"):
        route.delete(target)
        assert not route.check(target)
    with pytest.raises(ActionError, match="not arguard's already exists"):
        route.add("198.51.100.9", 600)
    assert routes(ns) == ["blackhole 198.51.100.9", "prohibit 198.51.100.10 proto static",
                          f"blackhole 203.0.113.5 proto {ROUTE_PROTOCOL}"]
    assert routes(ns, 6) == ["blackhole 2001:db8::9 dev lo metric 1024 pref medium"]


def test_rejects_what_is_not_one_address_and_bad_options(ns, route):
    for target in ("example.com", "203.0.113.0/24", "", "fe80::1%lo"):
        with pytest.raises(ActionError, match="not"):
            route.add(target, 600)
    assert routes(ns) == []
    with pytest.raises(ActionError, match="route_type"):
        ActionProcess(ns, "route", {"route_type": "local"})


def test_a_blackholed_peer_cannot_connect_until_unblocked():
    port = 8022
    with namespace("arguard-server") as server, namespace("arguard-client") as client:
        veth(server, ["10.200.0.1/24"], client, ["10.200.0.2/24"])
        with tcp_listener(server, port), ActionProcess(server, "route") as action:
            assert connect(client, "10.200.0.1", port) == "connected"
            action.add("10.200.0.2", 600)
            assert connect(client, "10.200.0.1", port, timeout=0.5) == "timeout"
            action.delete("10.200.0.2")
            assert connect(client, "10.200.0.1", port) == "connected"


def test_instances_keep_each_others_routes(ns, route):
    """Another instance's routes have its own metric; for one address both routes exist,
    and each instance lists and deletes only its own."""
    with ActionProcess(ns, "route", owner="1a2b3c4d") as other:
        metric = 0x80000000 | 0x1a2b3c4d
        other.add("203.0.113.5", 600)
        assert route.list_targets() == set() and not route.check("203.0.113.5")
        route.delete("203.0.113.5")  # nothing of its own: the other route stays
        assert routes(ns) == [f"blackhole 203.0.113.5 proto {ROUTE_PROTOCOL} metric {metric}"]
        route.add("203.0.113.5", 600)
        other.add("2001:db8::5", 600)
        assert routes(ns) == [f"blackhole 203.0.113.5 proto {ROUTE_PROTOCOL}",
                              f"blackhole 203.0.113.5 proto {ROUTE_PROTOCOL} metric {metric}"]
        assert routes(ns, 6) == [f"blackhole 2001:db8::5 dev lo proto {ROUTE_PROTOCOL} "
                                 f"metric {metric} pref medium"]
        assert route.list_targets() == {"203.0.113.5"}
        assert other.list_targets() == {"203.0.113.5", "2001:db8::5"}
        other.delete("203.0.113.5")
        assert routes(ns) == [f"blackhole 203.0.113.5 proto {ROUTE_PROTOCOL}"]
        assert route.check("203.0.113.5")
