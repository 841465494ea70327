"""Running a real SourceManager (real files, real SQLite) inside a test."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Awaitable, Callable

from arguard.config import Source
from arguard.model import Line
from arguard.sources.manager import SourceManager
from arguard.sources.recent import RecentWindow
from arguard.store import Store
from tests.conftest import REPO
from tests.sources.writer import line as writer_line

# Deadline for something that should happen within milliseconds: only reached when it does
# not happen at all (the assertion after the wait then shows what is missing).
DEADLINE = 30.0

Scenario = Callable[[SourceManager, list[Line]], Awaitable[None]]


def follow(sources: list[Source], database: Path, scenario: Scenario,
           recent: RecentWindow | None = None) -> tuple[list[Line], list[dict], list[int]]:
    """Run the manager around `scenario`; returns the delivered lines, the status just before
    stopping and the size of each delivered batch. `recent`: as the daemon gives it."""
    batches: list[int] = []
    delivered: list[Line] = []

    def deliver(lines: list[Line]) -> None:
        batches.append(len(lines))
        delivered.extend(lines)

    async def main() -> list[dict]:
        store = Store(database)
        manager = SourceManager(sources, store, deliver, recent=recent)
        task = asyncio.create_task(manager.run())
        try:
            await asyncio.wait_for(manager.started.wait(), DEADLINE)
            await scenario(manager, delivered)
            return manager.status()
        finally:
            await manager.stop()
            await task
            store.close()

    status = asyncio.run(main())
    return delivered, status, batches


async def until(condition: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition() and time.monotonic() < end:
        await asyncio.sleep(0.01)


def texts(lines: list[Line]) -> list[str]:
    return [line.text for line in lines]


def expected_lines(tag: str, count: int, first: int = 0) -> list[str]:
    return [writer_line(tag, n).decode().rstrip("\n") for n in range(first, first + count)]


def writer_argv(path: Path | str, count: int, **options) -> list[str]:
    argv = [sys.executable, "-m", "tests.sources.writer", str(path), str(count)]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return argv


async def run_writer(path: Path | str, count: int, **options) -> None:
    process = await asyncio.create_subprocess_exec(*writer_argv(path, count, **options),
                                                   cwd=REPO)
    assert await process.wait() == 0


def write_now(path: Path | str, count: int, **options) -> None:
    subprocess.run(writer_argv(path, count, **options), cwd=REPO, check=True)


def multiset_difference(got: list[str], want: list[str]) -> tuple[Counter, Counter]:
    """(missing, extra) for a readable failure message."""
    have, need = Counter(got), Counter(want)
    return need - have, have - need
