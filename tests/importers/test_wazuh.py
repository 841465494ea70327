"""`arguard import wazuh` round trip: our own Wazuh-format fixtures are imported with the CLI,
the output is loaded by `check-config` and log lines go through `logtest`; the rule ids, levels,
fields and responses are what Wazuh's semantics give."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from arguard.config import shipped_dir
from arguard.importers.wazuhxml import parse
from tests.conftest import write_config

FIXTURES = Path(__file__).parent / "fixtures" / "wazuh"
TRANSLATABLE = ["decoders.xml", "rules.xml", "rules_overwrite.xml", "ossec_conf.xml"]


def arguard(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arguard.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def import_wazuh(out: Path, *names: str) -> subprocess.CompletedProcess:
    return arguard("import", "wazuh", *(str(FIXTURES / n) for n in names), "-o", str(out))


def config_for(directory: Path, imported: Path, shipped: bool = False) -> Path:
    """A configuration with the white list and commands of arguard's default one (and the
    shipped ruleset when `shipped`), and the importer's output copied in as it is (cp -r
    OUT/. DIR): drop-ins, lists and conf.d/60-wazuh.toml."""
    directory.mkdir(exist_ok=True)
    with open(shipped_dir("conf") / "arguard.toml", "rb") as default:
        default_config = tomllib.load(default)
    config = write_config(directory, shipped=shipped, lists=True, extra=tomli_w.dumps(
        {"global": default_config["global"], "command": default_config["command"]}))
    shutil.copytree(imported, directory, dirs_exist_ok=True)
    return config


def logtest(config: Path, lines: list[str]) -> list[dict]:
    result = arguard("logtest", "--json", "-c", str(config), stdin="".join(
        line + "\n" for line in lines))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def line_of(name: str, text: str) -> int:
    for number, line in enumerate((FIXTURES / name).read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {name}")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    result = import_wazuh(out, *TRANSLATABLE)
    return out, result


@pytest.fixture(scope="module")
def config(imported, tmp_path_factory):
    out, _ = imported
    return config_for(tmp_path_factory.mktemp("config"), out)


def syslog(message: str, host: str = "web01") -> str:
    return f"Nov 22 13:40:01 {host} myapp[42]: {message}"


def test_everything_translated_exits_0_and_the_output_loads(imported, config):
    out, result = imported
    assert result.returncode == 0, result.stderr
    assert "everything translated" in result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.toml")) == [
        "conf.d/60-wazuh.toml", "decoders.d/decoders.toml", "rules.d/rules.toml",
        "rules.d/rules_overwrite.toml"]
    check = arguard("check-config", "-c", str(config))
    assert check.returncode == 0, check.stderr
    assert "8 decoders, 15 rules" in check.stdout
    # arguard's 4 default commands and the 4 imported ones; the disabled response is not loaded
    assert "8 commands, 3 active responses" in check.stdout
    assert "conf.d/60-wazuh.toml" in check.stdout


def test_fts_and_dotted_field_names_are_kept(imported):
    out, result = imported
    [webapp] = [d for d in tomllib.loads((out / "decoders.d/decoders.toml").read_text())
                ["decoder"] if d["name"] == "webapp"]
    assert webapp["fts"] == ["srcip"]
    # a field name that is not an identifier keeps its name: the group is renamed back
    assert webapp["field_names"] == {"http_method": "http.method"}
    assert "NOT TRANSLATED" not in result.stderr


def test_order_offsets_and_joined_regex_give_the_fields(config):
    [event] = logtest(config, [syslog("login failed for bob from 192.0.2.100 port 5022")])
    assert event["decoder"] == {"name": "myapp", "child": "myapp-login"}
    # <order> "user" is Wazuh's dstuser
    assert event["fields"] == {"dstuser": "bob", "srcip": "192.0.2.100", "srcport": "5022"}
    assert event["rule"] == {"id": 100101, "level": 5, "description": "myapp: login failed",
                             "groups": ["myapp", "local", "authentication_failed"]}
    assert event["alert"] is True


def test_frequency_same_source_ip_and_active_response(config):
    lines = [syslog(f"login failed for bob from 192.0.2.100 port {port}")
             for port in range(5000, 5004)]
    events = logtest(config, lines)
    assert [e["rule"]["id"] for e in events] == [100101, 100101, 100101, 100110]
    assert events[3]["rule"]["level"] == 10
    assert events[3]["responses"] == [{"command": "wazuh-firewall-drop",
                                       "target": "192.0.2.100",
                                       "timeout": 600, "verb": "add", "skipped": None}]


def test_var_substitution_user_and_srcip_conditions_and_overwrite(config):
    events = logtest(config, [
        syslog("login failed for ROOT from 198.51.100.7 port 1"),    # $PRIVILEGED, any case
        syslog("login failed for carol from 192.0.2.5 port 1"),     # $TRUSTED_NET, overwritten
    ])
    assert (events[0]["rule"]["id"], events[0]["rule"]["level"]) == (100102, 10)
    assert events[0]["responses"] == [{"command": "notify", "target": "198.51.100.7",
                                       "timeout": None, "verb": "add", "skipped": None}]
    assert (events[1]["rule"]["id"], events[1]["rule"]["level"]) == (100103, 2)
    assert "(local level)" in events[1]["rule"]["description"]


def test_if_group_negated_srcip_and_if_matched_group_same_user(config):
    events = logtest(config, [
        syslog("login failed for dave from 198.51.100.20 port 1"),
        syslog("login failed for erin from 198.51.100.20 port 1"),
        syslog("login failed for dave from 198.51.100.21 port 1"),
    ])
    assert [(e["rule"]["id"], e["rule"]["level"]) for e in events] == [
        (100140, 7), (100140, 7), (100141, 11)]


def test_siblings_after_regex_negation_and_bang_match(config):
    events = logtest(config, [
        syslog("kv: user=eve ip=203.0.113.5 action=deny"),
        syslog("kv: user=eve ip=203.0.113.5 action=deny team=R&D"),
        syslog("kv: user=eve ip=203.0.113.5 action=deny", host="db01"),
        syslog("kv: user=eve ip=203.0.113.5 act=drop"),
    ])
    assert events[0]["decoder"]["child"] == "myapp-kv"
    assert events[0]["fields"] == {"srcuser": "eve", "srcip": "203.0.113.5", "action": "deny"}
    assert events[0]["rule"]["id"] == 100131      # <match>!R&D</match>: no "R&D" here
    assert events[1]["rule"]["id"] == 100130
    assert events[2]["rule"]["id"] == 100100      # <hostname>^web</hostname> fails
    assert events[3]["fields"]["action"] == "drop"
    assert events[3]["alert"] is False


def test_alternatives_in_wazuh_order_and_noalert(config):
    conn, heartbeat = logtest(config, [syslog("conn account admin by user bob"),
                                       syslog("heartbeat ok")])
    assert conn["fields"] == {"dstuser": "bob"}
    # 100150 is noalert and has no child: Wazuh goes on and ends at its parent, 100100 (level 0)
    assert heartbeat["rule"]["id"] == 100100 and heartbeat["alert"] is False


def test_field_conditions_dstip_and_if_level(config):
    events = logtest(config, [
        syslog("fw tcp 203.0.113.9 -> 10.1.2.3:3389 status=blocked"),
        syslog("fw TCP 198.51.100.99 -> 10.1.2.3:22 status=blocked"),
        syslog("fw udp 203.0.113.9 -> 10.1.2.3:22 status=blocked"),
        syslog("fw tcp 203.0.113.9 -> 192.168.1.1:22 status=blocked"),
        syslog("fw tcp 203.0.113.9 -> 10.1.2.3:2222 status=blocked"),
    ])
    assert events[0]["fields"] == {"protocol": "tcp", "srcip": "203.0.113.9",
                                   "dstip": "10.1.2.3", "dstport": "3389", "status": "blocked"}
    assert [(e["rule"]["id"], e["rule"]["level"]) for e in events] == [
        (100160, 12), (100161, 13), (100100, 0), (100100, 0), (100100, 0)]


def test_pcre2_dynamic_field_id_url_join_different_url(config):
    lines = [f"WEBAPP 203.0.113.50 {method} {url} {status}" for method, url, status in (
        ("POST", "/wp-login.php", 403), ("POST", "/wp-login.php", 403),
        ("post", "/admin", 403),            # pcre2 is case-sensitive: not decoded
        ("POST", "/index.html", 403),       # not an admin page
        ("POST", "/admin/users", 200),      # <id>^4</id> fails
        ("POST", "/admin/users", 404), ("POST", "/xmlrpc.php", 401))]
    events = logtest(config, lines)
    assert events[0]["fields"] == {"srcip": "203.0.113.50", "http.method": "POST",
                                   "url": "/wp-login.php", "id": "403"}
    assert events[0]["decoder"] == {"name": "webapp", "child": None}
    assert [e["rule"]["id"] for e in events] == [100121, 100121, 100120, 100120, 100120,
                                                  100121, 100122]
    assert events[2]["fields"] == {}
    assert [r["command"] for r in events[6]["responses"]] == ["wazuh-firewall-drop",
                                                              "wazuh-host-deny"]
    assert events[6]["responses"][1]["timeout"] == 300


def test_white_list_is_honoured(config):
    lines = [syslog(f"login failed for bob from 192.0.2.250 port {p}") for p in range(4)]
    [response] = logtest(config, lines)[3]["responses"]
    assert response["target"] == "192.0.2.250" and "white" in response["skipped"]


def test_config_fragment(imported):
    out, _ = imported
    fragment = tomllib.loads((out / "conf.d/60-wazuh.toml").read_text())
    assert fragment["global"] == {"white_list": ["127.0.0.1", "192.0.2.250/32"]}
    commands = {c["name"]: c for c in fragment["command"]}
    # named like arguard's default commands: renamed, so the fragment loads beside them
    assert commands["wazuh-firewall-drop"] == {"name": "wazuh-firewall-drop",
                                               "action": "firewall", "expect": "srcip",
                                               "timeout_allowed": True}
    assert commands["wazuh-host-deny"]["action"] == "hosts-deny"
    assert commands["notify"] == {"name": "notify", "executable": "notify.sh",
                                  "extra_args": ["-t", "ops", "--quiet"],
                                  "timeout_allowed": False}
    # named by a disabled <active-response> only: Wazuh's built-in, so the native action
    assert commands["wazuh-disable-account"]["action"] == "disable-account"
    responses = fragment["active_response"]
    assert responses[0] == {"command": "wazuh-firewall-drop", "location": "local",
                            "rules_id": [100110, 100122], "timeout": 600,
                            "repeated_offenders": [30, 60]}
    assert "timeout" not in responses[2]          # notify does not allow one
    assert responses[3]["disabled"] is True


def test_untranslatable_things_are_reported_per_rule_and_skipped(tmp_path):
    out = tmp_path / "out"
    result = import_wazuh(out, *TRANSLATABLE, "untranslatable.xml")
    assert result.returncode == 2
    report = result.stderr
    expected = [
        ('<decoder name="sonicwall-app">', "decoder 'sonicwall-app': plugin decoder "
                                            "'SonicWall_Decoder': arguard has only Wazuh's "
                                            "JSON_Decoder"),
        ('<decoder name="sonicwall-app-child">', "decoder 'sonicwall-app-child': its parent "
                                                  "'sonicwall-app' was skipped"),
        ('id="100200"', "rule 100200: <list> file 'etc/lists/blacklist' not found (no Wazuh "
                        "installation around untranslatable.xml: give --ossec-root); rule "
                        "skipped"),
        ('id="100206"', "rule 100206: <srcgeoip>: GeoIP needs a MaxMind country database"),
        ('id="100201"', "rule 100201: its parent rule 100200 was skipped"),
        ('id="100202"', "rule 100202: compiled rule 'is_maximum_length' is not built into"),
        ('id="100203"', "rule 100203: <not_same_source_ip> is not supported"),
        ('id="100204"', r"rule 100204: <regex> 'bad \x escape': unknown escape \x"),
        ("gateway.example.org", "white_list: 'gateway.example.org' is not an address"),
    ]
    for marker, message in expected:
        where = f"untranslatable.xml:{line_of('untranslatable.xml', marker)}: NOT TRANSLATED: "
        assert where + message in report, (where + message, report)
    assert "9 thing(s) NOT translated" in report
    config = config_for(tmp_path / "config", out)
    check = arguard("check-config", "-c", str(config))
    assert check.returncode == 0, check.stderr
    rules = tomllib.loads((out / "rules.d" / "untranslatable.toml").read_text())["rule"]
    assert [r["id"] for r in rules] == [100205]
    assert not (out / "decoders.d" / "untranslatable.toml").exists()


def test_malformed_xml_exits_1_with_the_line(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text('<group name="x">\n  <rule id="1" level="3">\n</group>\n')
    result = arguard("import", "wazuh", str(bad), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{bad}:3: NOT TRANSLATED: file: XML syntax error: mismatched tag" in result.stderr


def test_wazuh_xml_quirks_are_repaired_keeping_line_numbers():
    root = parse('<?xml version="1.0"?>\n<!-- a -- b -->\n<var name="X">a&b</var>\n'
                 '<rule id="1" level="3">\n  <regex>\\<script|a < b|&amp;</regex>\n</rule>\n'
                 '<rule id="2" level="3"/>\n')
    variable, first, second = root.children
    assert (variable.tag, variable.text, variable.line) == ("var", "a&b", 3)
    [regex] = first.children
    assert (regex.text, regex.line) == ("\\<script|a < b|&", 5)
    assert second.line == 7
