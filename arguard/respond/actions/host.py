"""What the kernel says about this host: the addresses of its interfaces (netlink), which
arguard never acts on (arguard.respond.targets)."""

from __future__ import annotations

from arguard.respond.actions.loopsafe import outside_event_loop
from arguard.respond.targets import Address, own_address


@outside_event_loop
def read_own_addresses() -> frozenset[Address]:
    """The addresses of every interface in the current network namespace."""
    from pyroute2 import IPRoute  # netlink only when an address is actually checked

    addresses = set()
    with IPRoute() as ipr:
        for message in ipr.get_addr():
            text = message.get("IFA_LOCAL") or message.get("IFA_ADDRESS")
            if text:
                addresses.add(own_address(text))
    return frozenset(addresses)
