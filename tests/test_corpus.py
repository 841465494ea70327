"""fail2ban's annotated test logs (../shared/corpus/fail2ban) against the shipped ruleset.

For every annotated line whose expected host is an IP literal, arguard must decode that very
address or none at all: a wrong address is worse than none, because it would block someone
else. The share of such lines arguard decodes is reported, and may not drop below today's.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from arguard.decode.decoders import normalise_address
from arguard.model import Line
from arguard.pipeline import Pipeline
from tests.conftest import SHARED, coverage_key, require_corpus

CORPUS = SHARED / "corpus" / "fail2ban"
FILES = ("sshd", "sshd-journal", "pam-generic", "nginx-http-auth", "nginx-botsearch",
         "apache-auth", "apache-badbots", "apache-noscript")
# The share decoded today, kept as a floor: hardening may never cost coverage unnoticed.
MINIMUM_COVERAGE = {"sshd": 0.99, "sshd-journal": 0.98, "pam-generic": 0.75,
                    "nginx-http-auth": 0.88, "nginx-botsearch": 1.0, "apache-auth": 0.97,
                    "apache-badbots": 1.0, "apache-noscript": 0.92}
_JOURNAL_LINE = re.compile(r"^(?P<host>\S+) (?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)$")


@dataclass
class Sample:
    number: int
    text: str
    host: str | None


def annotated_samples(path: Path) -> list[Sample]:
    samples: list[Sample] = []
    pending: dict | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                 .splitlines(), start=1):
        if raw.startswith("#"):
            marker = re.match(r"^#+ ?failJSON:(.+)$", raw)
            if marker:
                pending = json.loads(marker.group(1))
            continue
        if not raw.strip():
            continue
        if pending is not None:
            host = pending.get("host")
            samples.append(Sample(number, raw, host if _is_ip(host) else None))
        pending = None
    return samples


def _is_ip(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def corpus_line(name: str, sample: Sample) -> Line:
    if name == "sshd-journal":
        match = _JOURNAL_LINE.match(sample.text)
        assert match, f"unexpected journal sample {sample.text!r}"
        return Line(match.group("msg"), "journal", 0.0, program_name=match.group("prog"),
                    hostname=match.group("host"), timestamp=0.0, pid=match.group("pid"))
    return Line(sample.text, name, 0.0)


@pytest.fixture(autouse=True)
def corpus_present(request):
    require_corpus(request, CORPUS)


@pytest.mark.parametrize("name", FILES)
def test_decoded_addresses_match_annotations(name, shipped_ruleset, request):
    pipeline = Pipeline(shipped_ruleset, line_time=False)
    wrong, decoded, total = [], 0, 0
    for sample in annotated_samples(CORPUS / name):
        outcome = pipeline.process(corpus_line(name, sample))
        got = outcome.event.fields.get("srcip")
        if sample.host is None:
            continue
        total += 1
        if got is None:
            continue
        if got != normalise_address(sample.host):
            wrong.append(f"{name}:{sample.number}: expected {sample.host}, decoded {got}: "
                         f"{sample.text[:120]!r}")
        else:
            decoded += 1
    share = decoded / total if total else 1.0
    request.config.stash.setdefault(coverage_key, []).append(
        f"{name:<16} {decoded:>4}/{total:<4} lines with an IP host decoded ({share:.1%}), "
        f"{len(wrong)} wrong")
    assert not wrong, "\n".join(wrong)
    assert share >= MINIMUM_COVERAGE.get(name, 0.0), f"{name}: coverage {share:.1%}"
