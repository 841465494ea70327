"""`arguard ruletest`: Wazuh's ruleset tests run against arguard's ruleset.

The test files are Wazuh's own (`ruleset/testing/tests/*.ini`), read as Wazuh's
`ruleset/testing/runtests.py` reads them: every section is one case; each distinct key
`log N pass` or `log N fail` is one logtest session of its own, and repeated identical keys are
fed to that one session in order (that is how frequency rules such as 5763 are tested). The
result of a session is the last line's rule id, its level and the parent decoder's name
(`wazuh-logtest -U rule:level:decoder`); a `pass` key must give the section's `rule`, `alert`
and `decoder`, a `fail` key anything else.
"""

from __future__ import annotations

import configparser
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from arguard.model import Line
from arguard.pipeline import Pipeline
from arguard.ruleset.files import Ruleset


class _RepeatedKeys(OrderedDict):
    """runtests.py's MultiOrderedDict: the values of a key given several times in a section are
    collected (configparser then joins them, one line each)."""

    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


@dataclass(frozen=True)
class Case:
    """One logtest session of a test file."""

    file: Path
    section: str
    key: str
    lines: tuple[str, ...]
    expect_match: bool
    rule: str
    level: str
    decoder: str

    @property
    def expected(self) -> tuple[str, str, str]:
        return self.rule, self.level, self.decoder


@dataclass(frozen=True)
class Result:
    case: Case
    got: tuple[str, str, str]

    @property
    def passed(self) -> bool:
        return (self.got == self.case.expected) == self.case.expect_match


class RuleTestError(ValueError):
    """A test file that cannot be read as Wazuh's runner would."""


def read_cases(path: Path) -> list[Case]:
    parser = configparser.RawConfigParser(dict_type=_RepeatedKeys, strict=False)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError) as error:
        raise RuleTestError(f"{path}: {error}") from None
    cases = []
    for section in parser.sections():
        try:
            expected = tuple(parser.get(section, key) for key in ("rule", "alert", "decoder"))
        except configparser.NoOptionError as error:
            raise RuleTestError(f"{path}: [{section}]: {error.message}") from None
        for key, value in parser.items(section):
            if not key.startswith("log "):
                continue
            cases.append(Case(path, section, key, tuple(value.split("\n")),
                              not key.endswith(" fail"), *expected))
    return cases


def run_case(ruleset: Ruleset, case: Case) -> Result:
    """One fresh session, as one `wazuh-logtest` process is. Time is processing time, as in
    wazuh-logtest (Wazuh's tests rely on it: 5719's lines are six days apart), not the lines'
    own timestamps that `arguard logtest` correlates on."""
    pipeline = Pipeline(ruleset, line_time=False)
    outcome = None
    for text in case.lines:
        outcome = pipeline.process(Line(text, "stdin", time.time()))
    rule = outcome.evaluation.rule if outcome is not None else None
    decoder = outcome.event.decoder if outcome is not None else None
    return Result(case, ("" if rule is None else str(rule.id),
                         "" if rule is None else str(rule.level), decoder or ""))


def ini_files(paths: list[Path]) -> list[Path]:
    """The .ini files named, directories expanded (in name order)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix == ".ini"))
        else:
            found.append(path)
    return found


def run_files(ruleset: Ruleset, paths: list[Path]) -> dict[Path, list[Result]]:
    return {path: [run_case(ruleset, case) for case in read_cases(path)]
            for path in ini_files(paths)}


def _shown(triple: tuple[str, str, str]) -> str:
    rule, level, decoder = triple
    return f"rule {rule or '-'} level {level or '-'} decoder {decoder or '-'}"


def report(results: dict[Path, list[Result]], out: IO[str]) -> None:
    """Per file `passed/total`, then every failing case with what it gave."""
    width = max((len(path.name) for path in results), default=0)
    for path, file_results in results.items():
        passed = sum(result.passed for result in file_results)
        out.write(f"{path.name:<{width}}  {passed:>3}/{len(file_results):<3}\n")
    failures = [result for file_results in results.values() for result in file_results
                if not result.passed]
    total = sum(len(file_results) for file_results in results.values())
    passed = total - len(failures)
    share = passed / total if total else 1.0
    out.write(f"{'total':<{width}}  {passed:>3}/{total:<3} ({share:.1%})\n")
    for result in failures:
        case = result.case
        wanted = ("" if case.expect_match else "not ") + _shown(case.expected)
        out.write(f"\nFAILED {case.file.name} [{case.section}] {case.key}\n"
                  f"  expected {wanted}\n  got      {_shown(result.got)}\n"
                  f"  last line: {_cut(case.lines[-1])}\n")


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"
