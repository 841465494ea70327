"""What `arguard status` shows: the snapshot records (built by the daemon, or from SQLite
when the daemon is down) and their rendering as tables for people."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from arguard.model import Block

#: blocks listed in the human table (all of them are in --json)
SHOWN_BLOCKS = 50


def block_record(block: Block, now: float) -> dict[str, Any]:
    return {
        "target": block.target, "kind": block.kind, "command": block.command,
        "rule_id": block.rule_id, "alert_id": block.alert_id, "since": block.created_at,
        "expires_at": block.expires_at,
        "expires_in": None if block.expires_at is None else max(0.0, block.expires_at - now),
        "offence": block.offence,
    }


def blocks_section(blocks: list[Block], now: float) -> dict[str, Any]:
    """Active blocks, soonest expiry first (permanent ones last), with totals per command."""
    ordered = sorted(blocks, key=lambda b: (b.expires_at is None, b.expires_at or 0.0,
                                            b.command, b.target))
    return {"active": [block_record(b, now) for b in ordered],
            "totals": dict(sorted(Counter(b.command for b in blocks).items()))}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _clock(when: float | None) -> str:
    if when is None:
        return "-"
    return datetime.fromtimestamp(when).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _position(source: dict[str, Any]) -> str:
    """A file source's offset (of its current file), or a journal source's cursor."""
    if source.get("kind") == "journal":
        cursor = source.get("cursor")
        return "-" if not cursor else "cursor " + cursor.split(";")[0][-24:]
    offsets = [f["offset"] for f in source.get("files", []) if f.get("offset") is not None]
    if not offsets:
        return "-"
    return str(offsets[-1]) if len(offsets) == 1 else f"{offsets[-1]} (+{len(offsets) - 1} files)"


def _blocks(title: str, blocks: dict[str, Any]) -> list[str]:
    active = blocks["active"]
    totals = ", ".join(f"{name} {count}" for name, count in blocks["totals"].items())
    out = ["", f"{title}: {len(active)}" + (f" ({totals})" if totals else "")]
    if active:
        rows = [[b["target"], b["command"], str(b["rule_id"] or "manual"), _clock(b["since"]),
                 _duration(b["expires_in"]), str(b["offence"])]
                for b in active[:SHOWN_BLOCKS]]
        out.extend("  " + r for r in _table(
            ["TARGET", "COMMAND", "RULE", "SINCE", "EXPIRES IN", "OFFENCE"], rows))
        if len(active) > SHOWN_BLOCKS:
            out.append(f"  … and {len(active) - SHOWN_BLOCKS} more (arguard status --json "
                       "lists all)")
    return out


_KINDS = (("empty_lines", "empty"), ("lines_cut", "cut to max_line_bytes"),
          ("invalid_utf8", "with invalid UTF-8"), ("nul_bytes", "with NUL bytes"))


def _line_kinds(source: dict[str, Any]) -> str:
    """The kinds of line a source counted, when it met any (the LINES column counts all)."""
    return ", ".join(f"{source[key]} {name}" for key, name in _KINDS if source.get(key))


def _config_on_disk(on_disk: dict[str, Any]) -> list[str]:
    state = on_disk.get("state")
    if state == "broken":
        return ["config on disk: BROKEN — using the configuration the daemon loaded:",
                *("  " + problem for problem in on_disk["problems"])]
    if state == "differs":
        return ["config on disk: differs from the one the daemon loaded "
                "(`arguard reload` switches to it): " + ", ".join(on_disk["files"])]
    return []


def _storage(storage: dict[str, Any]) -> list[str]:
    out = []
    if storage.get("error"):
        out.append(f"database: {storage['error']}")
    for recovery in (storage.get("recoveries") or [])[:1]:   # the latest
        out.append(f"database replaced at {_clock(recovery['at'])}: {recovery['problem']}; "
                   f"the damaged file is kept as {recovery['moved_to']}; "
                   f"{recovery['blocks']} blocks and {recovery['offsets']} read positions "
                   f"recovered from it, {recovery['adopted'] or 0} blocks adopted from the "
                   "backends")
    if storage.get("alerts_not_written"):
        out.append(f"alerts NOT written: {storage['alerts_not_written']}"
                   + (f" (now: {storage['alerts_error']})" if storage.get("alerts_error")
                      else ""))
    if storage.get("response_lines_not_written"):
        out.append(f"active-responses.log lines NOT written: "
                   f"{storage['response_lines_not_written']}")
    if storage.get("blocks_table_error"):
        out.append(f"the blocks table cannot be written ({storage['blocks_table_error']}): "
                   f"{storage.get('blocks_not_recorded', 0)} blocks in place, recorded once it "
                   "can be; expired blocks are lifted then")
    if storage.get("positions_error"):
        out.append(f"read positions: {storage['positions_error']}")
    return out


def render(status: dict[str, Any]) -> str:
    out: list[str] = []
    if status["running"]:
        dry = " (dry run: nothing is applied)" if status.get("dry_run") else ""
        out.append(f"arguard {status['version']}: running{dry}, pid {status['pid']}, "
                   f"up {_duration(status['uptime'])}")
    else:
        out.append(f"arguard: not running — {status['reason']}")
    out.append(f"config: {status.get('config') or '(shipped default configuration)'}")
    out.extend(_config_on_disk(status.get("config_on_disk") or {}))
    out.extend(_storage(status.get("storage") or {}))
    if status.get("owner"):
        out.append(f"owner of its kernel objects: {status['owner']}")
    reload = status.get("reload") or {}
    if reload.get("error"):
        out.append(f"last reload FAILED at {_clock(reload.get('at'))} (old configuration kept):")
        out.extend("  " + line for line in reload["error"].splitlines())
    if status["running"]:
        out.append(f"lines processed: {status['lines']}, alerts: {status['alerts']}")
        out.append("")
        out.append("sources:")
        rows = [[s["source"], f"{s.get('lines_per_second') or 0.0:.1f}", str(s["lines"]),
                 _position(s), "-" if s.get("lag_bytes") is None else str(s["lag_bytes"]),
                 str(s["undecoded"]), str(s["ambiguous"]), str(s["errors"])]
                for s in status["sources"]]
        out.extend("  " + r for r in _table(
            ["SOURCE", "LINES/S", "LINES", "OFFSET", "LAG", "UNDECODED", "AMBIGUOUS", "ERRORS"],
            rows))
        for source in status["sources"]:
            kinds = _line_kinds(source)
            if kinds:
                out.append(f"  {source['source']}: of its lines {kinds}")
            if source.get("last_error"):
                out.append(f"  {source['source']}: {source['last_error']}")
        rules = status.get("rules") or {}
        if rules:
            out.append("")
            out.append("alerts per rule:")
            ranked = sorted(rules.items(), key=lambda item: (-item[1], int(item[0])))
            out.extend("  " + r for r in _table(
                ["RULE", "ALERTS"], [[rule, str(count)] for rule, count in ranked]))
    out.extend(_blocks("active blocks", status["blocks"]))
    if "would_block" in status:
        title = ("would-be blocks of this dry run (nothing applied)" if status["running"]
                 else "would-be blocks of the last dry run (nothing applied)")
        out.extend(_blocks(title, status["would_block"]))
    failures = status.get("failures") or []
    if failures:
        out.append("")
        out.append("recent failures:")
        out.extend("  " + line for line in failures)
    return "\n".join(out)
