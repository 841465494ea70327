"""One log line through predecode → decode → rules → (policy): the stages wired together;
events that come decoded (file integrity changes) join at the rules.

In front of them, for a batch of lines, the prefilter (arguard/prefilter.py) says which lines
can matter; the others need not be processed at all. And a line longer than LONG_LINE is
decoded and matched under a time limit: the patterns that can backtrack exponentially or in
n^3 are limited match by match (arguard/patterns.py), the others cost at most n^2, which is
milliseconds up to LONG_LINE characters, but seconds on a 64 KB line.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from itertools import islice
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

from arguard.decode.decoders import SourceMemory
from arguard.decode.predecode import Predecoder
from arguard.model import Alert, Event, Line, Predecoded, Response
from arguard.prefilter import Prefilter, build_prefilter
from arguard.ruleset.engine import Engine, Evaluation, SharedWindows
from arguard.ruleset.files import Ruleset
from arguard.store import Store

Decide = Callable[[Alert], list[Response]]
T = TypeVar("T")
log = logging.getLogger(__name__)

#: lines given to the prefilter at a time where they do not come in batches (logtest, replay)
BATCH = 512
#: lines longer than this (characters) are decoded and matched under LONG_LINE_LIMIT
LONG_LINE = 1024
#: seconds the decoders and rules may spend on one long line
LONG_LINE_LIMIT = 0.25


class _LineTimeout(Exception):
    pass


def _out_of_time(signum, frame) -> None:
    raise _LineTimeout


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
    `prefilter`: build the prefilter for `candidates` (the daemon, replay, logtest's summary:
    not for a single line). `reference`: the reference path — every line decoded and every
    rule's checks evaluated one by one, nothing reused (tests/test_differential.py).
    """

    def __init__(self, ruleset: Ruleset, line_time: bool, decide: Decide | None = None,
                 reference_time: float | None = None, store: Store | None = None,
                 prefilter: bool = False, reference: bool = False,
                 shared: SharedWindows | None = None):
        """`shared`: where fleet-scoped rules' events go (the daemon of a fleet member);
        without it they count this host's events only."""
        self.predecoder = Predecoder(reference_time)
        self.decoders = ruleset.decoders
        self.source_memory = SourceMemory()
        if store is None and any(rule.if_fts for rule in ruleset.rules.rules.values()):
            store = Store(":memory:")
        self.engine = Engine(ruleset.rules, ruleset.correlation.max_keys,
                             ruleset.correlation.ipv6_prefix,
                             first_seen=store.first_seen if store is not None else None,
                             compiled=not reference, shared=shared)
        self.prefilter: Prefilter | None = (build_prefilter(self.decoders, self.engine)
                                            if prefilter and not reference else None)
        self._recent = not reference
        self.line_time = line_time
        self.decide = decide
        self.firedtimes: Counter[int] = Counter()
        self._alerts = 0
        #: long lines that ran out of LONG_LINE_LIMIT (processed as undecoded)
        self.timed_out = 0

    def adopt_state(self, previous: "Pipeline") -> None:
        """Continue the session of the pipeline this one replaces (a reload): correlation
        windows of unchanged rules and the fired-times counters carry over."""
        self.engine.adopt_state(previous.engine)
        self.source_memory = previous.source_memory
        self.firedtimes = previous.firedtimes
        self._alerts = previous._alerts

    def candidates(self, lines: list[Line]) -> list[bool] | None:
        """Per line of a batch, whether it can matter (None: all of them). A line that
        cannot is not decoded and matches no rule: it need not be processed."""
        return self.prefilter.candidates(lines) if self.prefilter is not None else None

    def marked(self, items: Iterable[T], line_of: Callable[[T], Line]) -> Iterator[tuple[T, bool]]:
        """Each item (a line, or a line with what the caller knows of it) with whether its
        line can matter, the prefilter judging BATCH of them at a time; without a prefilter
        each as it comes (`logtest` answers a line typed at it at once)."""
        if self.prefilter is None:
            for item in items:
                yield item, True
            return
        items = iter(items)
        while batch := list(islice(items, BATCH)):
            candidates = self.candidates([line_of(item) for item in batch])
            if candidates is None:
                candidates = [True] * len(batch)
            yield from zip(batch, candidates)

    def detection(self) -> str:
        """How lines are detected, for `status` and the log."""
        if self.prefilter is None:
            return "every line decoded"
        return self.prefilter.describe()

    def process(self, line: Line, pre: Predecoded | None = None) -> Outcome:
        """`pre`: the line's header when the caller has read it already (a replay of several
        files orders their lines by it, each file with its own reference year)."""
        if len(line.text) > LONG_LINE and threading.current_thread() is threading.main_thread():
            event, evaluation = self._limited(line, pre)
        else:
            event = self._event(line, pre)
            evaluation = self.engine.evaluate(event)
        return self._conclude(event, evaluation)

    def _event(self, line: Line, pre: Predecoded | None) -> Event:
        if pre is None:
            pre = self.predecoder.predecode(line)
        when = pre.time if self.line_time and pre.time is not None else line.received
        decoded = self.decoders.decode(pre, self.source_memory, line, self._recent)
        if decoded is None:
            return Event(line, pre, when)
        return Event(line, pre, when, decoded.decoder, decoded.child, decoded.category,
                     decoded.fields, decoded.ambiguous, decoded.fts)

    def _limited(self, line: Line, pre: Predecoded | None) -> tuple[Event, Evaluation]:
        """A long line's decoding and matching under LONG_LINE_LIMIT (an interval timer: the
        pattern engines look for signals as they run); out of time, it is an undecoded line
        that matched no rule, counted and logged."""
        previous = signal.signal(signal.SIGALRM, _out_of_time)
        try:
            signal.setitimer(signal.ITIMER_REAL, LONG_LINE_LIMIT)
            try:
                event = self._event(line, pre)
                return event, self.engine.evaluate(event)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _LineTimeout:
            self.timed_out += 1
            if self.timed_out == 1 or self.timed_out % 1000 == 0:
                log.warning("a line of %d characters from %s took the decoders and rules more "
                            "than %.0f ms: processed as undecoded (%d such lines so far)",
                            len(line.text), line.location, LONG_LINE_LIMIT * 1000,
                            self.timed_out)
            return Event(line, Predecoded(line.text), line.received), Evaluation(None, ())
        finally:
            signal.signal(signal.SIGALRM, previous)

    def process_event(self, event: Event) -> Outcome:
        """An event that needs no decoding (a file integrity change, decoded by its source
        as Wazuh's built-in syscheck decoders do) through the rules and the policy."""
        return self._conclude(event, self.engine.evaluate(event))

    def _conclude(self, event: Event, evaluation: Evaluation) -> Outcome:
        when = event.time
        rule = evaluation.rule
        if rule is None or not rule.alerts:
            return Outcome(event, evaluation, None, [])
        self.firedtimes[rule.id] += 1
        self._alerts += 1
        alert = Alert(id=f"{int(when)}.{self._alerts}", rule=rule.info, event=event,
                      firedtimes=self.firedtimes[rule.id], previous=evaluation.previous)
        responses = self.decide(alert) if self.decide is not None else []
        return Outcome(event, evaluation, alert, responses)
