"""`arguard check-config`: every problem named with file, line and what is wrong; exit 1."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import write_config


def check(config_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arguard.cli", "check-config", "-c",
                           str(config_path)], capture_output=True, text=True, timeout=60)


def test_shipped_configuration_is_valid(tmp_path):
    result = check(write_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize("kind,content,expected", [
    ("rules", """
     [[rule]]
     id = 900001
     level = 3
     colour = "red"
     """, "test.toml:5: unknown key 'colour'"),
    ("rules", """
     [[rule]]
     id = 900001
     level = "high"
     """, "test.toml:4: rule 900001: 'level' must be an integer 0-16"),
    ("rules", """
     [[rule]]
     id = 900001
     level = 3
     match = 'unclosed ('
     """, "test.toml:5: match: invalid pattern 'unclosed (': missing ) at position 10"),
    ("rules", """
     [[rule]]
     id = 900001
     level = 3
     if_sid = 999999
     """, "test.toml:2: rule 900001: if_sid names missing rule 999999"),
    ("rules", """
     [[rule]]
     id = 900001
     level = 3
     if_sid = 900002

     [[rule]]
     id = 900002
     level = 3
     if_sid = 900001
     """, "rule dependency cycle"),
    ("rules", """
     [[rule]]
     id = 900001
     level = 3
     match = "x"

     [[rule]]
     id = 900001
     level = 4
     match = "y"
     """, "test.toml:7: rule 900001 is already defined at"),
    ("rules", """
     [[rule]]
     id = 900001
     level = 3
     frequency = 5
     """, "frequency needs if_matched_sid"),
    ("decoders", """
     [[decoder]]
     name = "orphan"
     parent = "no-such-decoder"
     prematch = "x"
     """, "test.toml:2: decoder 'orphan': unknown parent decoder 'no-such-decoder'"),
    ("decoders", """
     [[decoder]]
     name = "everything"
     regex = "(?P<srcip>.*)"
     """, "test.toml:2: root decoder 'everything' needs program_name or prematch"),
    ("decoders", """
     [[decoder]
     name = "broken"
     """, "test.toml:2: TOML syntax error"),
])
def test_dropin_problems_are_reported_with_file_and_line(tmp_path, kind, content, expected):
    config = write_config(tmp_path, shipped=False)
    (tmp_path / f"{kind}.d" / "test.toml").write_text(textwrap.dedent(content))
    result = check(config)
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr


def test_a_dropin_may_overwrite_a_rule_only_when_it_says_so(tmp_path):
    config = write_config(tmp_path, shipped=False)
    (tmp_path / "rules.d" / "a.toml").write_text('[[rule]]\nid = 900001\nlevel = 3\nmatch = "x"\n')
    (tmp_path / "rules.d" / "b.toml").write_text(
        '[[rule]]\nid = 900001\nlevel = 12\nmatch = "y"\noverwrite = true\n')
    result = check(config)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("extra,expected", [
    ("""
     [global]
     white_list = ["10.0.0.0/33"]
     """, "arguard.toml:13: white_list entry '10.0.0.0/33' is not an IP address or CIDR"),
    ("""
     [[command]]
     name = "drop"
     action = "ipset"

     [[active_response]]
     command = "drop"
     rules_id = [5712]
     timeout = 600
     """, "arguard.toml:19: timeout given but command 'drop' does not set timeout_allowed"),
    ("""
     [[active_response]]
     command = "nothing"
     rules_id = [5712]
     """, "arguard.toml:13: active_response names unknown command 'nothing'"),
    ("""
     [[command]]
     name = "drop"
     action = "ipset"
     timeout_allowed = true

     [[active_response]]
     command = "drop"
     level = 10
     timeout = 600
     repeated_offenders = [30, -5]
     """, "arguard.toml:21: repeated_offenders must be positive minutes"),
    ("""
     [[command]]
     name = "x"
     executable = "../../bin/sh"
     """, "arguard.toml:14: executable must be a bare file name"),
    ("""
     [global]
     whitelist = []
     """, "arguard.toml:13: unknown key 'whitelist' in [global]"),
    ("""
     [global]
     white_list_users = ["admin", "ops/x"]
     """, "arguard.toml:13: white_list_users entry 'ops/x' is not an account name ('/' in "
          "user name)"),
    ("""
     [[command]]
     name = "end"
     action = "terminate-sessions"

     [[active_response]]
     command = ["end", "nothing"]
     rules_id = [5763]
     """, "arguard.toml:17: active_response names unknown command 'nothing'"),
    ("""
     [[command]]
     name = "end"
     action = "terminate-sessions"
     timeout_allowed = true

     [[active_response]]
     command = ["end"]
     rules_id = [5763]
     timeout = 600
     """, "arguard.toml:20: timeout given but 'end' act once and keep nothing to lift "
          "(stateless)"),
    ("""
     [[active_response]]
     command = []
     rules_id = [5763]
     """, "arguard.toml:13: active_response needs 'command': a command name, or a list of "
          "them"),
    ("""
     [[integrity]]
     paths = ["/etc/nginx"]
     checks = ["sha256", "md5"]
     """, "arguard.toml:14: checks must be a list of sha256, size, mode, owner, inode, mtime"),
    ("""
     [[integrity]]
     paths = ["/etc/nginx"]
     keep_copies = "1 TB"
     """, 'arguard.toml:14: keep_copies must be a size such as "1MB" or "512KB" (at most '
          '64MB), or 0'),
    ("""
     [[integrity]]
     paths = ["/etc/nginx"]
     checks = ["size"]
     keep_copies = "1MB"
     """, 'arguard.toml:15: keep_copies needs "sha256" among the checks'),
    ("""
     [[integrity]]
     paths = ["/etc/nginx"]
     scan_interval = "soon"
     """, "arguard.toml:14: scan_interval must be a positive number of seconds"),
    ("""
     [[integrity]]
     path = "/etc/nginx"
     """, "arguard.toml:12: an [[integrity]] table needs 'paths'"),
    ("""
     [[integrity]]
     paths = ["/"]
     """, "arguard.toml:13: watching / is not supported"),
    ("""
     [[integrity]]
     paths = ["/etc/nginx"]

     [[integrity]]
     paths = ["/etc/nginx/"]
     """, "arguard.toml:16: /etc/nginx is watched by two [[integrity]] tables (#1 and #2)"),
])
def test_configuration_problems_are_reported_with_line(tmp_path, extra, expected):
    result = check(write_config(tmp_path, extra=extra))
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize("command,expected", [
    ('action = "ipset"\n     set_name = "a b"',
     "arguard.toml:15: set_name 'a b' must be 1 to 26 letters, digits, '_', '.' or '-'"),
    ('action = "route"\n     route_type = "local"',
     'arguard.toml:15: route_type must be "blackhole", "unreachable" or "prohibit"'),
    ('action = "iptables"\n     chain = "arguard"\n     jump_from = ["arguard"]',
     "arguard.toml:16: jump_from must not name the chain 'arguard' itself"),
    ('action = "ipset"\n     set_name = "x"\n     sets = 2',
     "arguard.toml:16: unknown key 'sets' in [command] (action 'ipset' takes: chain, "
     "jump_from, ports, prefix_v4, prefix_v6, protocol, set_name, target)"),
    ('action = "webhook"', "arguard.toml:12: a webhook command needs 'url'"),
    ('action = "disable-account"\n     expect = "srcip"',
     "arguard.toml:15: expect 'srcip' gives targets of kind ip, but action 'disable-account' "
     "acts on targets of kind user"),
    ('action = "kill-process"', "arguard.toml:12: a kill-process command needs 'exe'"),
    ('action = "kill-process"\n     exe = "/usr/bin/(nc"',
     "arguard.toml:15: exe '/usr/bin/(nc' is not a valid pattern: missing )"),
    ('action = "kill-process"\n     exe = ".*/nc"\n     expect = "srcpid"',
     "arguard.toml:16: expect must be one of srcip, dstip, srcuser, dstuser, user, filename, "
     "_PID"),
    ('action = "kill-process"\n     exe = ".*/nc"\n     expect = "srcuser"',
     "arguard.toml:16: expect 'srcuser' gives targets of kind user, but action "
     "'kill-process' acts on targets of kind process"),
    ('action = "terminate-sessions"\n     grace = -1',
     "arguard.toml:15: grace -1 must not be negative"),
])
def test_command_options_are_checked_by_the_action_with_line(tmp_path, command, expected):
    result = check(write_config(tmp_path, extra=f"""
     [[command]]
     name = "x"
     {command}
     """))
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr
