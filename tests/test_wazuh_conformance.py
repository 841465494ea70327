"""Wazuh 4.14.7's own ruleset tests (../shared/corpus/wazuh-tests/*.ini), run as Wazuh's
runner runs them (arguard.ruletest), once with the shipped ruleset and once with Wazuh's own XML
of the same products (../shared/corpus/wazuh-ruleset/) imported by `arguard import wazuh` and
loaded alone.

Every case must pass except those listed here, each for a reason that docs/wazuh-compatibility.md
gives too. A case that starts passing must be taken off the list, so the list stays the truth.
"""

from __future__ import annotations

import io

import pytest

from arguard.cli import main
from arguard.config import load_config
from arguard.ruleset.files import load_ruleset
from arguard.ruletest import report, run_files
from tests.conftest import SHARED, conformance_key, require_corpus, write_config

TESTS = SHARED / "corpus" / "wazuh-tests"
XML = SHARED / "corpus" / "wazuh-ruleset"

_IIS = "its decoders are in 0380-windows_decoders.xml, which the corpus does not hold"
IMPORTED_XML_FAILURES = {
    ("web_rules.ini", "A web attack returned code 200 (success).", "log 1 pass"): _IIS,
    ("web_rules.ini", "A web page returned code 302 code", "log 1 pass"): _IIS,
    ("web_rules.ini", "A web page returned code 404 (not found)", "log 1 pass"): _IIS,
    ("web_rules.ini", "A web attacked returned code 404", "log 1 pass"): _IIS,
    ("pam.ini", "User missed the password more than one time", "log 1 pass"):
        "rule 2502 is in 0020-syslog_rules.xml, which the corpus does not hold",
}


@pytest.fixture(autouse=True)
def corpus_present(request):
    require_corpus(request, TESTS)
    require_corpus(request, XML)


def _check(results, allowed_failures, label, request) -> None:
    out = io.StringIO()
    report(results, out)
    lines = out.getvalue().splitlines()
    total = next(line for line in lines if line.startswith("total"))
    request.config.stash.setdefault(conformance_key, []).append(f"{label}: {total.split()[1]} "
                                                               f"{total.split()[2]}")
    failing = {(result.case.file.name, result.case.section, result.case.key)
               for file_results in results.values() for result in file_results
               if not result.passed}
    unexpected = failing - set(allowed_failures)
    now_passing = set(allowed_failures) - failing
    assert not unexpected, "\n".join(lines)
    assert not now_passing, f"these pass now, take them off the list: {sorted(now_passing)}"


def test_shipped_ruleset_passes_every_wazuh_test(shipped_ruleset, request):
    _check(run_files(shipped_ruleset, [TESTS]), {}, "shipped ruleset", request)


def test_wazuh_xml_imported_and_run_alone(tmp_path, request):
    imported = tmp_path / "imported"
    status = main(["import", "wazuh", *map(str, sorted(XML.glob("*.xml"))), "-o", str(imported)])
    assert status in (0, 2)  # 2: a construct was not translated (listed on stderr)
    config = write_config(tmp_path, shipped=False)
    config.write_text(config.read_text()
                      .replace('decoders_d = "decoders.d"', 'decoders_d = "imported/decoders.d"')
                      .replace('rules_d = "rules.d"', 'rules_d = "imported/rules.d"'))
    ruleset = load_ruleset(load_config(config))
    _check(run_files(ruleset, [TESTS]), IMPORTED_XML_FAILURES, "Wazuh XML imported alone",
           request)


def test_ruletest_command_prints_per_file_results_and_exits_by_outcome(tmp_path, capsys):
    case = tmp_path / "mine.ini"
    case.write_text("[ssh invalid user]\n"
                    "log 1 pass = Nov 22 13:40:01 host sshd[1]: Invalid user x from 192.0.2.1\n"
                    "rule = 5710\nalert = 5\ndecoder = sshd\n\n"
                    "[wrong expectation]\n"
                    "log 1 pass = Nov 22 13:40:01 host sshd[1]: Invalid user x from 192.0.2.1\n"
                    "rule = 5716\nalert = 5\ndecoder = sshd\n")
    assert main(["ruletest", str(case)]) == 5
    out = capsys.readouterr().out
    assert "mine.ini    1/2" in out
    assert "FAILED mine.ini [wrong expectation] log 1 pass" in out
    assert "got      rule 5710 level 5 decoder sshd" in out


def test_ruletest_names_a_broken_test_file(tmp_path, capsys):
    case = tmp_path / "broken.ini"
    case.write_text("[no expectations]\nlog 1 pass = Nov 22 13:40:01 host sshd[1]: x\n")
    assert main(["ruletest", str(case)]) == 1
    assert "broken.ini: [no expectations]: No option 'rule'" in capsys.readouterr().err
