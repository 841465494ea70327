"""Evaluating events against the rule tree, with frequency/timeframe correlation.

Wazuh 4.x semantics: the first root rule that matches is descended depth-first (children
level 0 first, then by descending level, then load order, see loader.evaluation_order); the
last rule reached is the event's rule. A `noalert` rule none of whose children matched is no
result: its later siblings are tried, and failing those its parent is the result. A rule
with `frequency` counts earlier events whose *final* rule was its `if_matched_sid` (or was in
its `if_matched_group`), keyed by its `same_*` values; it fires on the F-th such event, this
one included, within `timeframe`, and its count then restarts. `ignore` is kept per
correlation key, so a second attacker inside one attacker's ignore window is still seen.

Two walks give the same answer: the compiled walk (arguard/ruleset/plan.py, one generated
function per level of the tree), used everywhere, and the reference walk here, which
evaluates each rule's check objects one by one and is what the compiled walk is tested
against (tests/test_differential.py).

A rule with `scope = "fleet"` counts the events of every host (arguard.fleet.facts): the
engine tells `SharedWindows` of each event it counts and each firing of such a rule, and
takes the other hosts' in through `count_remote` / `reset_remote`. That is the whole
interface; how windows are kept stays the engine's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from arguard.model import Event
from arguard.ruleset.checks import (Check, Context, FirstSeenCheck, MarkedCheck, StateCheck,
                                    ValueLiterals, first_seen_key, static_checks)
from arguard.ruleset.correlation import (DEFAULT_IPV6_PREFIX, DEFAULT_MAX_KEYS, IgnoreTable,
                                         KeyMaker, Windows)
from arguard.ruleset.loader import Rule, RuleTree


@dataclass(slots=True)
class Evaluation:
    rule: Rule | None
    chain: tuple[Rule, ...]
    #: the lines of the events a frequency rule of the chain counted before this one
    previous: tuple[str, ...] = ()


_NO_RULE = Evaluation(None, ())
# Recent walks kept for messages that repeat word for word (cron, PAM sessions, systemd).
_RECENT_LIMIT = 4096
_RECENT_MESSAGE_LIMIT = 512


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


class SharedWindows(Protocol):
    """Where a fleet-scoped rule's events go to the other hosts: `counted` for each event
    counted in its window, `fired` when it fired (its count restarts everywhere)."""

    def counted(self, rule: Rule, key: tuple[str | int, ...], at: float) -> None: ...

    def fired(self, rule: Rule, key: tuple[str | int, ...], at: float) -> None: ...


#: the first-seen store's test: True when the key is new (and it is recorded)
FirstSeen = Callable[[str, float], bool]


class Engine:
    def __init__(self, tree: RuleTree, max_keys: int = DEFAULT_MAX_KEYS,
                 ipv6_prefix: int = DEFAULT_IPV6_PREFIX, compiled: bool = True,
                 first_seen: FirstSeen | None = None, shared: SharedWindows | None = None):
        """`first_seen`: the store `if_fts` rules ask (needed only when a rule has if_fts);
        `shared`: where fleet-scoped rules' events go (see the module's docstring)."""
        self.tree = tree
        self.first_seen = first_seen
        self.shared = shared
        self.keys = KeyMaker(ipv6_prefix)
        self.windows = {rule.id: Windows(rule, max_keys) for rule in tree.rules.values()
                        if rule.frequency is not None}
        self.ignores = {rule.id: IgnoreTable(max_keys) for rule in tree.rules.values()
                        if rule.ignore}
        roots = {id(rule) for rule in tree.roots}
        #: per rule id, its checks: its own conditions, then its correlation state
        self.checks: dict[int, tuple[Check, ...]] = {
            rule.id: self._marked(static_checks(rule, id(rule) in roots))
            + self._first_seen_checks(rule) + self._state_checks(rule)
            for rule in tree.rules.values()}
        #: per rule id, its children as a tuple (a level of the tree)
        self.children: dict[int, tuple[Rule, ...]] = {
            rule.id: tuple(rule.children) for rule in tree.rules.values()}
        self._roots_by_source: dict[tuple[str | None, str], tuple[Rule, ...]] = {}
        #: recent evaluations of walks that tested no correlation state: for the same
        #: decoder, fields, program, host, location and message they are the same
        self._recent: dict[tuple, Evaluation] = {}
        self._state_tested = False
        #: the reference (compiled=False) keeps no recent walks: each event is walked
        self._remembers = compiled
        if compiled:
            from arguard.ruleset.plan import CompiledWalk
            self._walk = CompiledWalk(self).walk
        else:
            self._walk = self._reference_walk

    def _tested(self) -> None:
        self._state_tested = True

    def _marked(self, checks: tuple[Check, ...]) -> tuple[Check, ...]:
        """Volatile checks (the event's time) mark the walk that tests them, as the state
        checks do, so that the walk cache does not keep it."""
        if not any(check.volatile for check in checks):
            return checks
        return tuple(MarkedCheck(check, self._tested) if check.volatile else check
                     for check in checks)

    def _first_seen_checks(self, rule: Rule) -> tuple[Check, ...]:
        if not rule.if_fts:
            return ()
        store = self.first_seen
        if store is None:
            raise ValueError(f"rule {rule.id} has if_fts: the engine needs a first-seen store")

        def new(event: Event) -> bool:
            self._state_tested = True
            key = first_seen_key(event)
            return key is not None and store(key, event.time)

        return (FirstSeenCheck(new),)

    def _state_checks(self, rule: Rule) -> tuple[Check, ...]:
        if not (rule.ignore or rule.frequency is not None):
            return ()
        key_of = self.keys.key
        table = self.ignores.get(rule.id)
        windows = self.windows.get(rule.id)
        frequency = rule.frequency
        different = self._different

        def state(event: Event) -> bool:
            self._state_tested = True
            key = key_of(rule, event)
            if table is not None and key is not None and table.ignored(key, event.time):
                return False
            if windows is None:
                return True
            if key is None:
                return False
            return windows.count(key, event.time, different(rule, event)) >= frequency

        return (StateCheck(state),)

    def roots_for(self, event: Event) -> tuple[Rule, ...]:
        """The root rules whose decoded_as/category can accept this event, in tree order:
        most lines of a busy log come from programs no root rule is about."""
        source = (event.decoder, event.category)
        roots = self._roots_by_source.get(source)
        if roots is None:
            roots = self._roots_by_source[source] = tuple(
                rule for rule in self.tree.roots
                if _root_accepts(rule, event.decoder, event.category))
        return roots

    def uses_lowered_fields(self, rules: tuple[Rule, ...]) -> bool:
        """Whether a rule reachable from `rules` tests a decoded field's literals."""
        seen: set[int] = set()
        pending = list(rules)
        while pending:
            rule = pending.pop()
            if rule.id in seen:
                continue
            seen.add(rule.id)
            if any(isinstance(check, ValueLiterals) for check in self.checks[rule.id]):
                return True
            pending.extend(self.children[rule.id])
        return False

    def adopt_state(self, previous: "Engine") -> int:
        """Take over the correlation windows and ignore tables of the engine this one replaces
        (a reload), for every rule whose correlation settings did not change, so that an
        attack in progress is still counted across a reload. Returns the rules carried over."""
        carried = 0
        for rule_id, windows in self.windows.items():
            old = previous.windows.get(rule_id)
            if old is not None and _same_correlation(old.rule, windows.rule):
                windows.adopt(old)
                carried += 1
        for rule_id, table in self.ignores.items():
            old_table = previous.ignores.get(rule_id)
            if old_table is not None and previous.tree.rules[rule_id].ignore == \
                    self.tree.rules[rule_id].ignore:
                table.until = old_table.until
        return carried

    def count_remote(self, rule_id: int, key: tuple[str | int, ...], at: float,
                     line: str) -> bool:
        """Count an event another host counted for a fleet-scoped rule (`line` stands for
        its log line, which stays on that host); False when this ruleset has no such
        fleet-scoped rule or the key does not fit it."""
        if self._fleet_rule(rule_id, key) is None:
            return False
        self.windows[rule_id].add(key, at, None, line)
        return True

    def reset_remote(self, rule_id: int, key: tuple[str | int, ...]) -> bool:
        """Another host fired a fleet-scoped rule for this key: its count restarts here."""
        if self._fleet_rule(rule_id, key) is None:
            return False
        self.windows[rule_id].reset(key)
        return True

    def _fleet_rule(self, rule_id: int, key: tuple[str | int, ...]) -> Rule | None:
        rule = self.tree.rules.get(rule_id)
        if rule is None or rule.scope != "fleet" or len(key) != len(rule.same):
            return None
        return rule

    def correlation_keys(self) -> int:
        """How many correlation keys are held now (for status and memory checks)."""
        return (sum(len(w.keys) for w in self.windows.values())
                + sum(len(t.until) for t in self.ignores.values()))

    def evaluate(self, event: Event) -> Evaluation:
        pre = event.pre
        message = pre.message
        key = None
        if self._remembers and len(message) <= _RECENT_MESSAGE_LIMIT:
            key = (event.decoder, event.category, pre.program_name, pre.hostname,
                   event.line.location, message, tuple(event.fields.items()))
            evaluation = self._recent.get(key)
            if evaluation is not None:
                if evaluation.rule is not None:
                    self._after(evaluation.rule, evaluation.chain, event)
                return evaluation
        self._state_tested = False
        chain = self._walk(event)
        if chain:
            final = chain[-1]
            evaluation = Evaluation(final, chain, self._after(final, chain, event))
        else:
            evaluation = _NO_RULE
        if key is not None and not self._state_tested:
            if len(self._recent) >= _RECENT_LIMIT:
                self._recent.clear()
            self._recent[key] = evaluation
        return evaluation

    def _reference_walk(self, event: Event) -> tuple[Rule, ...]:
        """Each rule's checks evaluated one by one (the compiled walk's reference)."""
        message = event.pre.message
        context = Context(event, message, message.lower(), event.fields)
        checks = self.checks

        def first(level: tuple[Rule, ...], start: int) -> int | None:
            for index in range(start, len(level)):
                if all(check.holds(context) for check in checks[level[index].id]):
                    return index
            return None

        chain: list[Rule] = []
        taken: list[tuple[tuple[Rule, ...], int]] = []
        level, start = self.roots_for(event), 0
        while True:
            index = first(level, start)
            if index is not None:
                rule = level[index]
                chain.append(rule)
                taken.append((level, index))
                level, start = self.children[rule.id], 0
            elif chain and chain[-1].noalert:
                chain.pop()
                level, index = taken.pop()
                start = index + 1
            else:
                return tuple(chain)

    def _after(self, final: Rule, chain: tuple[Rule, ...], event: Event) -> tuple[str, ...]:
        """Count the event for the rules watching its rule, start the counts of the
        frequency rules it fired again; the lines those had counted."""
        now = event.time
        key_of = self.keys.key
        shared = self.shared
        previous: tuple[str, ...] = ()
        for rule in chain:
            if rule.frequency is not None and rule.restarts:
                key = key_of(rule, event)
                if key is not None:
                    previous = self.windows[rule.id].reset(key) or previous
                    if shared is not None and rule.scope == "fleet":
                        shared.fired(rule, key, now)
        if final.ignore:
            key = key_of(final, event)
            if key is not None:
                self.ignores[final.id].set(key, now + final.ignore, now)
        watchers = self.tree.watchers_by_sid.get(final.id, ())
        if self.tree.watchers_by_group:
            extra = [w for group in final.groups
                     for w in self.tree.watchers_by_group.get(group, ())]
            if extra:
                watchers = [*watchers, *extra]
        for watcher in watchers:
            key = key_of(watcher, event)
            if key is not None:
                self.windows[watcher.id].add(key, now, self._different(watcher, event),
                                             event.line.text)
                if shared is not None and watcher.scope == "fleet":
                    shared.counted(watcher, key, now)
        return previous

    def _different(self, rule: Rule, event: Event) -> tuple | None:
        if not rule.different:
            return None
        return self.keys.values(rule.different, event)
