"""The `iptables` action: one DROP (or REJECT) rule per blocked address, through libiptc.

    -N arguard
    -I INPUT -j arguard                        (and FORWARD, … : option jump_from)
    -A arguard -s 203.0.113.5/32 -j DROP       (ip6tables: -s 2001:db8::5/128)

Every rule in arguard's own chain (option `chain`) is arguard's: `list_targets()` reports
the sources of its one-address rules and `delete` removes them, so the admin's own rules,
elsewhere, are never touched. The chain and the jumps into it are created when missing (at
start and again on every add, so a flushed INPUT chain is repaired by the next block).

This is the per-rule backend: each change re-reads and rewrites the whole filter table (that
is how libiptc works), so its cost grows with the number of rules; the `ipset` action is the
default because its cost does not (see benchmarks/bench_ipset.py).

python-iptables drives libiptc, that is the *legacy* xtables interface: on an nftables-era
system (`iptables` = iptables-nft) arguard's rules are listed by `iptables-legacy -S` and
`ip6tables-legacy -S`; the kernel evaluates both. The helpers below are shared with the ipset
action, whose one set-matching rule per family lives in a chain of its own.

python-iptables keeps one cached libiptc handle per table for the whole process; each
transaction here re-reads it from the kernel first (other processes change the table too),
with autocommit off so that a change is committed once, or not at all. Transactions hold the
xtables lock file that iptables-legacy uses, so the two never overwrite each other's changes.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import iptc

from arguard.config import Command
from arguard.model import Alert
from arguard.respond.actions.base import ActionError
from arguard.respond.actions.hostsdeny import Address, parse_address

TARGETS = ("DROP", "REJECT")
#: seconds to wait for the xtables lock held by another process (iptables-legacy, …)
LOCK_WAIT = 5.0

# A user-defined chain name as iptables accepts it (at most 28 characters), not a built-in
# target or chain name.
_CHAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}")
_RESERVED = {"ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "INPUT", "OUTPUT", "FORWARD",
             "PREROUTING", "POSTROUTING"}
_process_lock = threading.Lock()

Table = iptc.Table | iptc.Table6
Rule = iptc.Rule | iptc.Rule6


def chain_name(command: Command, default: str) -> str:
    """The command's `chain` option (or `default`), validated."""
    name = command.options.get("chain", default)
    if not isinstance(name, str) or not _CHAIN.fullmatch(name) or name in _RESERVED:
        raise ActionError(f"command {command.name!r}: chain {name!r} is not a usable iptables "
                          "chain name (letters, digits, '_', '.', '-'; at most 28 characters; "
                          "not a built-in name)")
    return name


def jump_chains(command: Command, chain: str) -> tuple[str, ...]:
    """The command's `jump_from` option (default INPUT), validated."""
    parents = command.options.get("jump_from", ["INPUT"])
    if (not isinstance(parents, (list, tuple)) or not parents
            or not all(isinstance(p, str) and _CHAIN.fullmatch(p) for p in parents)
            or chain in parents):
        raise ActionError(f"command {command.name!r}: jump_from must be a non-empty list of "
                          f"chain names other than {chain!r}, e.g. [\"INPUT\", \"FORWARD\"]")
    return tuple(parents)


def rule_target(command: Command) -> str:
    """The command's `target` option: DROP (default) or REJECT."""
    target = command.options.get("target", "DROP")
    if target not in TARGETS:
        raise ActionError(f"command {command.name!r}: target must be DROP or REJECT, "
                          f"not {target!r}")
    return target


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


class IptablesAction:
    kind: Literal["ip", "user"] = "ip"

    def __init__(self, command: Command):
        self.chain = chain_name(command, "arguard")
        self.jump_from = jump_chains(command, self.chain)
        self.target = rule_target(command)
        for version in (4, 6):
            with xtables(version) as table:
                ensure_chain(table, self.chain, self.jump_from)

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        """Insert the rule (at the top of the chain). An equal rule, or one with the other
        target (the command's target was changed), is removed first, so the address has
        exactly one rule; the timeout is kept by arguard, iptables has none."""
        address = parse_address(target)
        with xtables(address.version) as table:
            chain = ensure_chain(table, self.chain, self.jump_from)
            _delete_rules(chain, address)
            chain.insert_rule(_address_rule(table, address, self.target))

    def delete(self, target: str) -> None:
        address = parse_address(target)
        with xtables(address.version) as table:
            if table.is_chain(self.chain):
                _delete_rules(iptc.Chain(table, self.chain), address)

    def check(self, target: str) -> bool:
        """Whether a rule for the address is in the chain and the chain is jumped to."""
        address = parse_address(target)
        with xtables(address.version) as table:
            return (chain_in_place(table, self.chain, self.jump_from)
                    and address in _rule_sources(iptc.Chain(table, self.chain)))

    def list_targets(self) -> set[str] | None:
        targets: set[str] = set()
        for version in (4, 6):
            with xtables(version) as table:
                if table.is_chain(self.chain):
                    targets.update(map(str, _rule_sources(iptc.Chain(table, self.chain))))
        return targets


def _address_rule(table: Table, address: Address, target: str) -> Rule:
    rule = new_rule(table)
    rule.src = f"{address}/{address.max_prefixlen}"
    rule.target = rule.create_target(target)
    return rule


def delete_all(chain: iptc.Chain, rule: Rule) -> None:
    """Delete every copy of `rule` from the chain (libiptc compares whole rules, in C: no
    walk over the chain in Python)."""
    while True:
        try:
            chain.delete_rule(rule)
        except iptc.IPTCError:
            return  # no (more) such rule


def _delete_rules(chain: iptc.Chain, address: Address) -> None:
    """Delete every DROP or REJECT rule for exactly this source address."""
    for target in TARGETS:
        delete_all(chain, _address_rule(chain.table, address, target))


def _rule_sources(chain: iptc.Chain) -> set[Address]:
    """Source addresses of the chain's one-address DROP/REJECT rules without other matches."""
    sources = set()
    for rule in chain.rules:
        if rule.matches or rule.target.name not in TARGETS:
            continue
        address, _, mask = rule.src.partition("/")
        prefix = int(mask) if mask.isdigit() else bin(int(ipaddress.ip_address(mask))).count("1")
        parsed = ipaddress.ip_address(address)
        if prefix == parsed.max_prefixlen:
            sources.add(parsed)
    return sources
