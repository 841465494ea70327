"""`arguard run --dry-run` is a real alert-only mode: its read positions and would-be blocks
live in its own database (never mixed with the blocks in place), so restarts and rotations
lose and repeat nothing, and status shows the would-be blocks as such."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path

from arguard.sources.manager import BATCH_LINES
from tests.conftest import REPO, write_config
from tests.daemon_process import (ATTACKER, ArguardProcess, arguard, failed_password,
                                  hosts_deny_config, status, wait_for)
from tests.sources.helpers import DEADLINE, expected_lines, writer_argv

COUNT = 60_000


def alerted(directory: Path) -> list[str]:
    """The lines alerts.json says were read, complete lines only (a batch may be being
    written)."""
    path = directory / "log/alerts.json"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line)["full_log"] for line in text[:text.rfind("\n") + 1].splitlines()]


def test_restarts_across_rotations_in_dry_run_lose_and_repeat_nothing(tmp_path: Path):
    log = tmp_path / "auth.log"
    log.touch()
    config = write_config(tmp_path, shipped=False, extra='[[source]]\npath = "auth.log"\n')
    (tmp_path / "decoders.d/lines.toml").write_text(textwrap.dedent("""
        [[decoder]]
        name = "numbered"
        prematch = '^L \\d{8} '
        """))
    (tmp_path / "rules.d/lines.toml").write_text(textwrap.dedent("""
        [[rule]]
        id = 100100
        level = 3
        decoded_as = "numbered"
        description = "a numbered test line"
        """))

    def start() -> ArguardProcess:
        process = ArguardProcess(tmp_path, config, "--dry-run")
        process.wait_notified("READY=1")
        return process

    process = start()
    writer = subprocess.Popen(writer_argv(log, COUNT, rate=15_000, rotate="rename",
                                          every=10_000), cwd=REPO)
    try:
        time.sleep(1.0)
        assert process.terminate() == 0
        process.close()
        after_term = len(alerted(tmp_path))
        time.sleep(0.8)                       # down across a rotation
        process = start()
        time.sleep(1.0)
        process.process.send_signal(signal.SIGKILL)
        process.process.wait()
        process.close()
        killed_run = alerted(tmp_path)[after_term:]
        time.sleep(0.8)
        process = start()
        assert writer.wait(timeout=DEADLINE) == 0
        wait_for(lambda: set(alerted(tmp_path)) >= set(expected_lines("L", COUNT)),
                 deadline=DEADLINE, what="every written line")
        assert process.terminate() == 0
    finally:
        writer.kill()
        process.close()
    everything = alerted(tmp_path)
    first, second = everything[:after_term], killed_run
    third = everything[after_term + len(killed_run):]
    assert first and second and third, "every run read something"
    assert not set(first) & set(second + third), "SIGTERM: resumed exactly where it stopped"
    repeated = set(second) & set(third)
    assert repeated <= set(second[-BATCH_LINES:]), "SIGKILL: at most the last batch again"
    assert Counter(everything) - Counter(repeated) == Counter(expected_lines("L", COUNT))
    assert not (tmp_path / "state/arguard.db").exists(), "the live database is not touched"


def test_would_be_blocks_are_kept_shown_as_such_and_never_applied(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, '[[source]]\npath = "auth.log"\n')
    process = ArguardProcess(tmp_path, config, "--dry-run")
    try:
        process.wait_notified("READY=1")
        with open(tmp_path / "auth.log", "a") as log:
            log.write("".join(failed_password(ATTACKER, 40000 + i) for i in range(8)))
        wait_for(lambda: status(config).get("would_block", {}).get("active"),
                 what="the would-be block")
        running = status(config)
        [would] = running["would_block"]["active"]
        assert (would["target"], running["blocks"]["active"]) == (ATTACKER, [])
        assert 590 < would["expires_in"] <= 600
        shown = arguard(config, "status", check=True).stdout
        assert "would-be blocks of this dry run (nothing applied): 1" in shown
        assert process.terminate() == 0
    finally:
        process.close()
    assert "ALL: " not in (tmp_path / "hosts.deny").read_text()
    stopped = status(config)
    assert [b["target"] for b in stopped["would_block"]["active"]] == [ATTACKER]
    assert stopped["blocks"]["active"] == []

    again = ArguardProcess(tmp_path, config, "--dry-run")
    try:
        again.wait_notified("READY=1")
        restarted = status(config)
        assert [b["expires_at"] for b in restarted["would_block"]["active"]] == \
            [would["expires_at"]]
        assert restarted["sources"][0]["lines"] == 0, "nothing read again"
    finally:
        again.close()
