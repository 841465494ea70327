"""docs/configuration.md documents every key the loader accepts, with the defaults the loader
uses; conf/arguard.toml shows every action with its options."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import pytest
import tomli_w

from arguard.config import TABLES, load_config
from arguard.configdoc import render
from arguard.errors import ConfigError
from arguard.respond.actions import ACTIONS, EXECUTABLE_ACTION, action_type
from arguard.respond.actions.base import REQUIRED
from tests.conftest import REPO, write_config

DOC = REPO / "docs" / "configuration.md"
SHIPPED = REPO / "conf" / "arguard.toml"


def documented() -> dict[str, set[str]]:
    """What the reference documents, read from its markdown: per section (`[paths]`,
    `[[command]]`, an action's name), the keys of its table."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        header = re.match(r"#{2,4} `(.+)`$", line)
        if header:
            current = sections.setdefault(header.group(1), set())
        row = re.match(r"\| `([a-z0-9_]+)` \|", line)
        if row and current is not None:
            current.add(row.group(1))
    return sections


def test_the_reference_is_what_the_schema_gives():
    assert DOC.read_text() == render(), \
        "docs/configuration.md is stale: python -m arguard.configdoc > docs/configuration.md"


def test_every_key_the_loader_checks_is_documented():
    sections = documented()
    for table in TABLES:
        assert sections.get(table.header) == {key.name for key in table.keys}, table.header
    for name in ACTIONS:
        described = action_type(name)
        assert sections.get(name, set()) == {option.name for option in described.options}, name


def test_the_options_users_looked_for_are_there():
    sections = documented()
    everything = set().union(*sections.values())
    for key in ("url", "format", "retries", "executable", "extra_args", "legacy_args",
                "exec_timeout", "shadow", "passwd", "min_uid", "route_type", "start_at",
                "poll"):
        assert key in everything, key
    assert "directory" in sections["[source.journal]"]


def load(tmp_path: Path, data: dict) -> None:
    """Load a configuration of these tables (its paths in tmp_path unless it sets them)."""
    base = tomllib.loads(write_config(tmp_path).read_text())
    for table, value in data.items():
        base[table] = {**base[table], **value} if table in base else value
    path = tmp_path / "arguard.toml"
    path.write_text(tomli_w.dumps(base))
    load_config(path)


BINDING = {"command": [{"name": "drop", "action": "ipset", "timeout_allowed": True}],
           "active_response": [{"command": "drop", "rules_id": [5763]}]}


def minimal(table: str, extra: dict) -> dict:
    """The smallest valid configuration with `extra` keys in one `table`."""
    if table == "source":
        return {"source": [{"path": "x.log", **extra}]}
    if table == "source.journal":
        return {"source": [{"journal": {"matches": [], **extra}}]}
    if table == "command":
        return {"command": [{"name": "c", "action": "ipset", **extra}]}
    if table == "integrity":
        return {"integrity": [{"paths": ["watched"], **extra}]}
    if table == "active_response":
        return {**BINDING, "active_response": [{"command": "drop", "rules_id": [5763],
                                                "level": 10, **extra}]}
    return {table: extra}


#: a valid value of each action option that has no default
REQUIRED_VALUES = {("webhook", "url"): "http://127.0.0.1:9/", ("kill-process", "exe"): ".*/nc"}


def action_command(name: str, extra: dict) -> dict:
    command = {"name": "c", "executable": "x"} if name == EXECUTABLE_ACTION else \
        {"name": "c", "action": name}
    if action_type(name).default_expect == "filename":
        command["expect"] = "filename"
    for option in action_type(name).options:
        if option.default is REQUIRED:
            command[option.name] = REQUIRED_VALUES[name, option.name]
    return {"command": [{**command, **extra}]}


@pytest.mark.parametrize("table", [t for t in TABLES])
def test_documented_defaults_load_and_an_undocumented_key_does_not(tmp_path, table):
    for option in table.keys:
        if option.default is not None and option.default is not REQUIRED:
            load(tmp_path, minimal(table.name, {option.name: option.default}))
    with pytest.raises(ConfigError, match=rf"unknown key 'colour' in \[{table.name}\]"):
        load(tmp_path, minimal(table.name, {"colour": "red"}))


@pytest.mark.parametrize("name", list(ACTIONS))
def test_documented_action_options_load_and_an_undocumented_one_does_not(tmp_path, name):
    for option in action_type(name).options:
        if option.default is not REQUIRED:
            load(tmp_path, action_command(name, {option.name: option.default}))
    with pytest.raises(ConfigError, match=rf"unknown key 'colour' in \[command\] \(action "
                                          rf"'{name}' takes"):
        load(tmp_path, action_command(name, {"colour": "red"}))


def test_the_shipped_configuration_shows_every_action_with_its_options():
    lines = SHIPPED.read_text().splitlines()
    for name in ACTIONS:
        wanted = "executable = " if name == EXECUTABLE_ACTION else f'action = "{name}"'
        [start] = [n for n, line in enumerate(lines) if line.lstrip("# ").startswith(wanted)]
        end = next((n for n in range(start + 1, len(lines))
                    if lines[n].lstrip("# ").startswith("[[")), len(lines))
        block = textwrap.dedent("\n".join(line.lstrip("#") for line in lines[start:end]))
        for option in action_type(name).options:
            assert re.search(rf"^\s*{option.name} = ", block, re.M), (name, option.name)
