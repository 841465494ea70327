"""A decision of another fleet host goes through this host's own policy: its white list,
its commands, trusted_origins, the decision's absolute expiry."""

from __future__ import annotations

import pytest

from arguard.model import Origin
from arguard.respond.policy import Policy
from arguard.respond.stage import build_respond_stage
from arguard.store import Store
from tests.respond.test_policy import make_alert, make_config

FLEET = """
    [fleet]
    dsn = "postgresql://arguard@db/arguard"
    name = "web2"
    trusted_origins = ["web1", "web3"]
    """
BINDINGS = """
    [[active_response]]
    command = "firewall-drop"
    location = "defined-agent"
    agent = ["web1", "web3"]
    rules_id = [5712]
    timeout = 600
    """


@pytest.fixture
def policy(tmp_path) -> Policy:
    return Policy(make_config(tmp_path, FLEET + BINDINGS,
                              '[global]\nwhite_list = ["192.0.2.0/24"]\n'))


def origin(host: str = "web1", expires_at: float | None = 2_000.0) -> Origin:
    return Origin(host, 42, 5712, "1000.1", expires_at)


@pytest.mark.parametrize("command,target,source,refused", [
    ("firewall-drop", "203.0.113.5", origin(), None),
    ("firewall-drop", "192.0.2.7", origin(), "white-listed"),
    ("firewall-drop", "127.0.0.1", origin(), "loopback"),
    ("firewall-drop", "203.0.113.0/24", origin(), "network, not an address"),
    ("rm-rf", "203.0.113.5", origin(), "unknown command"),
    ("firewall-drop", "203.0.113.5", origin("web9"),
     "origin 'web9' is not in fleet.trusted_origins"),
    ("firewall-drop", "203.0.113.5", origin(expires_at=999.0), "expired"),
])
def test_fleet_responses_are_checked_here(policy, command, target, source, refused):
    response = policy.fleet_response(command, target, source, offence=2, now=1_000.0)
    assert response.skipped == refused
    assert response.origin == source


def test_the_block_keeps_the_origin_s_absolute_expiry_rule_and_alert(tmp_path, policy):
    stage = build_respond_stage(policy.config, Store(":memory:"), dry_run=True,
                                clock=lambda: 1_000.0)
    response = stage.policy.fleet_response("firewall-drop", "203.0.113.5", origin(), 2,
                                           now=1_000.0)
    [applied] = stage.responder.apply([response])
    assert applied.verb == "add"
    block = applied.block
    assert (block.expires_at, block.rule_id, block.alert_id, block.offence) == \
        (2_000.0, 5712, "1000.1", 2)


def test_a_defined_agent_response_runs_only_on_named_hosts(policy):
    stage = build_respond_stage(policy.config, Store(":memory:"), dry_run=True)
    [response] = stage.policy.decide(make_alert(5712, srcip="203.0.113.5"))
    assert (response.location, response.agents) == ("defined-agent", ("web1", "web3"))
    [applied] = stage.responder.apply(stage.here([response]))
    assert (applied.verb, applied.reason) == ("skip", "location defined-agent: for web1, web3")
    assert stage.share([response]) == 1, "it goes to the fleet"


def test_an_unblock_from_an_untrusted_host_is_refused(policy):
    assert policy.fleet_unblock("firewall-drop", "203.0.113.5", origin("web9")) == \
        "origin 'web9' is not in fleet.trusted_origins"
    assert policy.fleet_unblock("firewall-drop", "203.0.113.5", origin()) == []


def test_an_operator_unblock_of_a_target_is_shared_unblock_all_is_not(tmp_path):
    config = make_config(tmp_path, FLEET + BINDINGS.replace(
        'location = "defined-agent"\n    agent = ["web1", "web3"]', 'location = "all"'))
    store = Store(":memory:")
    stage = build_respond_stage(config, store, dry_run=True)
    for target in ("203.0.113.5", "203.0.113.6"):
        assert stage.block(target, "firewall-drop", 600).verb == "add"
    assert [a.verb for a in stage.unblock("203.0.113.5")] == ["delete"]
    [(_, shared)] = store.fleet_outbox("web2")
    assert (shared.verb, shared.command, shared.target, shared.recipients) == \
        ("delete", "firewall-drop", "203.0.113.5", None)
    assert [a.verb for a in stage.unblock(None)] == ["delete"]
    assert store.fleet_outbox_depth() == 1, "unblock --all stays on this host"
