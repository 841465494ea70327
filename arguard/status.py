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


def render(status: dict[str, Any]) -> str:
    out: list[str] = []
    if status["running"]:
        dry = " (dry run: nothing is applied)" if status.get("dry_run") else ""
        out.append(f"arguard {status['version']}: running{dry}, pid {status['pid']}, "
                   f"up {_duration(status['uptime'])}")
    else:
        out.append(f"arguard: not running — {status['reason']}")
    out.append(f"config: {status.get('config') or '(shipped default configuration)'}")
    if status.get("owner"):
        out.append(f"owner of its kernel objects: {status['owner']}")
    metrics = status.get("metrics")
    if metrics:
        where = [f"http://{metrics['listen']}/metrics"] if metrics.get("listen") else []
        where += [metrics["textfile"]] if metrics.get("textfile") else []
        out.append("metrics: " + ", ".join(where)
                   + (f" — {metrics['error']}" if metrics.get("error") else ""))
    reload = status.get("reload") or {}
    if reload.get("error"):
        out.append(f"last reload FAILED at {_clock(reload.get('at'))} (old configuration kept):")
        out.extend("  " + line for line in reload["error"].splitlines())
    if status["running"]:
        out.append(f"lines read: {status['lines']}, alerts: {status['alerts']}")
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
            if source.get("last_error"):
                out.append(f"  {source['source']}: {source['last_error']}")
        rules = status.get("rules") or {}
        if rules:
            out.append("")
            out.append("alerts per rule:")
            ranked = sorted(rules.items(), key=lambda item: (-item[1], int(item[0])))
            out.extend("  " + r for r in _table(
                ["RULE", "ALERTS"], [[rule, str(count)] for rule, count in ranked]))
    blocks = status["blocks"]
    active = blocks["active"]
    out.append("")
    totals = ", ".join(f"{name} {count}" for name, count in blocks["totals"].items())
    out.append(f"active blocks: {len(active)}" + (f" ({totals})" if totals else ""))
    if active:
        rows = [[b["target"], b["command"], str(b["rule_id"] or "manual"), _clock(b["since"]),
                 _duration(b["expires_in"]), str(b["offence"])]
                for b in active[:SHOWN_BLOCKS]]
        out.extend("  " + r for r in _table(
            ["TARGET", "COMMAND", "RULE", "SINCE", "EXPIRES IN", "OFFENCE"], rows))
        if len(active) > SHOWN_BLOCKS:
            out.append(f"  … and {len(active) - SHOWN_BLOCKS} more (arguard status --json "
                       "lists all)")
    failures = status.get("failures") or []
    if failures:
        out.append("")
        out.append("recent failures:")
        out.extend("  " + line for line in failures)
    return "\n".join(out)
