"""[fleet] and `location`: check-config names file, line and what is wrong."""

from __future__ import annotations

import socket
import textwrap

import pytest

from arguard.config import load_config
from arguard.errors import ConfigError
from tests.conftest import write_config

COMMAND = """
    [[command]]
    name = "firewall-drop"
    action = "hosts-deny"
    timeout_allowed = true
    path = "hosts.deny"
    """
FLEET = """
    [fleet]
    dsn = "postgresql://arguard@db.internal/arguard"
    """


def binding(location: str, extra: str = "") -> str:
    return f"""
    [[active_response]]
    command = "firewall-drop"
    location = "{location}"
    rules_id = [5763]
    {extra}
    """


def problems(tmp_path, *parts: str) -> list[str]:
    path = write_config(tmp_path, shipped=False,
                        extra="".join(textwrap.dedent(part) for part in parts))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return [str(problem).replace(str(tmp_path) + "/", "") for problem in raised.value.problems]


def test_a_fleet_member_shares_with_all_or_named_hosts(tmp_path):
    path = write_config(tmp_path, shipped=False, extra=textwrap.dedent(
        COMMAND + FLEET + binding("all") + binding("defined-agent", 'agent = ["web2"]')))
    config = load_config(path)
    assert config.fleet.name == socket.gethostname()
    assert config.fleet.schema == "arguard"
    assert config.fleet.trusted_origins is None
    assert [(r.location, r.agents) for r in config.active_responses] == \
        [("all", ()), ("defined-agent", ("web2",))]


def test_a_host_without_fleet_cannot_share(tmp_path):
    [problem] = problems(tmp_path, COMMAND, binding("all"))
    assert problem.startswith("arguard.toml:20: location 'all' shares the response with a "
                              "fleet: it needs a [fleet] section")


@pytest.mark.parametrize("location,extra,expected", [
    ("everywhere", "", 'location must be "local", "all"'),
    ("defined-agent", "", 'location "defined-agent" needs agent = ["host", …]'),
    ("all", 'agent = ["web2"]', 'agent is only for location = "defined-agent"'),
    ("defined-agent", 'agent = ["web 2"]', "agent must be a list of fleet host names"),
])
def test_bad_locations(tmp_path, location, extra, expected):
    [problem] = problems(tmp_path, COMMAND, FLEET, binding(location, extra))
    assert expected in problem, problem
    assert problem.startswith("arguard.toml:")


@pytest.mark.parametrize("fleet,expected", [
    ('dsn = "postgresql://arguard:s3cret@db/arguard"', "fleet.dsn holds a password"),
    ('dsn = "postgresql://arguard@db/arguard?password=s3cret"', "fleet.dsn holds a password"),
    ("dsn = \"host=db user=arguard password='s3cret'\"", "fleet.dsn holds a password"),
    ('dsn = "db.internal"', "fleet.dsn is neither a postgresql:// URL nor key=value pairs"),
    ('dsn = "postgresql://arguard@[db/arguard"', "fleet.dsn is not a valid postgresql:// URL"),
    ('name = "web1"', "[fleet] needs 'dsn'"),
    ('dsn = "host=db"\nname = "web 1"', "fleet.name: 'web 1' is not a host name"),
    ('dsn = "host=db"\ntrusted_origins = ["web1", "-"]', "fleet.trusted_origins: '-' is not"),
    ('dsn = "host=db"\nschema = "Fleet; DROP"', "fleet.schema must be a lower-case SQL name"),
    ('dsn = "host=db"\ncolour = "red"', "unknown key 'colour' in [fleet]"),
])
def test_bad_fleet_sections(tmp_path, fleet, expected):
    [problem] = problems(tmp_path, "[fleet]\n" + fleet + "\n")
    assert expected in problem, problem
    assert problem.startswith("arguard.toml:")


@pytest.mark.parametrize("rule,expected", [
    ('scope = "fleet"', 'scope = "fleet" is for frequency rules'),
    ('scope = "world"', 'scope must be "local" or "fleet"'),
    ('if_matched_sid = 5760\nfrequency = 4\ndifferent_srcip = true\nscope = "fleet"',
     'scope = "fleet" does not support different_*'),
])
def test_bad_rule_scopes(tmp_path, rule, expected):
    path = write_config(tmp_path)
    (tmp_path / "rules.d" / "fleet.toml").write_text(
        f"[[rule]]\nid = 900001\nlevel = 10\nif_sid = 5700\n{rule}\n")
    from arguard.ruleset.files import load_ruleset

    with pytest.raises(ConfigError) as raised:
        load_ruleset(load_config(path))
    assert any(expected in str(problem) for problem in raised.value.problems), \
        raised.value.problems
