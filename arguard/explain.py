"""`arguard explain TARGET`: why a target is blocked. For each of its blocks (the active ones,
and the last few lifted ones; for an address, also the active blocks of networks that hold
it, as prefix blocks make them): the command, since when and until when, and each offence
that added or extended it — its time, rule, level and description, the alert id, and the
log lines that led to it — and what the next offence would bring (its number and timeout,
as repeated_offenders escalates it, and until when the offence count is remembered).

It reads the state database directly (SQLite lets a reader in beside the running daemon)
and changes nothing; a dry-run daemon keeps its blocks in memory, so they are not there.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import datetime
from typing import Any

from arguard.config import ActiveResponse, Config
from arguard.durations import format_duration
from arguard.model import Block, Offence
from arguard.respond.policy import escalated_timeout
from arguard.respond.targets import normalise_address, normalise_target
from arguard.ruleset.files import Ruleset
from arguard.store import Store

#: lifted blocks shown after the active ones
LIFTED_SHOWN = 3


def explain(config: Config, ruleset: Ruleset, target: str, now: float | None = None
            ) -> dict[str, Any]:
    """The record `--json` prints."""
    now = time.time() if now is None else now
    target = normalise_target(target)
    record: dict[str, Any] = {"target": target, "database": str(config.paths.database),
                              "blocked": False, "blocks": []}
    if not config.paths.database.exists():
        return record
    store = Store(config.paths.database)
    try:
        blocks = store.blocks_of(target, LIFTED_SHOWN)
        address = normalise_address(target)
        if address is not None:
            blocks += [(block_id, block) for block_id, block in store.network_blocks()
                       if _holds(block.target, address)]
        for block_id, block in blocks:
            offences = store.offences_of(block_id)
            entry = _block(block, offences, now)
            if block.state == "active":
                record["blocked"] = True
                entry["next"] = _next(config, ruleset, store, block, now)
            record["blocks"].append(entry)
    finally:
        store.close()
    return record


def _holds(network: str, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    try:
        net = ipaddress.ip_network(network)
    except ValueError:
        return False
    return net.version == ip.version and ip in net


def _block(block: Block, offences: list[Offence], now: float) -> dict[str, Any]:
    return {
        "target": block.target, "command": block.command, "state": block.state,
        "since": block.created_at,
        "expires_at": block.expires_at,
        "expires_in": None if block.expires_at is None or block.state != "active"
        else max(0.0, block.expires_at - now),
        "offence": block.offence, "rule_id": block.rule_id, "alert_id": block.alert_id,
        "offences": [{
            "at": o.at, "verb": o.verb, "offence": o.offence,
            "rule": None if o.rule_id is None else {"id": o.rule_id, "level": o.level,
                                                    "description": o.description},
            "alert_id": o.alert_id, "timeout": o.timeout, "expires_at": o.expires_at,
            "lines": list(o.lines)} for o in offences],
    }


def _next(config: Config, ruleset: Ruleset, store: Store, block: Block,
          now: float) -> dict[str, Any] | None:
    """What another offence would bring, as the policy would decide it; None when no
    active response uses the block's command (an operator's block of another command)."""
    binding = _binding(config, ruleset, block)
    if binding is None:
        return None
    forget = config.global_.offender_forget
    known = store.offender(block.command, block.target)
    if known is not None and now - known[1] <= forget:
        offence, remembered_until = known[0] + 1, known[1] + forget
    else:
        offence, remembered_until = 1, None
    return {"offence": offence, "timeout": escalated_timeout(binding, offence),
            "remembered_until": remembered_until}


def _binding(config: Config, ruleset: Ruleset, block: Block) -> ActiveResponse | None:
    """The binding the policy would use for the block's command and rule: the first that
    names the command and selects the rule (any that names the command, for a rule no longer
    loaded or an operator's block)."""
    bindings = [b for b in config.active_responses if b.command == block.command]
    rule = ruleset.rules.rules.get(block.rule_id) if block.rule_id is not None else None
    if rule is not None:
        selecting = [b for b in bindings if b.selects(rule.info)]
        bindings = selecting or bindings
    return bindings[0] if bindings else None


def render(record: dict[str, Any]) -> str:
    target = record["target"]
    if not record["blocks"]:
        return f"{target}: not blocked, and no block of it on record ({record['database']})\n"
    out: list[str] = []
    if not record["blocked"]:
        out.append(f"{target}: not blocked now. Its last blocks:")
    for block in record["blocks"]:
        out.extend(_render_block(target, block))
    return "\n".join(out) + "\n"


def _render_block(target: str, block: dict[str, Any]) -> list[str]:
    until = ("permanently" if block["expires_at"] is None else
             f"until {_clock(block['expires_at'])}"
             + (f" (in {format_duration(block['expires_in'])})"
                if block["expires_in"] is not None else ""))
    state = "blocked" if block["state"] == "active" else "was blocked"
    held = "" if block["target"] == target else f" (as part of {block['target']})"
    lines = [f"{target}: {state}{held} by {block['command']} since {_clock(block['since'])}, "
             f"{until}"
             + (f"; offence {block['offence']}" if block["rule_id"] is not None else
                "; an operator's block")]
    following = block.get("next")
    if following is not None:
        timeout = "permanently" if following["timeout"] is None else \
            f"for {format_duration(following['timeout'])}"
        remembered = "" if following["remembered_until"] is None else \
            f"; its offences are counted until {_clock(following['remembered_until'])}"
        lines.append(f"  If it offends again: offence {following['offence']}, blocked "
                     f"{timeout}{remembered}")
    offences = block["offences"]
    lines.append(f"  Offences on record: {len(offences)}" + ("" if offences else
                 " (none kept: recorded before arguard kept them, or trimmed)"))
    for offence in offences:
        rule = offence["rule"]
        what = "operator's block (arguard block)" if rule is None else \
            f"rule {rule['id']} (level {rule['level']}): {rule['description']}"
        timeout = "permanent" if offence["timeout"] is None else \
            format_duration(offence["timeout"])
        lines.append(f"    {_clock(offence['at'])}  {offence['verb']:6}  {what}")
        details = [f"timeout {timeout}"]
        if offence["offence"] is not None:
            details.insert(0, f"offence {offence['offence']}")
        if offence["alert_id"] is not None:
            details.insert(0, f"alert {offence['alert_id']}")
        lines.append("      " + ", ".join(details))
        lines.extend(f"      | {line}" for line in offence["lines"])
    return lines


def _clock(when: float) -> str:
    return datetime.fromtimestamp(when).astimezone().strftime("%Y-%m-%d %H:%M:%S")
