"""Correlation that a flood cannot blind: bounded memory that never drops a source on its way
to firing before one-shot sources, and IPv6 sources counted per prefix."""

from __future__ import annotations

from arguard.config import load_config
from arguard.model import Line
from arguard.pipeline import Pipeline
from arguard.ruleset.correlation import Windows
from arguard.ruleset.files import load_ruleset
from arguard.ruleset.loader import Rule
from tests.conftest import write_config


def invalid_user(address: str, port: int = 22, second: int = 0) -> Line:
    return Line(f"Nov 22 10:00:{second:02d} host sshd[1]: Invalid user u from {address} "
                f"port {port}", "auth.log", 0.0)


def test_a_flood_of_one_shot_sources_does_not_push_out_an_attacker(shipped_ruleset):
    """7 failures from one address, then 150,000 one-line failures each from its own /64 (more
    keys than a rule keeps), then the attacker's 8th: rule 5712 still fires for it."""
    pipeline = Pipeline(shipped_ruleset, line_time=True)
    for port in range(7):
        assert pipeline.process(invalid_user("10.60.0.1", 1000 + port)).evaluation.rule.id == 5710
    for n in range(150_000):
        pipeline.process(invalid_user(f"2001:db8:{n >> 16:x}:{n & 0xffff:x}::1"))
    windows = pipeline.engine.windows[5712]
    assert len(windows.keys) <= windows.max_keys
    final = pipeline.process(invalid_user("10.60.0.1", 1007))
    assert final.evaluation.rule.id == 5712 and final.alert is not None


def test_ipv6_addresses_of_one_prefix_count_as_one_source(tmp_path, shipped_ruleset):
    pipeline = Pipeline(shipped_ruleset, line_time=True)
    rules = [pipeline.process(invalid_user(f"2001:db8:1:2::{n + 1:x}")).evaluation.rule.id
             for n in range(8)]
    assert rules == [5710] * 7 + [5712]
    assert pipeline.process(invalid_user("2001:db8:1:3::1")).evaluation.rule.id == 5710

    config = write_config(tmp_path, extra="correlation_ipv6_prefix = 128\n")
    per_address = Pipeline(load_ruleset(load_config(config)), line_time=True)
    rules = [per_address.process(invalid_user(f"2001:db8:1:2::{n + 1:x}")).evaluation.rule.id
             for n in range(8)]
    assert rules == [5710] * 8


#: the line each counted event brings (kept with its window)
LINE = "Nov 22 10:00:00 host sshd[1]: Invalid user u from 10.0.0.1 port 22"


def _rule(frequency: int) -> Rule:
    return Rule(id=1, level=10, file=None, line=None, order=0, frequency=frequency,
                timeframe=60, if_matched_sid=2)


def test_a_full_rule_drops_the_least_recently_seen_key_with_the_fewest_events():
    windows = Windows(_rule(frequency=5), max_keys=3)
    windows.add(("a",), 1.0, None, LINE)
    windows.add(("a",), 2.0, None, LINE)  # a: 2 events
    windows.add(("b",), 3.0, None, LINE)  # b: 1 event, seen before c
    windows.add(("c",), 4.0, None, LINE)
    windows.add(("d",), 5.0, None, LINE)  # full: b goes (fewest events, least recently seen)
    assert set(windows.keys) == {("a",), ("c",), ("d",)}
    windows.add(("c",), 6.0, None, LINE)
    windows.add(("e",), 7.0, None, LINE)  # d goes: a and c have 2 events
    assert set(windows.keys) == {("a",), ("c",), ("e",)}
    assert windows.count(("a",), 8.0, None) == 3


def test_keys_leave_once_their_newest_event_is_older_than_the_timeframe():
    windows = Windows(_rule(frequency=5), max_keys=100)
    windows.add(("a",), 1.0, None, LINE)
    windows.add(("b",), 30.0, None, LINE)
    windows.add(("c",), 70.0, None, LINE)      # a's newest event (1.0) is now outside 60 s
    assert set(windows.keys) == {("b",), ("c",)}
    assert windows.count(("b",), 95.0, None) == 1   # b's only event left the window
