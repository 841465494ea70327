"""Counters that add up: after 1,000,000 mixed and hostile lines, `status` counts every line
written — empty, cut, invalid and NUL-bearing lines included — and shows each kind."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from tests.daemon_process import ArguardProcess, arguard, hosts_deny_config, status, syslog_line

TOTAL = 1_000_000
MAX_LINE_BYTES = 256


def hostile_lines(rng: random.Random) -> tuple[list[bytes], Counter[str]]:
    """The lines (without their newline) and how many of each kind."""
    kinds: Counter[str] = Counter()
    lines = []
    for number in range(TOTAL):
        pick = rng.random()
        if pick < 0.05:
            kind, line = "empty", rng.choice([b"", b" ", b"\t \t", b"\r", b"\x0b\x0c"])
        elif pick < 0.10:
            kind, line = "cut", b"y" * (MAX_LINE_BYTES + 1 + rng.randrange(300))
        elif pick < 0.15:
            kind, line = "invalid_utf8", b"caf\xe9 \xff\xfe login from 198.51.100.7"
        elif pick < 0.20:
            kind, line = "nul", b"sshd[1]: Failed\x00password for root from 192.0.2.1"
        elif pick < 0.25:
            kind, line = "other", "unicode ✓ \u2028 \x1c\x85 \u202e".encode()
        elif pick < 0.30:
            kind, line = "other", syslog_line(
                f"Failed password for invalid user u{number} from "
                f"198.51.{number % 200}.{number % 250 + 1} port 22 ssh2").rstrip("\n").encode()
        elif pick < 0.35:
            kind, line = "other", syslog_line(
                f"pam_unix(cron:session): session opened for user root #{number}",
                "CRON", 99).rstrip("\n").encode()
        else:
            kind, line = "other", f"application message {number} without a header".encode()
        kinds[kind] += 1
        lines.append(line)
    return lines, kinds


def test_status_counts_every_line_written(tmp_path: Path):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, f"""
        [[source]]
        path = "auth.log"
        max_line_bytes = {MAX_LINE_BYTES}
        """, responses="")
    lines, kinds = hostile_lines(random.Random(17))
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        with open(tmp_path / "auth.log", "ab") as log:
            for start in range(0, TOTAL, 50_000):
                log.write(b"".join(line + b"\n" for line in lines[start:start + 50_000]))
                log.flush()
        current = status(config)
        deadline = time.monotonic() + 300   # a bound for a hung daemon, not a speed goal
        while current["sources"][0]["lines"] < TOTAL and time.monotonic() < deadline:
            time.sleep(1.0)   # each look is a CLI process: not too often
            current = status(config)
        [source] = current["sources"]
        assert source["lines"] == TOTAL
        assert (source["empty_lines"], source["lines_cut"], source["invalid_utf8"],
                source["nul_bytes"]) == (kinds["empty"], kinds["cut"], kinds["invalid_utf8"],
                                         kinds["nul"])
        assert current["lines"] == TOTAL - kinds["empty"], "every other line was processed"
        assert current["line_errors"] == 0
        assert "cut to max_line_bytes" in arguard(config, "status", check=True).stdout
    finally:
        process.close()
