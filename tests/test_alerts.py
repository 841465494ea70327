"""alerts.json lines: the text written is the alert object, key for key and in order, for
alerts of every shipped rule family, with user-controlled text that needs JSON escaping."""

from __future__ import annotations

import json

from arguard.alerts import AlertLog, alert_to_dict
from arguard.model import Line
from arguard.pipeline import Pipeline
from tests.conftest import SHARED, require_corpus

HOSTILE = [
    'Nov 22 10:00:00 web01 sshd[7]: Invalid user "a\\\\b\tc\u00e9\U0001f600 from 192.0.2.1 port 22',
    'Nov 22 10:00:01 web01 sshd[7]: Failed password for invalid user </script>" from '
    '2001:db8::1 port 22 ssh2',
    '203.0.113.9 - - [22/Nov/2026:10:00:02 +0000] "GET /a?q=\'+union+select+\\"x\\" HTTP/1.1" '
    '404 12 "-" "sqlmap/1.7 \x7f"',
]


def test_alerts_json_lines_are_the_alert_objects(shipped_ruleset, tmp_path, request):
    require_corpus(request, SHARED / "corpus")
    pipeline = Pipeline(shipped_ruleset, line_time=True)
    lines = list(HOSTILE)
    for path in sorted((SHARED / "corpus").rglob("*")):
        if path.is_file() and path.name != "SOURCE.txt":
            lines += path.read_text(errors="replace").splitlines()
    alerts = [alert for text in lines
              if (alert := pipeline.process(Line(text, "/var/log/test.log", 1.0e9)).alert)]
    log = AlertLog(tmp_path / "alerts.json")
    for alert in alerts:
        log.write(alert)
    log.close()
    written = (tmp_path / "alerts.json").read_text(encoding="utf-8").splitlines()
    assert len(written) == len(alerts) and len({a.rule.id for a in alerts}) > 20
    for text, alert in zip(written, alerts):
        parsed = json.loads(text)
        expected = alert_to_dict(alert)
        assert parsed == expected
        assert list(parsed) == list(expected) and list(parsed["rule"]) == list(expected["rule"])
    hostile = [json.loads(text)["full_log"] for text in written[:3]]
    assert hostile == HOSTILE


def test_an_alert_after_a_torn_line_is_a_line_of_its_own(shipped_ruleset, tmp_path):
    """A run killed by SIGKILL can leave alerts.json ending mid-line; the next run's first
    alert is not glued to it: the fragment is removed and every line parses."""
    path = tmp_path / "alerts.json"
    path.write_text('{"timestamp": "2026-12-01T13:05:59.161+0000"}\n{"timestamp": "2026-1')
    alert = Pipeline(shipped_ruleset, line_time=True).process(
        Line(HOSTILE[1], "auth.log", 1e9)).alert
    assert alert is not None
    log = AlertLog(path)
    log.write(alert)
    log.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"timestamp": "2026-12-01T13:05:59.161+0000"}'
    assert json.loads(lines[1]) == alert_to_dict(alert) and len(lines) == 2


def test_an_unfinished_last_line_left_by_a_kill_is_removed_at_open(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_bytes(b'{"id": "1"}\n{"id": "2", "full_l')
    log = AlertLog(path)
    log.open()
    log.close()
    assert path.read_bytes() == b'{"id": "1"}\n'
