"""`arguard import fail2ban`, round-tripped: import fixture filters and jails, load the
result with check-config, run logtest on log lines, compare rule ids, fields and responses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import regex

from arguard.decode.decoders import normalise_address
from arguard.importers.f2bregex import translate_regex
from arguard.importers.f2btimes import offence_times, seconds
from tests.conftest import REPO, write_config

FIXTURES = Path(__file__).parent / "fixtures" / "fail2ban"
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}


def arguard(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arguard.cli", *args], input=stdin,
                          capture_output=True, text=True, env=ENV)


def install(out: Path, directory: Path, shipped: bool = False) -> Path:
    """An arguard configuration in `directory` with the import copied in (cp -r OUT/. DIR)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory, shipped=shipped)
    shutil.copytree(out, directory, dirs_exist_ok=True)
    return config


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    out = tmp_path / "imported"
    result = arguard("import", "fail2ban", str(FIXTURES / "myssh.conf"), "--jail",
                     str(FIXTURES / "jail.local"), "-o", str(out))
    assert result.returncode == 2, "one failregex (<SKIPLINES>) cannot be translated"
    assert f"{FIXTURES / 'myssh.conf'}:24: failregex <SKIPLINES>" in result.stderr
    assert "blocks the whole host" not in result.stderr, "port = ssh is kept: port 22"
    return install(out, tmp_path / "arguard")


def logtest(config: Path, lines: list[str]) -> list[dict]:
    result = arguard("logtest", "--json", "-c", str(config), stdin="".join(
        f"Mar  1 10:00:{i:02d} srv {line}\n" for i, line in enumerate(lines)))
    assert result.returncode == 0, result.stderr
    return [json.loads(text) for text in result.stdout.splitlines()]


def test_imported_filter_loads_and_detects(imported: Path):
    checked = arguard("check-config", "-c", str(imported))
    assert checked.returncode == 0, checked.stderr
    assert "conf.d/60-fail2ban.toml" in checked.stdout
    assert "5 rules" in checked.stdout and "1 active responses" in checked.stdout

    results = logtest(imported, [
        "sshd[1]: Failed password for invalid user bob from 198.51.100.7 port 22",
        "sshd-session[2]: Invalid user eve from 2001:db8::7",
        "sshd[3]: Connection closed by invalid user x 198.51.100.8 port 4 [preauth]",
        "sshd[4]: error: PAM: Failed keyboard for root from 198.51.100.9 port 5",
        "sshd[5]: Timeout before authentication for 198.51.100.10",   # aggressive mode only
        "sshd[6]: Failed password for trusteduser from 198.51.100.11 port 6",
        "cron[7]: Failed password for root from 198.51.100.12 port 7",  # not the daemon
        "sshd[8]: Failed password for root from 198.51.100.7 port 22 ssh2",
        "sshd[9]: Invalid user mallory from attacker.example.net",      # a host name
    ])
    summary = [(r["rule"] and r["rule"]["id"], r["fields"].get("srcip"),
                r["fields"].get("srcuser")) for r in results]
    assert summary == [
        (100001, "198.51.100.7", "bob"),
        (100001, "2001:db8::7", "eve"),
        (100001, "198.51.100.8", None),
        (100001, "198.51.100.9", "root"),
        (None, None, None),
        (100002, "198.51.100.11", "trusteduser"),
        (None, None, None),
        (100001, "198.51.100.7", "root"),
        (100004, "attacker.example.net", "mallory"),
    ]
    assert results[5]["alert"] is False, "ignoreregex lines do not alert"
    assert results[8]["alert"] is True and results[8]["responses"] == []


