"""scope = "fleet": a frequency rule counts the events other hosts report (rule, key,
time), tells them its own, and restarts everywhere when one host fires it."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone

from arguard.config import load_config
from arguard.fleet.facts import SharedCorrelation
from arguard.pipeline import Pipeline
from arguard.ruleset.files import load_ruleset
from tests.conftest import write_config
from tests.ruleset.test_engine import BASE_RULES, BRUTE, DECODERS, invalid

FLEET_BRUTE = BRUTE.replace('description = "brute force"',
                            'description = "brute force"\nscope = "fleet"')


def fleet_pipeline(tmp_path, rules: str = FLEET_BRUTE,
                   name: str = "web1") -> tuple[Pipeline, SharedCorrelation]:
    tmp_path.mkdir(exist_ok=True)
    path = write_config(tmp_path, shipped=False)
    (tmp_path / "decoders.d" / "test.toml").write_text(textwrap.dedent(DECODERS))
    (tmp_path / "rules.d" / "test.toml").write_text(textwrap.dedent(BASE_RULES + rules))
    pipeline: Pipeline | None = None
    correlation = SharedCorrelation(name, lambda: pipeline.engine)
    pipeline = Pipeline(load_ruleset(load_config(path)), line_time=True, shared=correlation)
    return pipeline, correlation


def fact(ident: int, origin: str, at: float, key=("192.0.2.1",), rule_id: int = 200,
         reset: bool = False) -> tuple[int, str]:
    stamp = datetime.fromtimestamp(at, timezone.utc).isoformat()
    return ident, json.dumps({"id": ident, "origin": origin, "rule_id": rule_id,
                              "key": list(key), "at": stamp, "reset": reset})


def test_events_of_other_hosts_count_and_the_firing_restarts_the_count(tmp_path):
    pipeline, correlation = fleet_pipeline(tmp_path)
    assert [invalid(pipeline, "192.0.2.1", s) for s in range(2)] == [101, 101]
    sent = correlation.take(now=0.0)
    assert [(rule, key, reset) for rule, key, _, reset, _ in sent] == \
        [(200, ("192.0.2.1",), False)] * 2
    at = sent[-1][2]
    correlation.receive([fact(1, "web2", at + 1)])
    assert correlation.counts["in"] == 1
    assert invalid(pipeline, "192.0.2.1", 3) == 200, "2 here + 1 there + this one"
    [fired] = [f for f in correlation.take(now=0.0) if f[3]]
    assert fired[:2] == (200, ("192.0.2.1",))
    assert [invalid(pipeline, "192.0.2.1", s) for s in range(4, 7)] == [101] * 3, \
        "the count restarted"
    correlation.receive([fact(2, "web3", at + 7, reset=True)])
    assert invalid(pipeline, "192.0.2.1", 8) == 101, "another host fired: restarted again"


def test_facts_that_do_not_fit_are_not_counted(tmp_path):
    pipeline, correlation = fleet_pipeline(tmp_path)
    correlation.receive([
        fact(1, "web1", 0.0),                                   # this host's own
        fact(2, "web2", 0.0, rule_id=101),                      # not a fleet-scoped rule
        fact(3, "web2", 0.0, key=("192.0.2.1", "x")),          # a key of the wrong shape
        (4, '{"id": 4, "origin": "web2", "rule_id": 200, "key": "192.0.2.1"}'),
        (5, "not json"),
        fact(5, "web2", 0.0),                                  # an id already seen
    ])
    assert dict(correlation.counts) == {"ignored": 2, "malformed": 2}
    assert [invalid(pipeline, "192.0.2.1", s) for s in range(3)] == [101] * 3


def test_a_local_rule_tells_nobody(tmp_path):
    pipeline, correlation = fleet_pipeline(tmp_path, BRUTE)
    assert [invalid(pipeline, "192.0.2.1", s) for s in range(4)] == [101, 101, 101, 200]
    assert correlation.take(now=0.0) == []


def test_an_ipv6_prefix_counts_across_hosts_and_a_prefix_of_another_length_does_not(tmp_path):
    web1, web1_facts = fleet_pipeline(tmp_path / "web1")
    assert [invalid(web1, f"2001:db8:1:2::{n}", n) for n in (1, 2)] == [101, 101]
    sent = web1_facts.take(now=0.0)
    assert {key for _, key, _, _, _ in sent} == {("/64/20010db800010002",)}
    web2, web2_facts = fleet_pipeline(tmp_path / "web2", name="web2")
    web2_facts.receive([fact(ident, "web1", at, key) for ident, (_, key, at, _, _)
                        in enumerate(sent, 1)])
    web2_facts.receive([fact(3, "web1", sent[-1][2], ("/48/20010db80001",))])
    assert dict(web2_facts.counts) == {"in": 2, "ignored": 1}
    assert [invalid(web2, "2001:db8:1:2:ffff::9", n) for n in (3, 4)] == [101, 200], \
        "2 events of the /64 on web1 + 2 on web2"
