"""The contract every response action implements, and how an action describes itself.

An action module declares one `ACTION = ActionType(...)`: what the action is, which kinds of
target it acts on, whether it runs detached, its options (name, type, default, one line of
meaning) and how to build it. The registry (`arguard.respond.actions`) maps action names to
modules; the configuration loader validates `[[command]]` tables by asking the registry, the
responder builds actions and learns whether they are detached the same way, so nothing else
names an action (docs/actions.md: how to add one).

Action modules import only the standard library and arguard's own light modules at their top:
the loader reads every configured action's description, and `check-config`, `logtest` and
`replay` must not load libiptc or netlink code for that. Kernel libraries are imported in the
code that uses them.

Actions are idempotent: adding a target that is already in place, or deleting one that is
not, succeeds quietly. Failures raise ActionError with a message fit for the operator; the
responder logs it, counts it and writes it to active-responses.log.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from arguard.schema import REQUIRED, Option

if TYPE_CHECKING:
    from arguard.config import Command, Paths
    from arguard.model import Alert
    from arguard.respond.owner import Owner
    from arguard.respond.targets import TargetKind


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ActionError(Exception):
    """An action could not do what was asked (kernel refused, file unwritable, timeout…)."""


class OwnerConflict(ActionError):
    """A kernel object the action would use belongs to another arguard instance. At start
    the daemon refuses to run rather than undo that instance's blocks."""


class Action(Protocol):
    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        """Put the response in place for `timeout` seconds (None: until deleted)."""

    def delete(self, target: str) -> None:
        """Lift the response."""

    def check(self, target: str) -> bool:
        """Whether the response is in place now."""

    def list_targets(self) -> set[str] | None:
        """Targets this instance owns in the backend now, for reconciliation; None when
        the backend cannot be listed (scripts, webhooks, account locks)."""


@runtime_checkable
class BatchAction(Action, Protocol):
    """An action with a faster way to add many targets at once (restoring a whole blocks
    table after a reboot); reconciliation uses it when an action has it."""

    def add_many(self, items: Sequence[tuple[str, int | None]]) -> None:
        """Add (or refresh) every (target, timeout) pair."""


@dataclass(frozen=True)
class ActionContext:
    """What an action may need beyond its command: the configured paths (the custom
    scripts' directory, the state directory) and the instance its kernel objects belong to."""

    paths: Paths
    owner: Owner


def parse_address(text: str) -> Address:
    """An address target as actions take it: a plain IP literal, `::ffff:a.b.c.d` folded to
    IPv4; ActionError for anything else (hostnames, CIDRs, zone ids, blanks). The policy has
    checked it already; actions check again, since they are also called directly."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ActionError(f"not an IP address: {text!r}") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise ActionError(f"not a plain IP address (zone id): {text!r}")
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


# --- self-description ------------------------------------------------------------------------

#: a problem with a command's options: (the key it is about, or None for the table; message)
Problem = tuple["str | None", str]


@dataclass(frozen=True)
class ActionType:
    """What an action is, as its module declares it."""

    #: one line for the configuration reference
    summary: str
    #: the kinds of target it acts on (targets.EXPECT_KINDS: what each `expect` gives)
    kinds: tuple[TargetKind, ...]
    #: builds the action for one configured command
    build: Callable[[Command, ActionContext], Action]
    options: tuple[Option, ...] = ()
    #: runs outside the process (a program, a remote service): its calls run in worker
    #: threads, it cannot be observed (never reconciled), and a binding without a timeout
    #: runs it on every alert without recording a block
    detached: bool = False
    #: the `expect` of a command that does not say
    default_expect: str = "srcip"
    #: problems that involve several options, given all of them with their defaults
    check: Callable[[Mapping[str, Any]], Iterable[Problem]] | None = None

    def problems(self, action: str, values: Mapping[str, Any]) -> list[Problem]:
        """Everything wrong with a command's options for this action (`action`: its name):
        unknown keys, missing required ones, wrong types and values."""
        known = {option.name: option for option in self.options}
        found: list[Problem] = []
        for key in values:
            if key not in known:
                takes = ", ".join(sorted(known)) or "no options"
                found.append((key, f"unknown key {key!r} in [command] (action {action!r} "
                                   f"takes: {takes})"))
        for option in self.options:
            if option.name in values:
                problem = option.problem(values[option.name])
                if problem is not None:
                    found.append((option.name, problem))
            elif option.default is REQUIRED:
                found.append((None, f"a {action} command needs {option.name!r}"))
        if not found and self.check is not None:
            found.extend(self.check(self.with_defaults(values)))
        return found

    def with_defaults(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The given options, and the default of every one not given."""
        return {option.name: values[option.name] if option.name in values
                else copy.deepcopy(option.default) for option in self.options}

    def options_of(self, command: Command) -> dict[str, Any]:
        """The command's options with their defaults, checked: the loader has checked
        them already, but commands built in code (tests, benchmarks) come here unchecked.
        ActionError names every problem."""
        problems = self.problems(command.action, command.options)
        if problems:
            raise ActionError(f"command {command.name!r}: "
                              + "; ".join(message for _, message in problems))
        return self.with_defaults(command.options)