def test_jail_becomes_a_frequency_rule_and_an_active_response(imported: Path):
    lines = [f"sshd[1]: Failed password for root from 203.0.113.{n} port 22" for n in (5, 5, 6, 5)]
    lines += ["sshd[1]: Failed password for root from 192.0.2.10 port 22"] * 3
    results = logtest(imported, lines)
    assert [r["rule"]["id"] for r in results] == [100001, 100001, 100001, 100003,
                                                  100001, 100001, 100003]
    assert results[3]["responses"] == [{"command": "f2b-myssh", "target": "203.0.113.5",
                                        "timeout": 3600, "verb": "add",
                                        "skipped": None}]
    [ignored] = results[6]["responses"]
    assert ignored["target"] == "192.0.2.10" and "white" in ignored["skipped"]
    fragment = tomllib.loads((imported.parent / "conf.d/60-fail2ban.toml").read_text())
    assert fragment["source"] == [{"path": "/var/log/auth.log"}]
    assert fragment["global"]["white_list"] == ["192.0.2.10", "10.0.0.0/8"]
    assert fragment["command"] == [{"name": "f2b-myssh", "action": "firewall", "expect": "srcip",
                                    "timeout_allowed": True, "ports": [22], "protocol": "tcp",
                                    "set_name": "f2b-myssh", "chain": "f2b-myssh"}]


def _tree(root: Path, jail_local: str, filters: dict[str, str] | None = None) -> Path:
    """A small fail2ban configuration directory: jail.conf with fail2ban's defaults that
    matter here, the given jail.local and filters."""
    etc = root / "fail2ban"
    (etc / "filter.d").mkdir(parents=True)
    (etc / "jail.conf").write_text(textwrap.dedent("""\
        [DEFAULT]
        bantime = 10m
        findtime = 10m
        maxretry = 5
        backend = auto
        banaction = iptables-multiport
        port = 0:65535
        action = %(banaction)s[port="%(port)s"]
        mode = normal
        filter = %(__name__)s[mode=%(mode)s]
        logpath = /var/log/demo.log
        """))
    (etc / "jail.local").write_text(textwrap.dedent(jail_local))
    for name, text in (filters or {}).items():
        (etc / "filter.d" / f"{name}.conf").write_text(textwrap.dedent(text))
    return etc


DEMO_FILTER = """\
    [Definition]
    _daemon = demo
    prefregex = ^\\s*\\S+ <F-MLFID>%(_daemon)s\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$
    failregex = ^<F-NOFAIL>connect from</F-NOFAIL> <HOST>$
                ^bad password for <F-USER>\\S+</F-USER>$
                <mdre-<mode>>
    mdre-normal =
    mdre-aggressive = ^probe from <HOST>$
    journalmatch = _SYSTEMD_UNIT=demo.service + _COMM=demo + _COMM=demo-worker
    """


