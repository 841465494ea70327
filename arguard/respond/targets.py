"""Which targets arguard may act on.

Targets come from log lines, that is from text an attacker may control, so every one is
parsed strictly before any action sees it: addresses with `ipaddress` (one normal form, so
that one attacker is one block and "1.2.3.4" never matches "1.2.3.45"), user names against a
strict pattern, file paths in their normal form. The white list is applied first;
loopback, unspecified, multicast and broadcast addresses and the host's own addresses are
never acted on, whatever the configuration says.
Every refusal carries a short reason for active-responses.log and `arguard logtest`.

Actions that block prefixes (their description says `networks`) take networks too: an
operator's `arguard block 198.51.100.0/24`, and an alert's address widened to the covering
prefix the command asks for (`prefix_v6 = 64`). A network is refused when it covers
anything an address would be refused for — a white-listed address, loopback, multicast,
the host's own addresses —, with the reason naming what it covers. An alert's address whose
covering prefix is refused that way is blocked alone (it is not white-listed itself): the
attacker shares a /64 with this host or with a friend, and is still stopped.

A target has a kind, given by the alert field a command expects (EXPECT_KINDS); each action
declares the kinds it acts on. Adding a kind is a line in EXPECT_KINDS and a check in
Targets.check. A process target is never text: `expect = "_PID"` names the pid the kernel
attested for the log entry (the journal's `_PID`), which the policy takes from the line the
source read, never from the fields decoded from its message.
"""

from __future__ import annotations

import ipaddress
import logging
import posixpath
import re
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Literal

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TargetKind = Literal["ip", "user", "file", "process"]

#: the `expect` whose target is the kernel-attested pid of the log entry (Line.attested_pid)
ATTESTED_PID = "_PID"
#: the kind of target each value of a command's `expect` names
EXPECT_KINDS: dict[str, TargetKind] = {
    "srcip": "ip", "dstip": "ip", "srcuser": "user", "dstuser": "user", "user": "user",
    "filename": "file", ATTESTED_PID: "process",
}

_HOSTNAME = re.compile(r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+",
                       re.ASCII)
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", re.ASCII)
_USER_MAX = 32
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
#: what no network may cover, and the reason it is refused for
_COVERED = (
    (ipaddress.ip_network("127.0.0.0/8"), "loopback addresses"),
    (ipaddress.ip_network("::1/128"), "loopback addresses"),
    (ipaddress.ip_network("0.0.0.0/32"), "the unspecified address"),
    (ipaddress.ip_network("::/128"), "the unspecified address"),
    (ipaddress.ip_network("224.0.0.0/4"), "multicast addresses"),
    (ipaddress.ip_network("ff00::/8"), "multicast addresses"),
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.ip_network("::ffff:0:0/96"), "IPv4-mapped addresses (give the IPv4 prefix)"),
)


@dataclass(frozen=True, slots=True)
class Checked:
    """A target in its normal form, or the text as given with the reason it was refused."""

    target: str
    refused: str | None = None


def normalise_address(text: str) -> str | None:
    """The normal form of one IP address (IPv6 compressed, `::ffff:` mapped as IPv4);
    None when the text is not exactly one address."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return str(_unmap(address))


def normalise_target(text: str) -> str:
    """An address or network in its normal form (a full-length prefix as the address
    alone), anything else as given (user names)."""
    address = normalise_address(text)
    if address is not None:
        return address
    network = parse_network(text)
    return text if network is None else _network_text(network)


def parse_network(text: str) -> Network | None:
    """A CIDR (host bits cleared), `::ffff:a.b.c.d/n` folded to IPv4; None if it is not
    one."""
    if "/" not in text:
        return None
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 \
            and network.network_address.ipv4_mapped is not None:
        return ipaddress.ip_network((network.network_address.ipv4_mapped,
                                     network.prefixlen - 96))
    return network


def _network_text(network: Network) -> str:
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def _unmap(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def own_address(text: str) -> Address:
    """One of the host's interface addresses as netlink reports it, in its normal form."""
    return _unmap(ipaddress.ip_address(text.split("%")[0]))


class OwnAddresses:
    """The host's own addresses, cached for `max_age` seconds so that a DHCP renewal or a
    new interface is picked up without a netlink dump per alert; `refresh()` forces a new
    read (the daemon calls it on reload). By default they are read over netlink
    (arguard.respond.actions.host)."""

    def __init__(self, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 read: Callable[[], frozenset[Address]] | None = None):
        if read is None:
            from arguard.respond.actions.host import read_own_addresses
            read = read_own_addresses
        self.max_age = max_age
        self.clock = clock
        self.read = read
        self._addresses: frozenset[Address] = frozenset()
        self._read_at: float | None = None

    def __call__(self) -> frozenset[Address]:
        if self._read_at is None or self.clock() - self._read_at > self.max_age:
            self.refresh()
        return self._addresses

    def refresh(self) -> None:
        try:
            self._addresses = self.read()
        except OSError as error:
            log.error("cannot read this host's own addresses (%s); keeping the previous "
                      "list of %d", error, len(self._addresses))
        self._read_at = self.clock()


