"""The file integrity source ([[integrity]]): changes to watched files, found in realtime
through inotify (watchdog) and by periodic full scans, handed on as Wazuh syscheck events.

Threads. watchdog's observer thread only notes which paths its events named (`Pending`).
One worker thread owns the baseline (arguard.integrity.baseline, on its own SQLite
connection), so that reading and hashing files never runs on the event loop: it checks the
paths that have been quiet for DEBOUNCE seconds, runs the scans and the operator's requests
(accept, scan now), and hands each batch of changes to the loop, waiting until the loop has
taken it before the baseline records it — so that a crash repeats a report, never loses one.

Debounce and bounds. Realtime events are keyed by path: an editor's write, rename and chmod
of one file within DEBOUNCE of each other are one check of the file, hence one change; a
file that never stops changing is checked every MAX_HOLD seconds. Each [[integrity]] table
reports at most `max_eps` changes per second (a token bucket; later changes wait, as with
Wazuh's max_eps). At most MAX_PENDING paths wait to be checked; past that the realtime events
of the root are dropped and a scan of it is run instead, which finds the same changes. The
cost of an event does not depend on the number of watched files: one lookup of the path's
record, one read of the file.

Start. The paths that have no baseline yet (first start) get one before the source counts
as started (`placed`); the others are scanned right after the start, in the background, and
report what changed while arguard was stopped (found by a scan: mode "scheduled").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileAttribEvent,
                             FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                             FileMovedEvent, FileSystemEvent, FileSystemEventHandler)

from arguard.config import Integrity
from arguard.integrity.baseline import Accepted, Baseline, Interrupted, Root, Roots
from arguard.integrity.copies import Copies
from arguard.integrity.files import shown
from arguard.model import Event, FileChange
from arguard.store import Store
from arguard.syscheck import change_event

log = logging.getLogger(__name__)

#: seconds a path must be quiet before it is checked
DEBOUNCE = 0.04
#: seconds a path that keeps changing waits at most to be checked
MAX_HOLD = 1.0
#: paths waiting to be checked at most; past that, a scan of the root instead
MAX_PENDING = 10_000
#: seconds the worker sleeps at most (it wakes up for events, requests and stop anyway)
IDLE = 5.0
#: what inotify reports to us: no open, access or close events (reading would cause them)
EVENT_TYPES = [FileModifiedEvent, FileAttribEvent, FileCreatedEvent, FileDeletedEvent,
               FileMovedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]


class _Bucket:
    """`rate` changes per second, `rate` at once at most."""

    def __init__(self, rate: int):
        self.rate = float(rate)
        self.tokens = float(rate)
        self.at = time.monotonic()

    def take(self) -> float:
        """Take one; the seconds to wait before using it."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Pending:
    """Paths named by realtime events, waiting to be quiet; shared by the observer thread
    (add) and the worker (due)."""

    def __init__(self, limit: int = MAX_PENDING):
        self.limit = limit
        self._lock = threading.Lock()
        self._paths: dict[bytes, tuple[float, float, Root]] = {}
        self.overflowed: set[bytes] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, path: bytes, root: Root, now: float) -> None:
        with self._lock:
            known = self._paths.get(path)
            if known is not None:
                self._paths[path] = (known[0], now, root)
            elif root.path in self.overflowed:
                self.dropped += 1
            elif len(self._paths) >= self.limit:
                self.overflowed.add(root.path)
                self.dropped += 1
                for other in [p for p, (_, _, r) in self._paths.items() if r is root]:
                    del self._paths[other]
            else:
                self._paths[path] = (now, now, root)

    def due(self, now: float) -> tuple[list[tuple[bytes, Root]], float | None]:
        """The paths to check now (and forget), and when the next one is due."""
        ready: list[tuple[bytes, Root]] = []
        next_due = None
        with self._lock:
            for path, (first, last, root) in list(self._paths.items()):
                when = min(last + DEBOUNCE, first + MAX_HOLD)
                if when <= now:
                    ready.append((path, root))
                    del self._paths[path]
                elif next_due is None or when < next_due:
                    next_due = when
        return ready, next_due

    def overflow(self, root: bytes) -> None:
        """Have `root` scanned instead of checked path by path."""
        with self._lock:
            self.overflowed.add(root)

    def take_overflowed(self) -> set[bytes]:
        with self._lock:
            roots, self.overflowed = self.overflowed, set()
        return roots


