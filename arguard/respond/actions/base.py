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
responder logs it, counts it and writes it to active-responses.log. `add` may return a short
text saying what it did (the pids a terminate ended), which goes to the same line.
"""

from __future__ import annotations

import copy
import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from arguard.config import Command, Paths
    from arguard.model import Alert
    from arguard.respond.owner import Owner
    from arguard.respond.targets import TargetKind


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ActionError(Exception):
    """An action could not do what was asked (kernel refused, file unwritable, timeout…)."""


class OwnerConflict(ActionError):
    """A kernel object the action would use belongs to another arguard instance. At start
    the daemon refuses to run rather than undo that instance's blocks."""


class Action(Protocol):
    def add(self, target: str, timeout: int | None, alert: Alert | None) -> str | None:
        """Put the response in place for `timeout` seconds (None: until deleted); optionally
        a short text of what was done, for active-responses.log."""

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
    scripts' directory, the state directory), the instance its kernel objects belong to,
    and whom to tell when the backend dropped its entries on its own."""

    paths: Paths
    owner: Owner
    #: backend_reset(command, why), callable from any thread: the backend of that command
    #: lost its entries by itself (firewalld reloaded); the daemon then reconciles the
    #: command, putting back every block its table holds. None: nobody listens (the
    #: operator's direct commands), an action then does not watch.
    backend_reset: Callable[[str, str], None] | None = None


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


def parse_network(text: str) -> Network:
    """A target as the actions that block prefixes take it: an address (as parse_address)
    or a CIDR (`198.51.100.0/24`, host bits cleared), as a network; ActionError otherwise."""
    if "/" not in text:
        address = parse_address(text)
        return ipaddress.ip_network(address)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ActionError(f"not an IP address or network: {text!r}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        raise ActionError(f"not a plain network (IPv4-mapped): {text!r}")
    return network


def network_target(network: Network) -> str:
    """The target text of a network: the address alone for a full-length prefix."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


# --- self-description ------------------------------------------------------------------------

@dataclass(frozen=True)
class OptionType:
    """A type an option value may have, named as the configuration reference names it."""

    name: str
    accepts: Callable[[Any], bool]
    #: a path, made absolute relative to the configuration file's directory
    path: bool = False


def _plain(*kinds: type) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    return accepts


STRING = OptionType("a string", _plain(str))
PATH = OptionType("a path", _plain(str), path=True)
INTEGER = OptionType("an integer", _plain(int))
NUMBER = OptionType("a number", _plain(int, float))
BOOLEAN = OptionType("true or false", _plain(bool))
STRINGS = OptionType("a list of strings",
                     lambda value: isinstance(value, list) and all(isinstance(v, str)
                                                                   for v in value))
INTEGERS = OptionType("a list of integers",
                      lambda value: isinstance(value, list) and all(
                          isinstance(v, int) and not isinstance(v, bool) for v in value))


class _Required(enum.Enum):
    REQUIRED = "required"


#: the default of an option that must be given
REQUIRED = _Required.REQUIRED


@dataclass(frozen=True)
class Option:
    """One key of a table: of a [[command]] table, that an action reads, or of the
    configuration's own tables (arguard/schema.py)."""

    name: str
    type: OptionType
    default: Any
    #: one line for the configuration reference
    meaning: str
    #: the only values allowed (empty: any value of the type)
    choices: tuple[Any, ...] = ()
    #: what is wrong with a value of the right type ("must be …", "is not …"), or None
    check: Callable[[Any], str | None] | None = None

    def problem(self, value: Any) -> str | None:
        if not self.type.accepts(value):
            return f"{self.name} must be {self.type.name}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be {self.choices_text}"
        if self.check is not None:
            problem = self.check(value)
            if problem is not None:
                return f"{self.name} {value!r} {problem}"
        return None

    @property
    def choices_text(self) -> str:
        """The choices as messages and the configuration reference name them."""
        names = [f'"{c}"' for c in self.choices]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


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
    #: acts once per alert and leaves nothing to lift (it ends processes): no block is
    #: recorded whatever the binding's timeout, nothing is reconciled, and its calls run in
    #: worker threads as a detached action's do (they may wait)
    stateless: bool = False
    #: the `expect` of a command that does not say
    default_expect: str = "srcip"
    #: problems that involve several options, given all of them with their defaults
    check: Callable[[Mapping[str, Any]], Iterable[Problem]] | None = None
    #: acts on networks too (`arguard block 198.51.100.0/24`); such an action declares
    #: PREFIX_V4 and PREFIX_V6, and the policy blocks an alert's address as the covering
    #: prefix they give
    networks: bool = False
    #: one line on how the action works on this host, for check-config and status (the
    #: `firewall` action: which backend it chose and why)
    host_note: Callable[[], str] | None = None

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

    def prefixes(self, command: Command) -> tuple[int, int] | None:
        """The covering prefix lengths (IPv4, IPv6) the command blocks, None when the action
        blocks single addresses only."""
        if not self.networks:
            return None
        options = self.with_defaults(command.options)
        return options["prefix_v4"], options["prefix_v6"]

    def options_of(self, command: Command) -> dict[str, Any]:
        """The command's options with their defaults, checked: the loader has checked
        them already, but commands built in code (tests, benchmarks) come here unchecked.
        ActionError names every problem."""
        problems = self.problems(command.action, command.options)
        if problems:
            raise ActionError(f"command {command.name!r}: "
                              + "; ".join(message for _, message in problems))
        return self.with_defaults(command.options)


# --- options shared by the firewall actions ----------------------------------------------------

def _ports_problem(ports: list[int]) -> str | None:
    if not all(1 <= port <= 65535 for port in ports):
        return "must be port numbers from 1 to 65535"
    if len(set(ports)) != len(ports):
        return "names a port twice"
    if len(ports) > 15:
        return "may name at most 15 ports (as iptables' multiport match)"
    return None


def _prefix_check(bits: int) -> Callable[[int], str | None]:
    def problem(length: int) -> str | None:
        return None if 1 <= length <= bits else f"must be a prefix length from 1 to {bits}"
    return problem


PORTS = Option("ports", INTEGERS, [], "limit the block to these destination ports (empty: "
               "every port and protocol)", check=_ports_problem)
PROTOCOL = Option("protocol", STRING, "tcp", "the protocol of `ports`", choices=("tcp", "udp"))
PREFIX_V4 = Option("prefix_v4", INTEGER, 32, "block the IPv4 prefix of this length that "
                   "covers an alert's address (32: the address itself)", check=_prefix_check(32))
PREFIX_V6 = Option("prefix_v6", INTEGER, 128, "block the IPv6 prefix of this length that "
                   "covers an alert's address (128: the address itself; 64: the attacker's "
                   "whole subnet)", check=_prefix_check(128))
