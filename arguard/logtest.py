"""`arguard logtest`: feed lines through the pipeline in one session and show each phase.

The responses are applied to a Simulation of the respond stage (arguard.respond.stage), on
the lines' own clock, so each shows what the daemon would do with it: add a block, extend the
one in place, or skip it (with the reason, also in --json's `skipped`).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections import Counter
from typing import IO, BinaryIO

from arguard.alerts import predecoder_dict
from arguard.linetext import TextCounters, iter_text_lines
from arguard.model import Line, Response
from arguard.pipeline import Outcome, Pipeline
from arguard.progress import Progress
from arguard.respond.responder import Applied
from arguard.respond.stage import Simulation

MAX_LINE_BYTES = 65_536


def _response_dict(response: Response, applied: Applied) -> dict:
    return {"command": response.command, "target": response.target,
            "timeout": response.timeout, "verb": applied.verb,
            "skipped": applied.reason if applied.verb == "skip" else None}


def outcome_dict(text: str, outcome: Outcome, applied: list[Applied]) -> dict:
    event = outcome.event
    rule = outcome.evaluation.rule
    return {
        "line": text,
        "predecoder": predecoder_dict(event),
        "decoder": None if event.decoder is None else {"name": event.decoder,
                                                       "child": event.decoder_child},
        "fields": dict(event.fields),
        "ambiguous": event.ambiguous,
        "rule": None if rule is None else {"id": rule.id, "level": rule.level,
                                           "description": rule.description,
                                           "groups": list(rule.groups)},
        "alert": outcome.alert is not None,
        "responses": [_response_dict(r, a) for r, a in zip(outcome.responses, applied)],
    }


def print_outcome(text: str, outcome: Outcome, applied: list[Applied], out: IO[str]) -> None:
    event = outcome.event
    pre = event.pre
    write = out.write
    write(f"**Phase 1: Completed pre-decoding.\n\tfull event: {text!r}\n")
    if pre.header:
        for name, value in (("timestamp", pre.timestamp), ("hostname", pre.hostname),
                            ("program_name", pre.program_name)):
            if value is not None:
                write(f"\t{name}: {value!r}\n")
    if event.decoder is not None:
        write("\n**Phase 2: Completed decoding.\n")
        write(f"\tname: {event.decoder!r}\n")
        if event.decoder_child is not None:
            write(f"\tchild: {event.decoder_child!r}\n")
        for name, value in event.fields.items():
            write(f"\t{name}: {value!r}\n")
        if event.ambiguous:
            write("\tambiguous address: more than one candidate, none decoded\n")
    else:
        write("\n**Phase 2: No decoder matched.\n")
    rule = outcome.evaluation.rule
    if rule is not None:
        write("\n**Phase 3: Completed filtering (rules).\n")
        write(f"\tid: '{rule.id}'\n\tlevel: '{rule.level}'\n")
        write(f"\tdescription: {rule.description!r}\n")
        write(f"\tgroups: {list(rule.groups)!r}\n")
        if rule.mitre:
            write(f"\tmitre.id: {list(rule.mitre)!r}\n")
        write("\trule chain: " + " -> ".join(str(r.id) for r in outcome.evaluation.chain) + "\n")
        if outcome.alert is not None:
            write(f"\tfiredtimes: '{outcome.alert.firedtimes}'\n**Alert to be generated.\n")
        else:
            write("\t(level 0 / noalert: no alert)\n")
    else:
        write("\n**Phase 3: No rule matched.\n")
    for response, done in zip(outcome.responses, applied):
        if done.verb == "skip":
            write(f"**Response skipped: {response.command} {response.target}: "
                  f"{done.reason}\n")
        else:
            timeout = ("acts once, nothing kept" if done.block is None
                       else f"{response.timeout} s" if response.timeout else "permanent")
            write(f"**Response: {done.verb} {response.command} {response.target} ({timeout}, "
                  f"offence {response.offence})\n")
    write("\n")


def run_logtest(pipeline: Pipeline, simulation: Simulation, source: BinaryIO, location: str,
                mode: str, out: IO[str], progress: IO[str] | None = None) -> int:
    """`pipeline` decides with `simulation`'s policy; the responses are applied to it.
    `progress`: where --summary draws its progress bar (only on a terminal)."""
    counters = TextCounters()
    bar = Progress("logtest", _size(source), stream=progress if mode == "summary" else None)
    decoded = ambiguous = 0
    alerts: Counter[int] = Counter()
    descriptions: dict[int, tuple[int, str]] = {}
    responses: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    started = time.perf_counter()
    process = pipeline.process
    lines = (Line(text, location, time.time())
             for text in iter_text_lines(bar.reader(source, counters), MAX_LINE_BYTES, counters))
    for line, matters in pipeline.marked(lines, _itself):
        if not matters:
            continue  # no decoder or rule can take it: read, not decoded
        outcome = process(line)
        simulation.advance(outcome.event.time)
        applied = simulation.apply(outcome.responses) if outcome.responses else []
        if mode == "summary":
            if outcome.event.decoder is not None:
                decoded += 1
            ambiguous += outcome.event.ambiguous
            if outcome.alert is not None:
                rule = outcome.alert.rule
                alerts[rule.id] += 1
                descriptions[rule.id] = (rule.level, rule.description)
            for done in applied:
                (skipped if done.verb == "skip" else responses)[done.command] += 1
        elif mode == "json":
            out.write(json.dumps(outcome_dict(line.text, outcome, applied), ensure_ascii=False)
                      + "\n")
        else:
            print_outcome(line.text, outcome, applied, out)
    bar.close()
    if mode == "summary":
        elapsed = time.perf_counter() - started
        _print_summary(out, counters, decoded, ambiguous, alerts, descriptions, responses,
                       skipped, elapsed, pipeline.detection())
    return 0


def _itself(line: Line) -> Line:
    return line


def _size(source: BinaryIO) -> int | None:
    """The size of a regular file (the bar's total); None for a pipe or a terminal."""
    try:
        info = os.fstat(source.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _print_summary(out: IO[str], counters: TextCounters, decoded: int, ambiguous: int,
                   alerts: Counter[int], descriptions: dict[int, tuple[int, str]],
                   responses: Counter[str], skipped: Counter[str], elapsed: float,
                   detection: str) -> None:
    write = out.write
    write(f"Lines read:    {counters.lines}\n")
    write(f"  empty: {counters.empty}  cut: {counters.cut}  invalid UTF-8: "
          f"{counters.invalid_utf8}  NUL: {counters.nul}\n")
    write(f"Lines decoded: {decoded}\n")
    write(f"  ambiguous address (none decoded): {ambiguous}\n")
    write(f"Alerts:        {sum(alerts.values())}\n")
    for rule_id, count in sorted(alerts.items(), key=lambda item: (-item[1], item[0])):
        level, description = descriptions[rule_id]
        write(f"  {rule_id:>6}  level {level:>2}  {count:>9}  {description}\n")
    write(f"Responses:     {sum(responses.values())}\n")
    for command, count in sorted(responses.items()):
        write(f"  {command:<20} {count:>9}\n")
    if skipped:
        write(f"Skipped:       {sum(skipped.values())}\n")
        for command, count in sorted(skipped.items()):
            write(f"  {command:<20} {count:>9}\n")
    rate = counters.lines / elapsed if elapsed > 0 else 0.0
    write(f"Time:          {elapsed:.3f} s ({rate:,.0f} lines/s)\n")
    write(f"Detection:     {detection}\n")
    if hasattr(sys, "stdout"):
        out.flush()
