"""Reading a decision row strictly: anything that is not a well-formed decision is
reported with the reason, and another host's policy checks the rest."""

from __future__ import annotations

import json

import pytest

from arguard.fleet.decision import FleetDecision, Malformed, parse_decision

GOOD = {"id": 7, "uid": "9f", "origin": "web1", "verb": "add", "command": "firewall-drop",
        "target": "203.0.113.5", "created": "2027-01-15T08:00:00.5+00:00",
        "expires": "2027-01-15T10:10:00.5+02:00",
        "offence": 2, "rule_id": 5763, "alert_id": "1800000000.4", "recipients": None}


def test_a_well_formed_decision():
    decision = parse_decision(json.dumps(GOOD))
    assert decision == FleetDecision(
        verb="add", origin="web1", command="firewall-drop", target="203.0.113.5",
        created=1_800_000_000.5, expires_at=1_800_000_600.5, offence=2, rule_id=5763,
        alert_id="1800000000.4", recipients=None, uid="9f", id=7)
    assert decision.for_host("web9")
    named = parse_decision(json.dumps({**GOOD, "recipients": ["web2"]}))
    assert named.for_host("web2") and not named.for_host("web3")


@pytest.mark.parametrize("change,reason", [
    ({"id": 0}, "no valid id"),
    ({"id": "7"}, "no valid id"),
    ({"origin": "web 1; drop"}, "origin is not a host name"),
    ({"verb": "nuke"}, 'unknown verb "nuke"'),
    ({"command": ""}, "command is not a string of 1-256 characters"),
    ({"target": None}, "target is not a string of 1-256 characters"),
    ({"target": "x" * 300}, "target is not a string of 1-256 characters"),
    ({"created": "yesterday"}, "created is not a time"),
    ({"created": 1_800_000_000.5}, "created is not a time"),
    ({"created": "2027-01-15T08:00:00"}, "created is not a time"),
    ({"expires": float("inf")}, "expires is not a time"),
    ({"expires": True}, "expires is not a time"),
    ({"offence": -1}, "offence is not a positive whole number"),
    ({"rule_id": "5763"}, "rule_id is not a rule id"),
    ({"alert_id": ["x"]}, "alert_id is not a short string"),
    ({"recipients": "web2"}, "recipients is not a list of host names"),
    ({"recipients": ["web2", "../etc"]}, "recipients is not a list of host names"),
])
def test_malformed_fields_are_named(change, reason):
    result = parse_decision(json.dumps({**GOOD, **change}))
    assert isinstance(result, Malformed)
    assert result.reason == reason


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", "null", '{"id": 1', "[" * 100_000])
def test_text_that_is_not_a_decision_object(text):
    result = parse_decision(text)
    assert isinstance(result, Malformed) and result.id is None
