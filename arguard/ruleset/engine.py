"""Evaluating events against the rule tree, with frequency/timeframe correlation.

Wazuh 4.x semantics: the first root rule that matches is descended depth-first (children in
descending level, then load order); the last rule reached is the event's rule. A rule with
`frequency` counts earlier events whose *final* rule was its `if_matched_sid` (or was in its
`if_matched_group`), keyed by its `same_*` values; it fires on the F-th such event, this one
included, within `timeframe`, and its count then restarts. `ignore` is kept per correlation
key, so a second attacker inside one attacker's ignore window is still seen.

Memory stays bounded: each key keeps at most F-1 timestamps, keys expire once their newest
event leaves the timeframe, and each rule keeps at most `max_keys` keys (oldest evicted).
The cost per event does not depend on how much history there is.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from arguard.model import Event
from arguard.ruleset.compiled import COMPILED_RULES
from arguard.ruleset.loader import Rule, RuleTree

DEFAULT_MAX_KEYS = 100_000
_DIFFERENT_HISTORY = 64  # counted events kept per key for different_* rules


@dataclass(frozen=True, slots=True)
class Evaluation:
    rule: Rule | None
    chain: tuple[Rule, ...]


def correlation_value(event: Event, name: str) -> str | None:
    fields = event.fields
    if name == "user":
        return fields.get("dstuser") or fields.get("srcuser") or fields.get("user")
    if name == "location":
        return event.line.location
    if name.startswith("field:"):
        return fields.get(name[6:])
    return fields.get(name)


def _key(rule: Rule, event: Event) -> tuple[str, ...] | None:
    same = rule.same
    if not same:
        return ()
    if len(same) == 1:
        value = correlation_value(event, same[0])
        return None if value is None else (value,)
    values = tuple(correlation_value(event, name) for name in same)
    return None if None in values else values


class _Windows:
    """Per correlation key, the recent counted events of one frequency rule."""

    __slots__ = ("rule", "keys", "max_keys", "history")

    def __init__(self, rule: Rule, max_keys: int):
        self.rule = rule
        self.keys: OrderedDict[tuple, deque] = OrderedDict()
        self.max_keys = max_keys
        self.history = _DIFFERENT_HISTORY if rule.different else max(rule.frequency - 1, 1)

    def count(self, key: tuple, now: float, different: tuple | None) -> int:
        window = self.keys.get(key)
        if not window:
            return 1
        horizon = now - self.rule.timeframe
        while window and window[0][0] < horizon:
            window.popleft()
        if different is None:
            return len(window) + 1
        return len({values for _, values in window} | {different})

    def add(self, key: tuple, now: float, different: tuple | None) -> None:
        keys = self.keys
        window = keys.get(key)
        if window is None:
            window = keys[key] = deque(maxlen=self.history)
        else:
            keys.move_to_end(key)
        window.append((now, different))
        horizon = now - self.rule.timeframe
        while keys:
            oldest_key, oldest = next(iter(keys.items()))
            if len(keys) > self.max_keys or not oldest or oldest[-1][0] < horizon:
                keys.popitem(last=False)
            else:
                break

    def reset(self, key: tuple) -> None:
        self.keys.pop(key, None)


class _IgnoreTable:
    __slots__ = ("until", "max_keys")

    def __init__(self, max_keys: int):
        self.until: OrderedDict[tuple, float] = OrderedDict()
        self.max_keys = max_keys

    def ignored(self, key: tuple, now: float) -> bool:
        until = self.until.get(key)
        return until is not None and now < until

    def set(self, key: tuple, until: float, now: float) -> None:
        table = self.until
        table[key] = until
        table.move_to_end(key)
        while table:
            first_until = next(iter(table.values()))
            if len(table) > self.max_keys or first_until <= now:
                table.popitem(last=False)
            else:
                break


_LITERAL_ALTERNATIVE = re.compile(r"(\^?)((?:[^\\.^$*+?{}\[\]()|]|\\[^A-Za-z0-9])*)(\$?)")

MessageCheck = Callable[[str, str], bool]


def _literal_check(text: str) -> MessageCheck | None:
    """For a case-insensitive pattern that is only literal alternatives (`a|^b|c$`, the
    form Wazuh's <match> takes), a check on the lower-cased message with `in`/`startswith`/
    `endswith`: several times faster than a regex search, same answer."""
    if text.startswith("(?"):
        return None
    parts = []
    for alternative in text.split("|"):
        found = _LITERAL_ALTERNATIVE.fullmatch(alternative)
        if found is None:
            return None
        literal = re.sub(r"\\(.)", r"\1", found.group(2)).lower()
        if not literal.isascii():
            return None
        parts.append((literal, bool(found.group(1)), bool(found.group(3))))
    if any(not literal and not (start or end) for literal, start, end in parts):
        return lambda message, lowered: True

    def check(message: str, lowered: str) -> bool:
        for literal, start, end in parts:
            if start and end:
                if lowered == literal:
                    return True
            elif start:
                if lowered.startswith(literal):
                    return True
            elif end:
                if lowered.endswith(literal):
                    return True
            elif literal in lowered:
                return True
        return False

    return check


def _message_only_check(rule: Rule, source_checked: bool = False) -> MessageCheck | None:
    """A check for rules whose only condition is one non-negated `match` or `regex` on the
    message (most children in the shipped trees), skipping the general `_matches`.
    `source_checked`: decoded_as and category are already known to hold (indexed roots)."""
    if ((not source_checked and (rule.decoded_as is not None or rule.category is not None))
            or rule.field_conditions or rule.user is not None or rule.address_conditions
            or rule.predecoded_conditions or rule.compiled_rule is not None or rule.ignore
            or rule.frequency is not None or rule.maxsize is not None
            or (rule.match is not None and rule.regex is not None)):
        return None
    if rule.match is None and rule.regex is None:
        return lambda message, lowered: True
    condition = rule.match if rule.match is not None else rule.regex
    if condition.negate:
        return None
    literal = _literal_check(condition.pattern.pattern) \
        if condition.pattern.flags & re.IGNORECASE and isinstance(condition.pattern, re.Pattern) \
        else None
    if literal is not None:
        return literal
    search = condition.pattern.search
    return lambda message, lowered: search(message) is not None


def _same_correlation(old: Rule, new: Rule) -> bool:
    return (old.frequency, old.timeframe, old.same, old.different, old.if_matched_sid,
            old.if_matched_group) == (new.frequency, new.timeframe, new.same, new.different,
                                      new.if_matched_sid, new.if_matched_group)


class Engine:
    def __init__(self, tree: RuleTree, max_keys: int = DEFAULT_MAX_KEYS):
        self.tree = tree
        self.windows = {rule.id: _Windows(rule, max_keys) for rule in tree.rules.values()
                        if rule.frequency is not None}
        self.ignores = {rule.id: _IgnoreTable(max_keys) for rule in tree.rules.values()
                        if rule.ignore}
        self._roots_by_source: dict[tuple[str | None, str],
                                    list[tuple[Rule, MessageCheck | None]]] = {}
        #: per rule, its children with their message-only check (None: the general one)
        self._children: dict[int, list[tuple[Rule, MessageCheck | None]]] = {
            rule.id: [(child, _message_only_check(child)) for child in rule.children]
            for rule in tree.rules.values()}

    def _roots(self, event: Event) -> list[tuple[Rule, MessageCheck | None]]:
        """The root rules whose decoded_as/category can accept this event, in tree order,
        with their message-only checks: most lines of a busy log come from programs no root
        rule is about."""
        source = (event.decoder, event.category)
        roots = self._roots_by_source.get(source)
        if roots is None:
            roots = [(r, _message_only_check(r, source_checked=True)) for r in self.tree.roots
                     if (r.decoded_as is None or r.decoded_as == event.decoder)
                     and (r.category is None or r.category == event.category)]
            self._roots_by_source[source] = roots
        return roots

    def adopt_state(self, previous: "Engine") -> int:
        """Take over the correlation windows and ignore tables of the engine this one replaces
        (a reload), for every rule whose correlation settings did not change, so that an
        attack in progress is still counted across a reload. Returns the rules carried over."""
        carried = 0
        for rule_id, windows in self.windows.items():
            old = previous.windows.get(rule_id)
            if old is not None and _same_correlation(old.rule, windows.rule):
                windows.keys = old.keys
                carried += 1
        for rule_id, table in self.ignores.items():
            old_table = previous.ignores.get(rule_id)
            if old_table is not None and previous.tree.rules[rule_id].ignore == \
                    self.tree.rules[rule_id].ignore:
                table.until = old_table.until
        return carried

    def correlation_keys(self) -> int:
        """How many correlation keys are held now (for status and memory checks)."""
        return (sum(len(w.keys) for w in self.windows.values())
                + sum(len(t.until) for t in self.ignores.values()))

    def evaluate(self, event: Event) -> Evaluation:
        chain: list[Rule] = []
        message = event.pre.message
        lowered = message.lower()
        for root, check in self._roots(event):
            if check(message, lowered) if check is not None else self._matches(root, event):
                chain.append(root)
                break
        else:
            return Evaluation(None, ())
        node = root
        children = self._children
        while True:
            for child, check in children[node.id]:
                if check(message, lowered) if check is not None else self._matches(child, event):
                    chain.append(child)
                    node = child
                    break
            else:
                break
        self._after(node, chain, event)
        return Evaluation(node, tuple(chain))

    def _after(self, final: Rule, chain: list[Rule], event: Event) -> None:
        now = event.time
        for rule in chain:
            if rule.frequency is not None:
                key = _key(rule, event)
                if key is not None:
                    self.windows[rule.id].reset(key)
        if final.ignore:
            key = _key(final, event)
            if key is not None:
                self.ignores[final.id].set(key, now + final.ignore, now)
        watchers = self.tree.watchers_by_sid.get(final.id, ())
        if self.tree.watchers_by_group:
            extra = [w for group in final.groups
                     for w in self.tree.watchers_by_group.get(group, ())]
            if extra:
                watchers = [*watchers, *extra]
        for watcher in watchers:
            key = _key(watcher, event)
            if key is not None:
                self.windows[watcher.id].add(key, now, self._different(watcher, event))

    @staticmethod
    def _different(rule: Rule, event: Event) -> tuple | None:
        if not rule.different:
            return None
        return tuple(correlation_value(event, name) for name in rule.different)

    def _matches(self, rule: Rule, event: Event) -> bool:
        if rule.decoded_as is not None and rule.decoded_as != event.decoder:
            return False
        if rule.category is not None and rule.category != event.category:
            return False
        message = event.pre.message
        if rule.maxsize is not None and len(message) <= rule.maxsize:
            return False
        if rule.match is not None and not rule.match.holds(message):
            return False
        if rule.regex is not None and not rule.regex.holds(message):
            return False
        fields = event.fields
        for name, condition in rule.field_conditions:
            if not condition.holds(fields.get(name)):
                return False
        if rule.user is not None and not rule.user.holds(correlation_value(event, "user")):
            return False
        for name, address_condition in rule.address_conditions:
            if not address_condition.holds(fields.get(name)):
                return False
        for name, condition in rule.predecoded_conditions:
            if name == "location":
                value = event.line.location
            elif name == "hostname":
                value = event.pre.hostname
            else:
                value = event.pre.program_name
            if not condition.holds(value):
                return False
        if rule.compiled_rule is not None and not COMPILED_RULES[rule.compiled_rule](fields, message):
            return False
        if rule.ignore or rule.frequency is not None:
            key = _key(rule, event)
            if rule.ignore and key is not None and self.ignores[rule.id].ignored(key, event.time):
                return False
            if rule.frequency is not None:
                if key is None:
                    return False
                count = self.windows[rule.id].count(key, event.time, self._different(rule, event))
                if count < rule.frequency:
                    return False
        return True
