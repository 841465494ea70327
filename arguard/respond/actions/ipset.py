"""The `ipset` action, arguard's default `firewall-drop`: blocked addresses are members of
two kernel sets, matched by one firewall rule per IP version.

    ipset: arguard  hash:ip family inet  timeout 0   (option set_name)
           arguard6 hash:ip family inet6 timeout 0
           arguard-net, arguard-net6 hash:net …       (prefixes: `arguard block 198.51.100.0/24`,
                                                        prefix_v4 / prefix_v6)
    -N arguard-ipset                                                (option chain)
    -I INPUT -j arguard-ipset                                       (option jump_from)
    -A arguard-ipset -m set --match-set arguard src -j DROP         (option target)
    -A arguard-ipset -m set --match-set arguard-net src -j DROP
    ip6tables: the same with arguard6, arguard-net6
    with ports = [22]: -A arguard-ipset -p tcp -m set --match-set arguard src
                          -m multiport --dports 22 -j DROP        (option protocol)

Commands whose sets have the same names share them and their rules: give each its own
set_name when their ports differ.

A lookup in a hash set costs the same for 10 or 100 000 members, per packet and per ban;
with one rule per address (the `iptables` action) both grow with the number of blocks.

Each entry carries a kernel timeout equal to the block's remaining time, so the kernel lifts
it on time even while arguard is down; arguard lifts it too, from its blocks table. Permanent
blocks are entries with timeout 0. The kernel caps entry timeouts at MAX_TIMEOUT (about 24.8
days); a longer block is stored as permanent and lifted by arguard alone, rather than lifted
early by the kernel. Adding an address that is already a member sets its timeout anew
(that is how a block is extended); deleting a non-member is a no-op.

Sets are created when missing, with room for MAXELEM entries; a set of the same name made by
someone else is used if it is a hash:ip set of the right family with timeout support, and
refused with an explanation otherwise. The chain, the jumps into it and the set-matching
rules are created when missing (python-iptables / libiptc, arguard.respond.actions.xtables),
at start and whenever a set had to be created again.

Owner: a set belongs to the instance whose set-matching rule matches it (the rule carries
its owner, see xtables). One entry per address cannot serve two instances — one would lift
what the other still blocks — so an instance whose set is matched by another instance's rule
refuses to start (OwnerConflict), saying which set and how to give it its own.

Netlink: sets are created and checked with pyroute2's `IPSet`. The per-address commands
(add, delete, test) and the listing are built and read with `struct` on a plain
NETLINK_NETFILTER socket: pyroute2 0.9's generic message encoder and its asyncio round trip
cost about 190 µs per `IPSet.add` (10 000 bans: ~2 s) and its decoder about 35 µs per listed
member (100 000 blocks: ~4 s at every start); with these few fixed-layout messages a ban
costs about 8 µs and listing 100 000 members 0.25 s (benchmarks/bench_ipset.py).
The same encoding carries many entries in one message (`IPSET_ATTR_ADT`, batch mode), which
`add_many` uses to restore a whole blocks table after a reboot. Message layout and attribute
numbers: linux/netfilter/ipset/ip_set.h, linux/netfilter/nfnetlink.h.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from arguard.respond.actions.base import (
    PORTS,
    PREFIX_V4,
    PREFIX_V6,
    PROTOCOL,
    STRING,
    ActionError,
    ActionType,
    Network,
    Option,
    OwnerConflict,
    network_target,
    parse_network,
)
from arguard.respond.actions import netlink
from arguard.respond.actions.netlink import NLA_F_NESTED, NLA_F_NET_BYTEORDER, \
    NLM_F_ACK, NLM_F_DUMP
from arguard.respond.actions.netlink import attr as _attr
from arguard.respond.actions.netlink import spans as _spans
from arguard.respond.actions.iptables import JUMP_FROM, TARGET, check_jumps, chain_option
from arguard.respond.actions.loopsafe import outside_event_loop
from arguard.respond.owner import UNTAGGED, Owner, describe_tag

if TYPE_CHECKING:
    from pyroute2 import IPSet

    from arguard.config import Command
    from arguard.model import Alert
    from arguard.respond.actions.xtables import Rule, Table

#: room in each set; the kernel allocates per entry, this is only a ceiling
MAXELEM = 1 << 20
#: the longest entry timeout the kernel keeps, (UINT_MAX >> 1) // 1000 seconds
MAX_TIMEOUT = 2_147_483
#: entries per batched message: the ADT attribute's 16-bit length must hold them (an IPv6
#: entry is 36 bytes)
BATCH = 1024

# ipset numbers (kernel ABI: linux/netfilter/nfnetlink.h, linux/netfilter/ipset/ip_set.h;
# netlink's own in arguard.respond.actions.netlink), written here so that this module loads
# without pyroute2.
NFNL_SUBSYS_IPSET = 6
IPSET_CMD_LIST = 7
IPSET_CMD_ADD = 9
IPSET_CMD_DEL = 10
IPSET_CMD_TEST = 11
IPSET_FLAG_LIST_HEADER = 4
IPSET_ERR_PROTOCOL = 4097
IPSET_ERR_EXIST = 4103
IPSET_ERR_INVALID_FAMILY = 4106
IPSET_ERR_TIMEOUT = 4107
IPSET_ERR_TYPE_SPECIFIC = 4352
IPSET_ATTR_PROTOCOL = 1
IPSET_ATTR_SETNAME = 2
IPSET_ATTR_DATA = 7
IPSET_ATTR_ADT = 8
IPSET_ATTR_LINENO = 9    # required with ADT (batch mode)
IPSET_ATTR_IP = 1        # inside DATA
IPSET_ATTR_CIDR = 3      # inside DATA (hash:net)
IPSET_ATTR_TIMEOUT = 6   # inside DATA
IPSET_ATTR_IPADDR_IPV4 = 1
IPSET_ATTR_IPADDR_IPV6 = 2
IPSET_ERR_PRIVATE = 4096  # ipset's own error codes start here

_SET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,26}")  # 31 bytes at most with "-net6"
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
_KERNEL_ERRORS = {
    IPSET_ERR_PROTOCOL: "the kernel's ipset module rejected the message (protocol)",
    IPSET_ERR_INVALID_FAMILY: "address family does not match the set",
    IPSET_ERR_TIMEOUT: "the set has no timeout support",
    IPSET_ERR_TYPE_SPECIFIC: "the set is full",  # IPSET_ERR_HASH_FULL for hash types
}


class IpsetAction:
    def __init__(self, command: Command, owner: Owner = UNTAGGED):
        options = ACTION.options_of(command)
        name = options["set_name"]
        self.command = command.name
        #: (kind, IP version) → set name; kind "ip" (hash:ip) or "net" (hash:net)
        self.sets = {("ip", 4): name, ("ip", 6): f"{name}6",
                     ("net", 4): f"{name}-net", ("net", 6): f"{name}-net6"}
        self.chain: str = options["chain"]
        self.jump_from: tuple[str, ...] = tuple(options["jump_from"])
        self.target: str = options["target"]
        self.ports: tuple[int, ...] = tuple(options["ports"])
        self.protocol: str = options["protocol"]
        self.owner = owner
        self._netlink = _Netlink(self._setup())

    # --- the Action contract -------------------------------------------------------------

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        network = parse_network(target)
        self._add(_where(network), [_entry(network, _kernel_timeout(timeout))])

    def add_many(self, items: Sequence[tuple[str, int | None]]) -> None:
        """Add (or refresh) many entries, BATCH per netlink message."""
        grouped: dict[tuple[str, int], list[bytes]] = {where: [] for where in self.sets}
        for target, timeout in items:
            network = parse_network(target)
            grouped[_where(network)].append(_entry(network, _kernel_timeout(timeout)))
        for where, entries in grouped.items():
            for start in range(0, len(entries), BATCH):
                self._add(where, entries[start:start + BATCH])

    def delete(self, target: str) -> None:
        network = parse_network(target)
        where = _where(network)
        error = self._netlink.request(IPSET_CMD_DEL, self.sets[where], [_entry(network, None)])
        if error not in (0, errno.ENOENT):  # ENOENT: no set, so nothing to delete
            raise self._error("delete", where, error)

    def check(self, target: str) -> bool:
        """Whether the address is a member and its set's rule is reachable."""
        from arguard.respond.actions import xtables

        network = parse_network(target)
        where = _where(network)
        error = self._netlink.request(IPSET_CMD_TEST, self.sets[where], [_entry(network, None)])
        if error in (IPSET_ERR_EXIST, errno.ENOENT):
            return False
        if error:
            raise self._error("test", where, error)
        with xtables.xtables(network.version) as table:
            return (xtables.chain_in_place(table, self.chain, self.jump_from)
                    and all(rule in xtables.chain(table, self.chain).rules
                            for rule in self._set_rules(table, where, self.target)))

    def list_targets(self) -> set[str] | None:
        """The members of the sets (entries whose kernel timeout ran out are not listed)."""
        members: set[str] = set()
        for where, name in self.sets.items():
            error, listed = self._netlink.members(name)
            if error not in (0, errno.ENOENT):  # ENOENT: no set, no members
                raise self._error("list", where, error)
            members.update(listed)
        return members

    # --- setup -----------------------------------------------------------------------------

    @outside_event_loop
    def _setup(self) -> int:
        """Create the sets when missing (check them when present), make sure no other
        instance's rule matches them, then the rules; the kernel's ipset protocol version."""
        from pyroute2 import IPSet
        from pyroute2.netlink.exceptions import NetlinkError

        from arguard.respond.actions import xtables

        try:
            with IPSet() as ipset:
                protocol = ipset.get_proto_version()[0].get_attr("IPSET_ATTR_PROTOCOL")
                for (kind, version), name in self.sets.items():
                    _create_set(ipset, name, f"hash:{kind}", _FAMILIES[version])
        except (NetlinkError, OSError) as error:
            raise ActionError(f"cannot set up ipsets {self._names()}: {_reason(error)}") \
                from error
        for version in (4, 6):
            with xtables.xtables(version) as table:
                for where in self.sets:
                    if where[1] == version:
                        self._refuse_foreign(table, where)
                chain = xtables.ensure_chain(table, self.chain, self.jump_from)
                for where in self.sets:
                    if where[1] != version:
                        continue
                    wanted = self._set_rules(table, where, self.target)
                    for rule in xtables.set_rules_of(chain, self.sets[where], self.owner):
                        if rule not in wanted:  # another target or other ports before
                            chain.delete_rule(rule)
                    for rule in wanted:
                        if rule not in chain.rules:
                            chain.append_rule(rule)
        return protocol

    def _refuse_foreign(self, table: Table, where: tuple[str, int]) -> None:
        """A set belongs to the instance whose rule matches it: one entry per address
        cannot serve two instances (one would lift what the other still blocks)."""
        from arguard.respond.actions import xtables

        name = self.sets[where]
        for tag, chain in xtables.set_rule_owners(table, name).items():
            if tag != self.owner.tag:
                raise OwnerConflict(
                    f"ipset {name!r} belongs to another arguard instance, "
                    f"{describe_tag(tag)}: its rule in chain {chain!r} matches the set; "
                    f"give command {self.command!r} a set_name (and chain) of its own")

    def _set_rules(self, table: Table, where: tuple[str, int], target: str) -> list[Rule]:
        from arguard.respond.actions import xtables

        return xtables.set_rules(table, self.sets[where], target, self.owner, self.ports,
                                 self.protocol)

    # --- netlink ---------------------------------------------------------------------------

    def _add(self, where: tuple[str, int], entries: list[bytes]) -> None:
        """When the set has disappeared since start (destroyed by hand), set up again and
        retry once."""
        name = self.sets[where]
        error = self._netlink.request(IPSET_CMD_ADD, name, entries)
        if error == errno.ENOENT:
            self._netlink.protocol = self._setup()
            error = self._netlink.request(IPSET_CMD_ADD, name, entries)
        if error:
            raise self._error("add", where, error)

    def _error(self, verb: str, where: tuple[str, int], code: int) -> ActionError:
        reason = _KERNEL_ERRORS.get(code) or (
            f"ipset error {code}" if code >= IPSET_ERR_PRIVATE else _strerror(code))
        return ActionError(f"ipset {verb} in set {self.sets[where]!r}: {reason}")

    def _names(self) -> str:
        return " and ".join(repr(n) for n in self.sets.values())