class Targets:
    """Validates targets against the white lists and the built-in refusals.

    `own_addresses` returns the host's addresses; by default they are read over netlink
    (OwnAddresses). Tests and dry runs may pass any callable. `users`: account names never
    acted on (`[global] white_list_users`).
    """

    def __init__(self, white_list: Iterable[Network],
                 own_addresses: Callable[[], Collection[Address]] | None = None,
                 users: Iterable[str] = ()):
        self.white_list = tuple(white_list)
        self.own_addresses = own_addresses if own_addresses is not None else OwnAddresses()
        self.users = frozenset(users)

    def check(self, kind: TargetKind, text: str | None,
              prefixes: tuple[int, int] | None = None) -> Checked:
        """`prefixes`: the command's action blocks networks too, and an address is widened
        to the covering prefix of these lengths (IPv4, IPv6); None: single addresses."""
        if kind == "user":
            checked = check_user(text)
            if checked.refused is None and checked.target in self.users:
                return Checked(checked.target, "white-listed")
            return checked
        if kind == "file":
            return check_file(text)
        if kind == "process":
            return check_pid(text)
        if prefixes is None:
            return self.check_address(text)
        return self.check_network(text, prefixes)

    def check_network(self, text: str | None, prefixes: tuple[int, int]) -> Checked:
        """An address (widened to its covering prefix) or a network."""
        network = parse_network(text) if text else None
        if network is None:
            checked = self.check_address(text)
            if checked.refused is not None:
                return checked
            address = ipaddress.ip_address(checked.target)
            length = prefixes[0] if address.version == 4 else prefixes[1]
            if length == address.max_prefixlen:
                return checked
            widened = ipaddress.ip_network((address, length), strict=False)
            refused = self._covers(widened)
            if refused is None:
                return Checked(str(widened))
            log.info("%s: its /%d (%s) %s; blocking the address alone", checked.target,
                     length, widened, refused)
            return checked
        if network.prefixlen == network.max_prefixlen:
            return self.check_address(str(network.network_address))
        return Checked(str(network), self._covers(network))

    def _covers(self, network: Network) -> str | None:
        """Why a network may not be blocked (what it covers), or None."""
        for listed in self.white_list:
            if listed.version == network.version and network.overlaps(listed):
                if network.subnet_of(listed):  # type: ignore[arg-type]
                    return "white-listed"
                return f"covers white-listed {_network_text(listed)}"
        for covered, what in _COVERED:
            if covered.version == network.version and network.overlaps(covered):
                return f"covers {what}"
        for address in sorted(self.own_addresses(), key=str):
            if address in network:
                return f"covers this host's own address {address}"
        return None

    def check_address(self, text: str | None) -> Checked:
        if text is None or not text.strip():
            return Checked(text or "", "empty target")
        normal = normalise_address(text)
        if normal is None:
            return Checked(text, _not_an_address(text))
        address = ipaddress.ip_address(normal)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            return Checked(text, "scoped address")
        if any(address in network for network in self.white_list):
            return Checked(normal, "white-listed")
        if address.is_loopback:
            return Checked(normal, "loopback")
        if address.is_unspecified:
            return Checked(normal, "unspecified address")
        if address.is_multicast:
            return Checked(normal, "multicast")
        if address == _BROADCAST:
            return Checked(normal, "broadcast")
        if address in self.own_addresses():
            return Checked(normal, "own address")
        return Checked(normal)


def _not_an_address(text: str) -> str:
    stripped = text.strip()
    if "/" in stripped:
        if parse_network(stripped) is None:
            return "not an IP address"
        return "network, not an address"
    if _HOSTNAME.fullmatch(stripped) and not stripped.replace(".", "").isdigit():
        return "hostname, not an IP address"
    return "not an IP address"


def check_user(text: str | None) -> Checked:
    """A local account name: letters, digits, `_`, `.`, `-` (not first), an optional
    trailing `$` (machine accounts), at most 32 characters; nothing that could name a path,
    an option or another field."""
    if not text:
        return Checked(text or "", "empty user name")
    reason = None
    if any(c.isspace() for c in text):
        reason = "whitespace in user name"
    elif any(ord(c) < 32 or ord(c) == 127 for c in text):
        reason = "control character in user name"
    elif "/" in text:
        reason = "'/' in user name"
    elif ".." in text:
        reason = "'..' in user name"
    elif ":" in text:
        reason = "':' in user name"
    elif text.startswith("-"):
        reason = "user name starts with '-'"
    elif len(text) > _USER_MAX:
        reason = "user name too long"
    elif not _USER.fullmatch(text):
        reason = "not a valid user name"
    return Checked(text, reason)


def check_pid(text: str | None) -> Checked:
    """A process id as the kernel gives it: decimal digits, not PID 1."""
    if not text or not text.isascii() or not text.isdigit() or text.startswith("0"):
        return Checked(text or "", "not a process id")
    if text == "1":
        return Checked(text, "PID 1")
    return Checked(text)


def check_file(text: str | None) -> Checked:
    """A file path: absolute and in its normal form (no `.`/`..` parts, no doubled or
    trailing `/`), no NUL or newline. Which files may be acted on is the action's to say
    (restore-file: only those it keeps a known-good copy of)."""
    if not text:
        return Checked(text or "", "empty file name")
    reason = None
    if "\0" in text or "\n" in text:
        reason = "NUL or newline in file name"
    elif not text.startswith("/"):
        reason = "not an absolute path"
    elif text == "/" or posixpath.normpath(text) != text or text.startswith("//"):
        reason = "not a path in its normal form"
    return Checked(text, reason)
