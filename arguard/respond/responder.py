"""Applies decided responses: one block per (command, target), recorded before it is acted on.

Ordering is what makes a crash at any point recoverable (the scheduler's `reconcile()` finishes
the job on the next start):

- new block: the `blocks` row is written (active) first, then the action adds. A crash in
  between leaves a row whose target the backend lacks: reconcile re-applies it.
- lift: the row's expiry is set to now first (the intent, for a manual unblock), then the
  action deletes, then the row is marked lifted. A crash in between leaves an expired active
  row: reconcile lifts it again (deletes are idempotent).

A failed add marks the row lifted; a failed delete keeps the row active and retries after
LIFT_RETRY seconds, so a block that is still in place is never forgotten. Every add, extend,
delete, skip and failure is one line in active-responses.log and one log record.

Script and webhook actions ("detached") can take seconds; the `*_async` methods run them in
worker threads (asyncio.to_thread) while the native actions (netlink, libiptc, small files)
run inline. The decision logic is written once, as generators that yield the action calls
they need (`_Call`); the drivers run a batch of them up to their calls in one transaction
(so the rows of a batch are committed together, before any of its actions runs), make the
calls (inline, or in threads for detached ones when async), and resume them in a second
transaction. Store access always stays in the caller's thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Generator, Literal, Mapping

from arguard.config import Config
from arguard.model import Alert, Block, Response
from arguard.respond.actions import Action, ActionError, build_action
from arguard.respond.policy import target_kind
from arguard.respond.targets import Targets, normalise_address
from arguard.store import Store

log = logging.getLogger(__name__)

#: actions that run outside the process (scripts, HTTP): in a worker thread when async, and
#: stateless (run on every alert, nothing recorded) when the binding has no timeout
DETACHED_ACTIONS = frozenset({"script", "webhook"})
#: seconds before a failed delete is tried again
LIFT_RETRY = 60
#: failure lines kept for `arguard status`
RECENT_FAILURES = 20

Verb = Literal["add", "extend", "delete", "skip", "fail"]


@dataclass(frozen=True, slots=True)
class Applied:
    """What happened to one response, block or unblock request."""

    verb: Verb
    command: str
    target: str
    block: Block | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    """One action call that a decision needs."""

    action: Action
    method: Literal["add", "delete"]
    target: str
    timeout: int | None = None
    alert: Alert | None = None
    detached: bool = False


# A decision: yields action calls, receives each call's error (None on success).
_Steps = Generator[_Call, "str | None", Applied]

_BARE = re.compile(r"[A-Za-z0-9_.:@%/+\[\]-]{1,256}", re.ASCII)


def _field(value: object) -> str:
    """A log field that cannot break the line format: bare when plain, else JSON-quoted
    (targets and reasons may be attacker-controlled text)."""
    if value is None:
        return "-"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text[:256])


class ResponseLog:
    """active-responses.log: one line per add, extend, delete, skip and failure.

    Opened for append on first write; `reopen()` closes it so that the next write opens the
    file again (after logrotate moved it; the daemon calls it on SIGHUP). With no path, lines
    only go to the `logging` record.
    """

    def __init__(self, path: Path | None, clock: Callable[[], float]):
        self.path = path
        self.clock = clock
        self._file: IO[str] | None = None
        #: the last failure lines, for `arguard status`
        self.recent_failures: deque[str] = deque(maxlen=RECENT_FAILURES)

    def write(self, verb: Verb, command: str, target: str, *, rule_id: int | None = None,
              alert_id: str | None = None, timeout: int | float | None = None,
              offence: int | None = None, reason: str | None = None) -> None:
        when = datetime.fromtimestamp(self.clock()).astimezone().isoformat(timespec="seconds")
        if timeout is not None:
            timeout = int(round(timeout))
        line = (f"{when} {_field(command)} {verb} {_field(target)} rule={_field(rule_id)} "
                f"alert={_field(alert_id)} timeout={_field(timeout)} "
                f"offence={_field(offence)} reason={_field(reason)}")
        if verb == "fail":
            self.recent_failures.append(line)
        log.log(logging.ERROR if verb == "fail" else logging.INFO, "%s", line)
        if self.path is None:
            return
        try:
            if self._file is None:
                self._file = self._open(self.path)
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as error:
            log.error("cannot write %s: %s", self.path, error)
            self.reopen()

    @staticmethod
    def _open(path: Path) -> IO[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8",
                    opener=lambda name, flags: os.open(name, flags | os.O_CLOEXEC, 0o640))

    def reopen(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    close = reopen


class Responder:
    """Turns responses into blocks and blocks into action calls.

    `actions` maps command names to action objects (tests inject fakes); commands missing
    from it are built on first use with build_action. `dry_run` decides, records and logs but
    never calls an action; it should then be given a throwaway store (Store(":memory:")) so
    that no block it imagines is reconciled into the kernel by a later real run, and it
    writes no active-responses.log. `clock` is wall-clock time (block expiry times are
    stored as wall-clock seconds).
    """

    def __init__(self, config: Config, store: Store, actions: Mapping[str, Action] | None = None,
                 dry_run: bool = False, clock: Callable[[], float] = time.time, *,
                 targets: Targets | None = None):
        self.config = config
        self.store = store
        self.dry_run = dry_run
        self.clock = clock
        self.targets = targets if targets is not None else Targets(config.global_.white_list)
        self.log = ResponseLog(None if dry_run else config.paths.responses_log, clock)
        #: (command, verb) → how many times; failures per command feed `arguard status`
        self.counters: Counter[tuple[str, str]] = Counter()
        self._actions: dict[str, Action] = dict(actions or {})
        self._active = store.count_active_blocks()
        self._listeners: list[Callable[[float], None]] = []

    # --- public API --------------------------------------------------------------------

    def apply(self, response: Response) -> Applied:
        return self._drive(self._apply(response))

    def apply_many(self, responses: list[Response]) -> list[Applied]:
        """Apply a batch: the rows of all its new blocks are committed in one transaction,
        then the actions run, then the outcomes are committed (much faster than one by
        one; a crash in between is reconciled like a single one)."""
        return self._drive_many([self._apply(r) for r in responses])

    def lift(self, block: Block) -> Applied:
        """Lift one block now (expiry or operator): the action deletes, the row is lifted."""
        return self._drive(self._lift(block))

    def lift_many(self, blocks: list[Block]) -> list[Applied]:
        return self._drive_many([self._lift(b) for b in blocks])

    def block(self, target: str, command: str | None = None,
              timeout: int | None = None) -> Applied:
        """Manual block (`arguard block`): validated like any target; None timeout is
        permanent. Without a command, the first bound command of the target's kind."""
        return self._drive(self._apply(self._manual(target, command, timeout)))

    def unblock(self, target: str, command: str | None = None) -> list[Applied]:
        """Lift the target's active blocks (of one command, or of all)."""
        return self.lift_many(self._blocks_of(target, command))

    def list_blocks(self) -> list[Block]:
        return self.store.active_blocks()

    async def apply_async(self, response: Response) -> Applied:
        return await self._drive_async(self._apply(response))

    async def apply_many_async(self, responses: list[Response]) -> list[Applied]:
        """apply_many, with script and webhook actions run concurrently in worker threads."""
        return await self._drive_many_async([self._apply(r) for r in responses])

    async def lift_async(self, block: Block) -> Applied:
        return await self._drive_async(self._lift(block))

    async def lift_many_async(self, blocks: list[Block]) -> list[Applied]:
        return await self._drive_many_async([self._lift(b) for b in blocks])

    async def block_async(self, target: str, command: str | None = None,
                          timeout: int | None = None) -> Applied:
        return await self._drive_async(self._apply(self._manual(target, command, timeout)))

    async def unblock_async(self, target: str, command: str | None = None) -> list[Applied]:
        return await self.lift_many_async(self._blocks_of(target, command))

    def subscribe(self, listener: Callable[[float], None]) -> None:
        """Call `listener(expires_at)` whenever a block gets a new expiry time (the scheduler
        uses it to wake up early for a block that expires sooner than it planned)."""
        self._listeners.append(listener)

    def action(self, command: str) -> Action | None:
        """The action of a configured command, built on first use; None when the command is
        not configured (any more). Raises ActionError when the backend cannot be set up."""
        if command in self._actions:
            return self._actions[command]
        spec = self.config.commands.get(command)
        if spec is None:
            return None
        try:
            action = build_action(spec, self.config.paths)
        except ImportError as error:
            raise ActionError(f"backend for action {spec.action!r} unavailable: {error}") from error
        self._actions[command] = action
        return action

    @property
    def active_count(self) -> int:
        return self._active

    def record(self, verb: Verb, command: str, target: str, reason: str | None = None,
               block: Block | None = None, timeout: float | None = None) -> Applied:
        """Count and log one event (also used by reconciliation)."""
        self.counters[(command, verb)] += 1
        self.log.write(verb, command, target, reason=reason, timeout=timeout,
                       rule_id=block.rule_id if block else None,
                       alert_id=block.alert_id if block else None,
                       offence=block.offence if block else None)
        return Applied(verb, command, target, block, reason)

    def reconfigure(self, config: Config) -> None:
        """Switch to a reloaded configuration (white list, cap, commands, log path). Actions
        of commands that changed or went away are dropped and rebuilt on next use; blocks
        already in place are kept."""
        for name in list(self._actions):
            if config.commands.get(name) != self.config.commands.get(name):
                del self._actions[name]
        self.config = config
        self.targets = Targets(config.global_.white_list)
        if not self.dry_run and self.log.path != config.paths.responses_log:
            self.log.reopen()
            self.log.path = config.paths.responses_log

    def reopen_log(self) -> None:
        self.log.reopen()

    # --- decisions ---------------------------------------------------------------------

    def _apply(self, response: Response) -> _Steps:
        alert = response.alert
        rule_id = alert.rule.id if alert else None
        alert_id = alert.id if alert else None

        def record(verb: Verb, reason: str | None = None, block: Block | None = None,
                   timeout: float | None = response.timeout) -> Applied:
            self.counters[(response.command, verb)] += 1
            self.log.write(verb, response.command, response.target, rule_id=rule_id,
                           alert_id=alert_id, timeout=timeout, offence=response.offence,
                           reason=reason)
            return Applied(verb, response.command, response.target, block, reason)

        if response.skipped is not None:
            return record("skip", response.skipped)
        command = self.config.commands.get(response.command)
        if command is None:
            return record("skip", "unknown command")
        try:
            action = self.action(command.name)
        except ActionError as error:
            return record("fail", str(error))
        assert action is not None
        detached = command.action in DETACHED_ACTIONS
        now = self.clock()
        expires_at = None if response.timeout is None else now + response.timeout

        existing = self.store.active_block(command.name, response.target)
        if existing is not None:
            later = _later(existing.expires_at, expires_at)
            offence = response.offence if alert is not None else None
            self.store.update_block(command.name, response.target, later, offence,
                                    rule_id, alert_id)
            block = replace(existing, expires_at=later, offence=offence or existing.offence,
                            rule_id=rule_id or existing.rule_id,
                            alert_id=alert_id or existing.alert_id)
            remaining = None if later is None else later - now
            if later != existing.expires_at:
                self._notify(later)
                if not detached:
                    # Refreshes backend-side timeouts (ipset); idempotent for the others.
                    error = yield _Call(action, "add", response.target, backend_timeout(remaining),
                                        alert)
                    if error is not None:
                        return record("fail", f"extend: {error}", block, remaining)
            return record("extend", None, block, remaining)

        if expires_at is None and detached:
            error = yield _Call(action, "add", response.target, None, alert, detached)
            return record("fail" if error else "add", error)

        if self._active >= self.config.global_.max_blocks:
            log.warning("global.max_blocks (%d) active blocks reached: %s %s not blocked",
                        self.config.global_.max_blocks, command.name, response.target)
            return record("skip", f"cap of {self.config.global_.max_blocks} active blocks "
                                  "reached (global.max_blocks)")
        block = Block(response.target, target_kind(command), command.name, rule_id,
                      alert_id, now, expires_at, response.offence)
        self.store.insert_block(block)
        self._active += 1
        if expires_at is not None:
            self._notify(expires_at)
        error = yield _Call(action, "add", response.target, response.timeout, alert, detached)
        if error is not None:
            self.store.lift_block(command.name, response.target)
            self._active -= 1
            return record("fail", error, replace(block, state="lifted"))
        return record("add", None, block)

    def _lift(self, block: Block) -> _Steps:
        current = self.store.active_block(block.command, block.target)
        if current is None:
            return self.record("skip", block.command, block.target, "not blocked")
        now = self.clock()
        if current.expires_at is None or current.expires_at > now:
            self.store.update_block(current.command, current.target, now)
        spec = self.config.commands.get(current.command)
        if spec is None:
            self.store.lift_block(current.command, current.target)
            self._active -= 1
            return self.record("fail", current.command, current.target,
                               f"command {current.command!r} is no longer configured; "
                               "any backend entry is left in place", current)
        try:
            action = self.action(current.command)
        except ActionError as setup_error:
            error: str | None = str(setup_error)
        else:
            assert action is not None
            error = yield _Call(action, "delete", current.target,
                                detached=spec.action in DETACHED_ACTIONS)
        if error is not None:
            retry = now + LIFT_RETRY
            self.store.update_block(current.command, current.target, retry)
            self._notify(retry)
            return self.record("fail", current.command, current.target,
                               f"{error}; retrying in {LIFT_RETRY} s", current)
        self.store.lift_block(current.command, current.target)
        self._active -= 1
        return self.record("delete", current.command, current.target, None,
                           replace(current, state="lifted"))

    def _manual(self, target: str, command: str | None, timeout: int | None) -> Response:
        """A Response for an operator's block request (no alert, not an offence)."""
        name = command if command is not None else self._default_command(target)
        spec = self.config.commands.get(name) if name is not None else None
        if spec is None:
            return Response(name or "-", target, timeout, None,
                            skipped="no such command" if name else "no command configured")
        checked = self.targets.check(target_kind(spec), target)
        skipped = checked.refused
        if skipped is None and timeout is not None and not spec.timeout_allowed:
            skipped = f"command {name!r} does not allow a timeout (timeout_allowed)"
        if skipped is None and timeout is not None and timeout <= 0:
            skipped = "timeout must be positive"
        return Response(spec.name, checked.target, timeout, None, skipped=skipped)

    def _default_command(self, target: str) -> str | None:
        """The first command bound in [[active_response]] that acts on this kind of target,
        else the first configured command of that kind."""
        kind = "ip" if normalise_address(target) is not None else "user"
        bound = [r.command for r in self.config.active_responses]
        for name in [*bound, *self.config.commands]:
            if target_kind(self.config.commands[name]) == kind:
                return name
        return None

    def _blocks_of(self, target: str, command: str | None) -> list[Block]:
        target = normalise_address(target) or target
        names = [command] if command is not None else sorted(self.store.active_block_commands())
        return [b for b in (self.store.active_block(n, target) for n in names) if b is not None]

    def _notify(self, expires_at: float) -> None:
        for listener in self._listeners:
            listener(expires_at)

    # --- running the action calls --------------------------------------------------------

    def _invoke(self, call: _Call) -> str | None:
        """Run one action call; the error message, or None on success."""
        if self.dry_run:
            return None
        try:
            if call.method == "add":
                call.action.add(call.target, call.timeout, call.alert)
            else:
                call.action.delete(call.target)
        except ActionError as error:
            return str(error) or type(error).__name__
        except Exception as error:  # a bug in an action must not take the daemon down
            log.exception("action %s(%s) crashed", call.method, call.target)
            return f"internal error: {type(error).__name__}: {error}"
        return None

    def _drive(self, steps: _Steps) -> Applied:
        return self._drive_many([steps])[0]

    async def _drive_async(self, steps: _Steps) -> Applied:
        return (await self._drive_many_async([steps]))[0]

    def _drive_many(self, batch: list[_Steps]) -> list[Applied]:
        results, pending = self._advance(batch, {i: None for i in range(len(batch))}, {})
        while pending:
            errors = {i: self._invoke(call) for i, call in pending.items()}
            results, pending = self._advance(batch, errors, results)
        return [results[i] for i in range(len(batch))]

    async def _drive_many_async(self, batch: list[_Steps]) -> list[Applied]:
        results, pending = self._advance(batch, {i: None for i in range(len(batch))}, {})
        while pending:
            errors = {i: self._invoke(call) for i, call in pending.items()
                      if not call.detached or self.dry_run}
            detached = [i for i in pending if i not in errors]
            outcomes = await asyncio.gather(*(asyncio.to_thread(self._invoke, pending[i])
                                              for i in detached))
            errors.update(zip(detached, outcomes))
            results, pending = self._advance(batch, errors, results)
        return [results[i] for i in range(len(batch))]

    def _advance(self, batch: list[_Steps], sends: dict[int, str | None],
                 results: dict[int, Applied]) -> tuple[dict[int, Applied], dict[int, _Call]]:
        """Run the decisions in `sends` up to their next action call, in one transaction:
        the rows a batch needs are committed together, before any of its actions runs."""
        pending: dict[int, _Call] = {}
        try:
            with self.store.transaction():
                for i, value in sends.items():
                    try:
                        pending[i] = batch[i].send(value)
                    except StopIteration as done:
                        results[i] = done.value
        except BaseException:
            self._active = self.store.count_active_blocks()  # rolled back
            raise
        return results, pending


def _later(a: float | None, b: float | None) -> float | None:
    """The later of two expiry times, where None (permanent) is latest."""
    if a is None or b is None:
        return None
    return max(a, b)


def backend_timeout(remaining: float | None) -> int | None:
    """A whole number of seconds for a backend timeout, rounded up so that the backend never
    lifts before the table does."""
    if remaining is None:
        return None
    return max(1, int(remaining) + (remaining % 1 > 0))
