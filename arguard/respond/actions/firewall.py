"""The `firewall` action: the host's own firewall backend, chosen when the action is built —
`nftables` where the kernel has nf_tables (Debian 10+, Ubuntu 20.04+, RHEL 8+: there
`iptables` is iptables-nft, and RHEL 10 has no legacy xtables at all), `ipset` with
iptables-legacy elsewhere. The shipped configuration's and the importers' firewall-drop use
it, so that blocks are where the host's admin looks for them (`nft list ruleset`).

The choice is the kernel's answer to one read-only nf_tables request (NFT_MSG_GETGEN, the
ruleset's generation): answered, nftables; refused because the subsystem is missing, ipset.
It is asked once per process; `check-config` and `status` show the choice and why
(`host_note`). Its options are both backends' options: the shared ones (target, ports,
protocol, prefix_v4, prefix_v6) and each backend's own (nftables: table, hooks; ipset:
set_name, chain, jump_from), which only the chosen backend is given.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from arguard.respond.actions.base import (
    Action,
    ActionContext,
    ActionError,
    ActionType,
)
from arguard.respond.actions import ipset, nftables
from arguard.respond.actions.iptables import check_jumps

if TYPE_CHECKING:
    from arguard.config import Command

NFT_MSG_GETGEN = 16


@dataclass(frozen=True)
class Choice:
    """The backend for this host ("nftables", "ipset", or None when the kernel cannot be
    asked) and why."""

    action: str | None
    reason: str

    def describe(self) -> str:
        if self.action is None:
            return f"chosen at start ({self.reason})"
        name = "ipset + iptables-legacy" if self.action == "ipset" else self.action
        return f"{name} ({self.reason})"


def choose(answer: int | None) -> Choice:
    """The backend for the kernel's answer to the nf_tables probe: 0 (nf_tables answers),
    an errno, or None when no netfilter netlink socket could be opened."""
    if answer == 0:
        return Choice("nftables", "the kernel has nf_tables")
    if answer == errno.EPERM:
        return Choice(None, "asking the kernel whether it has nf_tables needs CAP_NET_ADMIN: "
                            "run as root to see the choice")
    if answer is None:
        return Choice("ipset", "this kernel has no netfilter netlink")
    return Choice("ipset", f"this kernel has no nf_tables: it answers an nf_tables request "
                           f"with {os.strerror(answer)!r}")


def probe_nf_tables() -> int | None:
    """Ask the kernel for the nf_tables ruleset generation: 0 when it answers, else the
    error (None: no netfilter netlink socket at all)."""
    from arguard.respond.actions import netlink

    try:
        sock = netlink.NetfilterSocket("nf_tables")
    except ActionError:
        return None
    try:
        return sock.request(netlink.NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN, netlink.NLM_F_ACK,
                            netlink.nfgenmsg(socket.AF_UNSPEC), lambda *_: None)
    except ActionError:
        return None
    finally:
        sock.close()


@functools.cache
def host_choice() -> Choice:
    return choose(probe_nf_tables())


def build(command: Command, context: ActionContext) -> Action:
    from arguard.respond.actions import action_type

    choice = host_choice()
    if choice.action is None:
        raise ActionError(f"firewall: cannot choose a backend: {choice.reason}")
    described = action_type(choice.action)
    assert described is not None
    own = {option.name for option in described.options}
    chosen = replace(command, action=choice.action,
                     options={k: v for k, v in command.options.items() if k in own})
    return described.build(chosen, context)


def _options() -> tuple:
    """Both backends' options, each once (the shared ones are the same objects)."""
    seen: dict[str, object] = {}
    for option in (*nftables.ACTION.options, *ipset.ACTION.options):
        seen.setdefault(option.name, option)
    return tuple(seen.values())


ACTION = ActionType(
    summary="the host's firewall: nftables where the kernel has nf_tables, else ipset with "
            "iptables-legacy (check-config and status say which, and why)",
    kinds=("ip",),
    build=build,
    options=_options(),
    check=check_jumps,
    networks=True,
    host_note=lambda: host_choice().describe(),
)
