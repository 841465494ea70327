"""The `nftables` action: blocked addresses and prefixes are elements of kernel sets in an
nftables table of arguard's own, each with the block's timeout, through netlink (no `nft`
process). What `nft list ruleset` shows for a command named firewall-drop:

    table inet arguard {                                  (option table)
        comment "arguard"                                 (its owner, arguard.respond.owner)
        set firewall-drop-ip4 { type ipv4_addr; flags timeout;
            elements = { 203.0.113.5 timeout 10m expires 9m58s } }
        set firewall-drop-net4 { type ipv4_addr; flags interval,timeout;
            elements = { 198.51.100.0/24 timeout 1h expires 59m } }
        set firewall-drop-ip6 …  set firewall-drop-net6 …
        chain input {                                     (option hooks: input, forward)
            type filter hook input priority filter - 10; policy accept;
            ip saddr @firewall-drop-ip4 counter drop comment "firewall-drop"
            ip saddr @firewall-drop-net4 counter drop comment "firewall-drop"
            ip6 saddr @firewall-drop-ip6 …
        }
    }

With `ports = [22]` the rules read `tcp dport { 22 } ip saddr @… drop` (option protocol).

Addresses and prefixes live in separate sets: the kernel refuses an interval that overlaps
one already in a set, and an address inside a blocked prefix (or a prefix over blocked
addresses: an operator widening a block) is the ordinary case. Hash sets for addresses, one
lookup per packet whatever their number; interval sets (a tree) for prefixes. Two prefixes
of one command that nest are refused with the one already blocked named.

Each element carries its own kernel timeout, so the kernel lifts a block on time even while
arguard is down; a permanent block has none. Adding an element that is already there
replaces it with the new timeout in one transaction (extending a block: kernels before 6.10
would keep the old timeout on a plain re-add). The table, its sets and chains are created
when missing, at start and whenever an add finds them gone (`nft flush ruleset`); the
command's rules are rewritten at every start (the new ones go in before the old ones are
deleted, in one transaction: no packet passes in between). Rules carry the command's name as
their comment, so each command finds its own among the table's.

Owner: the table's comment is its owner's label (`arguard`, `arguard:1a2b3c4d`); a table
of that name with another instance's label is refused (OwnerConflict), one with a comment
that is not an arguard label too. A second instance gives its commands a table of its own.
A table of arguard's own keeps firewalld's reload away from the blocks: firewalld deletes
and recreates only its `inet firewalld` table (docs/actions.md).

Netlink: the table, set, chain and rule messages are encoded with pyroute2's nftables
message classes (pyroute2.netlink.nfnetlink.nftsocket). pyroute2's `NFTables` API does not
cover the rest: `NFTSet` always sends the set flags as TIMEOUT alone (no interval sets), its
elements have no interval ends, each call is a transaction of one message, and its generic
encoder costs ~200 µs a message. So transactions (several messages, applied together, one
ACK each) go over arguard.respond.actions.netlink, and the set elements — the per-block
messages — are a few fixed-layout attributes written and read with `struct` (~15 µs a
block; benchmarks/bench_ipset.py). Layout: linux/netfilter/nf_tables.h.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arguard.respond.actions import netlink
from arguard.respond.actions.base import (
    PORTS,
    PREFIX_V4,
    PREFIX_V6,
    PROTOCOL,
    STRING,
    STRINGS,
    ActionError,
    ActionType,
    Network,
    Option,
    OwnerConflict,
    network_target,
    parse_address,
    parse_network,
)
from arguard.respond.actions.iptables import TARGET
from arguard.respond.owner import UNTAGGED, Owner, describe_tag, tag_of_label

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
NFT_MSG_NEWTABLE = 0
NFT_MSG_GETTABLE = 1
NFT_MSG_NEWCHAIN = 3
NFT_MSG_NEWRULE = 6
NFT_MSG_GETRULE = 7
NFT_MSG_DELRULE = 8
NFT_MSG_NEWSET = 9
NFT_MSG_NEWSETELEM = 12
NFT_MSG_GETSETELEM = 13
NFT_MSG_DELSETELEM = 14
NFTA_TABLE_NAME = 1
NFTA_TABLE_USERDATA = 6
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_HANDLE = 3
NFTA_RULE_USERDATA = 7
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_SET_ELEM_LIST_SET_ID = 4
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_FLAGS = 3
NFTA_SET_ELEM_TIMEOUT = 4
NFTA_DATA_VALUE = 1
NFT_SET_ELEM_INTERVAL_END = 1
NFTNL_UDATA_COMMENT = 0      # the comment's type in table and rule user data
NFT_META_NFPROTO = 15
NFT_META_L4PROTO = 16
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_PAYLOAD_TRANSPORT_HEADER = 2
NF_DROP = 0
NF_ACCEPT = 1
NFT_REJECT_ICMPX_UNREACH = 2
NFT_REJECT_ICMPX_ADMIN_PROHIBITED = 3
DATA_TYPE_IPADDR = 7
DATA_TYPE_IP6ADDR = 8
DATA_TYPE_INET_SERVICE = 13

#: the hooks a command's rules may be in, as the kernel numbers them
HOOKS = {"input": 1, "forward": 2}
#: before the usual filter chains (firewalld's are at filter + 10): a blocked packet goes no
#: further than it must
PRIORITY = -10
#: elements per NEWSETELEM message, and per transaction (a transaction is one send: it must
#: fit the socket's send buffer)
ELEMENTS_PER_MESSAGE = 1024
MESSAGES_PER_TRANSACTION = 4
_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_KERNEL_ERRORS = {
    errno.ENOTEMPTY: "it overlaps a prefix already in the set",
    errno.EOPNOTSUPP: "the kernel does not support this (nf_tables too old, or a chain of "
                      "that name with another hook or type)",
}


@dataclass(frozen=True, slots=True)
class _Element:
    """One target as set elements: the set it goes to ("ip" or "net", IP version) and the
    keys — the address, or a prefix's first address and the end of its interval (None
    for a prefix that ends at the top of the address space)."""

    kind: str
    version: int
    start: bytes
    end: bytes | None = None

    @classmethod
    def of(cls, target: str) -> _Element:
        try:  # the common case: a dotted quad, the kernel's own parser (strict, no zeros)
            return cls("ip", 4, socket.inet_pton(socket.AF_INET, target))
        except OSError:
            pass
        if "/" not in target:
            address = parse_address(target)
            return cls("ip", address.version, address.packed)
        network = parse_network(target)
        if network.prefixlen == network.max_prefixlen:
            return cls("ip", network.version, network.network_address.packed)
        top = int(network.broadcast_address)
        end = None if top == (1 << network.max_prefixlen) - 1 else \
            (top + 1).to_bytes(network.max_prefixlen // 8, "big")
        return cls("net", network.version, network.network_address.packed, end)

    def encode(self, timeout_ms: int | None) -> bytes:
        """The NFTA_LIST_ELEM attribute(s): the start (with the timeout), then the end."""
        body = _key(self.start)
        if timeout_ms is not None:
            body += netlink.attr(NFTA_SET_ELEM_TIMEOUT, struct.pack("!Q", timeout_ms))
        encoded = netlink.attr(NFTA_LIST_ELEM | netlink.NLA_F_NESTED, body)
        if self.kind == "net" and self.end is not None:
            encoded += netlink.attr(NFTA_LIST_ELEM | netlink.NLA_F_NESTED, _key(self.end) + (
                netlink.attr(NFTA_SET_ELEM_FLAGS, struct.pack("!I", NFT_SET_ELEM_INTERVAL_END))))
        return encoded


def _key(value: bytes) -> bytes:
    return netlink.attr(NFTA_SET_ELEM_KEY | netlink.NLA_F_NESTED,
                        netlink.attr(NFTA_DATA_VALUE, value))


class NftablesAction:
    def __init__(self, command: Command, owner: Owner = UNTAGGED):
        options = ACTION.options_of(command)
        self.command = command.name
        self.table: str = options["table"]
        self.hooks: tuple[str, ...] = tuple(options["hooks"])
        self.target: str = options["target"]
        self.ports: tuple[int, ...] = tuple(options["ports"])
        self.protocol: str = options["protocol"]
        self.owner = owner
        self.sets = {(kind, version): f"{command.name}-{kind}{version}"
                     for kind in ("ip", "net") for version in (4, 6)}
        #: (kind, version) → the start of an element message for that set (its address)
        self._set_headers = {
            key: netlink.nfgenmsg(NFPROTO_INET)
            + netlink.attr(NFTA_SET_ELEM_LIST_TABLE, self.table.encode() + b"\0")
            + netlink.attr(NFTA_SET_ELEM_LIST_SET, name.encode() + b"\0")
            for key, name in self.sets.items()}
        self._netlink = netlink.NetfilterSocket("nf_tables")
        self._setup()

    # --- the Action contract -------------------------------------------------------------

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        self.add_many([(target, timeout)])

    def add_many(self, items: Sequence[tuple[str, int | None]]) -> None:
        """Add (or refresh) the elements, ELEMENTS_PER_MESSAGE a message."""
        elements = [(_Element.of(target), _timeout_ms(timeout)) for target, timeout in items]
        for start in range(0, len(elements), ELEMENTS_PER_MESSAGE * MESSAGES_PER_TRANSACTION):
            self._add(elements[start:start + ELEMENTS_PER_MESSAGE * MESSAGES_PER_TRANSACTION])

    def delete(self, target: str) -> None:
        element = _Element.of(target)
        [code] = self._netlink.transaction([self._elements(NFT_MSG_DELSETELEM, 0, element.kind,
                                                           element.version, [element.encode(None)])])
        if code not in (0, errno.ENOENT):  # ENOENT: not there (or no set): nothing to delete
            raise self._error("delete", self.sets[element.kind, element.version], code)

    def check(self, target: str) -> bool:
        """Whether the element is in its set and the command's rules are in every hook."""
        element = _Element.of(target)
        name = self.sets[element.kind, element.version]
        kind, flags, payload = self._elements(
            NFT_MSG_GETSETELEM, netlink.NLM_F_ACK, element.kind, element.version,
            [netlink.attr(NFTA_LIST_ELEM | netlink.NLA_F_NESTED, _key(element.start))])
        code = self._netlink.request(kind, flags, payload, on_data=lambda *_: None)
        if code == errno.ENOENT:
            return False
        if code:
            raise self._error("look up", name, code)
        chains = {chain for chain, _, label in self._rules() if label == self.command}
        return set(self.hooks) <= chains

    def list_targets(self) -> set[str] | None:
        """The elements of the four sets (those whose kernel timeout ran out are not
        listed), as targets."""
        targets: set[str] = set()
        for (kind, version), name in self.sets.items():
            code, elements = self._dump_elements(kind, version)
            if code not in (0, errno.ENOENT):  # ENOENT: no table or set, no elements
                raise self._error("list", name, code)
            targets.update(_targets(kind, version, elements))
        return targets

    # --- elements --------------------------------------------------------------------------

    def _add(self, elements: list[tuple[_Element, int | None]]) -> None:
        """One transaction adding the elements (none may be there yet). When the table or
        a set is gone, set up again and retry. When an element is there already (a block
        extended, or restored twice), it is deleted and added again with its new timeout in
        one transaction; in a batch, each element of it is added that way, one by one."""
        messages = self._add_messages(elements)
        codes = self._netlink.transaction(messages)
        if errno.ENOENT in codes:
            self._setup()
            codes = self._netlink.transaction(messages)
        if errno.EEXIST in codes and len(elements) > 1:
            for element in elements:
                self._add([element])
            return
        if errno.EEXIST in codes:
            element = elements[0][0]
            codes = self._netlink.transaction([self._elements(
                NFT_MSG_DELSETELEM, 0, element.kind, element.version, [element.encode(None)]),
                *messages])
            if codes[0] == errno.ENOENT:  # not this element: one that overlaps it
                codes = [errno.ENOTEMPTY]
        failed = next((code for code in codes if code), 0)
        if failed:
            raise self._add_error(elements, failed)

    def _add_messages(self, elements: list[tuple[_Element, int | None]]) -> list:
        grouped: dict[tuple[str, int], list[bytes]] = {}
        for element, timeout in elements:
            grouped.setdefault((element.kind, element.version), []).append(
                element.encode(timeout))
        messages = []
        for (kind, version), encoded in grouped.items():
            for start in range(0, len(encoded), ELEMENTS_PER_MESSAGE):
                messages.append(self._elements(NFT_MSG_NEWSETELEM,
                                               netlink.NLM_F_CREATE | netlink.NLM_F_EXCL, kind,
                                               version, encoded[start:start + ELEMENTS_PER_MESSAGE]))
        return messages

    def _elements(self, command: int, flags: int, kind: str, version: int,
                  encoded: list[bytes]) -> tuple[int, int, bytes]:
        payload = self._set_headers[kind, version] + netlink.attr(
            NFTA_SET_ELEM_LIST_ELEMENTS | netlink.NLA_F_NESTED, b"".join(encoded))
        return netlink.NFNL_SUBSYS_NFTABLES << 8 | command, flags, payload

    def _dump_elements(self, kind: str, version: int) -> tuple[int, list[tuple[bytes, bool]]]:
        """The (key, is interval end) of every element of a set, with 0 or the error."""
        elements: list[tuple[bytes, bool]] = []
        code = self._netlink.request(netlink.NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM,
                                     netlink.NLM_F_DUMP, self._set_headers[kind, version],
                                     lambda data, start, end: elements.extend(
                                         _listed(data, start, end)))
        return code, elements

    def _add_error(self, elements: list[tuple[_Element, int | None]], code: int) -> ActionError:
        kinds = {(element.kind, element.version) for element, _ in elements}
        name = self.sets[kinds.pop()] if len(kinds) == 1 else f"the sets of {self.command!r}"
        if code == errno.ENOTEMPTY and len(elements) == 1:
            element = elements[0][0]
            blocked = self._overlapping(element)
            if blocked:
                return ActionError(f"nftables set {name!r}: {_prefix_of(element)} overlaps the "
                                   f"blocked prefix {blocked}; an interval set holds no nested "
                                   "prefixes: unblock that one first, or block the wider one "
                                   "after it is lifted")
        return self._error("add to", name, code)

    def _overlapping(self, element: _Element) -> str | None:
        code, listed = self._dump_elements(element.kind, element.version)
        if code:
            return None
        wanted = _prefix_of(element)
        for target in _targets(element.kind, element.version, listed):
            if ipaddress.ip_network(target).overlaps(wanted):
                return target
        return None

    def _error(self, verb: str, name: str, code: int) -> ActionError:
        reason = _KERNEL_ERRORS.get(code) or netlink.strerror(code)
        return ActionError(f"nftables: cannot {verb} set {name!r} in table inet "
                           f"{self.table}: {reason}")

    # --- setup -----------------------------------------------------------------------------

    def _setup(self) -> None:
        """The table (refused when another instance owns it), the four sets and the hook
        chains, created when missing; then the command's rules, new ones in and old ones
        out in one transaction."""
        from arguard.respond.actions import nftkernel

        self._refuse_foreign()
        messages = [nftkernel.table_message(self.table, self.owner.label)]
        for (kind, version), name in self.sets.items():
            messages.append(nftkernel.set_message(self.table, name, version, kind == "net"))
        for hook in HOOKS:
            if hook in self.hooks:
                messages.append(nftkernel.chain_message(self.table, hook, HOOKS[hook], PRIORITY))
        codes = self._netlink.transaction(messages)
        if any(codes):
            failed = next(index for index, code in enumerate(codes) if code)
            what = ["table"] + [f"set {name!r}" for name in self.sets.values()] + \
                [f"chain {hook!r}" for hook in HOOKS if hook in self.hooks]
            reason = netlink.strerror(codes[failed])
            if codes[failed] == errno.EEXIST:
                reason = "one of that name exists with other properties; delete it"
            raise ActionError(f"nftables: cannot set up table inet {self.table} ("
                              f"{what[failed]}): {reason}")
        old = [(chain, handle) for chain, handle, label in self._rules()
               if label == self.command]
        rules = nftkernel.rule_messages(self.table, self.command, self.hooks, self.sets,
                                        self.ports, _PROTOCOLS[self.protocol], self.target)
        deletes = [(netlink.NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_DELRULE, 0,
                    netlink.nfgenmsg(NFPROTO_INET)
                    + netlink.attr(NFTA_RULE_TABLE, self.table.encode() + b"\0")
                    + netlink.attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
                    + netlink.attr(NFTA_RULE_HANDLE, struct.pack("!Q", handle)))
                   for chain, handle in old]
        codes = self._netlink.transaction(rules + deletes)
        if any(codes):
            raise ActionError(f"nftables: cannot write the rules of {self.command!r} in table "
                              f"inet {self.table}: "
                              f"{netlink.strerror(next(code for code in codes if code))}")

    def _refuse_foreign(self) -> None:
        comment: list[str | None] = []
        payload = (netlink.nfgenmsg(NFPROTO_INET)
                   + netlink.attr(NFTA_TABLE_NAME, self.table.encode() + b"\0"))
        code = self._netlink.request(netlink.NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE,
                                     netlink.NLM_F_ACK, payload,
                                     lambda data, start, end: comment.append(
                                         _comment(data, start, end, NFTA_TABLE_USERDATA)))
        if code == errno.ENOENT or not comment or comment[0] is None:
            return  # no such table, or one without a comment (adopted)
        tag = tag_of_label(comment[0])
        if tag is None:
            raise ActionError(f"nftables table inet {self.table} exists and is not arguard's "
                              f"(its comment is {comment[0]!r}); give command "
                              f"{self.command!r} another table name (option table)")
        if tag != self.owner.tag:
            raise OwnerConflict(f"nftables table inet {self.table} belongs to another arguard "
                                f"instance, {describe_tag(tag)}; give command "
                                f"{self.command!r} a table of its own (option table)")

    def _rules(self) -> list[tuple[str, int, str | None]]:
        """(chain, handle, comment) of every rule in the table."""
        rules: list[tuple[str, int, str | None]] = []

        def on_rule(data: bytes, start: int, end: int) -> None:
            found = netlink.attributes(data, start, end)
            if NFTA_RULE_CHAIN in found and NFTA_RULE_HANDLE in found:
                chain = data[slice(*found[NFTA_RULE_CHAIN])].rstrip(b"\0").decode()
                handle = struct.unpack_from("!Q", data, found[NFTA_RULE_HANDLE][0])[0]
                rules.append((chain, handle, _comment(data, start, end, NFTA_RULE_USERDATA)))

        payload = (netlink.nfgenmsg(NFPROTO_INET)
                   + netlink.attr(NFTA_RULE_TABLE, self.table.encode() + b"\0"))
        code = self._netlink.request(netlink.NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE,
                                     netlink.NLM_F_DUMP, payload, on_rule)
        if code not in (0, errno.ENOENT):
            raise ActionError(f"nftables: cannot list the rules of table inet {self.table}: "
                              f"{netlink.strerror(code)}")
        return rules


