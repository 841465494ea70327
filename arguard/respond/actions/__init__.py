"""Response actions: the registry, one line per action (docs/actions.md: how to add one).

Each action module declares `ACTION` (arguard.respond.actions.base.ActionType): its kinds of
target, whether it runs detached, its options with their types and defaults, and how it is
built. A module is imported when a command that uses it is loaded, and its kernel libraries
only when the action is built, so that commands which never act (`arguard logtest`,
`check-config`, dry runs) never load libiptc or netlink code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from arguard.respond.actions.base import Action, ActionContext, ActionError, ActionType

if TYPE_CHECKING:
    from arguard.config import Command

__all__ = ["ACTIONS", "Action", "ActionContext", "ActionError", "EXECUTABLE_ACTION",
           "action_type", "build_action", "builtin_actions", "host_notes"]

#: action name (what a [[command]] writes as `action = …`) → the module that declares it
ACTIONS: dict[str, str] = {
    "firewall": "arguard.respond.actions.firewall",
    "nftables": "arguard.respond.actions.nftables",
    "ipset": "arguard.respond.actions.ipset",
    "firewalld": "arguard.respond.actions.firewalld",
    "iptables": "arguard.respond.actions.iptables",
    "route": "arguard.respond.actions.route",
    "hosts-deny": "arguard.respond.actions.hostsdeny",
    "disable-account": "arguard.respond.actions.account",
    "terminate-sessions": "arguard.respond.actions.sessions",
    "kill-process": "arguard.respond.actions.killprocess",
    "webhook": "arguard.respond.actions.webhook",
    "script": "arguard.respond.actions.script",
    "restore-file": "arguard.respond.actions.restorefile",
}
#: the action of a [[command]] that names an `executable` instead of an `action`
EXECUTABLE_ACTION = "script"


def action_type(name: str) -> ActionType | None:
    """The description of a registered action; None for a name nobody registered."""
    module = ACTIONS.get(name)
    return None if module is None else importlib.import_module(module).ACTION


def builtin_actions() -> list[str]:
    """The names a [[command]] may give as `action`."""
    return [name for name in ACTIONS if name != EXECUTABLE_ACTION]


def build_action(command: Command, context: ActionContext) -> Action:
    """The action object for one configured command."""
    described = action_type(command.action)
    if described is None:
        raise ActionError(f"command {command.name!r}: unknown action {command.action!r}")
    return described.build(command, context)


def host_notes(commands: Iterable[Command]) -> dict[str, str]:
    """Command name → what its action says about how it works on this host (the
    `firewall` action: the backend it chose and why), for the commands whose action says
    anything."""
    notes = {}
    for command in commands:
        described = action_type(command.action)
        if described is not None and described.host_note is not None:
            notes[command.name] = f"{command.action} → {described.host_note()}"
    return notes
