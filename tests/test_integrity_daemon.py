"""File integrity in a real `arguard run`: Wazuh's rules 550/553/554 in alerts.json, restore-file
bound to them, changes made while the daemon was stopped, the status section, and the
operator's `arguard integrity accept` and `integrity scan --dry-run`."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.daemon_process import ArguardProcess, arguard, status, wait_for

GOOD = b"server { listen 80; }\n"
THEN = """#!{python}
import json, sys
message = json.loads(sys.stdin.readline())
with open({out!r}, "a") as out:
    out.write(message["parameters"]["alert"]["syscheck"]["path"] + "\\n")
"""


def integrity_config(directory: Path, responses: str = "") -> Path:
    watched = directory / "watched"
    (watched / "conf.d").mkdir(parents=True)
    (watched / "nginx.conf").write_bytes(GOOD)
    os.chmod(watched / "nginx.conf", 0o640)
    (watched / "conf.d" / "site.conf").write_bytes(b"site\n")
    (directory / "outside").write_bytes(b"outside secret\n")
    return write_config(directory, extra="""
        [[integrity]]
        paths = ["watched"]
        keep_copies = "1MB"
        ignore = ["*.swp"]
        """ + responses)


def alerts(directory: Path) -> list[dict]:
    path = directory / "log" / "alerts.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def alert_for(directory: Path, rule: int, path: Path) -> dict | None:
    return next((a for a in alerts(directory) if a["rule"]["id"] == str(rule)
                 and a["syscheck"]["path"] == str(path)), None)


@pytest.fixture
def daemon(tmp_path):
    started: list[ArguardProcess] = []

    def start(config: Path) -> ArguardProcess:
        process = ArguardProcess(tmp_path, config)
        started.append(process)
        process.wait_notified("READY=1")
        return process

    yield start
    for process in started:
        process.close()


def test_changes_alert_as_wazuh_and_restore_file_puts_the_known_good_file_back(tmp_path,
                                                                               daemon):
    (tmp_path / "bin").mkdir(mode=0o755, exist_ok=True)
    out = tmp_path / "then.txt"
    script = tmp_path / "bin" / "reload-nginx"
    script.write_text(THEN.format(python=sys.executable, out=str(out)))
    script.chmod(0o750)
    config = integrity_config(tmp_path, """
        [[command]]
        name = "restore"
        action = "restore-file"
        then = "reload-nginx"

        [[active_response]]
        command = "restore"
        rules_id = [550, 553]
        """)
    watched = tmp_path / "watched"
    process = daemon(config)

    nginx = watched / "nginx.conf"
    nginx.write_bytes(b"server { evil }\n")
    nginx.chmod(0o666)
    wait_for(lambda: nginx.read_bytes() == GOOD and stat.S_IMODE(nginx.stat().st_mode) == 0o640,
             what="nginx.conf restored")
    tampered = wait_for(lambda: alert_for(tmp_path, 550, nginx), what="rule 550")
    assert tampered["syscheck"]["sha256_before"] == hashlib.sha256(GOOD).hexdigest()
    assert tampered["syscheck"]["sha256_after"] == \
        hashlib.sha256(b"server { evil }\n").hexdigest()
    assert tampered["rule"]["pci_dss"] == ["11.5"]
    wait_for(lambda: out.exists() and out.read_text() == f"{nginx}\n", what="the then-script")

    site = watched / "conf.d" / "site.conf"
    site.unlink()
    site.symlink_to(tmp_path / "outside")
    wait_for(lambda: not site.is_symlink() and site.read_bytes() == b"site\n",
             what="the symlink replaced by the known-good file")
    assert (tmp_path / "outside").read_bytes() == b"outside secret\n"

    site.unlink()
    wait_for(lambda: site.exists() and site.read_bytes() == b"site\n",
             what="the deleted file recreated")
    assert alert_for(tmp_path, 553, site) is not None

    added = watched / "conf.d" / "added.conf"
    added.write_bytes(b"added\n")
    assert wait_for(lambda: alert_for(tmp_path, 554, added), what="rule 554")
    (watched / "editor.swp").write_bytes(b"ignored\n")
    section = wait_for(lambda: status(config).get("integrity"), what="the status section")
    [shown] = section["paths"]
    assert shown["path"] == str(watched) and shown["realtime"] is True
    assert shown["known_good"] == 2
    wait_for(lambda: status(config)["integrity"]["paths"][0]["changes"]["added"] == 1,
             what="the addition counted")
    # the restores reported nothing of their own: one 550 each for nginx.conf and site.conf
    assert sorted((a["rule"]["id"], a["syscheck"]["path"]) for a in alerts(tmp_path)) == [
        ("550", str(site)), ("550", str(nginx)), ("553", str(site)), ("554", str(added))]
    assert process.terminate() == 0


def test_a_change_made_while_stopped_is_reported_once_at_the_next_start(tmp_path, daemon):
    config = integrity_config(tmp_path)
    watched = tmp_path / "watched"
    process = daemon(config)
    assert process.terminate() == 0
    (watched / "conf.d" / "site.conf").write_bytes(b"changed while stopped\n")

    process = daemon(config)
    changed = wait_for(lambda: alert_for(tmp_path, 550, watched / "conf.d" / "site.conf"),
                       what="the change made while stopped")
    assert changed["syscheck"]["mode"] == "scheduled"
    wait_for(lambda: status(config)["integrity"]["paths"][0]["last_scan_finished"]
             and not status(config)["integrity"]["paths"][0]["scanning"],
             what="the start-up scan")
    assert process.terminate() == 0
    process = daemon(config)
    wait_for(lambda: not status(config)["integrity"]["paths"][0]["scanning"],
             what="the second start-up scan")
    assert process.terminate() == 0
    assert len(alerts(tmp_path)) == 1


def test_accept_and_a_dry_run_scan_with_and_without_the_daemon(tmp_path, daemon):
    config = integrity_config(tmp_path)
    watched = tmp_path / "watched"
    process = daemon(config)
    assert process.terminate() == 0

    (watched / "nginx.conf").write_bytes(b"server { new }\n")
    preview = arguard(config, "integrity", "scan", "--dry-run")
    assert preview.returncode == 6, preview.stderr
    assert "id: '550'" in preview.stdout and f"File '{watched}/nginx.conf' modified" in \
        preview.stdout
    assert "1 change would be reported: added 0, modified 1, deleted 0" in preview.stderr
    as_json = arguard(config, "integrity", "scan", "--dry-run", "--json")
    [line] = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert (line["rule"]["id"], line["fields"]["file"]) == (550, f"{watched}/nginx.conf")
    assert arguard(config, "integrity", "scan", "--dry-run").returncode == 6  # nothing recorded

    accepted = arguard(config, "integrity", "accept", str(watched / "nginx.conf"))
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted 1 file" in accepted.stdout and "1 known-good copy kept" in accepted.stdout
    assert arguard(config, "integrity", "scan", "--dry-run").returncode == 0

    process = daemon(config)
    (watched / "conf.d" / "site.conf").write_bytes(b"site, new\n")
    wait_for(lambda: alert_for(tmp_path, 550, watched / "conf.d" / "site.conf"),
             what="the realtime change")
    through_daemon = arguard(config, "integrity", "accept", str(watched), "--json")
    assert json.loads(through_daemon.stdout)["files"] == 2
    assert arguard(config, "integrity", "scan", check=True).stdout.startswith("scan of 1")
    refused = arguard(config, "integrity", "accept", str(tmp_path / "outside"))
    assert refused.returncode == 4 and "is not watched" in refused.stderr
    assert process.terminate() == 0
    assert len(alerts(tmp_path)) == 1  # nothing reported for the accepted states
