"""The respond stage as one piece, built in one place for the daemon, the operator's direct
commands, `replay` and `logtest`: decisions (policy), transitions (responder) and time
(scheduler), sharing one store, one white list and one clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from arguard.config import Config
from arguard.model import Response
from arguard.respond.actions import Action, ActionContext
from arguard.respond.owner import UNTAGGED, Owner, instance_owner
from arguard.respond.policy import Policy
from arguard.respond.responder import Applied, Responder
from arguard.respond.scheduler import Scheduler
from arguard.respond.targets import TargetKind
from arguard.store import Store

#: lines between two purges of a simulation's in-memory store
PURGE_EVERY = 100_000


@dataclass
class RespondStage:
    policy: Policy
    responder: Responder
    scheduler: Scheduler
    #: the instance the kernel objects belong to (arguard.respond.owner)
    owner: Owner

    def block(self, target: str, command: str | None = None, timeout: int | None = None,
              kind: TargetKind = "ip") -> Applied:
        """An operator's block (`arguard block`); None timeout is permanent; `kind`: an
        address or network, or a user name (`--user`)."""
        return self.responder.apply([self.policy.block_request(target, command, timeout,
                                                               kind)])[0]

    async def block_async(self, target: str, command: str | None = None,
                          timeout: int | None = None, kind: TargetKind = "ip") -> Applied:
        request = self.policy.block_request(target, command, timeout, kind)
        return (await self.responder.apply_async([request]))[0]

    def unblock(self, target: str | None, command: str | None = None,
                kind: TargetKind = "ip") -> list[Applied]:
        """An operator's unblock: the target's blocks, or with None every active block (of
        one command, or of all)."""
        return self.responder.apply(self.policy.unblock_request(target, command, kind))

    async def unblock_async(self, target: str | None, command: str | None = None,
                            kind: TargetKind = "ip") -> list[Applied]:
        return await self.responder.apply_async(self.policy.unblock_request(target, command,
                                                                            kind))

    def reconfigure(self, config: Config) -> None:
        """Switch to a reloaded configuration: a new white list (and a fresh read of the
        host's own addresses), commands and cap; blocks and offender memory are kept."""
        self.policy = Policy(config, self.policy.store)
        self.responder.reconfigure(config, self.policy)


def build_respond_stage(config: Config, store: Store, *, dry_run: bool = False,
                        clock: Callable[[], float] = time.time,
                        actions: Mapping[str, Action] | None = None,
                        backend_reset: Callable[[str, str], None] | None = None
                        ) -> RespondStage:
    """The respond stage on `store`. A dry run never builds or calls an action, and its
    owner does not matter; give it a throwaway store (Store(":memory:")). `actions`
    replaces the actions of some commands (tests). `backend_reset`: what actions call
    when their backend dropped its entries by itself (ActionContext)."""
    owner = UNTAGGED if dry_run else instance_owner(store, config.paths.state_dir)
    policy = Policy(config, store)
    context = ActionContext(config.paths, owner, backend_reset)
    responder = Responder(config, store, policy, context,
                          actions=actions, dry_run=dry_run, clock=clock)
    return RespondStage(policy, responder, Scheduler(responder, clock), owner)


class SimulatedClock:
    """A simulation's "now": the time of the line being handled."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Simulation:
    """The respond stage on the lines' own clock, in a dry run on an in-memory store (replay,
    logtest): blocks are added, extended, escalated and lifted when they would have been,
    and nothing touches the kernel or any file. Lifted rows and quiet offenders are purged
    as it goes, so that memory stays bounded over a large log."""

    def __init__(self, config: Config):
        self.config = config
        self.clock = SimulatedClock()
        self.store = Store(":memory:")
        self.stage = build_respond_stage(config, self.store, dry_run=True, clock=self.clock)
        self._advances = 0
        self._next_expiry: float | None = None

    @property
    def policy(self) -> Policy:
        return self.stage.policy

    def advance(self, when: float) -> list[tuple[float, Applied]]:
        """Move the clock to `when` (never back), lifting every block that expires on the
        way at its own expiry time; the lifts with their times. Called for every line, so
        the next expiry is remembered rather than asked of the store each time."""
        clock = self.clock
        lifted: list[tuple[float, Applied]] = []
        while self._next_expiry is not None and self._next_expiry <= when:
            clock.now = max(clock.now, self._next_expiry)
            lifted.extend((clock.now, applied)
                          for applied in self.stage.responder.lift_expired())
            self._next_expiry = self.stage.responder.next_expiry()
        if when > clock.now:
            clock.now = when
        self._advances += 1
        if self._advances % PURGE_EVERY == 0:
            self.store.purge_lifted_blocks(clock.now)
            self.store.forget_offenders(clock.now - self.config.global_.offender_forget)
        return lifted

    def apply(self, responses: Sequence[Response]) -> list[Applied]:
        if not responses:
            return []
        applied = self.stage.responder.apply(responses)
        self._next_expiry = self.stage.responder.next_expiry()
        return applied

    def active_blocks(self) -> int:
        return self.store.count_active_blocks()
