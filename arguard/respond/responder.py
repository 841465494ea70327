"""Transitions: applies what the policy decides to the blocks table and the backends, records
each outcome (counters, active-responses.log), and at start brings table and backends into
agreement (`reconcile`).

Ordering is what makes a crash at any point recoverable (`reconcile()` finishes the job on
the next start):

- new block: the `blocks` row is written (active) first, then the action adds. A crash in
  between leaves a row whose target the backend lacks: reconcile re-applies it.
- lift: the row's expiry is set to now first (the intent, for a manual unblock), then the
  action deletes, then the row is marked lifted. A crash in between leaves an expired active
  row: reconcile lifts it again (deletes are idempotent).

A failed add marks the row lifted; a failed delete keeps the row active and retries after
LIFT_RETRY seconds, so a block that is still in place is never forgotten.

When the table cannot be written (a full disk, an I/O error, a lock another process keeps),
responses are still applied: their blocks are kept in memory and written at the next
chance (`record_unrecorded`, ahead of the next batch and at every scheduler wake-up), and a
warning says so once a minute. Lifts wait until the table can be written: a block that is
lifted must be recorded as lifted, or the next start would put it back.

Every request (a Response to add or extend, a Lift) takes one path. `_begin` asks the policy
what each one does, against the table as it stands, and writes the table ahead of the
backend, all in one transaction: the rows of a batch are committed together, before any of
its actions runs. `_invoke` makes each backend call through the one guard (dry run, action
errors, an action that crashes). `_settle` records the outcomes in a second transaction.
`apply` makes the calls inline; `apply_async` runs the calls of detached actions (scripts,
webhooks: they can take seconds) and stateless ones (ending processes waits a grace) in
worker threads, and the calls one alert asks for one after another, in the order of their
bindings (lock, then terminate). Reconciliation's calls go through the same guard. Store
access always stays in the caller's thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

from arguard.config import Config, stateless
from arguard.faults import LastingFault
from arguard.model import Alert, Block, Lift, Offence, Response
from arguard.respond.actions import Action, ActionContext, ActionError, build_action
from arguard.respond.actions.base import BatchAction, OwnerConflict
from arguard.respond.policy import Decision, Policy, backend_timeout, detached, later_expiry
from arguard.respond.responselog import ResponseLog, Verb
from arguard.respond.targets import normalise_address
from arguard.store import Store

log = logging.getLogger(__name__)

#: seconds before a failed delete is tried again
LIFT_RETRY = 60
#: lifted blocks are kept this long as history (seconds)
HISTORY = 30 * 86_400
#: why blocks are there (`arguard explain`): offences kept per block and in all, log lines
#: kept per offence (the last ones), characters kept per line
OFFENCES_PER_BLOCK = 10
OFFENCES_KEPT = 20_000
LINES_PER_OFFENCE = 20
LINE_CHARS = 1024

Request = Response | Lift


@dataclass(frozen=True, slots=True)
class Applied:
    """What happened to one request."""

    verb: Verb
    command: str
    target: str
    block: Block | None = None
    reason: str | None = None
    #: what the action said it did (the pids a terminate ended)
    detail: str | None = None


@dataclass(slots=True)
class Reconciled:
    """What reconciliation did, per kind of repair."""

    lifted: list[Applied] = field(default_factory=list)
    restored: list[Applied] = field(default_factory=list)
    removed: list[Applied] = field(default_factory=list)
    adopted: list[Applied] = field(default_factory=list)
    failed: list[Applied] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"lifted": len(self.lifted), "restored": len(self.restored),
                "removed": len(self.removed), "adopted": len(self.adopted),
                "failed": len(self.failed)}


@dataclass(slots=True)
class _Call:
    """One backend call (its action is None in a dry run, where nothing is called)."""

    command: str
    action: Action | None
    method: Literal["add", "delete", "add_many"]
    target: str = ""
    timeout: int | None = None
    alert: Alert | None = None
    items: Sequence[tuple[str, int | None]] = ()
    #: runs in a worker thread
    detached: bool = False
    #: what the action said it did (an add's return value)
    detail: str | None = None


@dataclass(slots=True)
class _Step:
    """One request between `_begin` and `_settle`."""

    request: Request
    decision: Decision
    now: float
    call: _Call | None = None
    #: why the request failed before any backend call (its action cannot be set up)
    failed: str | None = None
    #: the table could not be written: nothing of this step is in it
    unrecorded: bool = False


class Responder:
    """Applies requests through the policy's decisions, and reconciles.

    `actions` maps command names to action objects (tests inject fakes); other commands'
    actions are built on first use from their description. `dry_run` decides, records and
    logs but never builds or calls an action; it should then be given a throwaway store
    (Store(":memory:")) so that no block it imagines is reconciled into the kernel by a later
    real run, and it writes no active-responses.log. `clock` is wall-clock time (block expiry
    times are stored as wall-clock seconds).
    """

    def __init__(self, config: Config, store: Store, policy: Policy, context: ActionContext,
                 *, actions: Mapping[str, Action] | None = None, dry_run: bool = False,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.store = store
        self.policy = policy
        self.context = context
        self.dry_run = dry_run
        self.clock = clock
        self.log = ResponseLog(None if dry_run else config.paths.responses_log, clock)
        #: (command, verb) → how many times; failures per command feed `arguard status`
        self.counters: Counter[tuple[str, str]] = Counter()
        #: (command, reason) → how many requests were skipped for that reason (metrics)
        self.skips: Counter[tuple[str, str]] = Counter()
        #: told (command, method, seconds) after every backend call (metrics), from the
        #: thread that made it
        self.timed: Callable[[str, str, float], None] | None = None
        self._actions: dict[str, Action] = dict(actions or {})
        self._active = store.count_active_blocks()
        self._listeners: list[Callable[[float], None]] = []
        #: writing the blocks table fails (disk full …): a warning a minute while it lasts
        self.table = LastingFault(log, f"the blocks table ({store.path})")
        #: blocks in place but not in the table yet, by (command, target)
        self._unrecorded: dict[tuple[str, str], Block] = {}

    # --- requests --------------------------------------------------------------------------

    def apply(self, requests: Sequence[Request]) -> list[Applied]:
        """Apply a batch, every backend call inline."""
        steps = self._begin(requests)
        return self._settle(steps, [self._invoke(step.call) for step in steps])

    async def apply_async(self, requests: Sequence[Request]) -> list[Applied]:
        """Apply a batch, the calls of detached and stateless actions in worker threads: the
        calls of one alert one after another in their order, alerts concurrently."""
        steps = self._begin(requests)
        errors: list[str | None] = [None] * len(steps)

        async def in_order(indices: list[int]) -> None:
            for index in indices:
                call = steps[index].call
                if call is not None and call.detached and not self.dry_run:
                    errors[index] = await asyncio.to_thread(self._invoke, call)
                else:
                    errors[index] = self._invoke(call)

        await asyncio.gather(*(in_order(indices) for indices in _by_alert(steps)))
        return self._settle(steps, errors)

    def lift_expired(self) -> list[Applied]:
        """Lift every block whose time has come, every call inline (while the table cannot
        be written, they wait for the next try)."""
        done: list[Applied] = []
        while batch := self.store.expired_blocks(self.clock()):
            done.extend(self.apply([Lift(block) for block in batch]))
            if self.table.error is not None:
                break
        return done

    async def lift_expired_async(self) -> list[Applied]:
        """Lift every block whose time has come, letting the loop in between large batches."""
        done: list[Applied] = []
        while batch := self.store.expired_blocks(self.clock()):
            done.extend(await self.apply_async([Lift(block) for block in batch]))
            if self.table.error is not None:
                break
            await asyncio.sleep(0)
        return done

    def on_exit(self) -> list[Applied]:
        """With global.unblock_on_exit, lift every active block (the daemon calls this when
        it stops); by default blocks stay in place and backend timeouts keep them honest.
        Blocks not recorded yet get a last chance to be."""
        self.record_unrecorded()
        if not self.config.global_.unblock_on_exit:
            return []
        return self.apply([Lift(block) for block in self.store.active_blocks()])

    def record_unrecorded(self) -> None:
        """Write the blocks applied while the table could not be written, if it can be now."""
        if not self._unrecorded:
            return
        before = self.store.changes()
        try:
            with self._transaction():
                self._write_unrecorded()
        except sqlite3.OperationalError as error:
            self.table.failed(error, 0)
            return
        self._unrecorded.clear()
        self._wrote(before)

    # --- the stage around it ---------------------------------------------------------------

    def detached(self, command: str) -> bool:
        """Whether the command's calls run in worker threads, off the daemon's loop: those
        of detached actions and of stateless ones (unknown commands' do not). Neither kind
        is reconciled."""
        spec = self.config.commands.get(command)
        return spec is not None and (detached(spec) or stateless(spec))

    def action(self, command: str) -> Action | None:
        """The action of a configured command, built on first use; None when the command is
        not configured (any more). Raises ActionError when the backend cannot be set up."""
        if command in self._actions:
            return self._actions[command]
        spec = self.config.commands.get(command)
        if spec is None:
            return None
        try:
            action = build_action(spec, self.context)
        except ImportError as error:
            raise ActionError(f"backend for action {spec.action!r} unavailable: {error}") from error
        self._actions[command] = action
        return action

    def next_expiry(self) -> float | None:
        return self.store.next_expiry()

    def subscribe(self, listener: Callable[[float], None]) -> None:
        """Call `listener(expires_at)` whenever a block gets a new expiry time (the scheduler
        uses it to wake up early for a block that expires sooner than it planned)."""
        self._listeners.append(listener)

    def purge(self) -> None:
        """Forget offenders quiet for global.offender_forget and lifted blocks older than
        HISTORY."""
        now = self.clock()
        try:
            with self._transaction():
                forgotten = self.store.forget_offenders(
                    now - self.config.global_.offender_forget)
                dropped = self.store.purge_lifted_blocks(now - HISTORY)
        except sqlite3.OperationalError as error:
            self.table.failed(error, 0)
            return
        if forgotten or dropped:
            log.info("forgot %d quiet offenders, dropped %d old lifted blocks",
                     forgotten, dropped)

    @property
    def active_count(self) -> int:
        return self._active

    @property
    def unrecorded(self) -> int:
        """Blocks in place that the table could not record yet."""
        return len(self._unrecorded)

    def reconfigure(self, config: Config, policy: Policy) -> None:
        """Switch to a reloaded configuration (white list, cap, commands, log path). Actions
        of commands that changed or went away are dropped and rebuilt on next use; blocks
        already in place are kept."""
        for name in list(self._actions):
            if config.commands.get(name) != self.config.commands.get(name):
                del self._actions[name]
        self.config = config
        self.policy = policy
        if not self.dry_run and self.log.path != config.paths.responses_log:
            self.log.reopen()
            self.log.path = config.paths.responses_log

    def reopen_log(self) -> None:
        self.log.reopen()

    # --- the one path ----------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self._recount()  # rolled back
            raise

    def _recount(self) -> None:
        try:
            self._active = self.store.count_active_blocks() + len(self._unrecorded)
        except sqlite3.Error:
            pass

    def _begin(self, requests: Sequence[Request]) -> list[_Step]:
        now = self.clock()
        before = self.store.changes()
        try:
            with self._transaction():
                self._write_unrecorded()
                steps = [self._begin_lift(request, now) if isinstance(request, Lift)
                         else self._begin_response(request, now) for request in requests]
        except sqlite3.OperationalError as error:
            self.table.failed(error, 0)
            return [self._begin_unrecorded(request, now) for request in requests]
        self._unrecorded.clear()
        self._wrote(before)
        return steps

    def _wrote(self, before: int) -> None:
        """A transaction committed: if it wrote anything, the table can be written."""
        if self.store.changes() > before:
            self.table.succeeded()

    def _write_unrecorded(self) -> None:
        """Inside a transaction: the blocks applied while the table could not be written."""
        for (command, target), block in self._unrecorded.items():
            current = self.store.active_block(command, target)
            if current is None:
                self.store.insert_block(block)
            elif later_expiry(block.expires_at, current.expires_at) != current.expires_at:
                self.store.update_block(command, target, block.expires_at, block.offence,
                                        block.rule_id, block.alert_id)

    def _begin_unrecorded(self, request: Request, now: float) -> _Step:
        """A request while the table cannot be written: a response is applied and its block
        kept in memory; a lift waits (its step fails in `_settle_unrecorded`)."""
        if isinstance(request, Lift):
            return _Step(request, Decision("skip"), now, unrecorded=True)
        return self._begin_response(request, now, unrecorded=True)

    def _current(self, response: Response, unrecorded: bool) -> Block | None:
        """The block `response` finds in place: the table's (or one not recorded yet)."""
        if response.skipped is not None or response.command not in self.config.commands:
            return None
        key = (response.command, response.target)
        if not unrecorded:
            return self.store.active_block(*key)
        if key in self._unrecorded:
            return self._unrecorded[key]
        try:
            return self.store.active_block(*key)
        except sqlite3.Error:
            return None

    def _begin_response(self, response: Response, now: float,
                        unrecorded: bool = False) -> _Step:
        """`unrecorded`: the table cannot be written; the block is kept in memory."""
        current = self._current(response, unrecorded)
        decision = self.policy.transition(response, current, self._active, now)
        step = _Step(response, decision, now, unrecorded=unrecorded)
        if decision.verb == "skip":
            return step
        try:
            action = None if self.dry_run else self.action(response.command)
        except ActionError as error:
            step.failed = str(error)
            return step
        block, alert = decision.block, response.alert
        if decision.verb == "extend":
            assert block is not None and current is not None
            if unrecorded:
                self._unrecorded[(block.command, block.target)] = block
            else:
                self.store.update_block(block.command, block.target, block.expires_at,
                                        block.offence, block.rule_id, block.alert_id)
            if block.expires_at != current.expires_at:
                self._notify(block.expires_at)
            if decision.refresh:
                step.call = _Call(response.command, action, "add", response.target,
                                  backend_timeout(decision.remaining), alert)
            return step
        if block is not None:
            if unrecorded:
                self._unrecorded[(block.command, block.target)] = block
            else:
                self.store.insert_block(block)
            self._active += 1
            self._notify(block.expires_at)
        step.call = _Call(response.command, action, "add", response.target, response.timeout,
                          alert,
                          detached=self.detached(response.command))
        return step

    def _begin_lift(self, request: Lift, now: float) -> _Step:
        block = request.block
        current = self.store.active_block(block.command, block.target)
        decision = self.policy.lift(current)
        step = _Step(request, decision, now)
        if decision.verb == "skip" or decision.reason is not None:
            return step
        assert current is not None
        if current.expires_at is None or current.expires_at > now:
            self.store.update_block(current.command, current.target, now)
        try:
            action = None if self.dry_run else self.action(current.command)
        except ActionError as error:
            step.failed = str(error)
            return step
        step.call = _Call(current.command, action, "delete", current.target,
                          detached=self.detached(current.command))
        return step

    def _invoke(self, call: _Call | None) -> str | None:
        """Make one backend call; the error message, or None on success (and in a dry run)."""
        if call is None or self.dry_run:
            return None
        assert call.action is not None
        started = time.perf_counter()
        try:
            if call.method == "add":
                call.detail = call.action.add(call.target, call.timeout, call.alert)
            elif call.method == "delete":
                call.action.delete(call.target)
            else:
                assert isinstance(call.action, BatchAction)
                call.action.add_many(call.items)
        except ActionError as error:
            return str(error) or type(error).__name__
        except Exception as error:  # a bug in an action must not take the daemon down
            log.exception("action %s(%s) crashed", call.method,
                          call.target or f"{len(call.items)} targets")
            return f"internal error: {type(error).__name__}: {error}"
        finally:
            if self.timed is not None:
                self.timed(call.command, call.method, time.perf_counter() - started)
        return None

    def _settle(self, steps: list[_Step], errors: list[str | None]) -> list[Applied]:
        if steps and steps[0].unrecorded:
            return [self._settle_unrecorded(step, error) for step, error in zip(steps, errors)]
        try:
            with self._transaction():
                return [self._settle_lift(step, error) if isinstance(step.request, Lift)
                        else self._settle_response(step, error)
                        for step, error in zip(steps, errors)]
        except sqlite3.OperationalError as table_error:
            # The rows written ahead say what was intended: an added block is active, a
            # lift's block has expired (the next try lifts it again; deletes are idempotent).
            self.table.failed(table_error, 0)
            for step in steps:
                step.unrecorded = True
            return [self._settle_unrecorded(step, error) for step, error in zip(steps, errors)]

    def _settle_unrecorded(self, step: _Step, error: str | None) -> Applied:
        """The outcome of a step the table does not record (yet)."""
        request = step.request
        waiting = f"the blocks table cannot be written ({self.table.error})"
        if isinstance(request, Lift):
            block = request.block
            return self._record("fail", block.command, block.target, block=block,
                                reason=f"not lifted: {waiting}; lifted once it can be")
        decision, block = step.decision, step.decision.block
        key = (request.command, request.target)

        def record(verb: Verb, reason: str | None) -> Applied:
            return self._record(verb, request.command, request.target, block=block,
                                reason=reason, timeout=request.timeout, response=request)

        if decision.verb == "skip":
            return record("skip", decision.reason)
        if step.failed is not None or error is not None:
            if decision.verb == "add" and block is not None and \
                    self._unrecorded.pop(key, None) is not None:
                self._active -= 1
            return record("fail", step.failed or error)
        return record(decision.verb, f"not recorded yet: {waiting}")

    def _settle_response(self, step: _Step, error: str | None) -> Applied:
        response = step.request
        assert isinstance(response, Response)
        decision, block = step.decision, step.decision.block

        def record(verb: Verb, reason: str | None = None, recorded: Block | None = None,
                   timeout: float | None = response.timeout) -> Applied:
            detail = step.call.detail if step.call is not None else None
            return self._record(verb, response.command, response.target, block=recorded,
                                reason=reason, timeout=timeout, response=response,
                                detail=detail)

        if decision.verb == "skip":
            return record("skip", decision.reason)
        if step.failed is not None:
            return record("fail", step.failed)
        if decision.verb == "extend":
            if error is not None:
                return record("fail", f"extend: {error}", block, decision.remaining)
            self._offence("extend", response, block, step.now)
            return record("extend", None, block, decision.remaining)
        if block is None:
            return record("fail" if error else "add", error)
        if error is not None:
            self.store.lift_block(block.command, block.target)
            self._active -= 1
            return record("fail", error, replace(block, state="lifted"))
        self._offence("add", response, block, step.now)
        return record("add", None, block)

    def _settle_lift(self, step: _Step, error: str | None) -> Applied:
        request = step.request
        assert isinstance(request, Lift)
        decision, current = step.decision, step.decision.block
        if decision.verb == "skip":
            return self._record("skip", request.block.command, request.block.target,
                                reason=decision.reason)
        assert current is not None
        error = step.failed or error
        if error is not None and decision.reason is None:
            retry = step.now + LIFT_RETRY
            self.store.update_block(current.command, current.target, retry)
            self._notify(retry)
            return self._record("fail", current.command, current.target, block=current,
                                reason=f"{error}; retrying in {LIFT_RETRY} s")
        self.store.lift_block(current.command, current.target)
        self._active -= 1
        if decision.reason is not None:  # the command is gone: its backend was not asked
            return self._record("fail", current.command, current.target, block=current,
                                reason=decision.reason)
        return self._record("delete", current.command, current.target,
                            block=replace(current, state="lifted"))

    def _offence(self, verb: Literal["add", "extend"], response: Response, block: Block | None,
                 now: float) -> None:
        """Keep why the block is there: the alert and its lines (not in a dry run: its
        would-be blocks are in its own database, which `arguard explain` does not read)."""
        if self.dry_run or block is None:
            return
        alert = response.alert
        rule = alert.rule if alert is not None else None
        lines = alert.lines[-LINES_PER_OFFENCE:] if alert is not None else ()
        self.store.record_offence(block.command, block.target, Offence(
            at=now, verb=verb, offence=response.offence if alert is not None else None,
            rule_id=rule.id if rule else None, level=rule.level if rule else None,
            description=rule.description if rule else None,
            alert_id=alert.id if alert is not None else None, timeout=response.timeout,
            expires_at=block.expires_at, lines=tuple(line[:LINE_CHARS] for line in lines)),
            OFFENCES_PER_BLOCK, OFFENCES_KEPT)

    def _record(self, verb: Verb, command: str, target: str, *, block: Block | None = None,
                reason: str | None = None, timeout: float | None = None,
                response: Response | None = None, detail: str | None = None) -> Applied:
        """Count and log one outcome; its rule, alert and offence are those of the response
        that asked for it, else those of the block; `detail`: what the action said it did."""
        self.counters[(command, verb)] += 1
        if verb == "skip":
            self.skips[(command, reason or "")] += 1
        if response is not None:
            alert = response.alert
            rule_id, alert_id = (alert.rule.id, alert.id) if alert else (None, None)
            offence: int | None = response.offence
        elif block is not None:
            rule_id, alert_id, offence = block.rule_id, block.alert_id, block.offence
        else:
            rule_id = alert_id = offence = None
        self.log.write(verb, command, target, rule_id=rule_id, alert_id=alert_id,
                       timeout=timeout, offence=offence, reason=reason, detail=detail)
        return Applied(verb, command, target, block, reason, detail)

    def _notify(self, expires_at: float | None) -> None:
        if expires_at is None:
            return
        for listener in self._listeners:
            listener(expires_at)

    # --- reconciliation --------------------------------------------------------------------

    def reconcile(self, commands: Collection[str] | None = None,
                  adopt: bool = False) -> Reconciled:
        """Bring the backends and the table into agreement (at start, for every command;
        for `commands` alone when their backend dropped its entries): expired blocks are
        lifted; blocks the table holds but the backend lost (reboot, flushed set, firewalld
        reloaded) are put back with their remaining time; entries this instance owns in the
        backend that the table does not know are removed — or with `adopt` (the database was
        replaced, the table lost them) recorded as blocks (Policy.adopt). OwnerConflict (a
        backend object of another instance) is raised: the daemon refuses to start."""
        result = Reconciled(lifted=self.lift_expired())
        if self.dry_run:
            return result
        # Commands may share a backend (one hosts.deny, one set): an entry is only "unknown"
        # when no command of the same action has an active block for that target.
        known: dict[str, set[str]] = {}
        for block in self.store.active_blocks():
            spec = self.config.commands.get(block.command)
            if spec is not None:
                known.setdefault(spec.action, set()).add(block.target)
        names = set(self.config.commands) | self.store.active_block_commands()
        for name in sorted(names if commands is None else names & set(commands)):
            command = self.config.commands.get(name)
            if command is None:
                count = len(self.store.active_blocks(name))
                log.warning("%d active blocks of command %r, which is no longer configured: "
                            "they are lifted from the table at expiry, their backend entries "
                            "are left in place", count, name)
                continue
            if self.detached(name):
                continue  # scripts and webhooks cannot be observed
            try:
                action = self.action(name)
                assert action is not None
                lost, unknown = self._differences(name, action,
                                                  known.get(command.action, set()))
            except OwnerConflict:
                raise
            except (ActionError, OSError) as error:
                result.failed.append(self._record("fail", name, "*",
                                                  reason=f"reconcile: {error}"))
                continue
            self._restore(name, action, lost, result)
            if adopt:
                self._adopt(name, sorted(unknown), result)
                known.setdefault(command.action, set()).update(unknown)
                continue
            for target in sorted(unknown):
                error = self._invoke(_Call(name, action, "delete", target))
                if error is not None:
                    result.failed.append(self._record(
                        "fail", name, target,
                        reason=f"reconcile: cannot remove unknown entry: {error}"))
                else:
                    result.removed.append(self._record(
                        "delete", name, target, reason="reconcile: not in the blocks table"))
        if any(result.counts().values()):
            log.info("reconciled blocks with the backends: %s", result.counts())
        return result

    def _differences(self, name: str, action: Action,
                     known: set[str]) -> tuple[list[Block], set[str]]:
        """The command's blocks its backend lost, and the backend's entries no command of
        its action knows."""
        blocks = self.store.active_blocks(name)
        listed = action.list_targets()
        if listed is None:
            return [b for b in blocks if not action.check(b.target)], set()
        present = {normalise_address(t) or t for t in listed}
        return [b for b in blocks if b.target not in present], present - known

    def _adopt(self, name: str, targets: list[str], result: Reconciled) -> None:
        now = self.clock()
        blocks = [self.policy.adopt(name, target, now) for target in targets]
        self._unrecorded.update(((name, block.target), block) for block in blocks)
        self._active += len(blocks)
        self.record_unrecorded()
        for block in blocks:
            self._notify(block.expires_at)
            result.adopted.append(self._record(
                "add", name, block.target, block=block,
                timeout=None if block.expires_at is None else block.expires_at - now,
                reason="reconcile: adopted, held by the backend for this instance"))

    def _restore(self, name: str, action: Action, lost: list[Block],
                 result: Reconciled) -> None:
        """Put lost blocks back with their remaining time; in one batch when the action
        has `add_many`."""
        now = self.clock()
        items = [(b, backend_timeout(None if b.expires_at is None else b.expires_at - now))
                 for b in lost]
        if items and isinstance(action, BatchAction):
            error = self._invoke(_Call(name, action, "add_many",
                                       items=[(b.target, timeout) for b, timeout in items]))
            if error is None:
                result.restored.extend(
                    self._record("add", name, b.target, block=b, timeout=timeout,
                                 reason="reconcile: restored") for b, timeout in items)
                return
            log.warning("%s: batch restore failed (%s); restoring one by one", name, error)
        for block, timeout in items:
            error = self._invoke(_Call(name, action, "add", block.target, timeout))
            if error is not None:
                result.failed.append(self._record(
                    "fail", name, block.target, block=block, timeout=timeout,
                    reason=f"reconcile: cannot restore: {error}"))
            else:
                result.restored.append(self._record(
                    "add", name, block.target, block=block, timeout=timeout,
                    reason="reconcile: restored"))


def _by_alert(steps: list[_Step]) -> list[list[int]]:
    """The steps' indices, those of one alert's responses together in their order (a
    chain: lock, then terminate); every other request alone."""
    groups: dict[int, list[int]] = {}
    for index, step in enumerate(steps):
        alert = getattr(step.request, "alert", None)
        groups.setdefault(id(alert) if alert is not None else -1 - index, []).append(index)
    return list(groups.values())
