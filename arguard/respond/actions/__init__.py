"""Response actions, one module per backend, built from [[command]] tables.

Each backend is imported only when a command that uses it is built, so that commands which
never act (`arguard logtest`, `check-config`, dry runs) never load libiptc or netlink code.
"""

from __future__ import annotations

from arguard.config import Command, Paths
from arguard.respond.actions.base import Action, ActionError

__all__ = ["Action", "ActionError", "build_action"]


def build_action(command: Command, paths: Paths) -> Action:
    """The action object for one configured command."""
    match command.action:
        case "iptables":
            from arguard.respond.actions.iptables import IptablesAction
            return IptablesAction(command)
        case "ipset":
            from arguard.respond.actions.ipset import IpsetAction
            return IpsetAction(command)
        case "route":
            from arguard.respond.actions.route import RouteAction
            return RouteAction(command)
        case "hosts-deny":
            from arguard.respond.actions.hostsdeny import HostsDenyAction
            return HostsDenyAction(command)
        case "disable-account":
            from arguard.respond.actions.account import AccountAction
            return AccountAction(command)
        case "webhook":
            from arguard.respond.actions.webhook import WebhookAction
            return WebhookAction(command)
        case "script":
            from arguard.respond.actions.script import ScriptAction
            return ScriptAction(command, paths.ar_bin_dir)
    raise ValueError(f"command {command.name!r}: unknown action {command.action!r}")
