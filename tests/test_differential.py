"""The fast path against the reference path, line by line.

The fast path (the hyperscan prefilter in front, the compiled walk, the walk and decoder caches)
is what the daemon, `logtest --summary` and `replay` run; the reference path runs every line
through the decoders and evaluates each rule's checks one by one, with no cache. Over every
corpus, every detection case, the generated auth and web workloads, the hostile set and random
mutations of all of them, both must give the same outcome for every line: decoder, fields,
rule, level, alert and responses. The shipped ruleset is checked, and so are rulesets imported
from Wazuh's and fail2ban's own files, whose patterns arguard did not write.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from arguard.config import load_config
from arguard.model import Line
from arguard.pipeline import Pipeline
from arguard.respond.stage import Simulation
from arguard.ruleset.files import load_ruleset
from arguard.ruletest import read_cases
from benchmarks.workload import generate_auth, generate_web
from tests.conftest import SHARED, require_corpus, write_config
from tests.test_cases import CASES, parse_cases
from tests.test_hostile import FORGED_FRAGMENTS, _lines, _payloads, mutated

BATCH = 512
MUTATIONS = "\x00\t\"'[]():;,= -/\\|<>{}0123456789.aZ\u00e9\u212a\u017f\U0001f600\n"


def corpus_texts() -> list[str]:
    texts: list[str] = []
    for directory in (SHARED / "corpus" / "fail2ban", SHARED / "corpus" / "fail2ban-tree" / "logs"):
        for path in sorted(directory.iterdir()) if directory.exists() else ():
            if path.is_file() and path.name != "SOURCE.txt":
                texts.extend(line for line in path.read_text(encoding="utf-8", errors="replace")
                             .splitlines() if line and not line.startswith("#"))
    wazuh = SHARED / "corpus" / "wazuh-tests"
    for path in sorted(wazuh.glob("*.ini")) if wazuh.exists() else ():
        texts.extend(line for case in read_cases(path) for line in case.lines)
    return texts


def case_texts() -> list[str]:
    return [case.text for path in CASES for case in parse_cases(Path(path))
            if not case.text.startswith("@")]


def workload_texts() -> list[str]:
    auth = [line for _, line, _ in generate_auth(20_000, seed=5)]
    web = [line for _, line, _ in generate_web(20_000, seed=5)]
    hostile = [text for text, _ in _lines(FORGED_FRAGMENTS + _payloads(3, 40))]
    return auth + web + hostile


def outcome_of(outcome) -> tuple:
    if outcome is None:
        return (None, None, "syslog", (), False, None, ())
    event, rule = outcome.event, outcome.evaluation.rule
    responses = tuple((r.command, r.target, r.timeout, r.offence, r.skipped)
                      for r in outcome.responses)
    return (event.decoder, event.decoder_child, event.category, tuple(sorted(event.fields.items())),
            event.ambiguous, rule.id if rule else None, responses)


def run(pipeline: Pipeline, texts: list[str], fast: bool) -> list[tuple]:
    results = []
    for start in range(0, len(texts), BATCH):
        lines = [Line(text, "differential", 1_800_000_000.0 + start) for text in
                 texts[start:start + BATCH]]
        flags = pipeline.candidates(lines) if fast else None
        for index, line in enumerate(lines):
            outcome = pipeline.process(line) if flags is None or flags[index] else None
            results.append(outcome_of(outcome))
    return results


def compare(config_path: Path, texts: list[str]) -> tuple[int, int]:
    """(lines compared, lines the prefilter ruled out); fails at the first difference."""
    config = load_config(config_path)
    ruleset = load_ruleset(config)
    fast = Pipeline(ruleset, line_time=True, decide=Simulation(config).policy.decide,
                    prefilter=True)
    assert fast.prefilter is not None and fast.prefilter.disabled is None, \
        fast.prefilter and fast.prefilter.disabled
    fast.prefilter.rest = False
    reference = Pipeline(ruleset, line_time=True, decide=Simulation(config).policy.decide,
                         reference=True)
    got, expected = run(fast, texts, fast=True), run(reference, texts, fast=False)
    for text, fast_outcome, reference_outcome in zip(texts, got, expected):
        assert fast_outcome == reference_outcome, f"line {text!r}"
    return len(texts), sum(1 for outcome in got if outcome[0] is None and outcome[5] is None)


@pytest.fixture(scope="module")
def texts(request):
    require_corpus(request, SHARED / "corpus" / "fail2ban")
    base = corpus_texts() + case_texts() + workload_texts()
    return base + mutated(base, seed=13, count=30_000, alphabet=MUTATIONS)


@pytest.fixture(scope="module")
def fewer_texts(texts):
    """For the imported fail2ban filters (a hundred of them take the reference path twenty
    times as long as the shipped ruleset): the corpora and cases whole, a sample of the rest."""
    sample = random.Random(17).sample(texts[len(corpus_texts()) + len(case_texts()):], 6_000)
    return corpus_texts() + case_texts() + sample


def test_shipped_ruleset(tmp_path, texts):
    compared, ruled_out = compare(write_config(tmp_path), texts)
    assert compared > 70_000 and ruled_out > 1_000


def imported_config(tmp_path: Path, kind: str, sources: list[str]) -> Path:
    out = tmp_path / "imported"
    subprocess.run([sys.executable, "-m", "arguard.cli", "import", kind, *sources, "-o",
                    str(out)], capture_output=True, timeout=600)
    config = write_config(tmp_path, shipped=False)
    # fail2ban's import keeps every filter in fail2ban-filters/; Wazuh's writes the drop-ins
    found = {"decoders.d": out.glob("fail2ban-filters/*.decoders.toml"),
             "rules.d": out.glob("fail2ban-filters/*.rules.toml")} if kind == "fail2ban" else \
        {"decoders.d": out.glob("decoders.d/*.toml"), "rules.d": out.glob("rules.d/*.toml")}
    for directory, paths in found.items():
        for path in paths:
            (tmp_path / directory / path.name).write_text(path.read_text())
    return config


def test_imported_wazuh_ruleset(tmp_path, texts):
    xml = sorted(str(path) for path in (SHARED / "corpus" / "wazuh-ruleset").glob("*.xml"))
    compared, ruled_out = compare(imported_config(tmp_path, "wazuh", xml), texts)
    assert compared > 70_000 and ruled_out > 1_000


def test_imported_fail2ban_filters(tmp_path, fewer_texts):
    tree = SHARED / "corpus" / "fail2ban-tree" / "config"
    compared, ruled_out = compare(imported_config(tmp_path, "fail2ban", [str(tree)]),
                                 fewer_texts)
    assert compared > 7_500 and ruled_out > 1_000


def test_without_hyperscan_every_line_is_decoded_with_the_same_summary(tmp_path):
    """Where the hyperscan module cannot be imported, the pure-Python path decodes every
    line and says so; what it finds is the same."""
    log = tmp_path / "auth.log"
    log.write_text("".join(line + "\n" for _, line, _ in generate_auth(5_000, seed=3)))
    config = write_config(tmp_path)

    def summary(*prelude: str) -> list[str]:
        code = "; ".join([*prelude, "import sys", "from arguard.cli import main",
                          "sys.exit(main())"])
        result = subprocess.run([sys.executable, "-c", code, "logtest", "--summary", "-c",
                                 str(config), str(log)], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    fast = summary()
    fallback = summary("import sys", "sys.modules['hyperscan'] = None")
    assert fast[-1].startswith("Detection:     hyperscan prefilter of "), fast[-1]
    assert "lines ruled out" in fast[-1] and " 0 lines ruled out" not in fast[-1]
    assert fallback[-1].startswith("Detection:     every line decoded: no prefilter, "
                                   "hyperscan cannot be imported"), fallback[-1]
    assert [line for line in fast if not line.startswith(("Time:", "Detection:"))] == \
        [line for line in fallback if not line.startswith(("Time:", "Detection:"))]
