"""What a configuration will do, in words: `arguard check-config` prints it after "OK", and
so the installer shows it before anything is started. Which rules each active response
acts on, with what and for how long; which sources are read; what is never blocked, and
whether the SSH session the command runs in is among it."""

from __future__ import annotations

import ipaddress

from arguard.config import Config, stateless
from arguard.durations import format_duration
from arguard.ruleset.files import Ruleset, selected_rules

#: rules listed under each active response (the others are counted)
SHOWN_RULES = 8


def describe(config: Config, ruleset: Ruleset, ssh_client: str | None) -> list[str]:
    lines = ["What arguard will do:"]
    for binding in config.active_responses:
        command = config.commands[binding.command]
        rules = selected_rules(binding, ruleset.rules)
        if stateless(command):
            how_long = "once per alert (nothing to lift)"
        elif binding.timeout is None:
            how_long = "permanently"
        else:
            how_long = f"for {format_duration(binding.timeout)}"
        if binding.repeated_offenders:
            how_long += ", repeat offenders " + ", ".join(
                format_duration(minutes * 60) for minutes in binding.repeated_offenders)
        lines.append(f"  {command.name} ({command.action}) acts on the {command.expect} of "
                     f"the alerts of {_selection(binding)} ({len(rules)} "
                     f"{'rule' if len(rules) == 1 else 'rules'}), {how_long}:")
        for rule in rules[:SHOWN_RULES]:
            lines.append(f"    {rule.id:>7}  level {rule.level:>2}  {rule.description}")
        if len(rules) > SHOWN_RULES:
            lines.append(f"    … and {len(rules) - SHOWN_RULES} more")
    if not config.active_responses:
        lines.append("  nothing: no [[active_response]] is configured")
    sources = [source.name for source in config.sources] or ["none"]
    lines.append("Sources read: " + ", ".join(sources))
    white_list = [str(network.network_address) if network.num_addresses == 1 else str(network)
                  for network in config.global_.white_list]
    lines.append("Never blocked (white list): " + (", ".join(white_list) or "nothing"))
    if ssh_client is not None:
        address = ipaddress.ip_address(ssh_client)
        if any(address in network for network in config.global_.white_list
               if network.version == address.version):
            lines.append(f"This SSH session's address {ssh_client} is on the white list.")
        else:
            lines.append(f"WARNING: this SSH session's address {ssh_client} is NOT on the "
                         "white list: arguard may block you. Add it to [global] white_list.")
    return lines


def _selection(binding) -> str:
    parts = []
    if binding.rules_id:
        parts.append("rules " + ", ".join(str(rule_id) for rule_id in binding.rules_id))
    if binding.level is not None or binding.rules_group is not None:
        level = "" if binding.level is None else f" of level {binding.level} or above"
        group = "" if binding.rules_group is None else f" in group {binding.rules_group}"
        parts.append(f"any rule{level}{group}")
    return " and ".join(parts)
