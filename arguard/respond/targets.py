"""Which targets arguard may act on.

Targets come from log lines, that is from text an attacker may control, so every one is
parsed strictly before any action sees it: addresses with `ipaddress` (one normal form, so
that one attacker is one block and "1.2.3.4" never matches "1.2.3.45"), user names against a
strict pattern. The white list is applied first; loopback, unspecified, multicast and broadcast
addresses and the host's own addresses are never acted on, whatever the configuration says.
Every refusal carries a short reason for active-responses.log and `arguard logtest`.

A target has a kind, given by the alert field a command expects (EXPECT_KINDS); each action
declares the kinds it acts on. Adding a kind is a line in EXPECT_KINDS and a check in
Targets.check.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Literal

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TargetKind = Literal["ip", "user"]

#: the kind of target each value of a command's `expect` names
EXPECT_KINDS: dict[str, TargetKind] = {
    "srcip": "ip", "dstip": "ip", "srcuser": "user", "dstuser": "user", "user": "user",
}

_HOSTNAME = re.compile(r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+",
                       re.ASCII)
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", re.ASCII)
_USER_MAX = 32
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


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
    """Validates targets against the white list and the built-in refusals.

    `own_addresses` returns the host's addresses; by default they are read over netlink
    (OwnAddresses). Tests and dry runs may pass any callable.
    """

    def __init__(self, white_list: Iterable[Network],
                 own_addresses: Callable[[], Collection[Address]] | None = None):
        self.white_list = tuple(white_list)
        self.own_addresses = own_addresses if own_addresses is not None else OwnAddresses()

    def check(self, kind: TargetKind, text: str | None) -> Checked:
        if kind == "ip":
            return self.check_address(text)
        return check_user(text)

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
        try:
            ipaddress.ip_network(stripped, strict=False)
        except ValueError:
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
