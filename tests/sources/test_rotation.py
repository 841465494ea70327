"""Real rotations while a writer process appends at speed: every line written is delivered
once, in the order written."""

from __future__ import annotations

import os

import pytest

from arguard.config import Source
from tests.sources.helpers import (expected_lines, follow, multiset_difference, run_writer,
                                   texts, until)

COUNT = 60_000


@pytest.mark.parametrize("mode", ["rename", "copytruncate", "delete"])
def test_rotation_while_writer_appends(tmp_path, mode):
    log = tmp_path / "logs" / "app.log"
    log.parent.mkdir()
    log.touch()

    # A deleted generation is readable only by whoever opened it before the deletion: at
    # 100,000 lines/s one lives 0.12 s, less than a loaded CI machine may take to schedule the
    # follower. At 20,000 lines/s it lives 0.6 s (a real log is deleted hourly at most).
    rate = 20_000 if mode == "delete" else 100_000

    async def scenario(manager, delivered):
        await run_writer(log, COUNT, rate=rate, rotate=mode, every=12_000)
        await until(lambda: len(delivered) >= COUNT)

    delivered, status, batches = follow([Source(path=str(log))], tmp_path / "db", scenario)
    want = expected_lines("L", COUNT)
    got = texts(delivered)
    missing, extra = multiset_difference(got, want)
    assert not missing and not extra, (sum(missing.values()), sum(extra.values()))
    assert got == want
    assert {line.location for line in delivered} == {str(log)}
    assert status[0]["errors"] == 0 and status[0]["lines"] == COUNT
    assert max(batches) <= 6000


def test_symlinked_log_path_follows_its_target_through_rotations(tmp_path):
    target_dir = tmp_path / "data"
    target_dir.mkdir()
    target = target_dir / "real.log"
    target.touch()
    link = tmp_path / "app.log"
    link.symlink_to(target)

    async def scenario(manager, delivered):
        await run_writer(target, 20_000, rate=100_000, rotate="rename", every=7_000)
        await until(lambda: len(delivered) >= 20_000)
        # the link now points elsewhere: that file is followed from its start
        other = target_dir / "other.log"
        other.write_text("after relink\n")
        link.unlink()
        link.symlink_to(other)
        await until(lambda: len(delivered) >= 20_001)

    delivered, status, _ = follow([Source(path=str(link))], tmp_path / "db", scenario)
    assert texts(delivered) == expected_lines("L", 20_000) + ["after relink"]
    assert status[0]["errors"] == 0


def test_two_rotations_between_two_reads_lose_nothing(tmp_path):
    """A file that was rotated away again before it was ever opened is read whole."""
    log = tmp_path / "app.log"
    log.write_text("first 1\n")
    blocked = []

    async def scenario(manager, delivered):
        await until(lambda: len(delivered) >= 1)
        # All of this happens on the loop, between two reads of the manager.
        with open(log, "a") as f:
            f.write("first 2\n")
        os.rename(log, f"{log}.1")
        log.write_text("second 1\nsecond 2\n")
        os.rename(f"{log}.1", f"{log}.2")
        os.rename(log, f"{log}.1")
        log.write_text("third 1\n")
        blocked.append(True)
        await until(lambda: len(delivered) >= 5)

    delivered, _, _ = follow([Source(path=str(log), start_at="beginning")],
                             tmp_path / "db", scenario)
    assert texts(delivered) == ["first 1", "first 2", "second 1", "second 2", "third 1"]