def test_directory_import_with_options_increment_and_journal(tmp_path: Path):
    etc = _tree(tmp_path, """\
        [demo]
        enabled = true
        mode = aggressive
        maxretry = 2
        bantime = 90
        bantime.increment = true
        bantime.maxtime = 10m
        backend = systemd
        ignoreip = 127.0.0.1/8 localhost
        """, {"demo": DEMO_FILTER})
    out = tmp_path / "out"
    result = arguard("import", "fail2ban", str(etc), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "ignoreip localhost resolved now to" in result.stderr
    fragment = tomllib.loads((out / "conf.d/60-fail2ban.toml").read_text())
    [response] = fragment["active_response"]
    # fail2ban: 90 s, then 180, 360 (6 min), 720 → capped at 600 s
    assert (response["timeout"], response["repeated_offenders"]) == (90, [3, 6, 10])
    assert fragment["source"] == [{"journal": {"matches": ["_COMM=demo", "_COMM=demo-worker"]}}]
    assert "127.0.0.1/8" in fragment["global"]["white_list"]
    assert (out / "fail2ban-filters/demo.decoders.toml").is_file(), "the filter library"

    config = install(out, tmp_path / "arguard")
    results = logtest(config, [
        "demo[7]: connect from 198.51.100.20",
        "demo[7]: bad password for alice",         # joined: the address of pid 7
        "demo[8]: bad password for bob",           # pid 8 never said where it came from
        "demo[9]: probe from 198.51.100.21",       # mode = aggressive (jail option)
        "demo[7]: bad password for alice",
    ])
    summary = [(r["rule"] and r["rule"]["id"], r["fields"].get("srcip")) for r in results]
    assert summary == [(100000, "198.51.100.20"), (100001, "198.51.100.20"),
                       (100000, None), (100001, "198.51.100.21"),
                       (100003, "198.51.100.20")]
    assert results[4]["responses"][0]["timeout"] == 90


def test_ports_are_kept_as_numbers_and_the_whole_host_is_blocked_where_they_cannot_be(
        tmp_path: Path):
    jails = {
        "web": ('port = http,https', [80, 443], "tcp"),
        "mail": ('port = smtp,465,submission,imap,imap2,imaps', [25, 465, 587, 143, 993], "tcp"),
        "voip": ('port = 5060,5061\nprotocol = udp', [5060, 5061], "udp"),
        "range": ('port = 6000:6003', [6000, 6001, 6002, 6003], "tcp"),
        "unknown": ('port = ssh,no-such-service', None, None),
        "wide": ('port = 1000:2000', None, None),
        "both": ('port = ssh\nprotocol = tcp,udp', None, None),
        "every": ('port = 0:65535', None, None),
        "allports": ('banaction = iptables-allports\nport = ssh', None, None),
    }
    etc = _tree(tmp_path, "".join(f"[{name}]\nenabled = true\nfilter = demo\n{options}\n"
                                  for name, (options, _, _) in jails.items()),
                {"demo": DEMO_FILTER})
    (etc / "jail.conf").write_text((etc / "jail.conf").read_text().replace(
        'action = %(banaction)s[port="%(port)s"]',
        'protocol = tcp\naction = %(banaction)s[port="%(port)s", protocol="%(protocol)s"]'))
    out = tmp_path / "out"
    result = arguard("import", "fail2ban", str(etc), "-o", str(out))
    assert result.returncode == 0, result.stderr
    commands = {c["name"]: c for c in
                tomllib.loads((out / "conf.d/60-fail2ban.toml").read_text())["command"]}
    for name, (_, ports, protocol) in jails.items():
        command = commands[f"f2b-{name}"]
        assert (command.get("ports"), command.get("protocol")) == (ports, protocol), name
    for note in ("ports ssh,no-such-service; port 'no-such-service' is neither a number, a "
                 "range nor a known service name, so arguard blocks the whole host",
                 "ports 1000:2000; 1001 ports: arguard limits a block to 15 ports at most",
                 "protocol 'tcp,udp': arguard limits a block to tcp or udp ports"):
        assert note in result.stderr
    assert "jail every" not in result.stderr and "jail allports" not in result.stderr
    checked = arguard("check-config", "-c", str(install(out, tmp_path / "arguard")))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_broken_file_gives_file_and_line_and_writes_nothing(tmp_path: Path):
    etc = _tree(tmp_path, "[demo]\nenabled = true\n", {"demo": """\
        [Definition]
        failregex = ^bad from <HOST>$
        this line is not an option
        """})
    out = tmp_path / "out"
    result = arguard("import", "fail2ban", str(etc), "-o", str(out))
    assert result.returncode == 1
    assert f"{etc / 'filter.d/demo.conf'}:3: not an option" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_undefined_variable_is_a_broken_file(tmp_path: Path):
    etc = _tree(tmp_path, "[demo]\nenabled = true\n", {"demo": """\
        [Definition]
        failregex = ^bad from <HOST>$
                    ^%(nowhere)s <HOST>$
        """})
    result = arguard("import", "fail2ban", str(etc), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{etc / 'filter.d/demo.conf'}:3: %(nowhere)s is not defined" in result.stderr


def test_missing_include_is_a_note(tmp_path: Path):
    etc = _tree(tmp_path, "[demo]\nenabled = true\n", {"demo": """\
        [INCLUDES]
        before = gone-common.conf

        [Definition]
        failregex = ^bad from <HOST>$
        """})
    out = tmp_path / "out"
    result = arguard("import", "fail2ban", str(etc), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"note: {etc / 'filter.d/demo.conf'}:2: include gone-common.conf not found" \
        in result.stderr
    assert (out / "decoders.d/60-f2b-demo.toml").is_file()


def test_reimport_replaces_the_output_and_a_failed_one_keeps_it(tmp_path: Path):
    etc = _tree(tmp_path, "[demo]\nenabled = true\n", {"demo": DEMO_FILTER})
    out = tmp_path / "out"
    assert arguard("import", "fail2ban", str(etc), "-o", str(out)).returncode == 0
    (out / "stale.toml").write_text("")
    assert arguard("import", "fail2ban", str(etc), "-o", str(out)).returncode == 0
    assert not (out / "stale.toml").exists(), "the new output replaced the old one"
    (etc / "jail.local").write_text("[demo\n")
    assert arguard("import", "fail2ban", str(etc), "-o", str(out)).returncode == 1
    assert (out / "decoders.d/60-f2b-demo.toml").is_file(), "the old output is kept"


def test_actions_that_do_not_block_are_reported(tmp_path: Path):
    etc = _tree(tmp_path, """\
        [demo]
        enabled = true
        action = %(banaction)s[port="ssh"]
                 sendmail-whois[name=demo]
        """, {"demo": DEMO_FILTER})
    result = arguard("import", "fail2ban", str(etc), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "action sendmail-whois (mail, reporting or another service) has no arguard " \
           "counterpart" in result.stderr


def test_fail2ban_durations():
    assert [seconds(t) for t in ("600", "10m", "1h", "2d", "1w", "1h 30m", "1d12h", "-1",
                                 "1year-6mo", "90s")] == \
        [600, 600, 3600, 172_800, 604_800, 5400, 129_600, -1, 15_778_800, 90]
    with pytest.raises(ValueError):
        seconds("soon")


def test_ban_time_increments():
    # the default formula doubles, maxtime caps; multipliers (with the factor) are taken
    # as given and the last one repeats
    assert offence_times(600, 1, None, [], 3600) == [1200, 2400, 3600]
    assert offence_times(60, 2, None, [1, 5, 30], None) == [600, 3600]
    assert offence_times(60, 1, "ban.Time * math.exp(float(ban.Count+1)*banFactor)"
                         "/math.exp(1*banFactor)", [], 600) == [164, 444, 600]


@pytest.mark.parametrize("failregex, line, fields", [
    ("^fail <HOST>$", "fail 192.0.2.1", {"srcip": "192.0.2.1"}),
    ("^fail <HOST>$", "fail ::ffff:192.0.2.1", {"srcip": "192.0.2.1"}),
    ("^fail <HOST>$", "fail [2001:db8::1]", {"srcip": "2001:db8::1"}),
    ("^fail <HOST>$", "fail bad.example", {"srcip": "bad.example"}),
    ("^fail <ADDR>$", "fail bad.example", None),
    ("usedns=no ^fail <HOST>$", "fail bad.example", None),
    ("^fail <SUBNET>$", "fail 192.0.2.0/24", {"srcip": "192.0.2.0", "cidr": "24"}),
    ("^fail <IP4>/<CIDR>$", "fail 192.0.2.0/24", {"srcip": "192.0.2.0", "cidr": "24"}),
    ("^fail <DNS> as <F-ID/> on <F-PORT/>$", "fail a.example as x-1 on ssh",
     {"srcip": "a.example", "fid": "x-1", "fport": "ssh"}),
    ("^ruser=<F-ALT_USER>\\S*</F-ALT_USER> rhost=<HOST>(?: user=<F-USER>\\S+</F-USER>)?$",
     "ruser=eve rhost=192.0.2.1", {"srcip": "192.0.2.1", "srcuser": "eve"}),
    ("^<F-USER>\\S+</F-USER> again (?P=user) from <HOST>$", "bob again bob from 192.0.2.2",
     {"srcuser": "bob", "srcip": "192.0.2.2"}),
    ("^<F-NOFAIL>hello</F-NOFAIL> <F-MLFFORGET>bye</F-MLFFORGET> <F-RCPT>\\S+</F-RCPT> <HOST>$",
     "hello bye x@y 192.0.2.3", {"helper": "hello", "end": "bye", "rcpt": "x@y",
                                 "srcip": "192.0.2.3"}),
    ("^(?:(?i)FAIL) <HOST>$", "fail 192.0.2.4", {"srcip": "192.0.2.4"}),
    ("^Fail <HOST>$", "fail 192.0.2.5", None),   # case-sensitive, as in fail2ban
])
def test_filter_language(failregex: str, line: str, fields: dict | None):
    use_dns = not failregex.startswith("usedns=no ")
    pattern = translate_regex(failregex.removeprefix("usedns=no "), use_dns)
    match = regex.compile(pattern).search(line)
    got = None if match is None else {
        k: normalise_address(v) if k == "srcip" else v
        for k, v in match.groupdict().items() if v}
    assert got == fields
