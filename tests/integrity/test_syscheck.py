"""File changes as Wazuh's syscheck events, through the shipped rules 550/553/554 and local
rules written as Wazuh users write them, into alerts.json's form."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from arguard.alerts import alert_to_dict, alert_to_json
from arguard.config import INTEGRITY_CHECKS, load_config
from arguard.errors import ConfigError
from arguard.model import FileChange, FileState
from arguard.pipeline import Pipeline
from arguard.respond.policy import Policy
from arguard.ruleset.files import load_ruleset
from arguard.syscheck import change_event
from tests.conftest import write_config

CHECKS = frozenset(INTEGRITY_CHECKS)
WHEN = time.mktime((2026, 3, 1, 10, 0, 0, 0, 0, -1))
BEFORE = FileState("file", 10, 0o644, 0, 0, 1234, 64768, int(WHEN - 3600) * 10**9,
                   int(WHEN - 3600) * 10**9, "a" * 64)
AFTER = FileState("file", 18, 0o600, 0, 0, 1234, 64768, int(WHEN) * 10**9, int(WHEN) * 10**9,
                  "b" * 64)
PATH = "/etc/nginx/nginx.conf"


def change(event: str, before=None, after=None, changed=(), found_by="realtime") -> FileChange:
    return FileChange(PATH, event, found_by, before, after, changed, WHEN)


def outcome(pipeline: Pipeline, file_change: FileChange):
    return pipeline.process_event(change_event(file_change, CHECKS))


def test_a_modification_is_rule_550_with_wazuhs_fields_and_full_log(shipped_ruleset):
    pipeline = Pipeline(shipped_ruleset, line_time=False)
    result = outcome(pipeline, change("modified", BEFORE, AFTER,
                                      ("size", "permission", "mtime", "sha256")))
    assert result.event.decoder == "syscheck_integrity_changed"
    alert = alert_to_dict(result.alert)
    assert alert["rule"] | {"firedtimes": 1} == {
        "level": 7, "description": "Integrity checksum changed.", "id": "550",
        "firedtimes": 1, "groups": ["ossec", "syscheck", "syscheck_entry_modified",
                                    "syscheck_file"],
        "pci_dss": ["11.5"], "gpg13": ["4.11"], "gdpr": ["II_5.1.f"],
        "hipaa": ["164.312.c.1", "164.312.c.2"], "nist_800_53": ["SI.7"],
        "tsc": ["PI1.4", "PI1.5", "CC6.1", "CC6.8", "CC7.2", "CC7.3"],
        "mitre": {"id": ["T1565.001"]}}
    mtime = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(WHEN))
    earlier = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(WHEN - 3600))
    assert alert["syscheck"] == {
        "path": PATH, "mode": "realtime", "size_before": "10", "size_after": "18",
        "perm_before": "rw-r--r--", "perm_after": "rw-------", "uid_after": "0",
        "gid_after": "0", "sha256_before": "a" * 64, "sha256_after": "b" * 64,
        "uname_after": "root", "gname_after": "root", "mtime_before": earlier,
        "mtime_after": mtime, "inode_after": 1234,
        "changed_attributes": ["size", "permission", "mtime", "sha256"],
        "event": "modified"}
    assert "data" not in alert
    assert alert["decoder"] == {"name": "syscheck_integrity_changed"}
    assert alert["location"] == "syscheck"
    assert alert["full_log"] == (
        f"File '{PATH}' modified\nMode: realtime\n"
        "Changed attributes: size,permission,mtime,sha256\n"
        "Size changed from '10' to '18'\n"
        "Permissions changed from 'rw-r--r--' to 'rw-------'\n"
        f"Old modification time was: '{int(WHEN - 3600)}', now it is '{int(WHEN)}'\n"
        f"Old sha256sum was: '{'a' * 64}'\nNew sha256sum is : '{'b' * 64}'\n")
    assert json.loads(alert_to_json(result.alert)) == alert


def test_added_and_deleted_are_554_and_553(shipped_ruleset):
    pipeline = Pipeline(shipped_ruleset, line_time=False)
    added = outcome(pipeline, change("added", after=AFTER, found_by="scheduled"))
    deleted = outcome(pipeline, change("deleted", before=BEFORE))
    assert (added.alert.rule.id, added.alert.rule.level) == (554, 5)
    assert (deleted.alert.rule.id, deleted.alert.rule.level) == (553, 7)
    assert alert_to_dict(added.alert)["syscheck"]["mode"] == "scheduled"
    assert alert_to_dict(added.alert)["full_log"] == f"File '{PATH}' added\nMode: scheduled\n"
    shown = alert_to_dict(deleted.alert)["syscheck"]
    assert (shown["event"], shown["sha256_after"]) == ("deleted", "a" * 64)
    assert deleted.alert.rule.mitre == ("T1070.004", "T1485")


LOCAL_RULES = """
    [[rule]]
    id = 100200
    level = 12
    if_sid = [550]
    field."syscheck.path" = '^/etc/nginx/nginx\\.conf$'
    description = "nginx's main configuration changed"

    [[rule]]
    id = 100201
    level = 10
    if_sid = [554]
    field.file = '^/etc/nginx/conf\\.d/'
    field.perm = '^rw-'
    description = "a file was added to nginx's conf.d"
    """


def test_local_rules_on_syscheck_path_and_on_wazuhs_field_names(tmp_path):
    config_path = write_config(tmp_path, extra="""
        [[command]]
        name = "notify"
        executable = "notify"
        expect = "filename"

        [[active_response]]
        command = "notify"
        rules_id = [550, 554]
        """)
    (tmp_path / "rules.d" / "local.toml").write_text(textwrap.dedent(LOCAL_RULES))
    config = load_config(config_path)
    pipeline = Pipeline(load_ruleset(config), line_time=False, decide=Policy(config).decide)

    ours = outcome(pipeline, change("modified", BEFORE, AFTER, ("sha256",)))
    assert ours.alert.rule.id == 100200
    assert [(r.command, r.target) for r in ours.responses] == []  # bound to 550, not 100200
    other = FileChange("/etc/nginx/mime.types", "modified", "realtime", BEFORE, AFTER,
                       ("sha256",), WHEN)
    result = pipeline.process_event(change_event(other, CHECKS))
    assert result.alert.rule.id == 550
    assert [(r.command, r.target) for r in result.responses] == [
        ("notify", "/etc/nginx/mime.types")]
    added = FileChange("/etc/nginx/conf.d/evil.conf", "added", "realtime", None, AFTER, (),
                       WHEN)
    assert pipeline.process_event(change_event(added, CHECKS)).alert.rule.id == 100201


def test_an_unknown_syscheck_field_in_a_rule_names_the_known_ones(tmp_path):
    config_path = write_config(tmp_path)
    (tmp_path / "rules.d" / "local.toml").write_text(textwrap.dedent("""
        [[rule]]
        id = 100300
        level = 3
        if_sid = [550]
        field."syscheck.sha256" = 'x'
        """))
    with pytest.raises(ConfigError) as raised:
        load_ruleset(load_config(config_path))
    message = str(raised.value.problems[0])
    assert "local.toml:6: rule 100300: unknown field 'syscheck.sha256'" in message
    assert "syscheck.sha256_after" in message


def test_log_lines_never_reach_the_syscheck_rules(shipped_ruleset):
    from arguard.model import Line

    pipeline = Pipeline(shipped_ruleset, line_time=False)
    line = Line("Mar  1 10:00:00 host syscheck: File '/etc/passwd' modified", "/var/log/x",
                WHEN)
    assert pipeline.process(line).evaluation.rule is None
