"""`arguard replay`: the whole pipeline over old logs, in dry run, on the logs' own clock.

Several files are replayed as one log, their lines merged by time (arguard.timeorder), each
year-less date dated from its own file. Each line's own timestamp is the time: correlation
windows use it (the pipeline's line time), and the respond stage runs as a Simulation
(arguard.respond.stage) on a clock set to it, so blocks are added, extended, escalated and
lifted when they would have been that day. Nothing touches the kernel or any file.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import IO, Iterable

from arguard.config import Config
from arguard.linetext import TextCounters
from arguard.model import Line, Predecoded
from arguard.pipeline import Pipeline
from arguard.progress import Progress
from arguard.respond.responder import Applied
from arguard.respond.stage import Simulation
from arguard.ruleset.files import Ruleset
from arguard.timeorder import merged_by_time

MAX_LINE_BYTES = 64 * 1024
#: distinct source addresses counted for the "top sources" summary before pruning
SOURCE_TALLY_LIMIT = 100_000
TOP_SOURCES = 10


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    time: float
    action: str
    command: str
    target: str
    rule: int | None
    timeout: float | None
    offence: int | None
    reason: str | None

    def as_dict(self) -> dict:
        return {"time": _iso(self.time), "action": self.action, "command": self.command,
                "target": self.target, "rule": self.rule, "timeout": self.timeout,
                "offence": self.offence, "reason": self.reason}

    def as_text(self) -> str:
        timeout = "-" if self.timeout is None else f"{self.timeout:.0f}s"
        reason = f"  ({self.reason})" if self.reason else ""
        return (f"{_iso(self.time)}  {self.action:6} {self.command:16} {self.target:39} "
                f"rule={self.rule if self.rule is not None else '-'} timeout={timeout} "
                f"offence={self.offence if self.offence is not None else '-'}{reason}")


class Replay:
    def __init__(self, config: Config, ruleset: Ruleset, out: IO[str], as_json: bool,
                 progress: IO[str] | None = None):
        self.simulation = Simulation(config)
        self.clock = self.simulation.clock
        self.pipeline = Pipeline(ruleset, line_time=True, decide=self.simulation.policy.decide,
                                 prefilter=True)
        self.out = out
        self.as_json = as_json
        self.progress = progress
        self.counters = TextCounters()
        self.lines = 0
        self.alerts: Counter[int] = Counter()
        self.actions: Counter[tuple[str, str]] = Counter()
        self.sources: Counter[str] = Counter()
        self.first: float | None = None
        self.last: float | None = None

    def run(self, paths: list[Path]) -> int:
        """Replay the files as one log, their lines merged by time (arguard.timeorder)."""
        started = time.monotonic()
        total = sum(path.stat().st_size for path in paths)
        progress = Progress("replay", total, stream=self.progress)
        try:
            merged = merged_by_time(paths, MAX_LINE_BYTES, self.counters, progress)
            for (line, pre), matters in self.pipeline.marked(merged, itemgetter(0)):
                if matters:
                    self._line(line, pre)
                else:
                    self._passed(pre.time if pre.time is not None else line.received)
        finally:
            progress.close()
        self._finish(time.monotonic() - started)
        return 0

    def _line(self, line: Line, pre: Predecoded) -> None:
        outcome = self.pipeline.process(line, pre)
        self._passed(outcome.event.time)
        alert = outcome.alert
        if alert is not None:
            self.alerts[alert.rule.id] += 1
            source = alert.event.fields.get("srcip")
            if source is not None:
                self._tally(source)
            self._emit_all(self.simulation.apply(outcome.responses))

    def _passed(self, when: float) -> None:
        """A line at `when` was read (a line the prefilter ruled out only moves the clock)."""
        self.lines += 1
        for lifted_at, applied in self.simulation.advance(when):
            self._emit(applied, lifted_at)
        if self.first is None:
            self.first = when
        self.last = max(self.last or when, when)

    def _tally(self, source: str) -> None:
        self.sources[source] += 1
        if len(self.sources) > SOURCE_TALLY_LIMIT:
            self.sources = Counter(dict(self.sources.most_common(SOURCE_TALLY_LIMIT // 10)))

    def _emit_all(self, applied: Iterable[Applied]) -> None:
        for item in applied:
            self._emit(item, self.clock.now)

    def _emit(self, applied: Applied, when: float) -> None:
        block = applied.block
        timeout = None
        if block is not None and block.expires_at is not None and applied.verb in ("add", "extend"):
            timeout = block.expires_at - when
        event = TimelineEvent(
            time=when, action=applied.verb, command=applied.command,
            target=applied.target, rule=block.rule_id if block else None, timeout=timeout,
            offence=block.offence if block else None, reason=applied.reason)
        self.actions[(applied.command, applied.verb)] += 1
        self.out.write(json.dumps(event.as_dict()) + "\n" if self.as_json
                       else event.as_text() + "\n")

    def _finish(self, elapsed: float) -> None:
        still_active = self.simulation.active_blocks()
        summary = {
            "lines": self.lines, "first": _iso(self.first), "last": _iso(self.last),
            "alerts": {str(rule): count for rule, count in sorted(self.alerts.items())},
            "responses": {f"{command} {verb}": count
                          for (command, verb), count in sorted(self.actions.items())},
            "active_at_end": still_active,
            "top_sources": dict(self.sources.most_common(TOP_SOURCES)),
            "seconds": round(elapsed, 3),
        }
        if self.as_json:
            self.out.write(json.dumps({"summary": summary}) + "\n")
            return
        write = self.out.write
        write(f"\nReplayed {self.lines} lines ({summary['first']} .. {summary['last']}) "
              f"in {elapsed:.1f} s\n")
        write(f"Alerts: {sum(self.alerts.values())}\n")
        for rule, count in self.alerts.most_common():
            write(f"  {rule:>7} {count:>9}\n")
        write("Responses:\n")
        for (command, verb), count in sorted(self.actions.items()):
            write(f"  {command:16} {verb:6} {count:>9}\n")
        write(f"Blocks still active at the end: {still_active}\n")
        write("Top sources (alerts):\n")
        for source, count in self.sources.most_common(TOP_SOURCES):
            write(f"  {source:39} {count:>9}\n")


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")


def run_replay(config: Config, ruleset: Ruleset, paths: list[Path], as_json: bool,
               out: IO[str] = sys.stdout) -> int:
    return Replay(config, ruleset, out, as_json, sys.stderr).run(paths)
