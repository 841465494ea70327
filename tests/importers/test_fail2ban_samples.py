"""fail2ban's own sample test, on arguard: import ../shared/corpus/fail2ban-tree/config/ and
run every annotated log of logs/ through the imported filter of the same name alone
(shipped rules off), with fail2ban's semantics (fail2ban/tests/samplestestcase.py, described
in ../shared/corpus/fail2ban/SOURCE.txt): `# failJSON:` describes the next line, `#
filterOptions:` re-runs the following lines once per option set (each its own jail here,
its state kept across the file), `# fileOptions:` is merged into every option set, `#
addFILE:` processes another log with the current options, `test.condition` and
`constraint` select blocks and lines.

A `"match": true` line must give a failure alert with that host (and that user where one is
given); every other line must give none. A failure with another address than the annotated
one is "wrong" (arguard would block someone else) and must never happen.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from arguard.config import load_config
from arguard.decode.decoders import normalise_address
from arguard.importers.fail2ban import IDS_PER_FILTER, import_fail2ban
from arguard.model import Line
from arguard.pipeline import Pipeline
from arguard.ruleset.files import load_ruleset
from tests.conftest import SHARED, coverage_key, require_corpus, write_config

TREE = SHARED / "corpus" / "fail2ban-tree"
CONFIG, LOGS = TREE / "config", TREE / "logs"
TEST_NOW = 1124013600.0   # fail2ban's test clock: 2005-08-14T10:00:00Z
_ANNOTATION = re.compile(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$")
_JOURNAL_LINE = re.compile(r"^(?P<host>\S+) (?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: "
                           r"(?P<msg>.*)$")


@dataclass
class Tally:
    ip_lines: int = 0
    ip_matched: int = 0
    name_lines: int = 0
    name_reported: int = 0
    hostless_lines: int = 0
    hostless_found: int = 0
    other_lines: int = 0
    false_failures: int = 0
    wrong: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        for name in ("ip_lines", "ip_matched", "name_lines", "name_reported",
                     "hostless_lines", "hostless_found", "other_lines", "false_failures"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.wrong += other.wrong


@dataclass
class Samples:
    """The option sets the logs use, and the import of the tree with one jail per set."""

    jails: dict[tuple[str, str], str]
    out: Path
    report: object
    root: Path


def _option_key(options: dict) -> str:
    return json.dumps({k: v for k, v in options.items() if not k.startswith("test.")},
                      sort_keys=True)


def _annotated_option_sets(name: str) -> list[dict]:
    """Every filterOptions set the log (with its addFILEs) uses, fileOptions merged."""
    found: list[dict] = [{}]
    files, index = [name], 0
    while index < len(files):
        common: dict = {}
        for line in (LOGS / files[index]).read_text(encoding="utf-8",
                                                    errors="replace").splitlines():
            match = _ANNOTATION.match(line)
            if not match:
                continue
            kind, data = match.group(1), json.loads(match.group(2))
            if kind == "fileOptions":
                common = data
            elif kind == "filterOptions":
                for options in data if isinstance(data, list) else [data]:
                    found.append({**common, **options})
            elif kind == "addFILE" and data not in files:
                files.append(data)
        index += 1
    return found


def _filters_with_logs() -> list[str]:
    if not LOGS.is_dir():
        return []
    return sorted(p.name for p in LOGS.iterdir()
                  if p.is_file() and (CONFIG / "filter.d" / f"{p.name}.conf").is_file())


@pytest.fixture(scope="module")
def samples(request, tmp_path_factory) -> Samples:
    require_corpus(request, TREE)
    root = tmp_path_factory.mktemp("f2b-samples")
    jails: dict[tuple[str, str], str] = {}
    sections = []
    for name in _filters_with_logs():
        for options in _annotated_option_sets(name):
            key = _option_key(options)
            if (name, key) in jails:
                continue
            jail = f"t{len(jails):03d}-{name}"
            jails[(name, key)] = jail
            passed = ", ".join(f'{k}="{v}"' for k, v in json.loads(key).items())
            sections.append(f"[{jail}]\nenabled = true\nfilter = {name}[{passed}]\n"
                            f"maxretry = 1\nbackend = auto\nlogpath = {root}/none.log\n")
    (root / "samples.local").write_text("\n".join(sections))
    out = root / "imported"
    report = import_fail2ban([CONFIG], out, [root / "samples.local"])
    assert not report.errors, report.errors
    return Samples(jails, out, report, root)


def _pipeline(samples: Samples, jail: str, directory: Path,
              ) -> tuple[Pipeline | None, set[int]]:
    """A logtest-style pipeline with this jail's decoders and rules only; None when its
    filter (with these options) was not translated."""
    directory.mkdir(parents=True)
    config = write_config(directory, shipped=False)
    for kind in ("decoders.d", "rules.d"):
        imported = samples.out / kind / f"60-f2b-{jail}.toml"
        if not imported.is_file():
            return None, set()
        (directory / kind / f"{jail}.toml").write_text(imported.read_text())
    ruleset = load_ruleset(load_config(config))
    base = min(ruleset.rules.rules)
    failures = {base + 1, base + 3, base + 4}
    assert max(ruleset.rules.rules) < base + IDS_PER_FILTER
    return Pipeline(ruleset, line_time=True, reference_time=TEST_NOW), failures


def _line(text: str, options: dict) -> Line:
    if options.get("logtype") == "journal":
        text = options.get("test.prefix-line", "") + text
        match = _JOURNAL_LINE.match(text)
        if match:
            return Line(match.group("msg"), "journal", TEST_NOW,
                        program_name=match.group("prog"), hostname=match.group("host"),
                        timestamp=TEST_NOW, pid=match.group("pid"))
    return Line(text, "sample", TEST_NOW)


def _is_ip(text: object) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _condition(expression: str, name: str, options: dict) -> bool:
    """The harness's `test.condition` / `constraint` expressions (Python in the corpus:
    comparisons of `name` and of `opts.get(...)`), evaluated with those two names only."""
    return bool(eval(expression, {"__builtins__": {}}, {"name": name, "opts": options}))


def run_samples(samples: Samples, name: str, directory: Path) -> Tally:
    tally = Tally()
    pipelines: dict[str, tuple[Pipeline, set[int]]] = {}

    def pipeline_for(options: dict) -> tuple[Pipeline | None, set[int]]:
        jail = samples.jails[(name, _option_key(options))]
        if jail not in pipelines:
            pipelines[jail] = _pipeline(samples, jail, directory / jail)
        return pipelines[jail]

    files, index = [name], 0
    tests: list[dict] | None = None
    while index < len(files):
        log = files[index]
        index += 1
        common: dict = {}
        ignore_block = False
        expectation: dict | None = None
        lines = (LOGS / log).read_text(encoding="utf-8", errors="replace").splitlines()
        for number, text in enumerate(lines, 1):
            match = _ANNOTATION.match(text)
            if match:
                kind, data = match.group(1), json.loads(match.group(2))
                if kind == "fileOptions":
                    common = data
                elif kind == "filterOptions":
                    tests, ignore_block = [], False
                    for options in data if isinstance(data, list) else [data]:
                        options = {**common, **options}
                        if options.get("test.condition"):
                            ignore_block = not _condition(options["test.condition"], name,
                                                          options)
                        if not ignore_block:
                            tests.append(options)
                elif kind == "addFILE":
                    if data not in files:
                        files.append(data)
                else:
                    expectation = data
                continue
            if text.startswith("#") or not text.strip():
                continue
            annotation, expectation = expectation or {}, None
            if ignore_block:
                continue
            for options in tests if tests is not None else [{}]:
                constraint = annotation.get("constraint")
                if constraint and not _condition(constraint, name, options):
                    continue
                pipeline, failure_rules = pipeline_for(options)
                fields = None
                if pipeline is not None:
                    outcome = pipeline.process(_line(text, options))
                    rule = outcome.evaluation.rule
                    if rule is not None and rule.id in failure_rules:
                        fields = outcome.event.fields
                _judge(tally, annotation, fields,
                       f"{log}:{number} {_option_key(options)}: {text[:110]!r}")
    return tally


def _judge(tally: Tally, annotation: dict, fields: dict | None, where: str) -> None:
    if not annotation.get("match", False):
        tally.other_lines += 1
        if fields is not None:
            tally.false_failures += 1
            tally.false.append(f"{where} gave {fields.get('srcip')}")
        return
    host, user = annotation.get("host"), annotation.get("user")
    got = None if fields is None else fields.get("srcip")
    right_user = user is None or fields is None or (fields.get("srcuser") or "") == user
    if host is None:
        tally.hostless_lines += 1
        tally.hostless_found += fields is not None
    elif _is_ip(host):
        tally.ip_lines += 1
        if got is None:
            tally.missed.append(f"{where}: expected {host}")
        elif got != normalise_address(host):
            tally.wrong.append(f"{where}: expected {host}, got {got}")
        elif not right_user:
            tally.missed.append(f"{where}: user {fields.get('srcuser')!r}, expected {user!r}")
        else:
            tally.ip_matched += 1
    else:
        tally.name_lines += 1
        if got is not None and got != host and _is_ip(got):
            tally.wrong.append(f"{where}: expected the name {host}, got {got}")
        tally.name_reported += got == host


def test_fail2ban_samples(samples: Samples, tmp_path: Path, request):
    report = samples.report
    summary = request.config.stash.setdefault(coverage_key, [])
    summary.append("fail2ban's sample logs with the imported filters alone (shipped rules off):")
    summary.append(f"{'filter':<22} {'IP hosts':>13} {'names':>7} {'no host':>8} "
                   f"{'false/other':>12} wrong")
    total = Tally()
    per_filter: dict[str, Tally] = {}
    for name in _filters_with_logs():
        tally = run_samples(samples, name, tmp_path / name)
        per_filter[name] = tally
        total.add(tally)
        summary.append(
            f"{name:<22} {tally.ip_matched:>5}/{tally.ip_lines:<4} "
            f"{_share(tally.ip_matched, tally.ip_lines):>6} "
            f"{tally.name_reported:>3}/{tally.name_lines:<3} "
            f"{tally.hostless_found:>3}/{tally.hostless_lines:<3} "
            f"{tally.false_failures:>4}/{tally.other_lines:<5} {len(tally.wrong):>3}")
    library = _library(samples, tmp_path / "library")
    filters = sorted(p.stem for p in (CONFIG / "filter.d").glob("*.conf")
                     if not p.name.endswith("common.conf"))
    summary.append(
        f"{'all':<22} {total.ip_matched:>5}/{total.ip_lines:<4} "
        f"{_share(total.ip_matched, total.ip_lines):>6} "
        f"{total.name_reported:>3}/{total.name_lines:<3} "
        f"{total.hostless_found:>3}/{total.hostless_lines:<3} "
        f"{total.false_failures:>4}/{total.other_lines:<5} {len(total.wrong):>3}")
    summary.append(f"filters translated (default options): {len(library)} of {len(filters)}")
    for name in sorted(set(filters) - set(library)):
        summary.append(f"  not translated: {name}: {report.filters_skipped.get(name)}")
    for name, tally in per_filter.items():
        summary.extend(f"  missed {line}" for line in tally.missed)
        summary.extend(f"  false failure {line}" for line in tally.false)

    assert not total.wrong, "\n".join(total.wrong)
    assert len(library) >= 90
    assert total.ip_matched >= 0.95 * total.ip_lines
    sshd = per_filter["sshd"]
    assert sshd.ip_matched >= 0.98 * sshd.ip_lines
    assert total.false_failures <= 0.01 * total.other_lines


def _library(samples: Samples, directory: Path) -> list[str]:
    """The filters translated with their default options (fail2ban-filters/), all loaded
    together: each must be a valid decoder and rule file, and their ids and names apart."""
    directory.mkdir()
    config = write_config(directory, shipped=False)
    names = []
    for decoders in sorted((samples.out / "fail2ban-filters").glob("*.decoders.toml")):
        name = decoders.name.removesuffix(".decoders.toml")
        names.append(name)
        (directory / "decoders.d" / f"{name}.toml").write_text(decoders.read_text())
        (directory / "rules.d" / f"{name}.toml").write_text(
            decoders.with_name(f"{name}.rules.toml").read_text())
    ruleset = load_ruleset(load_config(config))
    assert len(ruleset.decoders.roots) == len(names)
    return names


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"
