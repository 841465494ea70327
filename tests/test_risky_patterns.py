"""Patterns that can backtrack exponentially (a ReDoS in a drop-in or an imported filter):
check-config names them with file and line, and a line that would stall one is only slowed
by its time limit — the pattern counts as no match there, the other rules still run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from arguard.patterns import backtracking_risk
from tests.conftest import write_config

DECODERS = """\
[[decoder]]
name = "demo"
program_name = '^demo$'
regex = 'user=(?P<dstuser>\\w+)'
"""
RULES = """\
[[rule]]
id = 900100
level = 0
decoded_as = "demo"

[[rule]]
id = 900101
level = 6
if_sid = 900100
match = '(x+x+)+y'
description = "nested quantifier"

[[rule]]
id = 900102
level = 5
if_sid = 900100
match = '(a|aa)*c$'
description = "overlapping alternatives"

[[rule]]
id = 900103
level = 3
if_sid = 900100
user = 'alice'
description = "the line is still processed"
"""


def arguard(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arguard.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def config(tmp_path):
    path = write_config(tmp_path, shipped=False)
    (tmp_path / "decoders.d" / "demo.toml").write_text(DECODERS)
    (tmp_path / "rules.d" / "demo.toml").write_text(RULES)
    return path


def test_check_config_names_each_risky_pattern_with_file_and_line(config):
    result = arguard("check-config", "-c", str(config))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stdout
    assert "rules.d/demo.toml:10: pattern '(x+x+)+y'" in warnings[0]
    assert "another unbounded quantifier" in warnings[0]
    assert "rules.d/demo.toml:17: pattern '(a|aa)*c$'" in warnings[1]
    assert "alternatives that can start alike" in warnings[1]


def test_a_line_that_would_stall_a_pattern_is_processed_and_the_stall_logged(config):
    # about 2^40 ways to split the a's between the alternatives (the `c` of alice lets the
    # search start): without the limit this line takes hours
    line = f"Dec  1 10:00:00 web1 demo: {'x' * 40} {'a' * 40}! user=alice"
    result = arguard("logtest", "--json", "-c", str(config), stdin=line + "\n" + line + "\n")
    assert result.returncode == 0, result.stderr
    outcomes = [json.loads(text) for text in result.stdout.splitlines()]
    assert [outcome["rule"]["id"] for outcome in outcomes] == [900103, 900103]
    logged = [text for text in result.stderr.splitlines() if "ran out of its 50 ms" in text]
    assert len(logged) == 1, result.stderr  # once per pattern, not once per line
    assert "demo.toml:17: pattern '(a|aa)*c$'" in logged[0]


@pytest.mark.parametrize("pattern", [
    r'"(?:[^"\\]|\\.)*"',          # alternatives that start apart
    r'(?:\\.[^"\\]*)*',            # the unrolled loop
    r'^(\d+\.)+\d+$',              # a separator the run cannot take
    r'(?:[\w\-]+\s+)*',            # runs that stop where the next begins
    r'(?: (?!H=)[A-Za-z]{1,4}(?:=\S+)?)*',
    r'^(?P<srcip>\S+) \S+ (?P<user>\S+) \[[^\]]+\] "(?:GET|POST) ',
])
def test_linear_patterns_are_not_flagged(pattern):
    assert backtracking_risk(pattern) is None


@pytest.mark.parametrize("pattern", [r'(a+)+$', r'(\w+\s?)*$', r'(?:a[^b]*c)*x',
                                     r'(\s*\w+)*x', r'(.*,)*x', r'(a|ab)*c',
                                     r'.*foo.*bar', r'^(\d+)\s*(\d+)\s*(\d+)\s*(\d+)$'])
def test_exponential_patterns_are_flagged(pattern):
    assert backtracking_risk(pattern) is not None


def test_no_shipped_decoder_pattern_is_flagged(tmp_path):
    """Decoders run on every line: a guarded one would slow them all. (Six of Wazuh's web
    attack rules are flagged, and guarded, as Wazuh wrote them: `\\S+?/x\\S+?\\.php`.)"""
    result = arguard("check-config", "-c", str(write_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    flagged = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert flagged and all("/rules/0270-web-appsec.toml:" in line for line in flagged), flagged
