"""Runs all configured sources on the event loop and hands their lines on in batches.

Delivery and commit: `deliver(lines)` is called on the loop with at most BATCH_LINES lines;
the offsets and cursors that cover those lines are committed to SQLite only after it
returns. After a clean stop nothing is lost or read twice; after a crash at most the last
batch (delivered, not yet committed) is delivered again. The file integrity source
([[integrity]]) hands its events to `deliver_events` the same way: recorded once delivered.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from arguard.config import Integrity, Source
from arguard.model import Event, Line
from arguard.sources.counters import SourceCounters
from arguard.sources.files import FileSource, PathFollower, SavedOffset
from arguard.sources.journal import LOCATION as JOURNAL_LOCATION, JournalSource
from arguard.sources.positions import PendingPositions
from arguard.sources.recent import RecentWindow
from arguard.sources.watch import DirectoryWatcher
from arguard.store import Store

if TYPE_CHECKING:
    from arguard.sources.integrity import IntegritySource

log = logging.getLogger(__name__)

BATCH_LINES = 2000
TICK_SECONDS = 1.0          # periodic check: rotations without events, globs, retiring files
STOP_TIMEOUT_SECONDS = 5.0


class SourceManager:
    def __init__(self, sources: list[Source], store: Store,
                 deliver: Callable[[list[Line]], None], *,
                 clock: Callable[[], float] = time.time,
                 integrity: tuple[Integrity, ...] = (),
                 deliver_events: Callable[[list[Event]], None] | None = None,
                 copies: Path | None = None, own_directories: tuple[Path, ...] = (),
                 recent: RecentWindow | None = None):
        """`integrity`: the [[integrity]] tables, whose events go to `deliver_events`;
        `copies`: where their known-good copies are kept (None: none are); arguard's own
        `own_directories` are never watched; `recent`: how far back start_at = "recent"
        reads a source never seen before."""
        self.store = store
        self._deliver = deliver
        self.clock = clock
        self.pending = PendingPositions()
        self.counters: list[SourceCounters] = []
        self.files: list[FileSource] = []
        self.journals: list[JournalSource] = []
        self._ordered: list[FileSource | JournalSource] = []
        self._by_location: dict[str, SourceCounters] = {}
        for source in sources:
            if source.path is not None:
                counters = SourceCounters(source.name, "file")
                files = FileSource(source, counters, self.pending, recent)
                self.files.append(files)
                self._ordered.append(files)
            else:
                counters = SourceCounters(source.name, "journal")
                journal = JournalSource(source, counters, self.pending, self.deliver_batch,
                                        store.journal_cursor(source.name), clock,
                                        None if recent is None else recent.seconds)
                self.journals.append(journal)
                self._ordered.append(journal)
                self._by_location.setdefault(JOURNAL_LOCATION, counters)
            self.counters.append(counters)
        self.integrity: IntegritySource | None = None
        if integrity and deliver_events is not None:
            # imported only when configured: hashing loads hashlib (OpenSSL, ~1 MB of RSS)
            from arguard.sources.integrity import IntegritySource
            self.integrity = IntegritySource(integrity, store.path, copies, deliver_events,
                                             never=own_directories, clock=clock)
        self.committed_at: float | None = None
        self.commit_errors = 0
        self.commit_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._rescan = False
        self._stopping = False
        self._running = False
        self._finished: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._watcher: DirectoryWatcher | None = None
        self._round = 0
        # set once every source has been placed (files opened, saved offsets applied)
        self.started = asyncio.Event()

    # --- delivery and commit -------------------------------------------------------------

    def deliver_batch(self, lines: list[Line]) -> None:
        """Hand a batch on, then commit the positions that cover it."""
        if lines:
            try:
                self._deliver(lines)
            except Exception:
                log.exception("delivering %d lines failed", len(lines))
        self.commit()

    def commit(self) -> None:
        if not self.pending:
            return
        now = self.clock()
        try:
            self.pending.commit(self.store, now)
        except sqlite3.Error as exc:
            self.commit_errors += 1
            message = f"cannot save read positions to {self.store.path}: {exc}"
            if message != self.commit_error:
                log.error("%s; still following, will retry (a restart now would read "
                          "some lines again)", message)
            self.commit_error = message
            return
        if self.commit_error is not None:
            log.info("read positions saved again")
            self.commit_error = None
        self.committed_at = now

    # --- waking ----------------------------------------------------------------------------

    def _notify(self, structural: bool) -> None:
        """Called from watchdog threads."""
        if structural:
            self._rescan = True
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._set_wake)
            except RuntimeError:
                pass  # loop closed while stopping

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow every source until stop()."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = True
        try:
            await self._follow()
        finally:
            await self._shutdown()

    async def _follow(self) -> None:
        now = self.clock()
        saved = [SavedOffset(path, (device, inode), offset)
                 for path, device, inode, offset in self.store.file_offsets()]
        followed: set[str] = set()
        for files in self.files:
            files.start(saved, followed, now)
        for files in self.files:
            files.place(now)
        self._watcher = DirectoryWatcher(self._notify)
        self._update_watches()
        self._read_files(now)
        in_use = set().union(*(files.keys_in_use() for files in self.files))
        for row in saved:
            if row.path not in in_use:
                self.pending.forget_offset(row.path)
        self.commit()
        for journal in self.journals:
            self._tasks.append(asyncio.create_task(journal.run(), name=journal.name))
        if self.integrity is not None:
            await self._start_integrity(self.integrity)
        self.started.set()
        next_tick = time.monotonic() + TICK_SECONDS
        while not self._stopping:
            timeout = max(next_tick - time.monotonic(), 0)
            if not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
            self._wake.clear()
            self._wake_pending = False
            if self._stopping:
                break
            now = self.clock()
            tick = time.monotonic() >= next_tick
            if tick or self._rescan:
                self._rescan = False
                for files in self.files:
                    files.scan(now)
                self._update_watches()
            await self._read_until_idle()
            if tick:
                self.commit()
                next_tick = time.monotonic() + TICK_SECONDS

    async def _start_integrity(self, integrity: IntegritySource) -> None:
        """Start the integrity source and wait until it is placed (watches set, baselines
        recorded); a source that fails to start takes the manager down with it."""
        task = asyncio.create_task(integrity.run(), name="integrity")
        self._tasks.append(task)
        placed = asyncio.create_task(integrity.placed.wait())
        await asyncio.wait([placed, task], return_when=asyncio.FIRST_COMPLETED)
        placed.cancel()
        if task.done():
            task.result()
        task.add_done_callback(self._integrity_done)

    def _integrity_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None and not self._stopping:
            log.error("the file integrity source stopped: %r; file changes are no longer "
                      "reported until arguard is restarted", task.exception(),
                      exc_info=task.exception())

    def _update_watches(self) -> None:
        if self._watcher is None:
            return
        wanted = set()
        for files in self.files:
            for directory in files.watch_dirs():
                wanted.add((directory, files.source.poll))
        self._watcher.update(wanted)

    def _followers(self) -> list[PathFollower]:
        return [follower for files in self.files for follower in files.followers.values()]

    def _read_files(self, now: float) -> bool:
        """One round over all followed files (starting one further each round, so that a
        huge burst in one file does not starve the others); delivers what was read."""
        followers = self._followers()
        if not followers:
            return False
        self._round += 1
        start = self._round % len(followers)
        lines: list[Line] = []
        more = False
        for follower in followers[start:] + followers[:start]:
            if len(lines) >= BATCH_LINES:
                more = True
                break
            more = follower.poll(lines, BATCH_LINES, now) or more
        if lines:
            self.deliver_batch(lines)
        return more

    async def _read_until_idle(self) -> None:
        while not self._stopping:
            if not self._read_files(self.clock()):
                return
            await asyncio.sleep(0)

    async def stop(self) -> None:
        """Stop reading and save the positions of everything delivered."""
        self._stopping = True
        for journal in self.journals:
            await journal.stop()
        if self.integrity is not None:
            await self.integrity.stop()
        if self._wake is not None:
            self._wake.set()
        if self._running and self._finished is not None:
            await self._finished.wait()

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._tasks:
            for journal in self.journals:
                await journal.stop()
            if self.integrity is not None:
                await self.integrity.stop()
            done, running = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in running:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s source stopped with an error", task.get_name(),
                              exc_info=task.exception())
        self.commit()
        for files in self.files:
            files.close()
        if self._watcher is not None:
            observers = self._watcher.stop()
            await asyncio.to_thread(_join_all, observers)
        self._running = False
        self._loop = None
        assert self._finished is not None
        self._finished.set()

    # --- status ----------------------------------------------------------------------------

    def count_decoding(self, location: str, undecoded: int, ambiguous: int) -> None:
        """The daemon counts, by Line.location, lines no decoder understood and lines whose
        address was ambiguous."""
        counters = self._by_location.get(location)
        if counters is None:
            for files in self.files:
                if location in files.followers:
                    counters = self._by_location[location] = files.counters
                    break
        if counters is not None:
            counters.undecoded += undecoded
            counters.ambiguous += ambiguous

    def status(self) -> list[dict]:
        result = []
        common = {"committed_at": self.committed_at, "commit_errors": self.commit_errors,
                  "commit_error": self.commit_error}
        for source in self._ordered:
            entry = source.counters.as_dict()
            if isinstance(source, FileSource):
                entry["files"] = source.status()
                entry["lag_bytes"] = sum(f.get("lag_bytes") or 0 for f in entry["files"])
            else:
                entry |= source.status()
            result.append(entry | common)
        return result


def _join_all(observers: list[threading.Thread]) -> None:
    for observer in observers:
        observer.join(timeout=2)
