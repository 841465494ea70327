"""`arguard import wazuh --ossec-root DIR`: a small Wazuh installation (fixtures/wazuh-root, its
stock ruleset/ completed with Wazuh's own XML from ../shared/corpus/wazuh-ruleset) is imported
in one command, the output copied into a configuration directory as it is, `check-config`
loads it and `logtest` gives Wazuh's rule for each case of the installation's local rules:
a CDB list, time and weekday, a JSON decoder, first time seen, if_matched_sid without
frequency, a child decoder with its own program_name."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from tests.conftest import SHARED, require_corpus
from tests.importers.test_wazuh import arguard, config_for, logtest

ROOT = Path(__file__).parent / "fixtures" / "wazuh-root"
STOCK = SHARED / "corpus" / "wazuh-ruleset"
PAM_SESSION = "srv sshd[200]: pam_unix(sshd:session): session opened for user {}(uid=0) by " \
              "(uid=0)"


@pytest.fixture(scope="module")
def imported(tmp_path_factory, request):
    require_corpus(request, STOCK)
    base = tmp_path_factory.mktemp("wazuh-root")
    ossec = base / "ossec"
    shutil.copytree(ROOT, ossec)
    for xml in STOCK.glob("*.xml"):
        kind = "decoders" if xml.name.endswith("_decoders.xml") else "rules"
        (ossec / "ruleset" / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(xml, ossec / "ruleset" / kind / xml.name)
    out = base / "out"
    result = arguard("import", "wazuh", "--ossec-root", str(ossec), "-o", str(out))
    return base, ossec, out, result


@pytest.fixture(scope="module")
def config(imported):
    base, _, out, _ = imported
    return config_for(base / "etc-arguard", out, shipped=True)


def test_the_installation_is_imported_as_wazuh_reads_it(imported):
    _, ossec, out, result = imported
    assert result.returncode == 2, result.stderr   # a command <localfile>, a lost parent
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "conf.d/60-wazuh.toml", "decoders.d/local_decoder.toml", "lists/blocked-ips",
        "lists/privileged-users", "rules.d/0540-myservice_rules.toml",
        "rules.d/local_rules.toml"]
    report = result.stderr
    # Wazuh's stock files of the products arguard ships are not imported again
    for name in ("0310-ssh_decoders.xml", "0095-sshd_rules.xml", "0085-pam_rules.xml"):
        assert f"{name}: note: stock ruleset: not imported: arguard ships the same" in report
    # <rule_exclude>: never read
    assert "0215-policy_rules.xml" not in report
    rules = tomllib.loads((out / "rules.d/0540-myservice_rules.toml").read_text())["rule"]
    assert [r["id"] for r in rules] == [88100, 88101]
    assert "0540-myservice_rules.xml:14: NOT TRANSLATED: rule 88102: its parent rule 99999 " \
           "is in none of the imported files and not shipped; rule skipped" in report
    assert "ossec.conf:25: NOT TRANSLATED: localfile: log_format 'command'" in report
    assert "blocked-ips:4: note: list: a line without ':' dropped" in report
    assert (out / "lists/blocked-ips").read_text() == (
        '203.0.113.66:botnet\n198.51.100.:scanner\n"2001:db8:bad::1":botnet\n')
    fragment = tomllib.loads((out / "conf.d/60-wazuh.toml").read_text())
    assert fragment["source"] == [{"path": "/var/log/auth.log"},
                                  {"path": "/var/log/webapp/events.json"}, {"journal": {}}]
    assert fragment["global"] == {"white_list": ["127.0.0.1", "192.0.2.250"]}
    assert [(r["command"], r["rules_id"]) for r in fragment["active_response"]] == [
        ("wazuh-firewall-drop", [100400, 100410]), ("lock-user", [100403])]


def test_check_config_loads_it_unchanged(config):
    check = arguard("check-config", "-c", str(config))
    assert check.returncode == 0, check.stderr
    assert "conf.d/60-wazuh.toml" in check.stdout


def test_an_invalid_user_from_a_listed_address(config):
    events = logtest(config, [
        "Nov 25 10:00:00 srv sshd[1]: Invalid user admin from 203.0.113.66 port 4242",
        "Nov 25 10:00:01 srv sshd[2]: Invalid user admin from 198.51.100.7 port 4242",
        "Nov 25 10:00:02 srv sshd[3]: Invalid user admin from 192.0.2.7 port 4242"])
    assert [e["rule"]["id"] for e in events] == [100400, 100400, 5710]
    assert [(r["command"], r["target"]) for r in events[0]["responses"]] == [
        ("wazuh-firewall-drop", "203.0.113.66")]


def test_a_pam_session_by_time_of_day_and_weekday(config):
    # 2026-11-25 is a Wednesday, 2026-11-28 a Saturday
    events = logtest(config, [f"{when} {PAM_SESSION.format(user)}" for when, user in (
        ("Nov 25 23:10:00", "alice"), ("Nov 25 10:00:00", "alice"),
        ("Nov 28 10:00:00", "alice"), ("Nov 25 10:00:00", "alice"),
        ("Nov 25 23:10:00", "root"), ("Nov 25 21:00:00", "root"))])
    assert [e["rule"]["id"] for e in events] == [100401, 5501, 100402, 5501, 100403, 100401]
    assert [(r["command"], r["target"]) for r in events[4]["responses"]] == [
        ("lock-user", "root")]


def test_a_json_login_failure_carries_its_srcip(config):
    events = logtest(config, [
        '{"app":"webapp","event":{"action":"login_failed"},"srcip":"203.0.113.70"}',
        '{"app":"webapp","event":{"action":"login_failed"},"note":"from 203.0.113.9"}',
        '{"app":"webapp","event":{"action":"login_ok"},"srcip":"203.0.113.70"}'])
    assert events[0]["decoder"]["name"] == "webapp-json"
    assert events[0]["fields"]["srcip"] == "203.0.113.70"
    assert events[0]["fields"]["event.action"] == "login_failed"
    assert events[0]["rule"]["id"] == 100410
    assert [r["target"] for r in events[0]["responses"]] == ["203.0.113.70"]
    # an address in free text is not the event's address
    assert "srcip" not in events[1]["fields"] and events[1]["rule"]["id"] == 100410
    assert [(r["target"], r["verb"]) for r in events[1]["responses"]] == [("", "skip")]
    assert events[2]["rule"] is None


def test_a_user_seen_for_the_first_time_and_again(config):
    events = logtest(config, [
        f"Nov 25 10:00:0{n} srv sshd[{n}]: Accepted publickey for {user} from 203.0.113.90 "
        f"port 5000{n} ssh2" for n, user in enumerate(("alice", "alice", "bob"))])
    assert [e["rule"]["id"] for e in events] == [100404, 5715, 100404]


def test_a_login_after_a_failure_from_the_same_address(config):
    events = logtest(config, [
        "Nov 25 10:00:00 srv sshd[1]: Failed password for dave from 203.0.113.100 port 1 ssh2",
        "Nov 25 10:00:30 srv sshd[2]: Accepted password for dave from 198.51.100.100 port 2 ssh2",
        "Nov 25 10:00:40 srv sshd[3]: Accepted password for dave from 203.0.113.100 port 3 ssh2"])
    # the second line is dave's first login here (if_fts): the third is not
    assert [e["rule"]["id"] for e in events] == [5760, 100404, 100405]


def test_a_child_decoder_with_its_own_program_name(config):
    events = logtest(config, ["Nov 25 10:00:00 srv gate[1]: relay: denied 203.0.113.5",
                              "Nov 25 10:00:00 srv other[1]: relay: denied 203.0.113.5"])
    assert events[0]["decoder"] == {"name": "relay", "child": "relay-denied"}
    assert events[0]["fields"] == {"srcip": "203.0.113.5"}
    assert events[1]["decoder"] == {"name": "relay", "child": None}
    assert events[1]["fields"] == {}
    assert [e["rule"]["id"] for e in events] == [100411, 100411]
