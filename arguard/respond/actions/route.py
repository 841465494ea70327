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
and `delete` asks the kernel to delete only a route with that number, so routes made by the
admin, a DHCP client, a routing daemon or the kernel are never removed, reconciliation
included. 152 because it is unassigned: the kernel interprets only 0-4; iproute2's rt_protos
names 8-18, 42 (babel), 99 (openr) and 186-192; FRR uses 186-198, and bird, keepalived,
NetworkManager and systemd-networkd use the named values. Packaging may add "152 arguard" to
/etc/iproute2/rt_protos.d/ so that `ip route` shows `proto arguard`.

A route for the same prefix that is not arguard's is left alone and the add fails with an
explanation, rather than arguard replacing (and later deleting) the admin's route.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import rt_type

from arguard.config import Command
from arguard.model import Alert
from arguard.respond.actions.base import ActionError
from arguard.respond.actions.hostsdeny import Address, parse_address
from arguard.respond.actions.loopsafe import outside_event_loop

#: the `proto` of arguard's routes (see the module docstring for why 152)
ROUTE_PROTOCOL = 152
MAIN_TABLE = 254
ROUTE_TYPES = ("blackhole", "unreachable", "prohibit")
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


class RouteAction:
    kind: Literal["ip", "user"] = "ip"

    def __init__(self, command: Command):
        route_type = command.options.get("route_type", "blackhole")
        if route_type not in ROUTE_TYPES:
            raise ActionError(f"command {command.name!r}: route_type must be one of "
                              f"{', '.join(ROUTE_TYPES)}, not {route_type!r}")
        self.route_type: str = route_type

    @outside_event_loop
    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        """Add the route; an arguard route of another type for the address is replaced (the
        command's route_type was changed). Routes have no timeout: arguard lifts them."""
        address = parse_address(target)
        with _netlink(f"add route {target}") as ipr:
            try:
                self._route(ipr, "add", address, type=self.route_type)
                return
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise
            present = _routes(ipr, address)
            foreign = [r for r in present if r["proto"] != ROUTE_PROTOCOL]
            if foreign:
                raise ActionError(
                    f"a route for {_prefix(address)} that is not arguard's already exists ("
                    + "; ".join(f"type {rt_type.get(r['type'], r['type'])} proto {r['proto']}"
                                for r in foreign)
                    + "); it is left in place and arguard adds none")
            if all(r["type"] != rt_type[self.route_type] for r in present):
                self._route(ipr, "replace", address, type=self.route_type)

    @outside_event_loop
    def delete(self, target: str) -> None:
        """Delete arguard's route for the address, whatever its type (the kernel matches the
        protocol number, so no other route is touched)."""
        address = parse_address(target)
        with _netlink(f"delete route {target}") as ipr:
            try:
                self._route(ipr, "del", address)
            except NetlinkError as error:
                if error.code not in (errno.ESRCH, errno.ENOENT):
                    raise

    @outside_event_loop
    def check(self, target: str) -> bool:
        address = parse_address(target)
        with _netlink(f"look up route {target}") as ipr:
            return any(r["proto"] == ROUTE_PROTOCOL and r["type"] == rt_type[self.route_type]
                       for r in _routes(ipr, address))

    @outside_event_loop
    def list_targets(self) -> set[str] | None:
        """Destinations of arguard's (proto 152) host routes of the three types, whichever
        type the command has now, in the main table."""
        types = {rt_type[name] for name in ROUTE_TYPES}
        targets = set()
        with _netlink("list routes") as ipr:
            for version, family in _FAMILIES.items():
                for route in ipr.route("dump", family=family,
                                       match={"table": MAIN_TABLE, "proto": ROUTE_PROTOCOL}):
                    if route["type"] in types and route["dst_len"] == (32 if version == 4
                                                                       else 128):
                        targets.add(str(parse_address(route.get("dst"))))
        return targets

    @staticmethod
    def _route(ipr: IPRoute, command: str, address: Address, **fields: str) -> None:
        ipr.route(command, dst=_prefix(address), family=_FAMILIES[address.version],
                  table=MAIN_TABLE, proto=ROUTE_PROTOCOL, **fields)


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
