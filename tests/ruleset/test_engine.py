"""Rule evaluation and correlation semantics, on small decoder and rule files of our own."""

from __future__ import annotations


import pytest

from arguard.model import Line
from arguard.pipeline import Pipeline
from tests.conftest import pipeline_with

DECODERS = """
[[decoder]]
name = "sshd"
program_name = '^sshd$'

[[decoder]]
name = "sshd-invalid"
parent = "sshd"
prematch = '^Invalid user '
regex = '^Invalid user (?P<srcuser>\\S*) from (?P<srcip>[0-9a-f:.]+) port \\d+$'

[[decoder]]
name = "sshd-failed"
parent = "sshd"
prematch = '^Failed password '
regex = '^Failed password for (?P<srcuser>\\S+) from (?P<srcip>[0-9a-f:.]+) port \\d+$'

[[decoder]]
name = "web"
prematch = '^\\S+ - '
regex = '^(?P<srcip>[0-9a-f:.]+) - \\S+ "(?P<url>[^"]*)" (?P<id>\\d+)$'
type = "web-log"
"""

BASE_RULES = """
[[rule]]
id = 100
level = 0
decoded_as = "sshd"

[[rule]]
id = 101
level = 5
if_sid = 100
match = 'invalid user'
groups = ["invalid_login"]
description = "invalid user"

[[rule]]
id = 102
level = 5
if_sid = 100
match = '^Failed password'
groups = ["authentication_failed"]
description = "failed password"
"""


def make_pipeline(tmp_path, rules: str, decoders: str = DECODERS) -> Pipeline:
    return pipeline_with(tmp_path, decoders, BASE_RULES + rules)


def invalid(pipeline: Pipeline, address: str, second: int, user: str = "x") -> int | None:
    minute, sec = divmod(second, 60)
    hour, minute = divmod(minute, 60)
    text = (f"Nov 22 {10 + hour:02d}:{minute:02d}:{sec:02d} host sshd[1]: "
            f"Invalid user {user} from {address} port 22")
    rule = pipeline.process(Line(text, "test", 0.0)).evaluation.rule
    return rule.id if rule else None


BRUTE = """
[[rule]]
id = 200
level = 10
if_matched_sid = 101
frequency = 4
timeframe = 60
same_srcip = true
description = "brute force"
"""


def test_fires_on_the_fth_event_not_before(tmp_path):
    pipeline = make_pipeline(tmp_path, BRUTE)
    results = [invalid(pipeline, "192.0.2.1", second) for second in range(4)]
    assert results == [101, 101, 101, 200]


def test_different_sources_do_not_add_up(tmp_path):
    pipeline = make_pipeline(tmp_path, BRUTE)
    results = [invalid(pipeline, f"192.0.2.{n % 2 + 1}", n) for n in range(6)]
    assert results == [101] * 6
    assert invalid(pipeline, "192.0.2.1", 7) == 200


def test_count_restarts_after_firing(tmp_path):
    pipeline = make_pipeline(tmp_path, BRUTE)
    results = [invalid(pipeline, "192.0.2.1", second) for second in range(8)]
    assert results == [101, 101, 101, 200, 101, 101, 101, 200]


def test_events_outside_the_timeframe_do_not_count(tmp_path):
    pipeline = make_pipeline(tmp_path, BRUTE)
    assert [invalid(pipeline, "192.0.2.1", s) for s in (0, 1, 2)] == [101, 101, 101]
    # 70 s later the first three are outside the 60 s window
    assert [invalid(pipeline, "192.0.2.1", s) for s in (70, 71, 72)] == [101, 101, 101]
    assert invalid(pipeline, "192.0.2.1", 73) == 200


def test_ignore_is_per_source(tmp_path):
    pipeline = make_pipeline(tmp_path, BRUTE.replace("timeframe = 60", "timeframe = 60\nignore = 600"))
    assert [invalid(pipeline, "192.0.2.1", s) for s in range(4)][-1] == 200
    # the same source inside its ignore window does not fire again ...
    assert [invalid(pipeline, "192.0.2.1", s) for s in range(4, 12)] == [101] * 8
    # ... but a second attacker inside that window is still detected
    assert [invalid(pipeline, "198.51.100.7", s) for s in range(12, 16)][-1] == 200
    # after the window the first source fires again
    assert [invalid(pipeline, "192.0.2.1", s) for s in range(700, 704)][-1] == 200


