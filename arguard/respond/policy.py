"""Which responses an alert calls for: bindings, targets, white list, repeated offenders.

A pure decision: no kernel or file is touched here, so `arguard logtest` and `replay` use the
same Policy as the daemon (with an in-memory store) to show which responses would run. The
only state is the offender memory in the store, which the decision itself updates: every
response decided for a valid target is one offence of that target for that command.
"""

from __future__ import annotations

from arguard.config import ADDRESS_FIELDS, ActiveResponse, Command, Config
from arguard.model import Alert, Response
from arguard.respond.targets import Checked, Kind, Targets
from arguard.store import Store


def binding_matches(binding: ActiveResponse, alert: Alert) -> bool:
    return binding.selects(alert.rule)


def target_kind(command: Command) -> Kind:
    return "ip" if command.expect in ADDRESS_FIELDS else "user"


def target_field(command: Command, fields: dict[str, str]) -> str | None:
    """The alert field the command acts on; `user` is dstuser, else srcuser."""
    if command.expect == "user":
        return fields.get("dstuser") or fields.get("srcuser")
    return fields.get(command.expect)


def escalated_timeout(binding: ActiveResponse, offence: int) -> int | None:
    """Base timeout for the 1st offence, repeated_offenders[0] minutes for the 2nd, [1] for
    the 3rd, and the last value for every later one (as Wazuh)."""
    if binding.timeout is None or offence <= 1 or not binding.repeated_offenders:
        return binding.timeout
    minutes = binding.repeated_offenders[min(offence - 2, len(binding.repeated_offenders) - 1)]
    return minutes * 60


class Policy:
    """Decides the responses for alerts. Without a store, the offender memory lives in an
    in-memory SQLite database for the lifetime of the Policy (one logtest or replay)."""

    def __init__(self, config: Config, store: Store | None = None,
                 targets: Targets | None = None):
        self.config = config
        self.store = store if store is not None else Store(":memory:")
        self.targets = targets if targets is not None else Targets(config.global_.white_list)

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
            raw = target_field(command, alert.event.fields)
            if raw is None:
                checked = Checked("", f"no {command.expect} in the alert")
            else:
                checked = self.targets.check(target_kind(command), raw)
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
        offence = self.store.bump_offender(command.name, checked.target, alert.event.time,
                                           self.config.global_.offender_forget)
        return Response(command.name, checked.target, escalated_timeout(binding, offence),
                        alert, offence=offence)
