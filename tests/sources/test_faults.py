"""Faults: each is logged once and counted; the other sources keep being followed and the
loop never blocks (a FIFO is never opened)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from arguard.config import Source
from arguard.store import Store
from tests.conftest import REPO
from tests.sources.helpers import DEADLINE, follow, texts, until


def by_source(status):
    return {entry["source"]: entry for entry in status}


def test_directory_fifo_and_file_turned_fifo_are_reported_others_followed(tmp_path, caplog):
    directory = tmp_path / "is-a-dir.log"
    directory.mkdir()
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    turned = tmp_path / "turned.log"
    turned.write_text("")
    good = tmp_path / "good.log"
    good.touch()

    async def scenario(manager, delivered):
        with open(turned, "a") as f:
            f.write("turned 1\n")
        await until(lambda: "turned 1" in texts(delivered))
        os.unlink(turned)
        os.mkfifo(turned)
        with open(good, "a") as f:
            f.write("good 1\n")
        await until(lambda: "good 1" in texts(delivered)
                    and by_source(manager.status())[str(turned)]["errors"] == 1)
        # a regular file again: followed from its start
        os.unlink(turned)
        turned.write_text("turned 2\n")
        await until(lambda: "turned 2" in texts(delivered))

    caplog.set_level(logging.INFO)
    sources = [Source(path=str(p)) for p in (directory, fifo, turned, good)]
    delivered, status, _ = follow(sources, tmp_path / "db", scenario)
    assert texts(delivered) == ["turned 1", "good 1", "turned 2"]
    status = by_source(status)
    assert status[str(directory)]["errors"] == 1
    assert (status[str(directory)]["last_error"]
            == f"{directory} is a directory, not a log file; not read")
    assert status[str(fifo)]["errors"] == 1
    assert status[str(fifo)]["last_error"] == f"{fifo} is a FIFO, not a log file; not read"
    assert status[str(good)]["errors"] == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count(f"{fifo} is a FIFO, not a log file; not read") == 1
    assert f"{turned}: readable again" in messages


def test_unreadable_file_is_reported_and_others_followed(tmp_path):
    """The follower runs as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (root reads
    everything otherwise), so a mode-000 log file cannot be opened."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv(1)")
    secret = tmp_path / "secret.log"
    secret.write_text("secret\n")
    os.chmod(secret, 0o000)
    public = tmp_path / "public.log"
    public.write_text("public 1\n")
    config = tmp_path / "arguard.toml"
    config.write_text(textwrap.dedent(f"""\
        [paths]
        state_dir = "{tmp_path}"
        [[source]]
        path = "{secret}"
        start_at = "beginning"
        [[source]]
        path = "{public}"
        start_at = "beginning"
        """))
    out = tmp_path / "out.txt"
    follower = subprocess.Popen(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
         sys.executable, "-m", "tests.sources.follower", str(config), str(out)],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + DEADLINE
        while not (out.exists() and "public 1" in out.read_text()) and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        follower.send_signal(signal.SIGTERM)
        _, stderr = follower.communicate(timeout=DEADLINE)
    assert follower.returncode == 0, stderr
    assert [line.split("\t")[1] for line in out.read_text().splitlines()
            if not line.startswith("#")] == ["public 1"]
    status = by_source(json.loads(Path(f"{out}.status").read_text()))
    assert status[str(secret)]["errors"] == 1
    assert status[str(secret)]["last_error"] == f"{secret}: cannot open: Permission denied"
    assert stderr.count(f"{secret}: cannot open: Permission denied") == 1


def fresh_database_bytes(directory: Path) -> int:
    """What a new database takes on disk while it is open (the file, its WAL and shared
    memory): it grows with each migration."""
    directory.mkdir()
    store = Store(directory / "arguard.db")
    try:
        return sum(path.stat().st_size for path in directory.iterdir())
    finally:
        store.close()


def test_disk_full_database_is_reported_and_following_goes_on(tmp_path):
    """The state directory is a tiny tmpfs (in a private mount namespace), room for a new
    database and a few commits: once it is full, saving offsets fails with SQLite's
    "database or disk is full"; lines keep flowing."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    room = (fresh_database_bytes(tmp_path / "probe") + 32 * 1024) // 4096 * 4096 + 4096
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "arguard.toml"
    config.write_text(f'[paths]\nstate_dir = "state"\n[[source]]\npath = "{log}"\n')
    out = tmp_path / "out.txt"
    follower = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--",
         sys.executable, "-m", "tests.sources.follower", "--state-tmpfs", str(room),
         str(config), str(out)],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + DEADLINE
        while not Path(f"{out}.ready").exists() and time.monotonic() < end:
            time.sleep(0.02)
        written = []
        for number in range(3000):
            with open(log, "a") as f:
                f.write(f"line {number}\n")
            written.append(f"line {number}")
            if number % 10 == 0:
                time.sleep(0.002)   # many small batches, many commits
        while time.monotonic() < end and not (
                out.exists() and out.read_text().count("\tline ") >= len(written)):
            time.sleep(0.02)
    finally:
        follower.send_signal(signal.SIGTERM)
        _, stderr = follower.communicate(timeout=DEADLINE)
    assert follower.returncode == 0, stderr
    got = [line.split("\t")[1] for line in out.read_text().splitlines()
           if not line.startswith("#")]
    assert got == written
    status = json.loads(Path(f"{out}.status").read_text())[0]
    assert status["commit_errors"] > 0
    assert "database or disk is full" in status["commit_error"]
    assert "cannot save read positions" in stderr and "database or disk is full" in stderr
