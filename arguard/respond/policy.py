"""Decisions: which responses an alert or an operator asks for, and what each one does to
the blocks table — add, extend, skip (with the reason) or lift.

Pure: no kernel or file is touched here, so `arguard logtest` and `replay` decide with the
same Policy as the daemon (on an in-memory store). Two kinds of decision:

- requests. `decide(alert)` gives one Response per matching binding and target (white list,
  target checks, repeated offenders); `block_request` and `unblock_request` turn an
  operator's `arguard block` / `unblock` into the same records. The only state is the
  offender memory in the store, which `decide` updates: every response decided for a valid
  target is one offence of that target for that command.
- transitions. `transition(response, current, …)` and `lift(current)` say what a
  request does given the block the table holds for it at that moment: the responder asks
  inside its transaction, so the second alert of a batch for one target extends what the
  first one added.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, replace
from typing import Literal

from arguard.config import ActiveResponse, Command, Config, stateless
from arguard.model import Alert, Block, Lift, Response
from arguard.respond.actions import action_type
from arguard.respond.targets import (
    ATTESTED_PID,
    EXPECT_KINDS,
    Checked,
    TargetKind,
    Targets,
    check_user,
    normalise_target,
)
from arguard.store import Store

log = logging.getLogger(__name__)

Verb = Literal["add", "extend", "skip", "lift"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one request does.

    add: `block` is the new row, or None for a stateless run (a stateless action, or a
    detached one bound without a timeout: the action runs, nothing is recorded). extend:
    `block` is the row as extended, `remaining` its seconds left, and `refresh` whether the
    backend is told the new time. skip: `reason` says why. lift: `block` is the row lifted;
    `reason` set when the backend is not asked (the command is no longer configured).
    """

    verb: Verb
    block: Block | None = None
    reason: str | None = None
    remaining: float | None = None
    refresh: bool = False


def binding_matches(binding: ActiveResponse, alert: Alert) -> bool:
    return binding.selects(alert.rule)


def target_field(command: Command, alert: Alert) -> str | None:
    """The alert field the command acts on; `user` is dstuser, else srcuser; `filename` is
    a file integrity alert's path (the decoded field `file`, the alert's `syscheck.path`);
    `_PID` the pid the kernel attested for the entry (the journal's), never a field decoded
    from text."""
    if command.expect == ATTESTED_PID:
        pid = alert.event.line.attested_pid
        return None if pid is None else str(pid)
    fields = alert.event.fields
    if command.expect == "user":
        return fields.get("dstuser") or fields.get("srcuser")
    if command.expect == "filename":
        return fields.get("file")
    return fields.get(command.expect)


def _missing(command: Command) -> str:
    if command.expect == ATTESTED_PID:
        return "no kernel-attested pid (_PID): the entry did not come from the journal"
    return f"no {command.expect} in the alert"


def escalated_timeout(binding: ActiveResponse, offence: int) -> int | None:
    """Base timeout for the 1st offence, repeated_offenders[0] minutes for the 2nd, [1] for
    the 3rd, and the last value for every later one (as Wazuh)."""
    if binding.timeout is None or offence <= 1 or not binding.repeated_offenders:
        return binding.timeout
    minutes = binding.repeated_offenders[min(offence - 2, len(binding.repeated_offenders) - 1)]
    return minutes * 60


def backend_timeout(remaining: float | None) -> int | None:
    """A whole number of seconds for a backend timeout, rounded up so that the backend never
    lifts before the table does."""
    if remaining is None:
        return None
    return max(1, int(remaining) + (remaining % 1 > 0))


def detached(command: Command) -> bool:
    """Whether the command's action runs detached (its description says)."""
    described = action_type(command.action)
    return described is not None and described.detached


