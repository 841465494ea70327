"""Nothing lost, nothing read twice (beyond one batch after a crash), across a log rotation,
a SIGTERM restart and a SIGKILL restart of a real `arguard run` while a writer appends.

Every written line is a failed password, so each one processed becomes one alert in
alerts.json; the alerts' `full_log` multiset is compared with the lines written.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from arguard.sources.manager import BATCH_LINES
from tests.daemon_process import ArguardProcess, failed_password, hosts_deny_config, wait_for

TOTAL = 30_000


def alerts(directory: Path) -> list[str]:
    path = directory / "log/alerts.json"
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[:text.rfind("\n") + 1]   # a batch may be being written as we read
    return [json.loads(line)["full_log"] for line in complete.splitlines()]


class Writer(threading.Thread):
    """Appends TOTAL distinct lines at a steady pace, rotating (rename + create) once."""

    def __init__(self, log: Path):
        super().__init__(daemon=True)
        self.log = log
        self.written: list[str] = []

    def run(self) -> None:
        out = open(self.log, "a")
        for i in range(TOTAL):
            if i == TOTAL // 2:
                out.close()
                self.log.rename(self.log.with_name("auth.log.1"))
                out = open(self.log, "a")
            line = failed_password(f"198.51.100.{i % 200 + 1}", i)
            out.write(line)
            self.written.append(line.rstrip("\n"))
            if i % 100 == 0:
                out.flush()
                time.sleep(0.005)
        out.close()


def test_restarts_during_writes_lose_nothing(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, """
        [[source]]
        path = "auth.log"
        """, responses="")
    writer = Writer(tmp_path / "auth.log")
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        writer.start()
        wait_for(lambda: len(alerts(tmp_path)) > TOTAL // 5, deadline=60, what="a fifth")
        assert process.terminate() == 0
        after_term = len(alerts(tmp_path))
    finally:
        process.close()

    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        wait_for(lambda: len(alerts(tmp_path)) > after_term + TOTAL // 4, deadline=60,
                 what="reading after the clean restart")
        process.process.send_signal(signal.SIGKILL)
        process.process.wait()
    finally:
        process.close()
    after_term_run = Counter(alerts(tmp_path))
    assert max(after_term_run.values()) == 1, "a clean stop and restart read nothing twice"

    writer.join(timeout=120)
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        wait_for(lambda: set(alerts(tmp_path)) >= set(writer.written), deadline=90,
                 what="every written line")
        assert process.terminate() == 0
    finally:
        process.close()

    seen = Counter(alerts(tmp_path))
    assert set(seen) == set(writer.written), "no line lost, none invented"
    twice = sum(count - 1 for count in seen.values())
    assert twice <= BATCH_LINES, f"{twice} lines read again after SIGKILL (at most one batch)"
