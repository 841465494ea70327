"""`arguard check-config`: every problem named with file, line and what is wrong; exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO, write_config


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
     """, 'arguard.toml:14: integrity.scan_interval must be a duration (600, "10m", "1h30m"'),
    ("""
     [[integrity]]
     path = "/etc/nginx"
     """, "arguard.toml:13: unknown key 'path' in [integrity]"),
    ("""
     [[integrity]]
     recursive = true
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


def errors_of(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def line_of(config, text: str) -> int:
    """The line of the config file that holds `text` (the test's expected file:line)."""
    lines = config.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


DROP = """
    [[command]]
    name = "drop"
    action = "ipset"
    timeout_allowed = true
    """


@pytest.mark.parametrize("binding,marker,expected", [
    ('rules_id = [5763, 424242]', "rules_id",
     "rules_id names rule 424242, which no loaded rule file defines"),
    ('rules_group = "no_such_group|authentication_faild"', "rules_group",
     "rules_group 'no_such_group|authentication_faild' selects no rule: no loaded alerting "
     "rule has any of them"),
    ('level = 16', "level",
     "level = 16 selects no rule: no loaded rule alerts at level 16 or above"),
    ('level = 12\nrules_group = "web_scan"', "rules_group",
     "rules_group 'web_scan' selects no rule: no loaded alerting rule at level 12 or above "
     "has that group"),
])
def test_a_binding_that_selects_no_rule_is_one_error_with_its_line(tmp_path, binding, marker,
                                                                   expected):
    config = write_config(tmp_path, extra=DROP + textwrap.dedent("""
        [[active_response]]
        command = "drop"
        timeout = 600
        """) + binding + "\n")
    result = check(config)
    assert result.returncode == 1
    assert errors_of(result) == [f"error: {config}:{line_of(config, marker)}: {expected}"], \
        result.stderr


def test_a_mistake_in_a_command_is_not_reported_again_by_its_responses(tmp_path):
    config = write_config(tmp_path, extra="""
        [[command]]
        name = "drop"
        action = "ipset"
        timeout_allowed = true
        set_nmae = "typo"

        [[active_response]]
        command = "drop"
        rules_id = [5763]
        timeout = 600

        [[active_response]]
        command = "drop"
        rules_id = [5712]
        timeout = "10m"
        """)
    result = check(config)
    assert result.returncode == 1
    [error] = errors_of(result)
    assert error.startswith(f"error: {config}:{line_of(config, 'set_nmae')}: unknown key "
                            "'set_nmae'"), result.stderr


@pytest.mark.parametrize("binding,expected", [
    ('timeout = "10 minutes"', 'active_response.timeout must be a duration (600, "10m", '
                               '"1h30m", "7d")'),
    ('timeout = 0', "active_response.timeout must be a positive duration"),
    ('timeout = true', 'active_response.timeout must be a duration (600, "10m", "1h30m", '
                       '"7d")'),
    ('timeout = 600\nrepeated_offenders = ["90s"]',
     "repeated_offenders must be positive minutes (30) or durations of whole minutes"),
    ('timeout = 600\nrules_id = "5763"', "active_response.rules_id must be a rule id or a "
                                         "list of rule ids"),
    ('timeout = 600\nexpect = 5', "unknown key 'expect' in [active_response]"),
    ('timeout = 600\nrule_id = [5763]', "unknown key 'rule_id' in [active_response]"),
])
def test_a_wrong_value_is_one_error(tmp_path, binding, expected):
    config = write_config(tmp_path, extra=DROP + textwrap.dedent("""
        [[active_response]]
        command = "drop"
        """) + binding + "\n" + ("" if "rules_id" in binding else "rules_id = [5763]\n"))
    result = check(config)
    assert result.returncode == 1
    [error] = errors_of(result)
    key = binding.splitlines()[-1].split(" =")[0]
    assert error.startswith(f"error: {config}:{line_of(config, key + ' =')}: {expected}"), \
        result.stderr


def test_durations_are_read_the_same_in_the_config_and_on_the_command_line(tmp_path):
    """600, "10m", "1h30m", "7d": the config's timeouts as logtest shows the response, and
    `arguard block --timeout` as the block's expiry."""
    config = write_config(tmp_path, extra=DROP + textwrap.dedent("""
        [global]
        offender_forget = "1d"

        [[command]]
        name = "deny"
        action = "hosts-deny"
        path = "hosts.deny"
        timeout_allowed = true

        [[active_response]]
        command = "drop"
        rules_id = [5763]
        timeout = "1h30m"
        repeated_offenders = ["2h", 180, "7d"]

        [[active_response]]
        command = "deny"
        rules_id = [5763]
        timeout = "10m"
        """))
    assert check(config).returncode == 0
    attack = "".join(f"Mar  1 10:{minute:02}:{i:02} srv sshd[1]: Failed password for root "
                     f"from 203.0.113.9 port {4000 + i} ssh2\n"
                     for minute in (0, 5) for i in range(8))
    logtest = subprocess.run([sys.executable, "-m", "arguard.cli", "logtest", "--json", "-c",
                              str(config)], input=attack, capture_output=True, text=True)
    assert logtest.returncode == 0, logtest.stderr
    timeouts = [(r["command"], r["timeout"]) for line in logtest.stdout.splitlines()
                for r in json.loads(line)["responses"]]
    assert timeouts[:2] == [("drop", 5400), ("deny", 600)]
    assert ("drop", 7200) in timeouts          # the 2nd offence: "2h"

    for text, seconds in (("600", 600), ("10m", 600), ("1h30m", 5400), ("7d", 604_800)):
        before = time.time()
        block = subprocess.run([sys.executable, "-m", "arguard.cli", "block", "203.0.113.7",
                                "--command", "deny", "--timeout", text, "--json", "-c",
                                str(config)], capture_output=True, text=True)
        assert block.returncode == 0, block.stderr
        [applied] = json.loads(block.stdout)["applied"]
        assert before + seconds <= applied["expires_at"] <= time.time() + seconds
    wrong = subprocess.run([sys.executable, "-m", "arguard.cli", "block", "203.0.113.7",
                            "--timeout", "10 minutes", "-c", str(config)],
                           capture_output=True, text=True)
    assert wrong.returncode == 2
    assert "'10 minutes' is not a duration (600, \"10m\", \"1h30m\", \"7d\")" in wrong.stderr


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
     'arguard.toml:16: command.expect must be "srcip", "dstip", "srcuser", "dstuser", "user", '
     '"filename" or "_PID"'),
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


@pytest.mark.parametrize("command,key,expected", [
    ('action = "ipset"\nexpect = 5', "expect", "command.expect must be a string"),
    ('action = "ipset"\nexpect = "src"', "expect",
     'command.expect must be "srcip", "dstip", "srcuser", "dstuser", "user", "filename" or '
     '"_PID"'),
    ('nmae = "x"\naction = "ipset"', "nmae", "unknown key 'nmae' in [command]"),
    ('name = 7\naction = "ipset"', "name", "command.name must be a string"),
    ('action = "ipsett"', "action", "unknown action 'ipsett'"),
])
def test_a_wrong_command_key_is_one_error(tmp_path, command, key, expected):
    body = command if command.startswith("name") else 'name = "x"\n' + command
    config = write_config(tmp_path, extra="\n[[command]]\n" + body + "\n")
    result = check(config)
    assert result.returncode == 1
    [error] = errors_of(result)
    assert error.startswith(f"error: {config}:{line_of(config, key + ' =')}: {expected}"), \
        result.stderr


def test_check_config_says_what_it_will_do_and_whether_the_ssh_session_is_safe(tmp_path):
    config = write_config(tmp_path, extra=DROP + """
        [global]
        white_list = ["198.51.100.0/24"]

        [[active_response]]
        command = "drop"
        rules_id = [5763]
        timeout = "10m"
        repeated_offenders = ["1h"]
        """)

    def run(ssh: str) -> str:
        result = subprocess.run([sys.executable, "-m", "arguard.cli", "check-config", "-c",
                                 str(config)], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                     "SSH_CONNECTION": ssh})
        assert result.returncode == 0, result.stderr
        return result.stdout

    safe = run("198.51.100.9 50000 192.0.2.1 22")
    assert ("  drop (ipset) acts on the srcip of the alerts of rules 5763 (1 rule), for 10m, "
            "repeat offenders 1h:\n       5763  level 10  sshd: password brute force") in safe
    assert "Never blocked (white list): 198.51.100.0/24\n" in safe
    assert "This SSH session's address 198.51.100.9 is on the white list." in safe
    assert "WARNING: this SSH session's address 203.0.113.9 is NOT on the white list" in \
        run("203.0.113.9 50000 192.0.2.1 22")


def test_check_config_says_a_chain_locks_for_its_timeout_and_terminates_once(tmp_path):
    config = write_config(tmp_path, extra="""
        [[command]]
        name = "lock"
        action = "disable-account"
        timeout_allowed = true

        [[command]]
        name = "end"
        action = "terminate-sessions"

        [[active_response]]
        command = ["lock", "end"]
        rules_id = [5763]
        timeout = "1h"
        """)
    result = check(config)
    assert result.returncode == 0, result.stderr
    assert ("  lock (disable-account) acts on the dstuser of the alerts of rules 5763 (1 rule), "
            "for 1h:\n       5763  level 10  sshd: password brute force from one source\n"
            "  end (terminate-sessions) acts on the user of the alerts of rules 5763 (1 rule), "
            "once per alert (nothing to lift):\n") in result.stdout