def _timeout_ms(timeout: int | None) -> int | None:
    return None if timeout is None else max(1, int(timeout)) * 1000


def _comment(data: bytes, start: int, end: int, kind: int) -> str | None:
    """The comment in a table's or rule's user data (type-length-value, one byte each)."""
    found = netlink.attributes(data, start, end).get(kind)
    if found is None:
        return None
    offset, stop = found
    while offset + 2 <= stop:
        udata_type, length = data[offset], data[offset + 1]
        if udata_type == NFTNL_UDATA_COMMENT:
            return data[offset + 2:offset + 2 + length].rstrip(b"\0").decode(errors="replace")
        offset += 2 + length
    return None


def _listed(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, bool]]:
    """(key, is interval end) of the elements in one NEWSETELEM message of a dump."""
    for elements in netlink.spans(data, start, end, NFTA_SET_ELEM_LIST_ELEMENTS):
        for element in netlink.spans(data, *elements, NFTA_LIST_ELEM):
            found = netlink.attributes(data, *element)
            if NFTA_SET_ELEM_KEY not in found:
                continue
            flags = 0
            if NFTA_SET_ELEM_FLAGS in found:
                flags = struct.unpack_from("!I", data, found[NFTA_SET_ELEM_FLAGS][0])[0]
            for value in netlink.spans(data, *found[NFTA_SET_ELEM_KEY], NFTA_DATA_VALUE):
                yield data[value[0]:value[1]], bool(flags & NFT_SET_ELEM_INTERVAL_END)


def _intervals(kind: str, listed: list[tuple[bytes, bool]]) -> Iterator[tuple[bytes, bytes | None]]:
    """(start, end) of each element: an address alone, or a start paired with the end
    that follows it in key order (none for an interval up to the top of the space). An end
    without a start before it is a leftover of an expired start: skipped."""
    if kind == "ip":
        yield from ((key, None) for key, is_end in listed if not is_end)
        return
    ordered = sorted(listed)
    for index, (key, is_end) in enumerate(ordered):
        if is_end:
            continue
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        yield key, following[0] if following is not None and following[1] else None


def _targets(kind: str, version: int, listed: list[tuple[bytes, bool]]) -> Iterator[str]:
    bits = 32 if version == 4 else 128
    for start, end in _intervals(kind, listed):
        first = int.from_bytes(start, "big")
        if kind == "ip":
            yield str(ipaddress.ip_address(start))
            continue
        size = (int.from_bytes(end, "big") if end is not None else 1 << bits) - first
        if size > 0 and size & (size - 1) == 0 and first % size == 0:
            yield network_target(ipaddress.ip_network(
                (ipaddress.ip_address(start), bits - size.bit_length() + 1)))


def _prefix_of(element: _Element) -> Network:
    bits = 32 if element.version == 4 else 128
    first = int.from_bytes(element.start, "big")
    last = (int.from_bytes(element.end, "big") if element.end else 1 << bits) - 1
    return next(ipaddress.summarize_address_range(ipaddress.ip_address(
        element.start), ipaddress.ip_address(last.to_bytes(bits // 8, "big")))) \
        if first <= last else ipaddress.ip_network(ipaddress.ip_address(element.start))


def _name_problem(name: str) -> str | None:
    return None if _NAME.fullmatch(name) else \
        "must be a letter or '_', then letters, digits, '_', '.' or '-' (64 at most)"


def _hooks_problem(hooks: list[str]) -> str | None:
    if not hooks or any(hook not in HOOKS for hook in hooks) or len(set(hooks)) != len(hooks):
        return "must be \"input\", \"forward\" or both, e.g. [\"input\", \"forward\"]"
    return None


ACTION = ActionType(
    summary="blocked addresses and prefixes are elements of nftables sets (IPv4 and IPv6) "
            "in a table of arguard's own, each with the block's timeout",
    kinds=("ip",),
    build=lambda command, context: NftablesAction(command, context.owner),
    options=(Option("table", STRING, "arguard", "the inet table holding the sets and chains",
                    check=_name_problem),
             Option("hooks", STRINGS, ["input"], "the hooks whose chains drop the members: "
                    "input (this host), forward (hosts it routes for)", check=_hooks_problem),
             TARGET, PORTS, PROTOCOL, PREFIX_V4, PREFIX_V6),
    networks=True,
)