class _Netlink:
    """ipset requests on a netfilter netlink socket: ADD/DEL/TEST answered by the kernel's
    ACK (0) or error code, and the LIST dump."""

    def __init__(self, protocol: int):
        self.protocol = protocol
        self._socket = netlink.NetfilterSocket("ipset module")

    def request(self, command: int, set_name: str, entries: list[bytes]) -> int:
        """One command for one entry (DATA) or many (ADT); 0 or the (positive) error."""
        if len(entries) == 1:
            body = entries[0]
        else:
            body = (_attr(IPSET_ATTR_ADT | NLA_F_NESTED, b"".join(entries))
                    + _attr(IPSET_ATTR_LINENO, struct.pack("=I", 0)))
        return self._exchange(command, NLM_F_ACK, set_name, body, None)

    def members(self, set_name: str) -> tuple[int, list[str]]:
        """The set's members, with 0 or the error (ENOENT: there is no such set)."""
        members: list[str] = []
        error = self._exchange(IPSET_CMD_LIST, NLM_F_DUMP, set_name, b"",
                               lambda data, start, end: members.extend(
                                   _members(data, start, end)))
        return error, members

    def _exchange(self, command: int, flags: int, set_name: str, body: bytes,
                  on_data: Callable[[bytes, int, int], None] | None) -> int:
        payload = (struct.pack("!BBH", socket.AF_INET, 0, 0)  # nfgenmsg: family, v0, res_id
                   + _attr(IPSET_ATTR_PROTOCOL, bytes([self.protocol]))
                   + _attr(IPSET_ATTR_SETNAME, set_name.encode() + b"\0")
                   + body)
        return self._socket.request(NFNL_SUBSYS_IPSET << 8 | command, flags, payload, on_data)


