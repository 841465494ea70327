"""The `route` action: a blackhole (or unreachable, or prohibit: option route_type) route
for the blocked address, /32 or /128, in the main routing table, through netlink (pyroute2
IPRoute).

    ip route:    blackhole 203.0.113.5 proto 152
    ip -6 route: blackhole 2001:db8::5 dev lo proto 152 metric 1024

A route stops the replies, not the packets: the attacker's SYN still arrives, but the SYN-ACK
goes nowhere, so no connection completes (with strict reverse-path filtering, rp_filter=1,
the incoming packets are dropped too). It needs no firewall at all.

arguard marks its routes with its own routing protocol number, ROUTE_PROTOCOL (152), the
field `ip route` shows as `proto`. `list_targets()` reports only routes with that number,
and `delete` removes only such a route, so routes made by the admin, a DHCP client, a
routing daemon or the kernel are never removed, reconciliation included. 152 because it is
unassigned: the kernel interprets only 0-4; iproute2's rt_protos names 8-18, 42 (babel), 99
(openr) and 186-192; FRR uses 186-198, and bird, keepalived, NetworkManager and
systemd-networkd use the named values. Packaging may add "152 arguard" to
/etc/iproute2/rt_protos.d/ so that `ip route` shows `proto arguard`.

Owner: the untagged instance (arguard.respond.owner) uses the kernel's default metric (0 for
IPv4, 1024 for IPv6), as arguard always did; another instance's routes have a metric of their
own derived from its tag (`metric 2586524749`), so two instances' routes for one address
coexist, and each instance lists and deletes only the routes with its own metric. Which
blackhole wins a lookup does not matter: all of them drop.

A route for the same prefix that is not arguard's is left alone and the add fails with an
explanation, rather than arguard shadowing (and later deleting) the admin's route.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from arguard.respond.actions.base import STRING, ActionError, ActionType, Address, Option, \
    parse_address
from arguard.respond.actions.loopsafe import outside_event_loop
from arguard.respond.owner import UNTAGGED, Owner

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from arguard.config import Command
    from arguard.model import Alert

#: the `proto` of arguard's routes (see the module docstring for why 152)
ROUTE_PROTOCOL = 152
MAIN_TABLE = 254
#: route types arguard makes, as the kernel numbers them (linux/rtnetlink.h, RTN_*)
ROUTE_TYPES = {"blackhole": 6, "unreachable": 7, "prohibit": 8}
#: the metric the kernel gives a route added without one (IPv4, IPv6)
DEFAULT_METRIC = {4: 0, 6: 1024}
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


def owner_metric(owner: Owner, version: int) -> int:
    """The metric of the owner's routes: the kernel's default for the untagged owner, else
    one in the upper half of the range, from the tag."""
    if not owner.tag:
        return DEFAULT_METRIC[version]
    return 0x80000000 | int(owner.tag, 16) & 0x7FFFFFFF


class RouteAction:
    def __init__(self, command: Command, owner: Owner = UNTAGGED):
        self.route_type: str = ACTION.options_of(command)["route_type"]
        self.owner = owner

    @outside_event_loop
    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        """Add the route; this owner's route of another type for the address is replaced
        (the command's route_type was changed). Routes have no timeout: arguard lifts them."""
        address = parse_address(target)
        with _netlink(f"add route {target}") as ipr:
            present = _routes(ipr, address)
            foreign = [r for r in present if r["proto"] != ROUTE_PROTOCOL]
            if foreign:
                from pyroute2.netlink.rtnl import rt_type

                raise ActionError(
                    f"a route for {_prefix(address)} that is not arguard's already exists ("
                    + "; ".join(f"type {rt_type.get(r['type'], r['type'])} proto {r['proto']}"
                                for r in foreign)
                    + "); it is left in place and arguard adds none")
            own = [r for r in present if self._owns(r, address.version)]
            if not own:
                self._route(ipr, "add", address, type=self.route_type)
            elif all(r["type"] != ROUTE_TYPES[self.route_type] for r in own):
                self._route(ipr, "replace", address, type=self.route_type)

    @outside_event_loop
    def delete(self, target: str) -> None:
        """Delete this owner's route for the address, whatever its type. The kernel would
        take a delete without a metric for any route of the prefix, so it is asked only when
        this owner's route is there, with the owner's metric."""
        address = parse_address(target)
        with _netlink(f"delete route {target}") as ipr:
            if any(self._owns(r, address.version) for r in _routes(ipr, address)):
                self._route(ipr, "del", address)

    @outside_event_loop
    def check(self, target: str) -> bool:
        address = parse_address(target)
        with _netlink(f"look up route {target}") as ipr:
            return any(self._owns(r, address.version)
                       and r["type"] == ROUTE_TYPES[self.route_type]
                       for r in _routes(ipr, address))

    @outside_event_loop
    def list_targets(self) -> set[str] | None:
        """Destinations of this owner's (proto 152, its metric) host routes of the three
        types, whichever type the command has now, in the main table."""
        types = set(ROUTE_TYPES.values())
        targets = set()
        with _netlink("list routes") as ipr:
            for version, family in _FAMILIES.items():
                for route in ipr.route("dump", family=family,
                                       match={"table": MAIN_TABLE, "proto": ROUTE_PROTOCOL}):
                    if (route["type"] in types and self._owns(route, version)
                            and route["dst_len"] == (32 if version == 4 else 128)):
                        targets.add(str(parse_address(route.get("dst"))))
        return targets

    def _owns(self, route, version: int) -> bool:
        return (route["proto"] == ROUTE_PROTOCOL
                and (route.get("priority") or 0) == owner_metric(self.owner, version))

    def _route(self, ipr: IPRoute, command: str, address: Address, **fields: str) -> None:
        ipr.route(command, dst=_prefix(address), family=_FAMILIES[address.version],
                  table=MAIN_TABLE, proto=ROUTE_PROTOCOL,
                  priority=owner_metric(self.owner, address.version), **fields)


def _prefix(address: Address) -> str:
    return f"{address}/{address.max_prefixlen}"


def _routes(ipr: IPRoute, address: Address) -> list:
    """The main table's routes for exactly this host prefix, whoever made them."""
    return list(ipr.route("dump", family=_FAMILIES[address.version],
                          match={"table": MAIN_TABLE, "dst": str(address),
                                 "dst_len": address.max_prefixlen}))


@contextmanager
def _netlink(doing: str) -> Iterator[IPRoute]:
    """An rtnetlink socket; netlink errors become ActionError naming what was being done."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as error:
        reason = ("operation not permitted (arguard needs CAP_NET_ADMIN)"
                  if error.code == errno.EPERM else f"{errno.errorcode.get(error.code, '')} "
                  f"{error}".strip())
        raise ActionError(f"cannot {doing}: {reason}") from error
    except OSError as error:
        raise ActionError(f"cannot {doing}: {error.strerror or error}") from error


ACTION = ActionType(
    summary="a blackhole (or unreachable, or prohibit) host route for the blocked address",
    kinds=("ip",),
    build=lambda command, context: RouteAction(command, context.owner),
    options=(Option("route_type", STRING, "blackhole", "the kind of route",
                    choices=tuple(ROUTE_TYPES)),),
)
