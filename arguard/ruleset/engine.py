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

from arguard.model import Event
from arguard.patterns import Condition
from arguard.ruleset.compiled import COMPILED_RULES
from arguard.ruleset.loader import Rule, RuleTree

DEFAULT_MAX_KEYS = 100_000
_DIFFERENT_HISTORY = 64  # counted events kept per key for different_* rules


#: characters of a counted event's line kept in a correlation window (for the lines behind
#: an alert: `arguard explain`); a longer line is kept cut
KEPT_LINE_CHARS = 1024


@dataclass(slots=True)
class Evaluation:
    rule: Rule | None
    chain: tuple[Rule, ...]
    #: the lines of the events a frequency rule counted before this one, oldest first
    previous: tuple[str, ...] = ()


_NO_RULE = Evaluation(None, ())
_RECENT_LIMIT = 4096
_RECENT_MESSAGE_LIMIT = 512


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
    """Per correlation key, the recent counted events of one frequency rule: (time, values
    of its different_* fields, its line)."""

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
        return len({entry[1] for entry in window} | {different})

    def add(self, key: tuple, now: float, different: tuple | None, line: str) -> None:
        keys = self.keys
        window = keys.get(key)
        if window is None:
            window = keys[key] = deque(maxlen=self.history)
        else:
            keys.move_to_end(key)
        window.append((now, different, line[:KEPT_LINE_CHARS]))
        horizon = now - self.rule.timeframe
        while keys:
            oldest_key, oldest = next(iter(keys.items()))
            if len(keys) > self.max_keys or not oldest or oldest[-1][0] < horizon:
                keys.popitem(last=False)
            else:
                break

    def take(self, key: tuple) -> tuple[str, ...]:
        """Start the key's count again; the lines it had counted."""
        window = self.keys.pop(key, None)
        return () if window is None else tuple(entry[2] for entry in window)


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

# How a probe tests an event; the engine's hot loop compares these small ints.
CONTAINS, STARTS, ENDS, EQUALS, SEARCH, ALWAYS, GENERAL, FIELD = range(8)

Probe = tuple[int, object]


def _literal_probes(text: str) -> list[Probe] | None:
    """For a case-insensitive pattern that is only literal alternatives (`a|^b|c$`, the
    form Wazuh's <match> takes), one probe per alternative on the lower-cased message
    (`in`/`startswith`/`endswith`): several times faster than a regex search, same answer."""
    if text.startswith("(?"):
        return None
    probes: list[Probe] = []
    for alternative in text.split("|"):
        found = _LITERAL_ALTERNATIVE.fullmatch(alternative)
        if found is None:
            return None
        literal = re.sub(r"\\(.)", r"\1", found.group(2)).lower()
        if not literal.isascii():
            return None
        start, end = bool(found.group(1)), bool(found.group(3))
        if not literal and not (start or end):
            return [(ALWAYS, None)]
        kind = EQUALS if start and end else STARTS if start else ENDS if end else CONTAINS
        probes.append((kind, literal))
    return probes


def _probes(rule: Rule, source_checked: bool = False) -> tuple[list[Probe], bool]:
    """How to test `rule` against an event, and whether a probe that holds still needs the
    full `_matches` (verify). A rule whose only condition is one non-negated `match` or
    `regex` on the message (most children in the shipped trees) is decided by its probes
    alone. Any other rule is verified with `_matches`, after a literal `match` probe as a
    cheap gate where it has one (most lines fail the gate, so `_matches` rarely runs).
    `source_checked`: decoded_as and category are already known to hold (indexed roots)."""
    message_only = not (
        (not source_checked and (rule.decoded_as is not None or rule.category is not None))
        or rule.field_conditions or rule.user is not None or rule.address_conditions
        or rule.predecoded_conditions or rule.compiled_rule is not None or rule.ignore
        or rule.frequency is not None or rule.maxsize is not None
        or (rule.match is not None and rule.regex is not None))
    condition = rule.match if rule.match is not None else rule.regex
    if condition is None:
        if message_only:
            return [(ALWAYS, None)], False
        return [_field_gate(rule)], True
    if condition.negate:
        return [_field_gate(rule)], True
    literal = _literal_pattern_probes(condition)
    if literal is not None:
        return literal, not message_only
    if message_only:
        return [(SEARCH, condition.pattern.search)], False
    return [_field_gate(rule)], True


def _literal_pattern_probes(condition: Condition) -> list[Probe] | None:
    pattern = condition.pattern
    if condition.negate or not (pattern.flags & re.IGNORECASE and isinstance(pattern, re.Pattern)):
        return None
    return _literal_probes(pattern.pattern)


def _field_gate(rule: Rule) -> Probe:
    """A FIELD probe on the first decoded-field condition that is literal alternatives (web
    rules on `url` and `id`): a rule without a literal message condition is then still only
    checked in full when that field can match. GENERAL if there is none."""
    for name, condition in rule.field_conditions:
        probes = _literal_pattern_probes(condition)
        if probes is not None and all(kind != ALWAYS for kind, _ in probes):
            return FIELD, (name, tuple(probes))
    return GENERAL, None


