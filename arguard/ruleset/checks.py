"""A rule's conditions as check objects, built once when the rule is loaded.

Each check answers `holds(context)` for one event, which is how the reference walk evaluates
rules, and gives the same test as a Python expression (`expression(names)`), from which the
compiled walk (arguard/ruleset/plan.py) builds one function per level of the rule tree. The
literal checks also say which literals a message must contain for them to hold
(`required_literals`), which is what the hyperscan prefilter is built from. A new rule
condition is one new check class here and one line in `static_checks`.

Conditions are case-insensitive patterns, as Wazuh's OS_Match/OS_Regex are. A pattern that is
only literal alternatives (`a|^b|c$`, the form Wazuh's <match> takes) is checked with
`in`/`startswith`/`endswith` on the lower-cased text, several times faster than a search
and with the same answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from arguard.patterns import Condition
from arguard.ruleset.compiled import COMPILED_RULES

if TYPE_CHECKING:
    from arguard.model import Event
    from arguard.ruleset.clock import DayWindow, TimeWindow
    from arguard.ruleset.lists import ListLookup
    from arguard.ruleset.loader import AddressCondition, Rule

CONTAINS, STARTS, ENDS, EQUALS = "in", "startswith", "endswith", "=="
_LITERAL_ALTERNATIVE = re.compile(r"(\^?)((?:[^\\.^$*+?{}\[\]()|]|\\[^A-Za-z0-9])*)(\$?)")


@dataclass(slots=True)
class Context:
    """What the checks of one event look at; lower-cased fields are made when first asked."""

    event: "Event"
    message: str
    lowered: str
    fields: dict[str, str]
    _lowered_fields: dict[str, str] | None = None

    def lowered_field(self, name: str) -> str | None:
        if self._lowered_fields is None:
            self._lowered_fields = {key: value.lower() for key, value in self.fields.items()}
        return self._lowered_fields.get(name)


class Names:
    """The objects a compiled expression refers to, each bound to a name of its own."""

    def __init__(self) -> None:
        self.bound: dict[str, object] = {}
        self._by_id: dict[int, str] = {}

    def bind(self, value: object, prefix: str) -> str:
        name = self._by_id.get(id(value))
        if name is None:
            name = self._by_id[id(value)] = f"_{prefix}{len(self.bound)}"
            self.bound[name] = value
        return name


def literal_alternatives(condition: Condition) -> tuple[tuple[str, str], ...] | None:
    """(kind, lower-case literal) per alternative when the pattern is only literal
    alternatives, else None. An empty alternative matches everything: ((CONTAINS, ""),)."""
    pattern = condition.pattern
    if not (isinstance(pattern, re.Pattern) and pattern.flags & re.IGNORECASE):
        return None
    text = pattern.pattern
    if text.startswith("(?"):
        return None
    found = []
    for alternative in text.split("|"):
        parts = _LITERAL_ALTERNATIVE.fullmatch(alternative)
        if parts is None:
            return None
        literal = re.sub(r"\\(.)", r"\1", parts.group(2)).lower()
        if not literal.isascii():
            return None
        start, end = bool(parts.group(1)), bool(parts.group(3))
        if not literal and not (start or end):
            return ((CONTAINS, ""),)
        found.append((EQUALS if start and end else STARTS if start else ENDS if end
                      else CONTAINS, literal))
    return tuple(found)


def _any_holds(alternatives: tuple[tuple[str, str], ...], value: str) -> bool:
    for kind, literal in alternatives:
        if kind == CONTAINS:
            if literal in value:
                return True
        elif kind == STARTS:
            if value.startswith(literal):
                return True
        elif kind == ENDS:
            if value.endswith(literal):
                return True
        elif value == literal:
            return True
    return False


def _any_expression(alternatives: tuple[tuple[str, str], ...], value: str) -> str:
    parts = [f"{literal!r} in {value}" if kind == CONTAINS else
             f"{value} == {literal!r}" if kind == EQUALS else
             f"{value}.{kind}({literal!r})" for kind, literal in alternatives]
    return "(" + " or ".join(parts) + ")"


class Check:
    """One condition. `cost` orders a rule's checks, cheapest first (they are and-ed, so the
    order only decides how soon a failing rule is given up)."""

    cost = 5
    #: its answer depends on more than the event's text and fields (the event's time): the
    #: engine marks a walk that tested it, as it does for the state checks, so that the walk
    #: cache does not keep it
    volatile = False

    def holds(self, context: Context) -> bool:
        raise NotImplementedError

    def expression(self, names: Names) -> str:
        raise NotImplementedError

    @property
    def required_literals(self) -> tuple[str, ...] | None:
        """Literals of which the message must contain one for this check to hold, or None."""
        return None


@dataclass(frozen=True, eq=False)
class MessageLiterals(Check):
    alternatives: tuple[tuple[str, str], ...]
    negate: bool = False
    cost = 1

    def holds(self, context: Context) -> bool:
        return _any_holds(self.alternatives, context.lowered) != self.negate

    def expression(self, names: Names) -> str:
        test = _any_expression(self.alternatives, "l")
        return f"(not {test})" if self.negate else test

    @property
    def required_literals(self) -> tuple[str, ...] | None:
        if self.negate or any(not literal for _, literal in self.alternatives):
            return None
        return tuple(literal for _, literal in self.alternatives)


@dataclass(frozen=True, eq=False)
class MessagePattern(Check):
    condition: Condition
    cost = 3

    def holds(self, context: Context) -> bool:
        return self.condition.holds(context.message)

    def expression(self, names: Names) -> str:
        search = names.bind(self.condition.pattern.search, "p")
        return f"({search}(m) {'is None' if self.condition.negate else 'is not None'})"


def _value_expression(source: str, name: str) -> str:
    """The expression of a field-like value: a decoded field, the user, a header part."""
    if source == "field":
        return f"f.get({name!r})"
    if source == "user":
        return "(f.get('dstuser') or f.get('srcuser') or f.get('user'))"
    if name == "location":
        return "ev.line.location"
    return f"ev.pre.{name}"


def _value(context: Context, source: str, name: str) -> str | None:
    fields = context.fields
    if source == "field":
        return fields.get(name)
    if source == "user":
        return fields.get("dstuser") or fields.get("srcuser") or fields.get("user")
    if name == "location":
        return context.event.line.location
    return getattr(context.event.pre, name)


@dataclass(frozen=True, eq=False)
class ValueLiterals(Check):
    """Literal alternatives on a decoded field (`url`, `id`, …)."""

    name: str
    alternatives: tuple[tuple[str, str], ...]
    negate: bool = False
    cost = 2

    def holds(self, context: Context) -> bool:
        value = context.lowered_field(self.name)
        if value is None:
            return self.negate
        return _any_holds(self.alternatives, value) != self.negate

    def expression(self, names: Names) -> str:
        test = _any_expression(self.alternatives, "v")
        if self.negate:
            return f"((v := fl.get({self.name!r})) is None or not {test})"
        return f"((v := fl.get({self.name!r})) is not None and {test})"


@dataclass(frozen=True, eq=False)
class ValuePattern(Check):
    """A pattern on a decoded field, the user or a header part (program, host, location)."""

    source: str  # "field", "user" or "header"
    name: str
    condition: Condition
    cost = 3

    def holds(self, context: Context) -> bool:
        return self.condition.holds(_value(context, self.source, self.name))

    def expression(self, names: Names) -> str:
        search = names.bind(self.condition.pattern.search, "p")
        value = _value_expression(self.source, self.name)
        if self.condition.negate:
            return f"((v := {value}) is None or {search}(v) is None)"
        return f"((v := {value}) is not None and {search}(v) is not None)"


@dataclass(frozen=True, eq=False)
class AddressCheck(Check):
    name: str
    addresses: "AddressCondition"
    cost = 4

    def holds(self, context: Context) -> bool:
        return self.addresses.holds(context.fields.get(self.name))

    def expression(self, names: Names) -> str:
        return f"{names.bind(self.addresses.holds, 'a')}(f.get({self.name!r}))"


@dataclass(frozen=True, eq=False)
class CompiledCheck(Check):
    name: str
    cost = 2

    def holds(self, context: Context) -> bool:
        return COMPILED_RULES[self.name](context.fields, context.message)

    def expression(self, names: Names) -> str:
        return f"{names.bind(COMPILED_RULES[self.name], 'c')}(f, m)"


@dataclass(frozen=True, eq=False)
class MaxSizeCheck(Check):
    size: int
    cost = 0

    def holds(self, context: Context) -> bool:
        return len(context.message) >= self.size

    def expression(self, names: Names) -> str:
        return f"(len(m) >= {self.size})"


@dataclass(frozen=True, eq=False)
class EventCheck(Check):
    """decoded_as or category, on rules below the root (roots are chosen by them)."""

    attribute: str  # "decoder" or "category"
    value: str
    cost = 0

    def holds(self, context: Context) -> bool:
        return getattr(context.event, self.attribute) == self.value

    def expression(self, names: Names) -> str:
        return f"(ev.{self.attribute} == {self.value!r})"


@dataclass(frozen=True, eq=False)
class StateCheck(Check):
    """A frequency or ignore condition: asks the engine's correlation state (so it is made by
    the engine, which owns that state, and is always a rule's last check)."""

    test: Callable[["Event"], bool] = field(repr=False)
    cost = 9

    def holds(self, context: Context) -> bool:
        return self.test(context.event)

    def expression(self, names: Names) -> str:
        return f"{names.bind(self.test, 's')}(ev)"


def _list_value_expression(name: str) -> str:
    """The value a `list` condition looks up: as Wazuh's lists read them, the user is
    srcuser, else dstuser, and host and program are the header's."""
    if name == "user":
        return "(f.get('srcuser') or f.get('dstuser'))"
    if name in ("hostname", "program_name"):
        return f"ev.pre.{name}"
    return f"f.get({name!r})"


@dataclass(frozen=True, eq=False)
class ListCheck(Check):
    """A `list` condition: a field's value looked up in a list file (arguard/ruleset/lists.py)."""

    lookup: "ListLookup"
    cost = 4

    def holds(self, context: Context) -> bool:
        name = self.lookup.field
        if name == "user":
            fields = context.fields
            value = fields.get("srcuser") or fields.get("dstuser")
        elif name in ("hostname", "program_name"):
            value = getattr(context.event.pre, name)
        else:
            value = context.fields.get(name)
        return self.lookup.holds(value)

    def expression(self, names: Names) -> str:
        return f"{names.bind(self.lookup.holds, 'l')}({_list_value_expression(self.lookup.field)})"


@dataclass(frozen=True, eq=False)
class TimeCheck(Check):
    """A `time` or `weekday` condition on the event's time (arguard/ruleset/clock.py)."""

    window: "TimeWindow | DayWindow"
    cost = 7   # after the rule's other conditions: only walks that get this far are marked
    volatile = True

    def holds(self, context: Context) -> bool:
        return self.window.holds(context.event.time)

    def expression(self, names: Names) -> str:
        return f"{names.bind(self.window.holds, 't')}(ev.time)"


@dataclass(frozen=True, eq=False)
class MarkedCheck(Check):
    """A volatile check that first tells the engine it is being tested (`mark`)."""

    check: Check
    mark: Callable[[], None] = field(repr=False)

    @property
    def cost(self) -> int:  # type: ignore[override]
        return self.check.cost

    def holds(self, context: Context) -> bool:
        self.mark()
        return self.check.holds(context)

    def expression(self, names: Names) -> str:
        return f"({names.bind(self.mark, 'k')}() or {self.check.expression(names)})"


@dataclass(frozen=True, eq=False)
class FirstSeenCheck(Check):
    """`if_fts`: the event's first-time-seen key (its decoder's `fts` fields) is new, asked of
    the first-seen store, which records it (so it is made by the engine, which has the store,
    and comes after the rule's other conditions, as in Wazuh)."""

    test: Callable[["Event"], bool] = field(repr=False)
    cost = 8

    def holds(self, context: Context) -> bool:
        return self.test(context.event)

    def expression(self, names: Names) -> str:
        return f"{names.bind(self.test, 'n')}(ev)"


def first_seen_key(event: Event) -> str | None:
    """An event's first-time-seen key, as Wazuh's FTS() makes it: the name of the decoder that
    took it and the values of that decoder's `fts` fields (missing ones empty); None when the
    decoder has none."""
    if not event.fts:
        return None
    fields = event.fields
    location = event.line.location
    values = [event.decoder_child or event.decoder or ""]
    for name in event.fts:
        if name == "location":
            values.append(location)
        elif name != "name":   # the decoder's name, which every key starts with
            values.append(fields.get(name, ""))
    return "\x1f".join(values)


def _condition_check(source: str, name: str, condition: Condition) -> Check:
    alternatives = literal_alternatives(condition)
    if source == "message":
        if alternatives is not None:
            return MessageLiterals(alternatives, condition.negate)
        return MessagePattern(condition)
    if source == "field" and alternatives is not None:
        return ValueLiterals(name, alternatives, condition.negate)
    return ValuePattern(source, name, condition)


def static_checks(rule: "Rule", is_root: bool) -> tuple[Check, ...]:
    """The checks of a rule's own conditions, cheapest first. A root's decoded_as and
    category are not among them: they choose which roots an event is tried against."""
    checks: list[Check] = []
    if not is_root:
        if rule.decoded_as is not None:
            checks.append(EventCheck("decoder", rule.decoded_as))
        if rule.category is not None:
            checks.append(EventCheck("category", rule.category))
    if rule.maxsize is not None:
        checks.append(MaxSizeCheck(rule.maxsize))
    for condition in (rule.match, rule.regex):
        if condition is not None:
            checks.append(_condition_check("message", "", condition))
    for name, condition in rule.field_conditions:
        checks.append(_condition_check("field", name, condition))
    if rule.user is not None:
        checks.append(_condition_check("user", "user", rule.user))
    for name, addresses in rule.address_conditions:
        checks.append(AddressCheck(name, addresses))
    for name, condition in rule.predecoded_conditions:
        checks.append(_condition_check("header", name, condition))
    if rule.compiled_rule is not None:
        checks.append(CompiledCheck(rule.compiled_rule))
    checks.extend(ListCheck(lookup) for lookup in rule.lists)
    checks.extend(TimeCheck(window) for window in (rule.time, rule.weekday) if window is not None)
    return tuple(sorted(checks, key=lambda check: check.cost))
