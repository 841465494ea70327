"""Time: when the responder lifts expired blocks and purges old records.

One asyncio task sleeps until the earliest expiry the blocks table holds (an indexed MIN
query), has the responder lift what has expired and sleeps again. The responder tells it
about every new expiry time, so a block added with a sooner expiry wakes it early; nothing
polls. The sleep is capped at MAX_SLEEP seconds so that a wall-clock step (block times are
wall-clock) is caught up with, and the same wake-up purges quiet offenders and old block
history once per PURGE_INTERVAL. While the blocks table cannot be written (a full disk) it
tries again every TABLE_RETRY seconds to record the blocks applied meanwhile and to lift
the expired ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from arguard.respond.responder import Responder

#: longest sleep between two looks at the table (seconds)
MAX_SLEEP = 60.0
#: how often quiet offenders and old lifted blocks are purged (seconds)
PURGE_INTERVAL = 3600.0
#: seconds between two tries while the blocks table cannot be written (a full disk)
TABLE_RETRY = 10.0


class Scheduler:
    """Says when. Create it before blocks are added so that it hears about them, then
    `run()` as a task for the daemon's lifetime."""

    def __init__(self, responder: Responder, clock: Callable[[], float] = time.time):
        self.responder = responder
        self.clock = clock
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._planned: float | None = None
        self._purged_at: float | None = None
        responder.subscribe(self._on_expiry)

    async def run(self) -> None:
        """Lift blocks within a second of their expiry, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            self.responder.record_unrecorded()
            await self.responder.lift_expired_async()
            delay = self.next_delay()
            if self.responder.table.error is not None:
                delay = TABLE_RETRY   # the table cannot be written: try again in a while
            else:
                self.purge()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    def next_delay(self) -> float:
        """Seconds until the next block expires (at most MAX_SLEEP), remembering that time
        so that only a sooner expiry wakes the task early."""
        self._planned = self.responder.next_expiry()
        if self._planned is None:
            return MAX_SLEEP
        return min(MAX_SLEEP, max(0.0, self._planned - self.clock()))

    def _on_expiry(self, expires_at: float) -> None:
        """A block got this expiry time: wake the sleeping task if it is sooner than planned.
        Safe to call from any thread."""
        if self._loop is None or (self._planned is not None and expires_at >= self._planned):
            return
        self._planned = expires_at
        self._loop.call_soon_threadsafe(self._wake.set)

    def purge(self) -> None:
        """Have the responder purge old records, at most once per PURGE_INTERVAL."""
        now = self.clock()
        if self._purged_at is not None and now - self._purged_at < PURGE_INTERVAL:
            return
        self._purged_at = now
        self.responder.purge()