class Policy:
    """Decides the responses for alerts and operator requests. Without a store, the offender
    memory lives in an in-memory SQLite database for the lifetime of the Policy."""

    def __init__(self, config: Config, store: Store | None = None,
                 targets: Targets | None = None):
        self.config = config
        self.store = store if store is not None else Store(":memory:")
        self.targets = targets if targets is not None else Targets(
            config.global_.white_list, users=config.global_.white_list_users)
        #: the covering prefix lengths of the commands whose actions block networks
        self._prefixes = {name: _prefixes(command) for name, command in config.commands.items()}

    def _check(self, command: Command, text: str | None) -> Checked:
        return self.targets.check(EXPECT_KINDS[command.expect], text,
                                  self._prefixes.get(command.name))

    # --- requests ------------------------------------------------------------------------

    def decide(self, alert: Alert) -> list[Response]:
        """One response per matching binding and target; a second binding for the same
        (command, target) in the same alert adds nothing. Refused targets come back with
        `skipped` set to the reason."""
        responses: list[Response] = []
        seen: set[tuple[str, str]] = set()
        for binding in self.config.active_responses:
            if not binding_matches(binding, alert):
                continue
            command = self.config.commands[binding.command]
            raw = target_field(command, alert)
            if raw is None:
                checked = Checked("", _missing(command))
            else:
                checked = self._check(command, raw)
            if (command.name, checked.target) in seen:
                continue
            seen.add((command.name, checked.target))
            responses.append(self._response(binding, command, checked, alert))
        return responses

    def _response(self, binding: ActiveResponse, command: Command, checked: Checked,
                  alert: Alert) -> Response:
        if checked.refused is not None:
            return Response(command.name, checked.target, binding.timeout, alert,
                            skipped=checked.refused)
        try:
            offence = self.store.bump_offender(command.name, checked.target,
                                               alert.event.time,
                                               self.config.global_.offender_forget)
        except sqlite3.OperationalError:
            # the store cannot be written (a full disk): the response still counts, as the
            # offence after the last one recorded (the responder warns about the store)
            offence = self._offence_unrecorded(command.name, checked.target)
        return Response(command.name, checked.target, escalated_timeout(binding, offence),
                        alert, offence=offence)

    def _offence_unrecorded(self, command: str, target: str) -> int:
        try:
            known = self.store.offender(command, target)
        except sqlite3.Error:
            known = None
        return 1 if known is None else known[0] + 1

    def block_request(self, target: str, command: str | None, timeout: int | None,
                      kind: TargetKind = "ip") -> Response:
        """An operator's block (no alert, not an offence), validated like any target; None
        timeout is permanent. `kind` is what the operator said the target is (an address
        or network, or a user name: `--user`); without a command, the first bound command
        of that kind."""
        name = command if command is not None else self._default_command(kind)
        spec = self.config.commands.get(name) if name is not None else None
        if spec is None:
            missing = f"no command for {'user names' if kind == 'user' else 'addresses'} " \
                      "configured"
            return Response(name or "-", target, timeout, None,
                            skipped="no such command" if name else missing)
        acts_on = EXPECT_KINDS[spec.expect]
        if acts_on == "process":
            return Response(spec.name, target, timeout, None, skipped=(
                "a process is a target only as the kernel-attested pid (_PID) of the journal "
                "entry that fired a rule"))
        if acts_on != kind:
            return Response(spec.name, target, timeout, None, skipped=(
                f"command {name!r} acts on user names: give the name with --user"
                if acts_on == "user" else
                f"command {name!r} blocks addresses, not user names"))
        checked = self._check(spec, target)
        skipped = checked.refused
        if command is None and skipped in ("not an IP address", "hostname, not an IP address") \
                and check_user(target).refused is None:
            skipped += " (for a user name: --user NAME)"
        elif skipped == "network, not an address":
            skipped += f" (action {spec.action!r} blocks single addresses)"
        if skipped is None and timeout is not None and not spec.timeout_allowed:
            skipped = f"command {name!r} does not allow a timeout (timeout_allowed)"
        if skipped is None and timeout is not None and timeout <= 0:
            skipped = "timeout must be positive"
        return Response(spec.name, checked.target, timeout, None, skipped=skipped)

    def _default_command(self, kind: TargetKind) -> str | None:
        """The first command bound in [[active_response]] that acts on this kind of target,
        else the first configured command of that kind."""
        bound = [r.command for r in self.config.active_responses]
        for name in [*bound, *self.config.commands]:
            if EXPECT_KINDS[self.config.commands[name].expect] == kind:
                return name
        return None

    def unblock_request(self, target: str | None, command: str | None,
                        kind: TargetKind = "ip") -> list[Lift]:
        """An operator's unblock: the target's active blocks of that kind (of one command,
        or of all); with no target, every active block (of the command, or of all)."""
        if target is None:
            return [Lift(block) for block in self.store.active_blocks(command)]
        if kind == "ip":
            target = normalise_target(target)
        names = [command] if command is not None else sorted(self.store.active_block_commands())
        return [Lift(block) for block in (self.store.active_block(n, target) for n in names)
                if block is not None and block.kind == kind]

    # --- transitions -----------------------------------------------------------------------

    def transition(self, response: Response, current: Block | None, active: int,
                   now: float) -> Decision:
        """What a response does, given the active block the table holds for its command and
        target (`current`) and the number of active blocks."""
        if response.skipped is not None:
            return Decision("skip", reason=response.skipped)
        command = self.config.commands.get(response.command)
        if command is None:
            return Decision("skip", reason="unknown command")
        if stateless(command):
            return Decision("add")
        alert = response.alert
        rule_id = alert.rule.id if alert else None
        alert_id = alert.id if alert else None
        expires_at = None if response.timeout is None else now + response.timeout
        if current is not None:
            later = later_expiry(current.expires_at, expires_at)
            offence = response.offence if alert is not None else None
            block = replace(current, expires_at=later, offence=offence or current.offence,
                            rule_id=rule_id or current.rule_id,
                            alert_id=alert_id or current.alert_id)
            # Refreshes backend-side timeouts (ipset); idempotent for the others.
            return Decision("extend", block, remaining=None if later is None else later - now,
                            refresh=later != current.expires_at and not detached(command))
        if expires_at is None and detached(command):
            return Decision("add")
        cap = self.config.global_.max_blocks
        if active >= cap:
            log.warning("global.max_blocks (%d) active blocks reached: %s %s not blocked",
                        cap, command.name, response.target)
            return Decision("skip", reason=f"cap of {cap} active blocks reached "
                                           "(global.max_blocks)")
        return Decision("add", Block(response.target, EXPECT_KINDS[command.expect],
                                     command.name, rule_id, alert_id, now, expires_at,
                                     response.offence))

    def adopt(self, command: str, target: str, now: float) -> Block:
        """The block for an entry the backend holds for this instance that the table does not
        know, after the database was replaced: its own time is lost, so it is kept for the
        longest time the command's bindings give, permanently when one of them is permanent
        or none binds the command (an operator's block)."""
        spec = self.config.commands[command]
        bindings = [b for b in self.config.active_responses if b.command == command]
        longest = None
        if bindings and all(b.timeout is not None for b in bindings):
            longest = max(max([b.timeout, *(60 * m for m in b.repeated_offenders)])
                          for b in bindings)
        return Block(target, EXPECT_KINDS[spec.expect], command, None, None, now,
                     None if longest is None else now + longest, 1)

    def lift(self, current: Block | None) -> Decision:
        """What lifting a block does, given the row the table holds for it now: nothing when
        it is no longer active; without asking the backend when its command is gone."""
        if current is None:
            return Decision("skip", reason="not blocked")
        if current.command not in self.config.commands:
            return Decision("lift", current, reason=f"command {current.command!r} is no longer "
                                                    "configured; any backend entry is left in "
                                                    "place")
        return Decision("lift", current)


def later_expiry(a: float | None, b: float | None) -> float | None:
    """The later of two expiry times, where None (permanent) is latest."""
    if a is None or b is None:
        return None
    return max(a, b)


def _prefixes(command: Command) -> tuple[int, int] | None:
    """The covering prefix lengths a command blocks, None when its action blocks single
    addresses (or is not known)."""
    described = action_type(command.action)
    return None if described is None else described.prefixes(command)
