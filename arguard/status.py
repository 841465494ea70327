"""What `arguard status` shows: the snapshot records (built by the daemon, or from SQLite
when the daemon is down) and their rendering as tables for people."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arguard.model import Block

if TYPE_CHECKING:
    from arguard.integrity.baseline import Roots
    from arguard.store import Store

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


def integrity_section(roots: Roots, store: Store) -> dict[str, Any]:
    """The file integrity part of the status from SQLite (the daemon is down): each watched
    path's baseline and last scan."""
    files, known_good = store.integrity_counts(), store.known_good_counts()
    scans = store.integrity_roots()
    paths = []
    for root in roots:
        _, started, finished = scans.get(root.path, (None, None, None))
        paths.append({"path": root.shown, "files": files.get(root.path, 0),
                      "known_good": known_good.get(root.path, 0),
                      "last_scan_started": started, "last_scan_finished": finished})
    return {"paths": paths}


def _integrity_lines(integrity: dict[str, Any], running: bool) -> list[str]:
    paths = integrity["paths"]
    total = sum(p["files"] for p in paths)
    out = ["", f"file integrity: {len(paths)} watched path{'s' if len(paths) != 1 else ''}, "
               f"{total} files in the baseline"]
    headers = ["PATH", "FILES", "KNOWN-GOOD", "LAST SCAN"]
    if running:
        headers[1:1] = ["REALTIME"]
        headers += ["ADDED", "MODIFIED", "DELETED"]
    rows = []
    for path in paths:
        finished, started = path.get("last_scan_finished"), path.get("last_scan_started")
        scan = "scanning" if path.get("scanning") else _clock(finished)
        if not path.get("scanning") and finished is not None and started is not None \
                and finished >= started:
            scan += f" ({finished - started:.1f} s)"
        row = [path["path"], str(path["files"]), str(path["known_good"]), scan]
        if running:
            row[1:1] = ["yes" if path.get("realtime") else "no"]
            row += [str(path["changes"][kind]) for kind in ("added", "modified", "deleted")]
        rows.append(row)
    out.extend("  " + r for r in _table(headers, rows))
    for path in paths:
        if path.get("realtime_error"):
            out.append(f"  {path['path']}: {path['realtime_error']}")
    problems = [f"{name.replace('_', ' ')} {integrity[key]}" for key, name in (
        ("unreadable", "unreadable"), ("changing_while_read", "changing while read"),
        ("names_not_utf8", "names not UTF-8"), ("errors", "errors"),
        ("dropped_events", "realtime events dropped (scanned instead)")) if integrity.get(key)]
    if problems:
        out.append("  problems: " + ", ".join(problems))
    if integrity.get("last_error"):
        out.append(f"  last problem: {integrity['last_error']}")
    if integrity.get("stopped_by"):
        out.append(f"  STOPPED: {integrity['stopped_by']}")
    return out


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
    metrics = status.get("metrics")
    if metrics:
        where = [f"http://{metrics['listen']}/metrics"] if metrics.get("listen") else []
        where += [metrics["textfile"]] if metrics.get("textfile") else []
        out.append("metrics: " + ", ".join(where)
                   + (f" — {metrics['error']}" if metrics.get("error") else ""))
    for command, note in (status.get("backends") or {}).items():
        out.append(f"command {command}: {note}")
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
    if status.get("integrity"):
        out.extend(_integrity_lines(status["integrity"], status["running"]))
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
