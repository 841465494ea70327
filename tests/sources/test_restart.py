"""Offsets across restarts: a clean stop resumes exactly; a file rotated while arguard was
down is finished from its saved offset; a SIGKILLed follower loses nothing and repeats at most
its last batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from arguard.config import Source
from arguard.store import Store
from tests.conftest import REPO
from tests.sources.helpers import (DEADLINE, expected_lines, follow, multiset_difference,
                                   texts, until, writer_argv)


def append(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def run_once(log: Path, db: Path, expect: int, start_at: str = "end") -> list[str]:
    async def scenario(manager, delivered):
        await until(lambda: len(delivered) >= expect)

    delivered, _, _ = follow([Source(path=str(log), start_at=start_at)], db, scenario)
    return texts(delivered)


def test_clean_stop_resumes_exactly_and_finishes_files_rotated_while_down(tmp_path):
    log, db = tmp_path / "auth.log", tmp_path / "db"
    append(log, "old 1", "old 2")
    assert run_once(log, db, 2, start_at="beginning") == ["old 1", "old 2"]
    # down: more lines, a partial line, then two rotations and a new file
    append(log, "down 1")
    with open(log, "a") as f:
        f.write("down 2 ha")
    with open(log, "a") as f:
        f.write("lf\n")
    os.rename(log, f"{log}.1")
    append(log, "down 3")
    os.rename(f"{log}.1", f"{log}.2")
    os.rename(log, f"{log}.1")
    append(log, "down 4")
    assert run_once(log, db, 4) == ["down 1", "down 2 half", "down 3", "down 4"]
    # nothing again, then only what is new
    append(log, "new 1")
    assert run_once(log, db, 1) == ["new 1"]
    rows = {path: offset for path, _, _, offset in Store(db).file_offsets()}
    assert rows[str(log)] == log.stat().st_size
    # rotated files still open at the stop keep a row, at their end
    assert all(offset == Path(path).stat().st_size for path, offset in rows.items())


def test_truncated_while_down_is_read_from_the_start(tmp_path):
    log, db = tmp_path / "app.log", tmp_path / "db"
    append(log, "a long first line", "and a second one")
    assert run_once(log, db, 2, start_at="beginning") == ["a long first line",
                                                          "and a second one"]
    with open(log, "w") as f:
        f.write("short\n")
    assert run_once(log, db, 1) == ["short"]


def test_offsets_are_kept_per_file_of_a_glob_and_for_a_file_renamed_within_it(tmp_path):
    logs, db = tmp_path / "logs", tmp_path / "db"
    logs.mkdir()
    append(logs / "a.log", "a 1")
    append(logs / "b.log", "b 1")
    pattern = str(logs / "*.log")

    def once(expect):
        async def scenario(manager, delivered):
            await until(lambda: len(delivered) >= expect)
        delivered, _, _ = follow([Source(path=pattern, start_at="beginning")], db, scenario)
        return sorted(texts(delivered))

    assert once(2) == ["a 1", "b 1"]
    append(logs / "a.log", "a 2")
    os.rename(logs / "b.log", logs / "b-old.log")   # renamed within the glob while down
    append(logs / "b-old.log", "b 2")
    assert once(2) == ["a 2", "b 2"]


def test_a_stop_right_after_a_rotation_keeps_the_rotated_file_offset(tmp_path):
    """The writer goes on writing to its old file for a moment after a rename rotation (until
    it reopens its log). A stop in that moment must keep the rotated file's row, or the
    restarted follower never reads what came late (the 20 late lines once missing from
    the SIGTERM/SIGKILL rotation test under load)."""
    log, db = tmp_path / "auth.log", tmp_path / "db"
    append(log, "before 1")
    late_writer = open(log, "a")

    async def rotate_then_stop(manager, delivered):
        await until(lambda: len(delivered) >= 1)
        os.rename(log, f"{log}.1")
        append(log, "new 1")
        await until(lambda: len(delivered) >= 2)   # the rotation was noticed

    delivered, _, _ = follow([Source(path=str(log), start_at="beginning")], db,
                             rotate_then_stop)
    assert texts(delivered) == ["before 1", "new 1"]
    late_writer.write("late 1\nlate 2\n")
    late_writer.close()
    append(log, "new 2")
    assert sorted(run_once(log, db, 3)) == ["late 1", "late 2", "new 2"]


# --- a real follower process, stopped with SIGTERM and killed with SIGKILL ------------------

class FollowerProcess:
    def __init__(self, config: Path, out: Path):
        self.config, self.out = config, out
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        ready = Path(f"{self.out}.ready")
        ready.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sources.follower", str(self.config), str(self.out)],
            cwd=REPO, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + DEADLINE
        while not ready.exists() and time.monotonic() < end and self.process.poll() is None:
            time.sleep(0.01)
        assert ready.exists(), self.process.communicate()[1]

    def signal(self, signum: int) -> str:
        assert self.process is not None
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=DEADLINE)
        return stderr

    def size(self) -> int:
        return self.out.stat().st_size if self.out.exists() else 0


def runs(out: Path, cuts: list[int]) -> list[list[list[str]]]:
    """The output split at the given byte offsets into runs, each a list of batches."""
    data = out.read_bytes()
    bounds = [0] + cuts + [len(data)]
    result = []
    for start, end in zip(bounds, bounds[1:]):
        batches, batch = [], []
        for line in data[start:end].decode().splitlines():
            if line == "#batch":
                batches.append(batch)
                batch = []
            else:
                batch.append(line.split("\t", 1)[1])
        if batch:
            batches.append(batch)   # killed while writing a batch: its lines count as last
        result.append(batches)
    return result


def test_sigterm_and_sigkill_restarts_while_the_writer_rotates(tmp_path):
    log = tmp_path / "auth.log"
    log.touch()
    config = tmp_path / "arguard.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path}"\n[[source]]\npath = "{log}"\n')
    out = tmp_path / "out.txt"
    count = 100_000
    follower = FollowerProcess(config, out)
    follower.start()
    writer = subprocess.Popen(writer_argv(log, count, rate=25_000, rotate="rename",
                                          every=15_000), cwd=REPO)
    try:
        time.sleep(1.0)
        follower.signal(signal.SIGTERM)
        cut_term = follower.size()
        time.sleep(0.8)                      # down across a rotation
        follower.start()
        time.sleep(1.0)
        follower.signal(signal.SIGKILL)
        cut_kill = follower.size()
        time.sleep(0.8)
        follower.start()
        assert writer.wait(timeout=DEADLINE) == 0
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end and out.read_text().count("\tL ") < count:
            time.sleep(0.05)
    finally:
        writer.kill()
        stderr = follower.signal(signal.SIGTERM)
    assert "Traceback" not in stderr, stderr
    first, second, third = runs(out, [cut_term, cut_kill])
    assert first and second and third, "every run delivered something"
    first_lines = [line for batch in first for line in batch]
    second_lines = [line for batch in second for line in batch]
    third_lines = [line for batch in third for line in batch]
    # SIGTERM: resumed exactly where it stopped
    assert not set(first_lines) & set(second_lines)
    # SIGKILL: repeated lines are all in the killed run's last batch, and only there
    repeated = set(second_lines) & set(third_lines)
    assert repeated <= set(second[-1])
    everything = first_lines + second_lines + third_lines
    assert Counter(everything) - Counter(repeated) == Counter(expected_lines("L", count)), \
        multiset_difference(everything, expected_lines("L", count))
    # rotated files were finished while the follower was down
    assert Path(f"{log}.6").exists()


def test_rotated_files_go_to_the_log_they_came_from_when_names_overlap(tmp_path):
    """app.log.err.1 could be a rotated app.log by its name; it is app.log.err's."""
    app, err, db = tmp_path / "app.log", tmp_path / "app.log.err", tmp_path / "db"
    append(app, "a1")
    append(err, "e1")
    sources = [Source(path=str(app), start_at="beginning"),
               Source(path=str(err), start_at="beginning")]

    def once(expect):
        async def scenario(manager, delivered):
            await until(lambda: len(delivered) >= expect)
        delivered, _, _ = follow(sources, db, scenario)
        return sorted((os.path.basename(line.location), line.text) for line in delivered)

    assert once(2) == [("app.log", "a1"), ("app.log.err", "e1")]
    append(app, "a2")
    append(err, "e2")
    os.rename(err, f"{err}.1")
    append(err, "e3")
    os.rename(app, f"{app}.1")
    append(app, "a3")
    assert once(4) == [("app.log", "a2"), ("app.log", "a3"),
                       ("app.log.err", "e2"), ("app.log.err", "e3")]