def test_same_user_and_different_srcip(tmp_path):
    rules = """
    [[rule]]
    id = 201
    level = 10
    if_matched_sid = 101
    frequency = 3
    timeframe = 60
    same_user = true
    different_srcip = true
    description = "one user from many addresses"
    """
    pipeline = make_pipeline(tmp_path, rules)
    # the same address three times is one distinct source
    assert [invalid(pipeline, "192.0.2.1", s, user="bob") for s in range(3)] == [101] * 3
    assert invalid(pipeline, "192.0.2.2", 3, user="bob") == 101
    assert invalid(pipeline, "192.0.2.3", 4, user="alice") == 101
    assert invalid(pipeline, "192.0.2.3", 5, user="bob") == 201


def test_children_by_descending_level_then_file_order(tmp_path):
    rules = """
    [[rule]]
    id = 300
    level = 3
    if_sid = 101
    match = 'from 192'
    description = "low"

    [[rule]]
    id = 301
    level = 8
    if_sid = 101
    match = 'port 22'
    description = "high, later in the file"

    [[rule]]
    id = 302
    level = 8
    if_sid = 101
    match = 'Invalid'
    description = "high, even later"
    """
    pipeline = make_pipeline(tmp_path, rules)
    assert invalid(pipeline, "192.0.2.1", 0) == 301


def test_level_zero_reports_rule_without_alert(tmp_path):
    rules = """
    [[rule]]
    id = 400
    level = 0
    if_sid = 101
    user = '^trusted$'
    description = "ignore this user"
    """
    pipeline = make_pipeline(tmp_path, rules)
    line = "Nov 22 10:00:00 host sshd[1]: Invalid user trusted from 192.0.2.1 port 22"
    outcome = pipeline.process(Line(line, "test", 0.0))
    assert outcome.evaluation.rule.id == 400
    assert outcome.alert is None
    assert [r.id for r in outcome.evaluation.chain] == [100, 101, 400]


def test_noalert_rule_can_be_a_parent(tmp_path):
    rules = """
    [[rule]]
    id = 500
    level = 6
    if_sid = 101
    noalert = true
    srcip = "192.0.2.0/24"

    [[rule]]
    id = 501
    level = 7
    if_sid = 500
    srcip = ["192.0.2.0/24", "!192.0.2.128/25"]
    description = "lower half"
    """
    pipeline = make_pipeline(tmp_path, rules)
    assert invalid(pipeline, "192.0.2.5", 0) == 501
    # Wazuh: a noalert rule none of whose children matched is no result; the walk goes on
    # with its later siblings and, failing those, ends at the parent.
    high = pipeline.process(Line(
        "Nov 22 10:00:01 host sshd[1]: Invalid user x from 192.0.2.200 port 22", "t", 0.0))
    assert high.evaluation.rule.id == 101 and high.alert is not None
    assert [r.id for r in high.evaluation.chain] == [100, 101]
    assert invalid(pipeline, "198.51.100.1", 2) == 101


def test_noalert_rule_without_matching_child_lets_a_later_sibling_match(tmp_path):
    rules = """
    [[rule]]
    id = 510
    level = 0
    if_sid = 101
    noalert = true
    match = 'Invalid user'

    [[rule]]
    id = 511
    level = 2
    if_sid = 510
    match = 'port 2222'

    [[rule]]
    id = 512
    level = 9
    if_sid = 101
    match = 'from 192.0.2.'
    """
    pipeline = make_pipeline(tmp_path, rules)
    # level 0 is tried first (Wazuh), 510 matches but its child does not: 512 is taken
    assert invalid(pipeline, "192.0.2.9", 0) == 512
    assert invalid(pipeline, "198.51.100.9", 1) == 101


def test_level_zero_children_are_tried_before_higher_levels(tmp_path):
    rules = """
    [[rule]]
    id = 520
    level = 12
    if_sid = 101
    match = 'Invalid user'
    description = "alerting sibling, loaded first"

    [[rule]]
    id = 521
    level = 0
    if_sid = 101
    match = 'from 192.0.2.'
    description = "ignore this network"
    """
    pipeline = make_pipeline(tmp_path, rules)
    assert invalid(pipeline, "192.0.2.9", 0) == 521
    assert invalid(pipeline, "198.51.100.9", 1) == 520


def test_field_conditions_negation_and_category(tmp_path):
    rules = """
    [[rule]]
    id = 600
    level = 0
    category = "web-log"

    [[rule]]
    id = 601
    level = 5
    if_sid = 600
    field.id = '^4'
    description = "4xx"

    [[rule]]
    id = 602
    level = 6
    if_sid = 601
    url = { pattern = '\\.(?:png|css)$', negate = true }
    description = "4xx on a page, not an asset"
    """
    pipeline = make_pipeline(tmp_path, rules)

    def web(url: str, status: int) -> int | None:
        rule = pipeline.process(Line(f'192.0.2.9 - - "{url}" {status}', "web", 0.0)).evaluation.rule
        return rule.id if rule else None

    assert web("/admin.php", 404) == 602
    assert web("/logo.png", 404) == 601
    assert web("/index.html", 200) == 600


