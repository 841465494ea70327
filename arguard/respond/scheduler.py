"""Block expiry and start-up reconciliation, both driven by the `blocks` table.

Expiry: one asyncio task sleeps until the earliest `expires_at` in the table (an indexed
MIN query), lifts what has expired and sleeps again. The responder tells it about every new
expiry time, so a block added with a sooner expiry wakes it early; nothing polls. The sleep
is capped at MAX_SLEEP seconds so that a wall-clock step (block times are wall-clock) is
caught up with, and the same wake-up forgets quiet offenders and old block history.

Reconciliation (on start, before alerts are handled): expired blocks are lifted; blocks the
table holds but the backend lost (reboot, flushed set) are put back with their remaining time;
entries in arguard's own backend objects that the table does not know are removed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from arguard.model import Block
from arguard.respond.actions import Action, ActionError
from arguard.respond.responder import DETACHED_ACTIONS, Applied, Responder, backend_timeout
from arguard.respond.targets import normalise_address

log = logging.getLogger(__name__)

#: longest sleep between two looks at the table (seconds)
MAX_SLEEP = 60.0
#: how often quiet offenders and old lifted blocks are purged (seconds)
PURGE_INTERVAL = 3600.0
#: lifted blocks are kept this long as history (seconds)
HISTORY = 30 * 86_400


@dataclass(slots=True)
class Reconciled:
    """What reconciliation did, per kind of repair."""

    lifted: list[Applied] = field(default_factory=list)
    restored: list[Applied] = field(default_factory=list)
    removed: list[Applied] = field(default_factory=list)
    failed: list[Applied] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"lifted": len(self.lifted), "restored": len(self.restored),
                "removed": len(self.removed), "failed": len(self.failed)}


class Scheduler:
    """Lifts blocks on time. Create it before blocks are added so that it hears about them;
    run `reconcile()` once at start, then `run()` as a task for the daemon's lifetime."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.store = responder.store
        self.clock = responder.clock
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._planned: float | None = None
        self._purged_at: float | None = None
        responder.subscribe(self._on_expiry)

    # --- expiry ----------------------------------------------------------------------

    def lift_expired(self) -> list[Applied]:
        """Lift every block whose time has come (synchronous; actions run inline)."""
        done: list[Applied] = []
        now = self.clock()
        while batch := self.store.expired_blocks(now):
            done.extend(self.responder.lift_many(batch))
        return done

    async def run(self) -> None:
        """Lift blocks within a second of their expiry, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self.clock()
            while batch := self.store.expired_blocks(now):
                await self.responder.lift_many_async(batch)
                await asyncio.sleep(0)  # let the pipeline in between large batches
            self.purge()
            try:
                await asyncio.wait_for(self._wake.wait(), self.next_delay())
            except TimeoutError:
                pass

    def next_delay(self) -> float:
        """Seconds until the next block expires (at most MAX_SLEEP), remembering that time
        so that only a sooner expiry wakes the task early."""
        self._planned = self.store.next_expiry()
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
        """Forget offenders quiet for global.offender_forget and old lifted blocks, at most
        once per PURGE_INTERVAL."""
        now = self.clock()
        if self._purged_at is not None and now - self._purged_at < PURGE_INTERVAL:
            return
        self._purged_at = now
        forgotten = self.store.forget_offenders(
            now - self.responder.config.global_.offender_forget)
        dropped = self.store.purge_lifted_blocks(now - HISTORY)
        if forgotten or dropped:
            log.info("forgot %d quiet offenders, dropped %d old lifted blocks",
                     forgotten, dropped)

    # --- start and exit ------------------------------------------------------------------

    def reconcile(self) -> Reconciled:
        """Bring the backends and the table into agreement (run once at start)."""
        result = Reconciled(lifted=self.lift_expired())
        if self.responder.dry_run:
            return result
        config = self.responder.config
        # Commands may share a backend (one hosts.deny, one set): an entry is only "unknown"
        # when no command of the same action has an active block for that target.
        known: dict[str, set[str]] = {}
        for block in self.store.active_blocks():
            spec = config.commands.get(block.command)
            if spec is not None:
                known.setdefault(spec.action, set()).add(block.target)
        names = set(config.commands) | self.store.active_block_commands()
        for name in sorted(names):
            command = config.commands.get(name)
            if command is None:
                count = len(self.store.active_blocks(name))
                log.warning("%d active blocks of command %r, which is no longer configured: "
                            "they are lifted from the table at expiry, their backend entries "
                            "are left in place", count, name)
                continue
            if command.action in DETACHED_ACTIONS:
                continue  # scripts and webhooks cannot be observed
            try:
                action = self.responder.action(name)
                assert action is not None
                self._reconcile_command(name, action, known.get(command.action, set()),
                                        result)
            except (ActionError, OSError) as error:
                result.failed.append(self.responder.record(
                    "fail", name, "*", f"reconcile: {error}"))
        if any(result.counts().values()):
            log.info("reconciled blocks with the backends: %s", result.counts())
        return result

    def _reconcile_command(self, name: str, action: Action, known: set[str],
                           result: Reconciled) -> None:
        blocks = self.store.active_blocks(name)
        listed = action.list_targets()
        if listed is None:
            lost = [b for b in blocks if not action.check(b.target)]
            unknown: set[str] = set()
        else:
            present = {normalise_address(t) or t for t in listed}
            lost = [b for b in blocks if b.target not in present]
            unknown = present - known
        self._restore(name, action, lost, result)
        for target in sorted(unknown):
            try:
                action.delete(target)
            except ActionError as error:
                result.failed.append(self.responder.record(
                    "fail", name, target, f"reconcile: cannot remove unknown entry: {error}"))
            else:
                result.removed.append(self.responder.record(
                    "delete", name, target, "reconcile: not in the blocks table"))

    def _restore(self, name: str, action: Action, lost: list[Block],
                 result: Reconciled) -> None:
        """Put lost blocks back with their remaining time; in one batch when the backend
        offers `add_many`."""
        now = self.clock()
        items = [(b, backend_timeout(None if b.expires_at is None else b.expires_at - now))
                 for b in lost]
        add_many = getattr(action, "add_many", None)
        if add_many is not None and items:
            try:
                add_many([(b.target, timeout) for b, timeout in items])
            except ActionError as error:
                log.warning("%s: batch restore failed (%s); restoring one by one", name, error)
            else:
                result.restored.extend(
                    self.responder.record("add", name, b.target, "reconcile: restored", b,
                                          timeout) for b, timeout in items)
                return
        for block, timeout in items:
            try:
                action.add(block.target, timeout, None)
            except ActionError as error:
                result.failed.append(self.responder.record(
                    "fail", name, block.target, f"reconcile: cannot restore: {error}", block,
                    timeout))
            else:
                result.restored.append(self.responder.record(
                    "add", name, block.target, "reconcile: restored", block, timeout))

    def on_exit(self) -> list[Applied]:
        """With global.unblock_on_exit, lift every active block (the daemon calls this when
        it stops); by default blocks stay in place and backend timeouts keep them honest."""
        if not self.responder.config.global_.unblock_on_exit:
            return []
        return self.responder.lift_many(self.store.active_blocks())

