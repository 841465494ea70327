"""Decisions of other fleet hosts, applied through this host's own respond stage.

Each decision becomes a request of this host's policy (`fleet_response`, `fleet_unblock`),
so everything that protects this host still holds: its white list, its own addresses, the
loopback guard, `max_blocks`, its commands, `trusted_origins`. A refusal goes through the
responder like any skip (active-responses.log, with the decision's origin) and is kept for
`arguard status`; a row that cannot be read is reported and skipped; neither is applied.

Exactly once: decisions are taken in id order, every id at most once (the cursor), and the
cursor is written in the same SQLite transaction that records the batch's blocks ahead of
their backend calls, so a crash at any point neither loses a decision nor applies one
twice (the responder's reconcile finishes a half-applied batch at the next start). The
host's own decisions and those addressed to other hosts only move the cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from arguard.fleet.decision import FleetDecision, Malformed
from arguard.model import Lift, Origin, Response
from arguard.respond.responder import Applied
from arguard.respond.stage import RespondStage

log = logging.getLogger(__name__)

#: refusals and malformed rows kept for `arguard status`
RECENT = 20
#: decisions applied in one batch (one SQLite transaction each side of the backend calls);
#: the event loop runs between two (the daemon's other work, the next page's read)
BATCH = 1000


@dataclass(slots=True)
class _Pending:
    decision: FleetDecision
    request: Response | Lift


class Inbox:
    """Applies the decisions the fleet link receives, as (id, decision as read) pairs in id
    order: from NOTIFY (the JSON payload) or from a catch-up read (the row's columns)."""

    def __init__(self, stage: RespondStage, name: str, clock: Callable[[], float] = time.time):
        self.stage = stage
        self.name = name
        self.clock = clock
        self.store = stage.policy.store
        self.cursor = self.store.fleet_cursor()
        #: outcome → decisions (add, extend, delete, skip, fail, expired, malformed, none)
        self.counts: Counter[str] = Counter()
        self.recent: deque[str] = deque(maxlen=RECENT)
        #: seconds from a decision's creation at its origin to its application here (the
        #: last one applied)
        self.lag: float | None = None

    async def receive(self, entries: Sequence[tuple[int, FleetDecision | Malformed]],
                      through: int | None = None) -> None:
        """Apply the entries not seen yet; `through`: every id up to it has been read (a
        catch-up page: the ids it lacks do not concern this host), so the cursor moves
        there once the entries are applied."""
        fresh = sorted((e for e in entries if e[0] > self.cursor), key=lambda e: e[0])
        for start in range(0, len(fresh), BATCH):
            await self._receive(fresh[start:start + BATCH])
            await asyncio.sleep(0)
        if through is not None and through > self.cursor:
            self.store.save_fleet_cursor(through)
            self.cursor = through

    async def _receive(self, entries: Sequence[tuple[int, FleetDecision | Malformed]]) -> None:
        now = self.clock()
        pending: list[_Pending] = []
        outcomes: list[tuple] = []
        for ident, decision in entries:
            if isinstance(decision, Malformed) or decision.id != ident:
                reason = decision.reason if isinstance(decision, Malformed) else "id mismatch"
                self._report(f"decision #{ident} skipped, malformed: {reason}", "malformed")
                outcomes.append((ident, getattr(decision, "origin", None), None, None, None,
                                 "malformed", reason))
                continue
            if decision.origin == self.name or not decision.for_host(self.name):
                continue  # ours (applied when decided), or for other hosts
            origin = Origin(decision.origin, ident, decision.rule_id, decision.alert_id,
                            decision.expires_at)
            if decision.verb == "add":
                request = self.stage.policy.fleet_response(
                    decision.command, decision.target, origin, decision.offence, now)
                if request.skipped == "expired":
                    self.counts["expired"] += 1
                    outcomes.append(_row(decision, "expired", None))
                    continue
                pending.append(_Pending(decision, request))
                continue
            # an unblock: the blocks added before it in this batch must be in place first
            await self._apply(pending, outcomes, ident - 1)
            pending = []
            lifts = self.stage.policy.fleet_unblock(decision.command, decision.target, origin)
            if isinstance(lifts, str):
                self.counts["skip"] += 1
                self._refused(decision, lifts)
                outcomes.append(_row(decision, "skip", lifts))
            elif not lifts:
                self.counts["none"] += 1
                outcomes.append(_row(decision, "none", "no such block here"))
            else:
                pending.extend(_Pending(decision, lift) for lift in lifts)
        await self._apply(pending, outcomes, entries[-1][0] if entries else self.cursor)
        if outcomes:
            self.store.record_fleet_received(outcomes, now)

    async def _apply(self, pending: list[_Pending], outcomes: list[tuple], last: int) -> None:
        """Apply the pending requests; the cursor moves to `last` with their write-ahead."""
        last = max(last, self.cursor)
        if not pending:
            if last > self.cursor:
                self.store.save_fleet_cursor(last)
                self.cursor = last
            return
        applied = await self.stage.responder.apply_async(
            [p.request for p in pending], alongside=lambda: self.store.save_fleet_cursor(last))
        self.cursor = last
        now = self.clock()
        for item, outcome in zip(pending, applied):
            outcomes.append(_row(item.decision, outcome.verb, outcome.reason))
            self.counts[outcome.verb] += 1
            if outcome.verb == "skip":
                self._refused(item.decision, outcome.reason)
            elif outcome.verb in ("add", "extend", "delete"):
                self.lag = max(0.0, now - item.decision.created)

    def _refused(self, decision: FleetDecision, reason: str | None) -> None:
        self._report(f"decision {decision.origin}#{decision.id} ({decision.verb} "
                     f"{decision.command} {decision.target!r}) refused: {reason}", None)

    def _report(self, message: str, outcome: str | None) -> None:
        if outcome is not None:
            self.counts[outcome] += 1
        log.warning("fleet: %s", message)
        self.recent.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}")

    def status(self) -> dict:
        return {"cursor": self.cursor, "in": dict(sorted(self.counts.items())),
                "lag_seconds": self.lag, "recent_refusals": list(self.recent)}


def _row(decision: FleetDecision, outcome: str, reason: str | None) -> tuple:
    return (decision.id, decision.origin, decision.verb, decision.command, decision.target,
            outcome, reason)
