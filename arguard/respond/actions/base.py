"""The contract every response action implements.

Actions are idempotent: adding a target that is already in place, or deleting one that is
not, succeeds quietly. Failures raise ActionError with a message fit for the operator; the
caller logs it, counts it and writes it to active-responses.log.
"""

from __future__ import annotations

from typing import Literal, Protocol

from arguard.model import Alert


class ActionError(Exception):
    """An action could not do what was asked (kernel refused, file unwritable, timeout…)."""


class Action(Protocol):
    #: "ip" for address targets, "user" for account names
    kind: Literal["ip", "user"]

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        """Put the response in place for `timeout` seconds (None: until deleted)."""

    def delete(self, target: str) -> None:
        """Lift the response."""

    def check(self, target: str) -> bool:
        """Whether the response is in place now."""

    def list_targets(self) -> set[str] | None:
        """Targets arguard owns in the backend now, for reconciliation; None when the
        backend cannot be listed (scripts, webhooks)."""
