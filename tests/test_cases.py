"""Detection cases as data: every tests/cases/*.txt file runs as one logtest session.

Format (see tests/cases/README.md): an unindented line is a log line (`@journal PROGRAM
MESSAGE` for a journal entry); the indented `key: value` lines after it are what arguard
must report for it. A directory beside a case file with its name (`lists.txt`, `lists/`) holds
what its session loads besides the shipped ruleset: `decoders.d/`, `rules.d/`, `lists/` and
`conf.d/` fragments, laid out as in /etc/arguard.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from arguard.config import load_config
from arguard.model import Line
from arguard.pipeline import Outcome, Pipeline
from arguard.ruleset.files import Ruleset, load_ruleset
from tests.conftest import write_config

CASES = sorted((Path(__file__).parent / "cases").glob("*.txt"))
JOURNAL_START = 1_795_000_000.0
# "Now" for year-less dates: they all resolve to 2026, whatever the day the tests run.
REFERENCE_TIME = time.mktime((2026, 12, 31, 12, 0, 0, 0, 0, -1))


@dataclass
class Case:
    number: int
    text: str
    expect: dict[str, str] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)


def parse_cases(path: Path) -> list[Case]:
    cases: list[Case] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0] in " \t":
            if not cases:
                raise ValueError(f"{path}:{number}: expectation before any log line")
            key, sep, value = raw.strip().partition(":")
            if not sep:
                raise ValueError(f"{path}:{number}: expected 'key: value'")
            key, value = key.strip(), value.strip()
            if key == "absent":
                cases[-1].absent.append(value)
            else:
                cases[-1].expect[key] = value
        else:
            cases.append(Case(number, raw))
    return cases


def to_line(case: Case, location: str) -> Line:
    if case.text.startswith("@journal "):
        _, program, message = case.text.split(" ", 2)
        return Line(message, "journal", JOURNAL_START + case.number, program_name=program,
                    hostname="host", timestamp=JOURNAL_START + case.number)
    return Line(case.text, location, JOURNAL_START + case.number)


def mismatches(case: Case, outcome: Outcome) -> list[str]:
    event, rule = outcome.event, outcome.evaluation.rule
    actual = {
        "decoder": event.decoder or "none",
        "child": event.decoder_child or "none",
        "rule": str(rule.id) if rule else "none",
        "level": str(rule.level) if rule else "none",
        "alert": "yes" if outcome.alert else "no",
        "ambiguous": "yes" if event.ambiguous else "no",
    }
    problems = []
    for key, wanted in case.expect.items():
        if key == "time":
            problems.extend(_time_mismatch(wanted, event.time))
            continue
        got = actual[key] if key in actual else event.fields.get(key)
        if got != wanted:
            problems.append(f"{key}: expected {wanted!r}, got {got!r}")
    for name in case.absent:
        if name in event.fields:
            problems.append(f"{name} must be absent, got {event.fields[name]!r}")
    return problems


def _time_mismatch(wanted: str, got: float) -> list[str]:
    """`time: 2020-03-25T06:37:50.176931-07:00` (with an offset: that instant) or
    `time: 2026-03-01 09:01:01` (without one: local time), to the microsecond."""
    expected = datetime.fromisoformat(wanted).timestamp()
    if abs(expected - got) < 1e-6:
        return []
    return [f"time: expected {wanted}, got {datetime.fromtimestamp(got).astimezone().isoformat()}"]


def test_case_files_exist():
    assert CASES, "tests/cases/*.txt holds the detection cases"


def ruleset_for(path: Path, shipped: Ruleset, tmp_path: Path) -> Ruleset:
    """The shipped ruleset, with the drop-ins, lists and fragments of the case file's own
    directory when it has one."""
    extra = path.with_suffix("")
    if not extra.is_dir():
        return shipped
    config = write_config(tmp_path, lists=True)
    shutil.copytree(extra, tmp_path, dirs_exist_ok=True)
    return load_ruleset(load_config(config))


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_cases(path: Path, shipped_ruleset, tmp_path):
    ruleset = ruleset_for(path, shipped_ruleset, tmp_path)
    pipeline = Pipeline(ruleset, line_time=True, reference_time=REFERENCE_TIME)
    failures = []
    cases = parse_cases(path)
    for case in cases:
        outcome = pipeline.process(to_line(case, str(path)))
        for problem in mismatches(case, outcome):
            failures.append(f"{path.name}:{case.number}: {case.text[:90]!r}: {problem}")
    assert not failures, "\n".join(failures)
    assert any(case.expect or case.absent for case in cases), f"{path.name} expects nothing"