def test_if_group_and_if_matched_group(tmp_path):
    rules = """
    [[rule]]
    id = 700
    level = 9
    if_group = "authentication_failed"
    user = '^root$'
    description = "root password failure"

    [[rule]]
    id = 701
    level = 12
    if_matched_group = "invalid_login"
    frequency = 2
    timeframe = 60
    same_srcip = true
    description = "two invalid logins"
    """
    pipeline = make_pipeline(tmp_path, rules)
    failed = "Nov 22 10:00:00 host sshd[1]: Failed password for root from 192.0.2.1 port 22"
    assert pipeline.process(Line(failed, "t", 0.0)).evaluation.rule.id == 700
    assert [invalid(pipeline, "192.0.2.1", s) for s in (1, 2)] == [101, 701]


def test_correlation_state_stays_bounded(tmp_path):
    """A flood of distinct addresses must not grow memory without bound."""
    pipeline = make_pipeline(tmp_path, BRUTE.replace("timeframe = 60", "timeframe = 100000"))
    engine = pipeline.engine
    engine.windows[200].max_keys = 5_000
    for n in range(50_000):
        address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        invalid(pipeline, address, n % 3600)
    assert engine.correlation_keys() <= 5_000


def test_keys_expire_with_the_timeframe(tmp_path):
    pipeline = make_pipeline(tmp_path, BRUTE)
    for n in range(1_000):
        invalid(pipeline, f"10.0.{n >> 8}.{n & 255}", 0)
    assert pipeline.engine.correlation_keys() == 1_000
    invalid(pipeline, "192.0.2.1", 3600)
    assert pipeline.engine.correlation_keys() == 1


def test_injected_address_in_user_name_is_not_the_source(tmp_path):
    pipeline = make_pipeline(tmp_path, "")
    line = ("Nov 22 10:00:00 host sshd[1]: Invalid user root from 198.51.100.7 "
            "from 203.0.113.9 port 22")
    outcome = pipeline.process(Line(line, "t", 0.0))
    assert outcome.event.fields.get("srcip") != "198.51.100.7"


@pytest.mark.parametrize("address,expected", [
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
])
def test_addresses_are_normalised(tmp_path, address, expected):
    pipeline = make_pipeline(tmp_path, "")
    line = f"Nov 22 10:00:00 host sshd[1]: Invalid user x from {address} port 22"
    assert pipeline.process(Line(line, "t", 0.0)).event.fields["srcip"] == expected


def test_literal_checks_agree_with_the_regex_on_every_shipped_pattern(shipped_ruleset,
                                                                     request):
    """Rules whose `match` is plain literal alternatives are checked with `in`/`startswith`
    on the lower-cased message; on every corpus line that must give the regex's answer, in
    the check object and in the expression the compiled walk runs."""
    from arguard.ruleset.checks import Context, MessageLiterals, Names, literal_alternatives
    from tests.conftest import SHARED, require_corpus

    require_corpus(request, SHARED / "corpus")
    messages = [line.split(": ", 1)[-1] for path in (SHARED / "corpus").rglob("*")
                if path.is_file() for line in path.read_text(errors="replace").splitlines()]
    messages += ["Invalid user admin from 1.2.3.4", "FAILED PASSWORD", "x [preauth]", ""]
    checked = 0
    for rule in shipped_ruleset.rules.rules.values():
        for condition in (rule.match, rule.regex):
            if condition is None:
                continue
            alternatives = literal_alternatives(condition)
            if alternatives is None:
                continue
            check = MessageLiterals(alternatives, condition.negate)
            names = Names()
            compiled = eval(f"lambda m, l: {check.expression(names)}", dict(names.bound))
            checked += 1
            for message in messages:
                expected = condition.holds(message)
                context = Context(None, message, message.lower(), {})
                assert check.holds(context) == expected, (rule.id, message)
                assert compiled(message, message.lower()) == expected, (rule.id, message)
    assert checked > 30


def test_maxsize_matches_messages_of_at_least_that_many_characters(tmp_path):
    rules = """
    [[rule]]
    id = 530
    level = 7
    if_sid = 101
    maxsize = 60
    description = "long line (Wazuh: size >= maxsize)"
    """
    pipeline = make_pipeline(tmp_path, rules)
    exactly = "x" * (60 - len("Invalid user  from 192.0.2.1 port 22"))
    assert invalid(pipeline, "192.0.2.1", 0, user=exactly) == 530
    assert invalid(pipeline, "192.0.2.1", 1, user=exactly[1:]) == 101