def _where(network: Network) -> tuple[str, int]:
    """The set an entry goes to: addresses to hash:ip, prefixes to hash:net."""
    return ("ip" if network.prefixlen == network.max_prefixlen else "net"), network.version


def _entry(network: Network, timeout: int | None) -> bytes:
    """The DATA attribute for one address or prefix, with its timeout when given."""
    address = network.network_address
    kind = IPSET_ATTR_IPADDR_IPV4 if address.version == 4 else IPSET_ATTR_IPADDR_IPV6
    body = _attr(IPSET_ATTR_IP | NLA_F_NESTED, _attr(kind | NLA_F_NET_BYTEORDER, address.packed))
    if network.prefixlen != network.max_prefixlen:
        body += _attr(IPSET_ATTR_CIDR, bytes([network.prefixlen]))
    if timeout is not None:
        body += _attr(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, struct.pack("!I", timeout))
    return _attr(IPSET_ATTR_DATA | NLA_F_NESTED, body)


def _kernel_timeout(timeout: int | None) -> int:
    """The entry timeout: the block's seconds, or 0 (permanent) for permanent blocks and for
    blocks longer than the kernel keeps."""
    if timeout is None or timeout > MAX_TIMEOUT:
        return 0
    return max(1, int(timeout))


def _create_set(ipset: IPSet, name: str, stype: str, family: int) -> None:
    from pyroute2.ipset import AlreadyExists

    try:
        ipset.create(name, stype=stype, family=family, exclusive=False, timeout=0,
                     maxelem=MAXELEM)
        return
    except AlreadyExists:
        pass  # a set of that name with other parameters: usable if it is the same kind
    header = next(iter(ipset.list(name, flags=IPSET_FLAG_LIST_HEADER)))
    data = header.get_attr("IPSET_ATTR_DATA")
    kind = header.get_attr("IPSET_ATTR_TYPENAME")
    if (kind != stype or header.get_attr("IPSET_ATTR_FAMILY") != family
            or data is None or data.get_attr("IPSET_ATTR_TIMEOUT") is None):
        family_name = "inet" if family == socket.AF_INET else "inet6"
        raise ActionError(f"ipset {name!r} exists but is not a {stype} set of family "
                          f"{family_name} with timeout support (it is {kind}); remove it "
                          f"(ipset destroy {name}) or choose another set_name")


