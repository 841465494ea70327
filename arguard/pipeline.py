"""One log line through predecode → decode → rules → (policy): the stages wired together;
events that come decoded (file integrity changes) join at the rules."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from arguard.decode.decoders import SourceMemory
from arguard.decode.predecode import Predecoder
from arguard.model import Alert, Event, Line, Response
from arguard.ruleset.engine import Engine, Evaluation
from arguard.ruleset.files import Ruleset
from arguard.store import Store

Decide = Callable[[Alert], list[Response]]


@dataclass(slots=True)
class Outcome:
    event: Event
    evaluation: Evaluation
    alert: Alert | None
    responses: list[Response]


class Pipeline:
    """Keeps the correlation state of one session (a daemon run, a logtest, a replay).

    `line_time`: correlate on each line's own timestamp (replay, logtest) instead of its
    arrival time (live following); lines without a readable timestamp use arrival time.
    `store`: where `if_fts` rules record what they have seen (the daemon's database); without
    one, a session of its own in memory (logtest, replay: as a wazuh-logtest session).
    """

    def __init__(self, ruleset: Ruleset, line_time: bool, decide: Decide | None = None,
                 reference_time: float | None = None, store: Store | None = None):
        self.predecoder = Predecoder(reference_time)
        self.decoders = ruleset.decoders
        self.source_memory = SourceMemory()
        if store is None and any(rule.if_fts for rule in ruleset.rules.rules.values()):
            store = Store(":memory:")
        self.engine = Engine(ruleset.rules, ruleset.correlation.max_keys,
                             ruleset.correlation.ipv6_prefix,
                             first_seen=store.first_seen if store is not None else None)
        self.line_time = line_time
        self.decide = decide
        self.firedtimes: Counter[int] = Counter()
        self._alerts = 0

    def adopt_state(self, previous: "Pipeline") -> None:
        """Continue the session of the pipeline this one replaces (a reload): correlation
        windows of unchanged rules and the fired-times counters carry over."""
        self.engine.adopt_state(previous.engine)
        self.source_memory = previous.source_memory
        self.firedtimes = previous.firedtimes
        self._alerts = previous._alerts

    def process(self, line: Line) -> Outcome:
        pre = self.predecoder.predecode(line)
        when = pre.time if self.line_time and pre.time is not None else line.received
        decoded = self.decoders.decode(pre, self.source_memory, line)
        if decoded is None:
            event = Event(line, pre, when)
        else:
            event = Event(line, pre, when, decoded.decoder, decoded.child, decoded.category,
                          decoded.fields, decoded.ambiguous, decoded.fts)
        return self.process_event(event)

    def process_event(self, event: Event) -> Outcome:
        """An event that needs no decoding (a file integrity change, decoded by its source
        as Wazuh's built-in syscheck decoders do) through the rules and the policy."""
        when = event.time
        evaluation = self.engine.evaluate(event)
        rule = evaluation.rule
        if rule is None or not rule.alerts:
            return Outcome(event, evaluation, None, [])
        self.firedtimes[rule.id] += 1
        self._alerts += 1
        alert = Alert(id=f"{int(when)}.{self._alerts}", rule=rule.info, event=event,
                      firedtimes=self.firedtimes[rule.id])
        responses = self.decide(alert) if self.decide is not None else []
        return Outcome(event, evaluation, alert, responses)
