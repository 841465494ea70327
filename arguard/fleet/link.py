"""The daemon's link to the fleet: one asyncio task for the daemon's lifetime.

While the database is reachable the link holds two connections: one LISTENs (decisions and
facts are pushed by NOTIFY as they are committed), the other writes (the outbox, facts, a
heartbeat). On every (re)connection it LISTENs first, then reads what it missed — the
decisions after the last id this host saw, the facts whose time is not over — and sends
the outbox, so a partition loses nothing in either direction. While it is unreachable,
local detection and blocking go on untouched: decisions wait in the SQLite outbox, and the
link retries (every RETRY_AUTH seconds after a refused password, which an operator has to
fix; otherwise backing off from RETRY_MIN to RETRY_MAX).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from arguard import __version__
from arguard.config import Fleet
from arguard.fleet.database import (Connection, FleetDatabase, FleetError, describe,
                                    is_authentication_error)
from arguard.fleet.decision import parse_decision
from arguard.fleet.facts import SharedCorrelation
from arguard.fleet.inbox import Inbox
from arguard.respond.responder import HISTORY
from arguard.store import Store

log = logging.getLogger(__name__)

RETRY_MIN = 0.5
RETRY_MAX = 5.0
RETRY_AUTH = 30.0
#: seconds between two heartbeats (also how often `behind` is refreshed)
HEARTBEAT = 10.0
#: a statement that takes longer means the connection is gone
STATEMENT_TIMEOUT = 20.0
#: seconds between two purges of old decisions and facts
PURGE_INTERVAL = 3600.0
#: decisions read per catch-up query, and sent per insert
PAGE = 5000


class FleetLink:
    def __init__(self, fleet: Fleet, store: Store, inbox: Inbox,
                 correlation: SharedCorrelation, clock: Callable[[], float] = time.time):
        self.fleet = fleet
        self.database = FleetDatabase(fleet)
        self.store = store
        self.inbox = inbox
        self.correlation = correlation
        self.clock = clock
        self.connected = False
        self.since: float | None = None      # when the state (connected or not) began
        self.error: str | None = None
        self.sent = 0
        self.latest = 0                      # the newest decision id the database has
        self.members: int | None = None
        self._wake = asyncio.Event()
        self._purged_at = 0.0
        correlation.wake = self.wake

    def wake(self) -> None:
        """Something waits to be sent (the outbox, a fact)."""
        self._wake.set()

    # --- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        delay = RETRY_MIN
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # every failure means: work locally, retry later
                if self.connected:
                    delay = RETRY_MIN
                message = error.args[0] if isinstance(error, FleetError) else describe(error)
                retry = RETRY_AUTH if is_authentication_error(error) else delay
                self._disconnected(message, retry)
                await asyncio.sleep(retry)
                delay = min(RETRY_MAX, delay * 2)

    def _disconnected(self, message: str, retry: float) -> None:
        was = self.connected
        self.connected = False
        if was or message != self.error:
            log.error("fleet: %s the fleet's database (%s): %s; blocking goes on locally, "
                      "decisions wait in the outbox; retrying every %.0f s",
                      "lost" if was else "cannot use", self.fleet.dsn, message, max(retry, 1))
        if was or self.since is None:
            self.since = self.clock()
        self.error = message

    async def _session(self) -> None:
        listener = await self.database.connect()
        writer: Connection | None = None
        try:
            writer = await self.database.connect()
            await writer.check_schema()
            await listener.listen()
            await writer.join(self.fleet.name, self.inbox.cursor, __version__)
            self.latest = await writer.latest_decision()
            self.members = await writer.members()
            queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            tasks = [asyncio.create_task(self._listen(listener, queue), name="fleet listen")]
            try:
                await self._catch_up(writer)
                self.connected, self.since, self.error = True, self.clock(), None
                log.info("fleet: connected to %s as %r (%d members; decisions seen up to #%d "
                         "of #%d)", self.fleet.dsn, self.fleet.name, self.members,
                         self.inbox.cursor, self.latest)
                self.wake()
                tasks += [asyncio.create_task(self._apply(queue), name="fleet apply"),
                          asyncio.create_task(self._send(writer), name="fleet send"),
                          asyncio.create_task(self._heartbeat(writer), name="fleet heartbeat")]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for connection in (listener, writer):
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()

    async def _catch_up(self, writer: Connection) -> None:
        """Read what was missed, PAGE ids at a time up to the newest id when the link
        started LISTENing (what comes after is pushed); the next page is read while this
        one is applied."""
        def read(after: int) -> asyncio.Task:
            return asyncio.create_task(writer.decisions_between(
                after, min(after + PAGE, self.latest), self.fleet.name))

        after = self.inbox.cursor
        following = read(after) if after < self.latest else None
        while following is not None:
            page, upto = await following, min(after + PAGE, self.latest)
            following = read(upto) if upto < self.latest else None
            await asyncio.sleep(0)  # the query goes out before this page is applied
            try:
                await self.inbox.receive(page, through=upto)
            except BaseException:
                if following is not None:
                    following.cancel()
                raise
            after = upto
        self.correlation.receive(await writer.facts_after(self.correlation.latest,
                                                          self.fleet.name))

    async def _listen(self, listener: Connection, queue: asyncio.Queue) -> None:
        async for channel, payload in listener.notifications():
            queue.put_nowait((channel, payload))
        raise FleetError("the notification stream ended")

    async def _apply(self, queue: asyncio.Queue[tuple[str, str]]) -> None:
        """Apply what was pushed, in the order it came, in batches of what has arrived."""
        decisions_channel = self.database.decisions_channel
        while True:
            items = [await queue.get()]
            while not queue.empty() and len(items) < PAGE:
                items.append(queue.get_nowait())
            decisions, facts = [], []
            for channel, payload in items:
                ident = _payload_id(payload)
                if ident is None:
                    log.warning("fleet: a notification on %s without an id was skipped",
                                channel)
                elif channel == decisions_channel:
                    decisions.append((ident, parse_decision(payload)))
                else:
                    facts.append((ident, payload))
            if facts:
                self.correlation.receive(facts)
            if decisions:
                self.latest = max(self.latest, decisions[-1][0])
                await self.inbox.receive(decisions)

    async def _send(self, writer: Connection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            facts = self.correlation.take(self.clock())
            if facts:
                try:
                    await asyncio.wait_for(writer.store_facts(self.fleet.name, facts),
                                           STATEMENT_TIMEOUT)
                except BaseException:
                    self.correlation.pending.extendleft(reversed(facts))
                    raise
            while batch := self.store.fleet_outbox(self.fleet.name, PAGE):
                await asyncio.wait_for(writer.store_decisions(d for _, d in batch),
                                       STATEMENT_TIMEOUT)
                self.store.drop_fleet_outbox(row for row, _ in batch)
                self.sent += len(batch)

    async def _heartbeat(self, writer: Connection) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            self.latest = max(self.latest, await asyncio.wait_for(
                writer.heartbeat(self.fleet.name, self.inbox.cursor), STATEMENT_TIMEOUT))
            self.members = await asyncio.wait_for(writer.members(), STATEMENT_TIMEOUT)
            if self.clock() - self._purged_at >= PURGE_INTERVAL:
                self._purged_at = self.clock()
                decisions, facts = await asyncio.wait_for(writer.purge(), STATEMENT_TIMEOUT)
                if decisions or facts:
                    log.info("fleet: purged %d old decisions and %d facts", decisions, facts)
                self.store.purge_fleet_received(self._purged_at - HISTORY)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "name": self.fleet.name, "dsn": self.fleet.dsn, "schema": self.fleet.schema,
            "connected": self.connected, "since": self.since, "error": self.error,
            "members": self.members, "latest": self.latest,
            "behind": max(0, self.latest - self.inbox.cursor) if self.connected else None,
            "outbox": self.store.fleet_outbox_depth(), "out": self.sent,
            "facts": dict(sorted(self.correlation.counts.items())),
            **self.inbox.status(),
        }


def _payload_id(payload: str) -> int | None:
    """The id at the start of a decision or fact payload (`{"id" : 42, …`), read without
    parsing the whole object (the inbox parses it strictly)."""
    head = payload[:40]
    start = head.find(":")
    if not head.startswith('{"id"') or start < 0:
        return None
    digits = head[start + 1:].split(",", 1)[0].strip()
    return int(digits) if digits.isdigit() else None
