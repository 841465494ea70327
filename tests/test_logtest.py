"""`arguard logtest` as a user runs it: per-line JSON, totals, and bad input that never crashes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import write_config

DECODER = """
[[decoder]]
name = "sshd"
program_name = '^sshd$'

[[decoder]]
name = "sshd-invalid"
parent = "sshd"
prematch = '^Invalid user '
regex = '^Invalid user (?P<srcuser>\\S*) from (?P<srcip>[0-9a-f:.]+) port \\d+$'
"""
RULES = """
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
"""


def logtest(tmp_path, data: bytes, *options: str) -> subprocess.CompletedProcess:
    config = write_config(tmp_path, shipped=False)
    (tmp_path / "decoders.d" / "d.toml").write_text(DECODER)
    (tmp_path / "rules.d" / "r.toml").write_text(RULES)
    return subprocess.run([sys.executable, "-m", "arguard.cli", "logtest", "-c", str(config),
                           *options], input=data, capture_output=True, timeout=120)


def test_json_gives_one_object_per_line_with_every_phase(tmp_path):
    lines = (b"Nov 22 13:40:01 host sshd[1]: Invalid user admin from 192.0.2.7 port 22\n"
             b"Nov 22 13:40:02 host cron[2]: something else\n")
    result = logtest(tmp_path, lines, "--json")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.decode().splitlines())
    assert first == {
        "line": "Nov 22 13:40:01 host sshd[1]: Invalid user admin from 192.0.2.7 port 22",
        "predecoder": {"program_name": "sshd", "timestamp": "Nov 22 13:40:01", "hostname": "host"},
        "decoder": {"name": "sshd", "child": "sshd-invalid"},
        "fields": {"srcuser": "admin", "srcip": "192.0.2.7"},
        "ambiguous": False,
        "rule": {"id": 101, "level": 5, "description": "invalid user",
                 "groups": ["invalid_login"]},
        "alert": True,
        "responses": [],
    }
    assert second["decoder"] is None and second["rule"] is None and second["alert"] is False


def test_bad_input_is_counted_and_skipped_never_fatal(tmp_path):
    garbage = b"".join([
        b"\xff\xfe\xfd not utf-8 \x80\n",
        b"nul\x00inside\x00\n",
        b"\n\n   \n",
        bytes(range(256)) + b"\n",  # holds a newline itself: two lines
        b"A" * 3_000_000 + b"\n",
        b"Nov 22 13:40:01 host sshd[1]: Invalid user \xc3\x28 from 192.0.2.7 port 22\n",
        b"B" * 2_000_000,
    ])
    result = logtest(tmp_path, garbage, "--summary")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "Lines read:    10" in out
    assert "empty: 3  cut: 2  invalid UTF-8: 3  NUL: 2" in out
    assert "101  level  5          1  invalid user" in out


def test_default_output_shows_the_phases(tmp_path):
    line = b"Nov 22 13:40:01 host sshd[1]: Invalid user admin from 192.0.2.7 port 22\n"
    out = logtest(tmp_path, line).stdout.decode()
    assert "**Phase 1: Completed pre-decoding." in out
    assert "srcip: '192.0.2.7'" in out
    assert "rule chain: 100 -> 101" in out
    assert "**Alert to be generated." in out


def test_logtest_shows_the_responses_the_default_configuration_would_run(tmp_path):
    """Without -c, logtest uses the shipped rules and default responses: the 8th failure
    from one address is rule 5763, bound to firewall-drop for 600 s; white-listed
    loopback is shown as skipped with the reason."""
    lines = "".join(f"Nov 22 13:40:0{i} host sshd[7]: Failed password for root from "
                    f"{address} port 4000{i} ssh2\n"
                    for address in ("203.0.113.9", "127.0.0.1") for i in range(8))
    result = subprocess.run([sys.executable, "-m", "arguard.cli", "logtest", "--json"],
                            input=lines.encode(), capture_output=True,
                            env={"PATH": "/usr/bin:/bin", "ARGUARD_CONFIG": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["rule"]["id"] for o in objects].count(5763) == 2
    assert objects[6]["responses"] == []
    assert objects[7]["rule"]["id"] == 5763
    assert objects[7]["responses"] == [{"command": "firewall-drop", "target": "203.0.113.9",
                                        "timeout": 600, "verb": "add",
                                        "skipped": None}]
    [loopback] = objects[15]["responses"]
    assert loopback["target"] == "127.0.0.1" and "white" in loopback["skipped"]


def test_logtest_shows_whether_a_response_adds_or_extends_a_block(tmp_path):
    """With the shipped responses (firewall-drop, 600 s, then 30 and 60 minutes): 8 failures
    block the address; 8 more five minutes later, while it is blocked, extend the block;
    8 more an hour later, after the block was lifted on the lines' own clock, add it again."""
    lines = "".join(f"Nov 22 {hour}:{minute}:0{i} host sshd[7]: Failed password for root from "
                    f"203.0.113.9 port 4000{i} ssh2\n"
                    for hour, minute in (("13", "40"), ("13", "45"), ("14", "50"))
                    for i in range(8))
    result = subprocess.run([sys.executable, "-m", "arguard.cli", "logtest"],
                            input=lines.encode(), capture_output=True,
                            env={"PATH": "/usr/bin:/bin", "ARGUARD_CONFIG": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    shown = [line for line in result.stdout.decode().splitlines()
             if line.startswith("**Response")]
    assert shown == ["**Response: add firewall-drop 203.0.113.9 (600 s, offence 1)",
                     "**Response: extend firewall-drop 203.0.113.9 (1800 s, offence 2)",
                     "**Response: add firewall-drop 203.0.113.9 (3600 s, offence 3)"]
