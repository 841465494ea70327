"""The `iptables` action: one DROP (or REJECT) rule per blocked address, through libiptc.

    -N arguard
    -I INPUT -j arguard                        (and FORWARD, … : option jump_from)
    -A arguard -s 203.0.113.5/32 -j DROP       (ip6tables: -s 2001:db8::5/128)

The rules in arguard's own chain (option `chain`) that have exactly this shape and carry
this instance as their owner (arguard.respond.actions.xtables) are this instance's:
`list_targets()` reports their sources and `delete` removes them, so the admin's own rules,
elsewhere or of another shape, and another instance's rules are never touched. The chain
and the jumps into it are created when missing (at start and again on every add, so a
flushed INPUT chain is repaired by the next block).

This is the per-rule backend: each change re-reads and rewrites the whole filter table (that
is how libiptc works), so its cost grows with the number of rules; the `ipset` action is the
default because its cost does not (see benchmarks/bench_ipset.py). The option declarations
below (`CHAIN_OPTION`, `JUMP_FROM`, `TARGET`) are shared with the ipset action, whose one
set-matching rule per family lives in a chain of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from arguard.respond.actions.base import (
    STRING,
    STRINGS,
    ActionType,
    Option,
    Problem,
    parse_address,
)
from arguard.respond.owner import UNTAGGED, Owner

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

# A user-defined chain name as iptables accepts it (at most 28 characters), not a built-in
# target or chain name.
_CHAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}")
_RESERVED = {"ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "INPUT", "OUTPUT", "FORWARD",
             "PREROUTING", "POSTROUTING"}


def _chain_problem(name: str) -> str | None:
    if not _CHAIN.fullmatch(name) or name in _RESERVED:
        return ("is not a usable iptables chain name (letters, digits, '_', '.', '-'; at most "
                "28 characters; not a built-in name)")
    return None


def _jump_from_problem(parents: list[str]) -> str | None:
    if not parents or not all(_CHAIN.fullmatch(p) for p in parents):
        return "must be a non-empty list of chain names, e.g. [\"INPUT\", \"FORWARD\"]"
    return None


def chain_option(default: str, meaning: str) -> Option:
    return Option("chain", STRING, default, meaning, check=_chain_problem)


JUMP_FROM = Option("jump_from", STRINGS, ["INPUT"],
                   "the chains that jump to arguard's chain, first in each",
                   check=_jump_from_problem)
TARGET = Option("target", STRING, "DROP", "what a blocked packet gets", choices=("DROP", "REJECT"))


def check_jumps(options: Mapping[str, Any]) -> Iterable[Problem]:
    """jump_from must not name the chain it jumps to."""
    if options["chain"] in options["jump_from"]:
        yield "jump_from", f"jump_from must not name the chain {options['chain']!r} itself"


class IptablesAction:
    def __init__(self, command: Command, owner: Owner = UNTAGGED):
        from arguard.respond.actions import xtables

        options = ACTION.options_of(command)
        self.chain: str = options["chain"]
        self.jump_from: tuple[str, ...] = tuple(options["jump_from"])
        self.target: str = options["target"]
        self.owner = owner
        for version in (4, 6):
            with xtables.xtables(version) as table:
                xtables.ensure_chain(table, self.chain, self.jump_from)

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        """Insert the rule (at the top of the chain). An equal rule, or one with the other
        target (the command's target was changed), is removed first, so the address has
        exactly one rule of this owner; the timeout is kept by arguard, iptables has none."""
        from arguard.respond.actions import xtables

        address = parse_address(target)
        with xtables.xtables(address.version) as table:
            chain = xtables.ensure_chain(table, self.chain, self.jump_from)
            xtables.delete_address_rules(chain, address, self.owner)
            chain.insert_rule(xtables.address_rule(table, address, self.target, self.owner))

    def delete(self, target: str) -> None:
        from arguard.respond.actions import xtables

        address = parse_address(target)
        with xtables.xtables(address.version) as table:
            if table.is_chain(self.chain):
                xtables.delete_address_rules(xtables.chain(table, self.chain), address,
                                             self.owner)

    def check(self, target: str) -> bool:
        """Whether a rule for the address is in the chain and the chain is jumped to."""
        from arguard.respond.actions import xtables

        address = parse_address(target)
        with xtables.xtables(address.version) as table:
            return (xtables.chain_in_place(table, self.chain, self.jump_from)
                    and address in xtables.address_rule_sources(
                        xtables.chain(table, self.chain), self.owner))

    def list_targets(self) -> set[str] | None:
        from arguard.respond.actions import xtables

        targets: set[str] = set()
        for version in (4, 6):
            with xtables.xtables(version) as table:
                if table.is_chain(self.chain):
                    targets.update(map(str, xtables.address_rule_sources(
                        xtables.chain(table, self.chain), self.owner)))
        return targets


ACTION = ActionType(
    summary="one DROP or REJECT rule per blocked address in an iptables chain of arguard's",
    kinds=("ip",),
    build=lambda command, context: IptablesAction(command, context.owner),
    options=(chain_option("arguard", "the chain holding the rules"), JUMP_FROM, TARGET),
    check=check_jumps,
)
