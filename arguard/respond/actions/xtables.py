"""libiptc through python-iptables: transactions on the filter table, arguard's chains and
the jumps into them, and the two kinds of rule arguard writes — one-address rules (the
`iptables` action) and set-matching rules (the `ipset` action) — each carrying its owner.

Not an action: the kernel code of the iptables and ipset actions, imported when one of them
is built (python-iptables loads libxtables, which `check-config` and `logtest` never need).

python-iptables drives libiptc, that is the *legacy* xtables interface: on an nftables-era
system (`iptables` = iptables-nft) arguard's rules are listed by `iptables-legacy -S` and
`ip6tables-legacy -S`; the kernel evaluates both.

python-iptables keeps one cached libiptc handle per table for the whole process; each
transaction here re-reads it from the kernel first (other processes change the table too),
with autocommit off so that a change is committed once, or not at all. Transactions hold the
xtables lock file that iptables-legacy uses, so the two never overwrite each other's changes.

Owner. A rule of the untagged instance (arguard.respond.owner) is exactly what arguard always
wrote, `-s 203.0.113.5/32 -j DROP`; another instance's rule carries its label in a comment
match, `-s 203.0.113.5/32 -m comment --comment arguard:1a2b3c4d -j DROP`. libiptc compares
whole rules, so deleting an instance's rule never deletes another's. Chains and the jumps
into them are shared: created when missing, never removed.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import iptc

from arguard.respond.actions.base import ActionError, Address
from arguard.respond.owner import Owner, tag_of_label

#: the targets of arguard's rules
TARGETS = ("DROP", "REJECT")
#: seconds to wait for the xtables lock held by another process (iptables-legacy, …)
LOCK_WAIT = 5.0

_process_lock = threading.Lock()

Table = iptc.Table | iptc.Table6
Rule = iptc.Rule | iptc.Rule6


@contextmanager
def xtables(version: int) -> Iterator[Table]:
    """The filter table of one IP version, freshly read from the kernel; committed when the
    block ends without an exception, discarded otherwise. libiptc errors become ActionError."""
    tool = "iptables-legacy" if version == 4 else "ip6tables-legacy"
    with _process_lock, _xtables_lock():
        try:
            table = iptc.Table(iptc.Table.FILTER) if version == 4 else iptc.Table6(
                iptc.Table6.FILTER)
            table.autocommit = False
            table.refresh()  # drop whatever an earlier failed block left; read the kernel now
            yield table
            table.commit()
        except iptc.IPTCError as error:
            raise ActionError(f"{tool} filter table: {error}") from error


@contextmanager
def _xtables_lock() -> Iterator[None]:
    """The lock iptables-legacy takes (flock on /run/xtables.lock, or $XTABLES_LOCKFILE)."""
    path = os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise ActionError(f"cannot open the xtables lock {path}: {error.strerror}") from error
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ActionError(f"cannot lock {path}: {error.strerror}") from error
                if time.monotonic() > deadline:
                    raise ActionError(f"the xtables lock {path} has been held by another "
                                      f"process for {LOCK_WAIT:g} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


def chain(table: Table, name: str) -> iptc.Chain:
    return iptc.Chain(table, name)


def new_rule(table: Table) -> Rule:
    return iptc.Rule6() if isinstance(table, iptc.Table6) else iptc.Rule()  # Table6 < Table


def ensure_chain(table: Table, chain: str, jump_from: Sequence[str]) -> iptc.Chain:
    """Create `chain` if missing and make sure each chain of `jump_from` jumps to it (the
    jump goes first, so that a block wins over the admin's ACCEPT rules)."""
    if not table.is_chain(chain):
        table.create_chain(chain)
    jump = new_rule(table)
    jump.target = jump.create_target(chain)
    for parent in jump_from:
        if not table.is_chain(parent):
            raise ActionError(f"jump_from: there is no chain {parent!r} in the filter table")
        parent_chain = iptc.Chain(table, parent)
        if jump not in parent_chain.rules:
            parent_chain.insert_rule(jump)
    return iptc.Chain(table, chain)


def chain_in_place(table: Table, chain: str, jump_from: Sequence[str]) -> bool:
    """Whether `chain` exists and every chain of `jump_from` jumps to it."""
    if not table.is_chain(chain):
        return False
    jump = new_rule(table)
    jump.target = jump.create_target(chain)
    return all(table.is_chain(parent) and jump in iptc.Chain(table, parent).rules
               for parent in jump_from)


def delete_all(chain: iptc.Chain, rule: Rule) -> None:
    """Delete every copy of `rule` from the chain (libiptc compares whole rules, in C: no
    walk over the chain in Python)."""
    while True:
        try:
            chain.delete_rule(rule)
        except iptc.IPTCError:
            return  # no (more) such rule


def _finish(rule: Rule, target: str, owner: Owner) -> Rule:
    """Add the owner's comment match (tagged owners only) and the target."""
    if owner.tag:
        comment = rule.create_match("comment")
        comment.comment = owner.label
    rule.target = rule.create_target(target)
    return rule


def _owner_of(rule: Rule, others: int) -> str | None:
    """The owner tag of a rule of arguard's shape whose matches, after the first `others`,
    are at most the owner's comment; None when the rule is not of that shape."""
    extra = rule.matches[others:]
    if not extra:
        return ""
    if len(extra) == 1 and extra[0].name == "comment":
        return tag_of_label(extra[0].comment)
    return None


# --- one rule per address (the iptables action) ------------------------------------------------

def address_rule(table: Table, address: Address, target: str, owner: Owner) -> Rule:
    """`-s ADDRESS/32 [-m comment --comment LABEL] -j TARGET`"""
    rule = new_rule(table)
    rule.src = f"{address}/{address.max_prefixlen}"
    return _finish(rule, target, owner)


def delete_address_rules(chain: iptc.Chain, address: Address, owner: Owner) -> None:
    """Delete the owner's DROP or REJECT rules for exactly this source address."""
    for target in TARGETS:
        delete_all(chain, address_rule(chain.table, address, target, owner))


def address_rule_sources(chain: iptc.Chain, owner: Owner) -> set[Address]:
    """Source addresses of the owner's one-address DROP/REJECT rules in the chain."""
    sources = set()
    for rule in chain.rules:
        if rule.target.name not in TARGETS or _owner_of(rule, 0) != owner.tag:
            continue
        address, _, mask = rule.src.partition("/")
        prefix = int(mask) if mask.isdigit() else bin(int(ipaddress.ip_address(mask))).count("1")
        parsed = ipaddress.ip_address(address)
        if prefix == parsed.max_prefixlen:
            sources.add(parsed)
    return sources


# --- rules per set (the ipset action) --------------------------------------------------------

def set_rules(table: Table, set_name: str, target: str, owner: Owner,
              ports: Sequence[int] = (), protocol: str = "tcp") -> list[Rule]:
    """`-m set --match-set SET src [-m comment --comment LABEL] -j TARGET`, or with ports
    `-p PROTOCOL -m set --match-set SET src -m multiport --dports PORTS …`."""
    rule = new_rule(table)
    if ports:
        rule.protocol = protocol
    match = rule.create_match("set")
    match.match_set = [set_name, "src"]
    if ports:
        multiport = rule.create_match("multiport")
        multiport.dports = ",".join(map(str, ports))
    return [_finish(rule, target, owner)]


def _set_rule_owner(rule: Rule, set_name: str) -> str | None:
    """The owner tag of a rule of the shape set_rules writes for this set (any target,
    any ports), None for any other rule."""
    if (rule.target.name not in TARGETS or not rule.matches or rule.matches[0].name != "set"
            or rule.matches[0].match_set.split() != [set_name, "src"]):
        return None
    others = 2 if len(rule.matches) > 1 and rule.matches[1].name == "multiport" else 1
    return _owner_of(rule, others)


def set_rules_of(chain: iptc.Chain, set_name: str, owner: Owner) -> list[Rule]:
    """The owner's rules in the chain that match the set as set_rules' do."""
    return [rule for rule in chain.rules if _set_rule_owner(rule, set_name) == owner.tag]


def set_rule_owners(table: Table, set_name: str) -> dict[str, str]:
    """Owner tag → chain of every rule in the table that matches the set as arguard's
    set rules do (rules of other shapes, the admin's, are not counted)."""
    owners: dict[str, str] = {}
    for chain in table.chains:
        for rule in chain.rules:
            tag = _set_rule_owner(rule, set_name)
            if tag is not None:
                owners.setdefault(tag, chain.name)
    return owners