class _Events(FileSystemEventHandler):
    """Runs in watchdog's thread: notes the paths an event names."""

    def __init__(self, noted: Callable[[bytes], None]):
        super().__init__()
        self.noted = noted

    def dispatch(self, event: FileSystemEvent) -> None:
        self.noted(os.fsencode(event.src_path))
        if event.event_type == "moved" and event.dest_path:
            self.noted(os.fsencode(event.dest_path))


@dataclass
class RootStatus:
    """What `arguard status` shows of one watched path (changed on the loop only)."""

    root: Root
    files: int = 0
    known_good: int = 0
    realtime: bool = False
    realtime_error: str | None = None
    scanning: bool = False
    last_scan_started: float | None = None
    last_scan_finished: float | None = None
    changes: dict[str, int] = field(default_factory=lambda: {"added": 0, "modified": 0,
                                                             "deleted": 0})

    def as_dict(self) -> dict[str, Any]:
        entry = self.root.entry
        return {"path": self.root.shown, "realtime": self.realtime,
                "realtime_error": self.realtime_error, "recursive": entry.recursive,
                "scan_interval": entry.scan_interval, "files": self.files,
                "known_good": self.known_good, "keep_copies": entry.keep_copies,
                "scanning": self.scanning, "last_scan_started": self.last_scan_started,
                "last_scan_finished": self.last_scan_finished, "changes": dict(self.changes)}


