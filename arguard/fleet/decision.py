"""One fleet decision: a block (`add`) or an unblock (`delete`) that a host decided and
shares, and the strict reading of one from the database.

A row of the decisions table is text that any host of the fleet — or anyone with write
access to the database — wrote, so it is read like a log line: every field is checked for
its type and size here, and what it asks for is checked again by the receiving host's own
policy (its commands, white list, own addresses). A row that fails is skipped and reported
with the reason, never applied.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from arguard.model import Block, Response

FleetVerb = Literal["add", "delete"]
VERBS: tuple[FleetVerb, ...] = ("add", "delete")

#: a fleet host's name (fleet.name, trusted_origins, agent = [...])
MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", re.ASCII)
_MAX_TEXT = 256
#: the columns `read_decision` takes, in its order (times as seconds since the epoch)
DECISION_COLUMNS = ("id", "uid", "origin", "verb", "command", "target", "created", "expires",
                    "offence", "rule_id", "alert_id", "recipients")


@dataclass(frozen=True, slots=True)
class FleetDecision:
    """What one host decided, for the hosts it names (`recipients`; None: every host).

    `expires_at` is absolute (None: permanent), so every host lifts the block at the same
    time whenever it heard of it. `uid` is the origin's own id for the decision (a resend
    after a lost reply stays one decision); `id` the database's, once stored."""

    verb: FleetVerb
    origin: str
    command: str
    target: str
    created: float
    expires_at: float | None = None
    offence: int = 1
    rule_id: int | None = None
    alert_id: str | None = None
    recipients: tuple[str, ...] | None = None
    uid: str = ""
    id: int | None = None

    def for_host(self, name: str) -> bool:
        return self.recipients is None or name in self.recipients


@dataclass(frozen=True, slots=True)
class Malformed:
    """A decision row that cannot be read: skipped, and reported with the reason."""

    id: int | None
    reason: str
    origin: str | None = None


def parse_decision(text: str) -> FleetDecision | Malformed:
    """A decision as the database pushes it: a NOTIFY payload, the row as a JSON object
    (times as PostgreSQL writes them in JSON), every field checked."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return Malformed(None, "not JSON")
    if not isinstance(data, dict):
        return Malformed(None, "not a JSON object")
    get = data.get
    return checked_decision(get("id"), get("uid"), get("origin"), get("verb"), get("command"),
                            get("target"), get("created"), get("expires"), get("offence", 1),
                            get("rule_id"), get("alert_id"), get("recipients"), parse_time)


def read_decision(row: tuple) -> FleetDecision | Malformed:
    """A decision as a catch-up reads it: the row's columns (DECISION_COLUMNS), without
    a JSON text in between, every field checked as a pushed one is."""
    return checked_decision(*row, epoch_time)


def checked_decision(ident: Any, uid: Any, origin: Any, verb: Any, command: Any, target: Any,
                     created: Any, expires: Any, offence: Any, rule_id: Any, alert_id: Any,
                     recipients: Any, read_time: Callable[[Any], float | None]
                     ) -> FleetDecision | Malformed:
    """The decision these fields make, or what is wrong with them; `read_time` reads a
    time field as the transport carries it."""
    if not _is_int(ident) or ident <= 0:
        return Malformed(None, "no valid id")
    if not isinstance(origin, str) or not MEMBER_NAME.fullmatch(origin):
        return Malformed(ident, "origin is not a host name")
    if verb not in VERBS:
        return Malformed(ident, f"unknown verb {_shown(verb)}", origin)
    if not _is_text(command):
        return Malformed(ident, f"command is not a string of 1-{_MAX_TEXT} characters", origin)
    if not _is_text(target):
        return Malformed(ident, f"target is not a string of 1-{_MAX_TEXT} characters", origin)
    created = read_time(created)
    if created is None:
        return Malformed(ident, "created is not a time", origin)
    if expires is not None:
        expires = read_time(expires)
        if expires is None:
            return Malformed(ident, "expires is not a time", origin)
    if not _is_int(offence) or not 1 <= offence <= 1_000_000:
        return Malformed(ident, "offence is not a positive whole number", origin)
    if rule_id is not None and (not _is_int(rule_id) or not 0 < rule_id < 10_000_000):
        return Malformed(ident, "rule_id is not a rule id", origin)
    if alert_id is not None and (not isinstance(alert_id, str) or len(alert_id) > 64):
        return Malformed(ident, "alert_id is not a short string", origin)
    if recipients is not None and (not isinstance(recipients, list) or not all(
            isinstance(r, str) and MEMBER_NAME.fullmatch(r) for r in recipients)):
        return Malformed(ident, "recipients is not a list of host names", origin)
    return FleetDecision(verb, origin, command, target, created, expires, offence, rule_id,
                         alert_id, None if recipients is None else tuple(recipients),
                         str(uid or ""), ident)


def _is_int(value: Any) -> bool:
    return type(value) is int  # not a bool


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TEXT


def epoch_time(value: Any) -> float | None:
    """Seconds since the epoch as a finite number; None when it is not one (a timestamp
    of `infinity` reads as inf)."""
    if not isinstance(value, float) or not math.isfinite(value):
        return None
    return value


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from a timestamp with its time zone as PostgreSQL writes it
    in JSON (`2026-12-01T11:54:05.858015+00:00`); None when it is not one."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment.timestamp()


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def shared_decision(response: Response, origin: str, now: float) -> FleetDecision:
    """The fleet decision for a response this host decided (location all or defined-agent):
    its absolute expiry from now, its rule, alert and offence, its recipients."""
    alert = response.alert
    return FleetDecision(
        verb="add", origin=origin, command=response.command, target=response.target,
        created=now, expires_at=None if response.timeout is None else now + response.timeout,
        offence=response.offence, rule_id=None if alert is None else alert.rule.id,
        alert_id=None if alert is None else alert.id,
        recipients=response.agents if response.location == "defined-agent" else None,
        uid=uuid.uuid4().hex)


def unblock_decision(block: Block, origin: str, now: float) -> FleetDecision:
    """The fleet decision for an operator's unblock of a fleet block: every host lifts its
    block of that command and target."""
    return FleetDecision(verb="delete", origin=origin, command=block.command,
                         target=block.target, created=now, offence=block.offence,
                         rule_id=block.rule_id, alert_id=block.alert_id, uid=uuid.uuid4().hex)