def _members(data: bytes, start: int, end: int) -> Iterator[str]:
    """The addresses (and prefixes: CIDR beside IP) in one LIST message: ADT > DATA > IP >
    IPADDR_IPV4|IPV6."""
    for adt in _spans(data, start, end, IPSET_ATTR_ADT):
        for entry in _spans(data, *adt, IPSET_ATTR_DATA):
            cidr = next(_spans(data, *entry, IPSET_ATTR_CIDR), None)
            for ip in _spans(data, *entry, IPSET_ATTR_IP):
                for value in _spans(data, *ip, IPSET_ATTR_IPADDR_IPV4, IPSET_ATTR_IPADDR_IPV6):
                    address = ipaddress.ip_address(data[value[0]:value[1]])
                    if cidr is None:
                        yield str(address)
                    else:
                        yield network_target(ipaddress.ip_network((address, data[cidr[0]])))


def _reason(error: Exception) -> str:
    code = getattr(error, "code", None) or getattr(error, "errno", None)  # Netlink-, OSError
    return _strerror(code) if code else str(error)


def _strerror(code: int) -> str:
    if code == errno.EPERM:
        return "operation not permitted (arguard needs CAP_NET_ADMIN)"
    return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"


def _set_name_problem(name: str) -> str | None:
    return None if _SET_NAME.fullmatch(name) else \
        "must be 1 to 26 letters, digits, '_', '.' or '-'"


ACTION = ActionType(
    summary="blocked addresses and prefixes are members of kernel hash sets (IPv4 and IPv6) "
            "matched by iptables rules, each entry with the block's timeout",
    kinds=("ip",),
    build=lambda command, context: IpsetAction(command, context.owner),
    options=(Option("set_name", STRING, "arguard", "the IPv4 set; the IPv6 set is this name "
                    "with 6 appended, the prefix sets with -net and -net6",
                    check=_set_name_problem),
             chain_option("arguard-ipset", "the chain holding the set-matching rules"),
             JUMP_FROM, TARGET, PORTS, PROTOCOL, PREFIX_V4, PREFIX_V6),
    check=check_jumps,
    networks=True,
)