class IntegritySource:
    """`deliver(events)` is called on the loop with the events of one batch of changes."""

    def __init__(self, entries: tuple[Integrity, ...], database: Path | str,
                 copies: Path | None, deliver: Callable[[list[Event]], None], *,
                 never: tuple[Path, ...] = (), clock: Callable[[], float] = time.time):
        self.roots = Roots(entries, never)
        self.database = database
        self.copies = Copies(copies) if copies is not None else None
        self.deliver = deliver
        self.clock = clock
        self.pending = Pending()
        self.status_of = {root.path: RootStatus(root) for root in self.roots}
        self.placed = asyncio.Event()
        self.faults: dict[str, Any] = {}
        self._buckets = {id(entry): _Bucket(entry.max_eps) for entry in entries}
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Condition()
        self._woken = False
        self._scan_requested = False
        self._stopping = False
        # the worker's: the observer, its handler, and per watched path whether its own
        # directory is watched (True) or the directory above it (False)
        self._observer: Any = None
        self._handler: _Events | None = None
        self._watched: dict[bytes, bool] = {}
        self._deferred: dict[bytes, set[bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    # --- on the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the worker until stop(); raises what ended it unexpectedly."""
        self._loop = asyncio.get_running_loop()
        finished = self._loop.create_future()

        def work() -> None:
            try:
                self._work()
            except BaseException as exc:  # reported by run(), on the loop
                self._failed = exc
            finally:
                self._loop.call_soon_threadsafe(_set_done, finished)

        self._thread = threading.Thread(target=work, name="integrity", daemon=True)
        self._thread.start()
        await finished
        if self._failed is not None:
            raise self._failed

    async def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    async def accept(self, path: str) -> Accepted:
        return await self._ask("accept", path)

    async def scan_now(self) -> int:
        """Queue a scan of every watched path; the number of paths."""
        return await self._ask("scan", None)

    async def _ask(self, kind: str, argument: Any) -> Any:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._requests.put((kind, argument, future))
        self._notify()
        return await asyncio.wrap_future(future)

    def status(self) -> dict[str, Any]:
        return {"paths": [s.as_dict() for s in self.status_of.values()],
                "pending": len(self.pending), "dropped_events": self.pending.dropped,
                "stopped_by": None if self._failed is None else repr(self._failed),
                **self.faults}

    def _taken(self, root: Root, changes: list[FileChange],
               done: concurrent.futures.Future) -> None:
        """A batch of changes from the worker: counted, turned into events, delivered."""
        try:
            status = self.status_of[root.path]
            for change in changes:
                status.changes[change.event] += 1
                status.files += {"added": 1, "deleted": -1}.get(change.event, 0)
            events = [change_event(change, root.entry.checks) for change in changes]
            self.deliver(events)
        except Exception:
            log.exception("delivering %d file changes failed", len(changes))
        finally:
            done.set_result(None)

    def _update(self, path: bytes, **values: Any) -> None:
        for key, value in values.items():
            setattr(self.status_of[path], key, value)

    def _update_faults(self, faults: dict[str, Any]) -> None:
        self.faults = faults

    # --- in watchdog's thread ---------------------------------------------------------------

    def _noted(self, path: bytes) -> None:
        root = self.roots.owner(path)
        if root is None:
            return
        self.pending.add(path, root, time.monotonic())
        self._notify()

    def _notify(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    # --- in the worker thread ------------------------------------------------------------

    def _work(self) -> None:
        store = Store(self.database)
        baseline = Baseline(store, self.roots, self.copies, clock=self.clock,
                            interrupted=lambda: self._stopping)
        try:
            forgotten = baseline.forget_unwatched()
            if forgotten:
                log.info("file integrity: forgot %d files no [[integrity]] table watches any "
                         "more", forgotten)
            self._watch()
            first = [root for root in self.roots if not baseline.has_baseline(root)]
            for root in first:
                started = time.monotonic()
                self._scan(baseline, root)
                log.info("file integrity: baseline of %s recorded (%.1f s)", root.shown,
                         time.monotonic() - started)
                for path in sorted(self._deferred.pop(root.path, ())):
                    self._emit(baseline, root, baseline.check(path))
            self._publish_counts(store)
            for root in self.roots:  # their start-up scan is next: status says so already
                if root not in first:
                    self._call(self._update, root.path, scanning=True)
            self._call(self.placed.set)
            now = time.monotonic()
            next_scan = {root.path: now + root.entry.scan_interval if root in first else now
                         for root in self.roots}
            while True:
                next_due = self._between(baseline)
                now = time.monotonic()
                for path in self.pending.take_overflowed():
                    log.warning("file integrity: more than %d paths changed at once; %s is "
                                "scanned instead of checked path by path", MAX_PENDING,
                                shown(path))
                    next_scan[path] = now
                for path in self._take_scan_requests():
                    next_scan[path] = now
                for root in self.roots:
                    if next_scan[root.path] <= time.monotonic():
                        self._scan(baseline, root)
                        next_scan[root.path] = time.monotonic() + root.entry.scan_interval
                        self._publish_counts(store)
                wake_at = min([*next_scan.values(), time.monotonic() + IDLE,
                               *([next_due] if next_due is not None else [])])
                self._wait(wake_at, wakeable=True)
        except Interrupted:
            baseline.discard()  # what a stop cut short is found again at the next start
        finally:
            baseline.flush()
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=2)
            store.close()

    def _watch(self) -> None:
        """Start the observer and schedule the realtime watches (none when nothing is
        watched in realtime, or inotify is not available: then the scans find changes)."""
        wanted = [root for root in self.roots if root.entry.realtime]
        if not wanted:
            return
        try:
            from watchdog.observers.inotify import InotifyObserver
            observer = InotifyObserver()
            observer.start()
        except (ImportError, OSError) as exc:
            for root in wanted:
                self._call(self._update, root.path, realtime_error=f"inotify: {exc}")
            log.warning("file integrity: inotify is not available (%s); changes are found by "
                        "the scans only", exc)
            return
        self._observer, self._handler = observer, _Events(self._noted)
        for root in wanted:
            self._rewatch(root)

    def _rewatch(self, root: Root) -> None:
        """Watch a watched directory (with its subdirectories when recursive), or else the
        directory of the watched path (a file, or a directory that does not exist yet: once
        it does, it gets its own watch)."""
        if self._observer is None or not root.entry.realtime:
            return
        path = root.path
        is_directory = os.path.isdir(path) and not os.path.islink(path)
        watching = self._watched.get(path)
        if watching is True or (watching is False and not is_directory):
            return
        watched = path if is_directory else os.path.dirname(path)
        try:
            self._observer.schedule(self._handler, os.fsdecode(watched),
                                    recursive=is_directory and root.entry.recursive,
                                    event_filter=EVENT_TYPES)
        except OSError as exc:
            message = exc.strerror or str(exc)
            self._call(self._update, path, realtime=False, realtime_error=message)
            log.warning("file integrity: cannot watch %s in realtime (%s); its changes are "
                        "found by the scans only", root.shown, message)
            return
        self._watched[path] = is_directory
        self._call(self._update, path, realtime=True, realtime_error=None)

    def _between(self, baseline: Baseline) -> float | None:
        """What the worker does whenever it can: the operator's requests, then the paths
        that are due; when the next path is due."""
        while True:
            try:
                kind, argument, future = self._requests.get_nowait()
            except queue.Empty:
                break
            try:
                if kind == "accept":
                    future.set_result(baseline.accept(os.fsencode(argument)))
                    self._publish_counts(baseline.store)
                else:
                    self._scan_requested = True
                    future.set_result(len(self.roots))
            except Exception as exc:
                future.set_exception(exc)
        ready, next_due = self.pending.due(time.monotonic())
        for path, root in ready:
            if not baseline.has_baseline(root):
                self._defer(root, path)
                continue
            self._emit(baseline, root, baseline.check(path))
            if path == root.path:
                self._rewatch(root)
        return next_due

    def _defer(self, root: Root, path: bytes) -> None:
        """Keep a path of a root whose first scan is still running, to check it once the
        baseline is recorded (the scan may have passed it before it changed); past
        MAX_PENDING, the root is scanned again instead."""
        deferred = self._deferred.setdefault(root.path, set())
        if len(deferred) < MAX_PENDING:
            deferred.add(path)
        else:
            self.pending.overflow(root.path)

    def _take_scan_requests(self) -> set[bytes]:
        requested, self._scan_requested = self._scan_requested, False
        return {root.path for root in self.roots} if requested else set()

    def _scan(self, baseline: Baseline, root: Root) -> None:
        self._call(self._update, root.path, scanning=True, last_scan_started=self.clock())
        try:
            for changes in baseline.scan(root):
                self._emit(baseline, root, changes)
                self._between(baseline)
        finally:
            self._call(self._update, root.path, scanning=False)
            self._call(self._update_faults, baseline.faults.as_dict())
        self._rewatch(root)

    def _emit(self, baseline: Baseline, root: Root, changes: list[FileChange]) -> None:
        """Hand the changes to the loop (at most max_eps per second), wait until it took
        them, then record them."""
        if not changes:
            return
        bucket = self._buckets[id(root.entry)]
        batch: list[FileChange] = []
        for change in changes:
            wait = bucket.take()
            if wait > 0:
                self._hand_over(root, batch)
                batch = []
                self._wait(time.monotonic() + wait, wakeable=False)
            batch.append(change)
        self._hand_over(root, batch)
        baseline.flush()
        self._call(self._update_faults, baseline.faults.as_dict())

    def _hand_over(self, root: Root, changes: list[FileChange]) -> None:
        if not changes:
            return
        done: concurrent.futures.Future = concurrent.futures.Future()
        if self._call(self._taken, root, changes, done):
            done.result()

    def _publish_counts(self, store: Store) -> None:
        files, known_good = store.integrity_counts(), store.known_good_counts()
        scans = store.integrity_roots()
        for root in self.roots:
            _, started, finished = scans.get(root.path, (None, None, None))
            self._call(self._update, root.path, files=files.get(root.path, 0),
                       known_good=known_good.get(root.path, 0), last_scan_started=started,
                       last_scan_finished=finished)

    def _call(self, function: Callable, *args: Any, **kwargs: Any) -> bool:
        """Run `function` on the loop; False when the loop is gone."""
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(lambda: function(*args, **kwargs))
        except RuntimeError:
            return False
        return True

    def _wait(self, until: float, wakeable: bool) -> None:
        """Wait until `until` (monotonic); `wakeable`: or until an event or a request comes.
        Raises Interrupted when the source is stopping."""
        with self._wake:
            while not self._stopping:
                timeout = until - time.monotonic()
                if timeout <= 0 or (wakeable and self._woken):
                    break
                self._wake.wait(timeout)
            self._woken = False
            if self._stopping:
                raise Interrupted


def _set_done(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
