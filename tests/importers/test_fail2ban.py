"""`arguard import fail2ban`, round-tripped: import our fixture filter and jail, load the
result with check-config, run logtest on log lines, compare rule ids and fields."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arguard.importers.fail2ban import seconds
from tests.conftest import REPO, write_config

FIXTURES = Path(__file__).parent / "fixtures" / "fail2ban"
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}


def arguard(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arguard.cli", *args], input=stdin,
                          capture_output=True, text=True, env=ENV)


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    out = tmp_path / "imported"
    result = arguard("import", "fail2ban", str(FIXTURES / "myssh.conf"), "--jail",
                     str(FIXTURES / "jail.local"), "-o", str(out))
    assert result.returncode == 2, "one failregex (<SKIPLINES>) cannot be translated"
    assert "failregex line 4: <SKIPLINES> is not supported" in result.stderr
    assert "datepattern ignored" in result.stderr
    config = write_config(tmp_path, shipped=False,
                          extra=(out / "arguard-fail2ban.toml").read_text())
    for kind in ("decoders.d", "rules.d"):
        for path in (out / kind).glob("*.toml"):
            (tmp_path / kind / path.name).write_text(path.read_text())
    return config


def logtest(config: Path, lines: list[str]) -> list[dict]:
    result = arguard("logtest", "--json", "-c", str(config), stdin="".join(
        f"Mar  1 10:00:{i:02d} srv {line}\n" for i, line in enumerate(lines)))
    assert result.returncode == 0, result.stderr
    return [json.loads(text) for text in result.stdout.splitlines()]


def test_imported_filter_loads_and_detects(imported: Path):
    checked = arguard("check-config", "-c", str(imported))
    assert checked.returncode == 0, checked.stderr
    assert "4 rules" in checked.stdout and "1 active responses" in checked.stdout

    results = logtest(imported, [
        "sshd[1]: Failed password for invalid user bob from 198.51.100.7 port 22",
        "sshd-session[2]: Invalid user eve from 2001:db8::7",
        "sshd[3]: Connection closed by invalid user x 198.51.100.8 port 4 [preauth]",
        "sshd[4]: error: PAM: Failed keyboard for root from 198.51.100.9 port 5",
        "sshd[5]: Timeout before authentication for 198.51.100.10",   # aggressive mode only
        "sshd[6]: Failed password for trusteduser from 198.51.100.11 port 6",
        "cron[7]: Failed password for root from 198.51.100.12 port 7",  # not the daemon
        "sshd[8]: Failed password for root from 198.51.100.7 port 22 ssh2",  # case/anchor
    ])
    summary = [(r["rule"] and r["rule"]["id"], r["fields"].get("srcip"),
                r["fields"].get("srcuser")) for r in results]
    assert summary == [
        (100001, "198.51.100.7", "bob"),
        (100001, "2001:db8::7", "eve"),
        (100001, "198.51.100.8", None),
        (100001, "198.51.100.9", "root"),
        (100000, None, None),
        (100002, "198.51.100.11", "trusteduser"),
        (None, None, None),
        (100000, None, None),
    ]
    assert results[5]["alert"] is False, "ignoreregex lines do not alert"


def test_jail_becomes_a_frequency_rule_and_an_active_response(imported: Path):
    lines = [f"sshd[1]: Failed password for root from 203.0.113.{n} port 22" for n in (5, 5, 6, 5)]
    lines += ["sshd[1]: Failed password for root from 192.0.2.10 port 22"] * 3
    results = logtest(imported, lines)
    assert [r["rule"]["id"] for r in results] == [100001, 100001, 100001, 100003,
                                                  100001, 100001, 100003]
    assert results[3]["responses"] == [{"command": "f2b-myssh", "target": "203.0.113.5",
                                        "timeout": 3600, "skipped": None}]
    [ignored] = results[6]["responses"]
    assert ignored["target"] == "192.0.2.10" and "white" in ignored["skipped"]


def test_fail2ban_durations():
    assert [seconds(t) for t in ("600", "10m", "1h", "2d", "1w", "1h 30m")] == \
        [600, 600, 3600, 172_800, 604_800, 5400]
    with pytest.raises(ValueError):
        seconds("soon")