def _field_holds(probes: tuple[Probe, ...], value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    for kind, literal in probes:
        if kind == CONTAINS:
            if literal in lowered:
                return True
        elif kind == STARTS:
            if lowered.startswith(literal):
                return True
        elif kind == ENDS:
            if lowered.endswith(literal):
                return True
        elif lowered == literal:
            return True
    return False


def _entries(rules: list[Rule], source_checked: bool = False) -> tuple:
    """The probes of `rules` in order, flattened to (kind, probe, rule, verify): the first
    entry that holds (and verifies) names the first rule that matches."""
    entries = []
    for rule in rules:
        probes, verify = _probes(rule, source_checked)
        entries.extend((kind, probe, rule, verify) for kind, probe in probes)
    return tuple(entries)


def _root_accepts(rule: Rule, decoder: str | None, category: str) -> bool:
    """Whether a root rule is tried for events of this decoder and category. As in Wazuh,
    where a rule's category defaults to syslog, a root that names neither a decoder nor a
    category is about syslog events only (not web-log ones)."""
    if rule.decoded_as is not None and rule.decoded_as != decoder:
        return False
    if rule.category is not None:
        return rule.category == category
    return rule.decoded_as is not None or category == "syslog"


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
        self._roots_by_source: dict[tuple[str | None, str], tuple] = {}
        #: per rule id, the probe entries of its children
        self._children: dict[int, tuple] = {
            rule.id: _entries(rule.children) for rule in tree.rules.values()}
        #: recent evaluations of walks that met no stateful rule (frequency or ignore): for
        #: the same decoder, fields, program, host, location and message they are the same
        self._recent: dict[tuple, Evaluation] = {}
        #: (id of an entries tuple, rule id) -> the entries after that rule's
        self._rest: dict[tuple[int, int], tuple] = {}
        self._stateful_tested = False

    def _roots(self, event: Event) -> tuple:
        """The probe entries of the root rules whose decoded_as/category can accept this
        event, in tree order: most lines of a busy log come from programs no root rule is
        about."""
        source = (event.decoder, event.category)
        roots = self._roots_by_source.get(source)
        if roots is None:
            roots = _entries([r for r in self.tree.roots
                              if _root_accepts(r, event.decoder, event.category)],
                             source_checked=True)
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
        message = event.pre.message
        key = None
        if len(message) <= _RECENT_MESSAGE_LIMIT:
            pre = event.pre
            key = (event.decoder, event.category, pre.program_name, pre.hostname,
                   event.line.location, message, tuple(event.fields.items()))
            evaluation = self._recent.get(key)
            if evaluation is not None:
                if evaluation.rule is not None:
                    self._after(evaluation.rule, evaluation.chain, event)
                return evaluation
        self._stateful_tested = False
        evaluation = self._walk(event, message)
        if key is not None and not self._stateful_tested:
            if len(self._recent) >= _RECENT_LIMIT:
                self._recent.clear()
            self._recent[key] = evaluation
        return evaluation

    def _walk(self, event: Event, message: str) -> Evaluation:
        """Depth-first, as Wazuh's OS_CheckIfRuleMatch: the first rule of a level that
        matches, then the deepest rule below it. A `noalert` rule none of whose children
        matched is no result: its later siblings are tried (Wazuh: "if we are set to no
        alert, keep going"), so 5500 "Grouping of the pam_unix rules" lets 5555 take
        `password changed for`; failing those, its parent is the result."""
        lowered = message.lower()
        children = self._children
        entries = self._roots(event)
        chain: list[Rule] = []
        taken_from: list[tuple] = []  # per rule of the chain, the entries it was found in
        while True:
            rule = self._first(entries, event, message, lowered)
            if rule is not None:
                chain.append(rule)
                taken_from.append(entries)
                entries = children[rule.id]
            elif chain and chain[-1].noalert:
                entries = self._entries_after(taken_from.pop(), chain.pop())
            else:
                break
        if not chain:
            return _NO_RULE
        final = chain[-1]
        evaluation = Evaluation(final, tuple(chain))
        evaluation.previous = self._after(final, evaluation.chain, event)
        return evaluation

    def _entries_after(self, entries: tuple, rule: Rule) -> tuple:
        """The entries after `rule`'s (a rule's probes stand together), kept: a noalert root
        such as 5700 ends this way for most lines of its program."""
        key = (id(entries), rule.id)
        rest = self._rest.get(key)
        if rest is None:
            last = max(index for index, entry in enumerate(entries) if entry[2] is rule)
            rest = self._rest[key] = entries[last + 1:]
        return rest

    def _first(self, entries: tuple, event: Event, message: str, lowered: str) -> Rule | None:
        """The first rule of `entries` that matches the event (the hot loop: one pass over
        flat tuples, no call per literal)."""
        for kind, probe, rule, verify in entries:
            # the kinds in the order of how often they occur in the shipped trees
            if kind == CONTAINS:
                if probe not in lowered:
                    continue
            elif kind == STARTS:
                if not lowered.startswith(probe):
                    continue
            elif kind == ENDS:
                if not lowered.endswith(probe):
                    continue
            elif kind == SEARCH:
                if probe(message) is None:
                    continue
            elif kind == EQUALS:
                if lowered != probe:
                    continue
            elif kind == GENERAL:
                if self._verify(rule, event):
                    return rule
                continue
            elif kind == FIELD:
                if not _field_holds(probe[1], event.fields.get(probe[0])):
                    continue
            if not verify or self._verify(rule, event):
                return rule
        return None

    def _verify(self, rule: Rule, event: Event) -> bool:
        if rule.frequency is not None or rule.ignore:
            self._stateful_tested = True
        return self._matches(rule, event)

    def _after(self, final: Rule, chain: tuple[Rule, ...], event: Event) -> tuple[str, ...]:
        """Count the event for the rules watching its rule, start the counts of the
        frequency rules it fired again; the lines those had counted."""
        now = event.time
        previous: tuple[str, ...] = ()
        for rule in chain:
            if rule.frequency is not None:
                key = _key(rule, event)
                if key is not None:
                    previous = self.windows[rule.id].take(key) or previous
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
                self.windows[watcher.id].add(key, now, self._different(watcher, event),
                                             event.line.text)
        return previous

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
        if rule.maxsize is not None and len(message) < rule.maxsize:
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
