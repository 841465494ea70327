"""Directory watches (watchdog) that wake the event loop when a followed file may have changed.

inotify by default; watchdog's polling observer for sources configured with `poll = true` and
as the fallback when inotify is unavailable or out of watches. The observer threads only call
`notify`; all reading happens on the loop.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileCreatedEvent,
                             FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
                             FileSystemEvent, FileSystemEventHandler)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)


def _not_stop_race(record: logging.LogRecord) -> bool:
    # watchdog 7 logs this at ERROR when an emitter thread wakes up once more while its
    # observer is being stopped; harmless, and it would show in arguard's log at every stop.
    return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_not_stop_race)

POLL_INTERVAL = 0.5
# Only these reach us from inotify (no open/close/access events, which reading would cause).
EVENT_TYPES = [FileModifiedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent,
               DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
STRUCTURAL = {"created", "deleted", "moved"}


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[bool], None]):
        super().__init__()
        self.notify = notify

    def dispatch(self, event: FileSystemEvent) -> None:
        self.notify(event.event_type in STRUCTURAL)


class DirectoryWatcher:
    """`notify(structural)` is called from observer threads: structural is True when a file
    was created, deleted or renamed (a glob may have gained a file)."""

    def __init__(self, notify: Callable[[bool], None]):
        self.handler = _Handler(notify)
        self.inotify: BaseObserver | None = None
        self.inotify_failed = False
        self.poller: BaseObserver | None = None
        self.watches: dict[tuple[str, bool], tuple[BaseObserver, ObservedWatch, tuple]] = {}

    def _inotify_observer(self) -> BaseObserver | None:
        if self.inotify is None and not self.inotify_failed:
            try:
                from watchdog.observers.inotify import InotifyObserver
                observer = InotifyObserver()
                observer.start()
            except (ImportError, OSError) as exc:
                log.warning("inotify is not available (%s); polling directories every %.1f s "
                            "instead", exc, POLL_INTERVAL)
                self.inotify_failed = True
                return None
            self.inotify = observer
        return self.inotify

    def _poll_observer(self) -> BaseObserver:
        if self.poller is None:
            self.poller = PollingObserver(timeout=POLL_INTERVAL)
            self.poller.start()
        return self.poller

    def update(self, wanted: set[tuple[str, bool]]) -> None:
        """Watch exactly the directories in `wanted` ((directory, polled) pairs) that exist;
        a directory that was replaced gets a new watch."""
        for key in list(self.watches):
            if key not in wanted:
                self._drop(key)
        for directory, polled in sorted(wanted):
            try:
                st = os.stat(directory)
            except OSError:
                if (directory, polled) in self.watches:
                    self._drop((directory, polled))
                continue
            identity = (st.st_dev, st.st_ino)
            existing = self.watches.get((directory, polled))
            if existing is not None:
                if existing[2] == identity:
                    continue
                self._drop((directory, polled))
            self._schedule(directory, polled, identity)

    def _schedule(self, directory: str, polled: bool, identity: tuple) -> None:
        observer = None if polled else self._inotify_observer()
        if observer is not None:
            try:
                watch = observer.schedule(self.handler, directory, recursive=False,
                                          event_filter=EVENT_TYPES)
                self.watches[(directory, polled)] = (observer, watch, identity)
                return
            except OSError as exc:
                log.warning("cannot watch %s with inotify (%s); polling it every %.1f s",
                            directory, exc, POLL_INTERVAL)
        observer = self._poll_observer()
        try:
            watch = observer.schedule(self.handler, directory, recursive=False)
        except OSError as exc:
            log.warning("cannot watch %s (%s); checked once a second", directory, exc)
            return
        self.watches[(directory, polled)] = (observer, watch, identity)

    def _drop(self, key: tuple[str, bool]) -> None:
        observer, watch, _ = self.watches.pop(key)
        try:
            observer.unschedule(watch)
        except (KeyError, OSError):
            pass  # the watch died with its directory

    def stop(self) -> list[BaseObserver]:
        """Stop the observers; returns them for the caller to join off the loop."""
        observers = [o for o in (self.inotify, self.poller) if o is not None]
        for observer in observers:
            observer.stop()
        self.inotify = self.poller = None
        self.watches.clear()
        return observers
