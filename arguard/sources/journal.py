"""Following the systemd journal through `journalctl --follow --output=json`.

journalctl runs as an argv-list subprocess (never a shell). Each JSON entry becomes a Line
with the journal's own fields: SYSLOG_IDENTIFIER (or _COMM) as program name, _HOSTNAME,
__REALTIME_TIMESTAMP, SYSLOG_PID (or _PID) as pid; MESSAGE may be a string or, for non-UTF-8
data, an array of bytes. `_PID` alone, which journald takes from the kernel and the writer
cannot choose, is also kept as the line's `attested_pid` (what `kill-process` acts on). The
cursor of the last delivered entry is saved, so a restart continues right after it. If
journalctl dies it is started again with back-off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from typing import Callable

from arguard.config import JOURNALCTL, Source
from arguard.linetext import to_text
from arguard.model import Line
from arguard.sources.counters import SourceCounters
from arguard.sources.positions import PendingPositions

log = logging.getLogger(__name__)

LOCATION = "journald"
READ_BYTES = 256 * 1024
FIELDS = "MESSAGE,SYSLOG_IDENTIFIER,_COMM,_HOSTNAME,SYSLOG_PID,_PID"
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
# A journalctl run that lasted this long was healthy: the next failure starts back-off afresh.
HEALTHY_RUN_SECONDS = 60.0
STDERR_KEEP = 2000


def _field_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        try:
            return bytes(value).decode("utf-8", errors="replace")
        except (TypeError, ValueError):
            return None
    return None


class JournalSource:
    """One `[[source]] journal = {...}`; `deliver` hands a batch on and commits positions."""

    def __init__(self, source: Source, counters: SourceCounters, pending: PendingPositions,
                 deliver: Callable[[list[Line]], None], cursor: str | None,
                 clock: Callable[[], float] = time.time, recent_seconds: float | None = None):
        """`recent_seconds`: how far back start_at = "recent" reads without a saved cursor
        (without it, "recent" starts at the end)."""
        self.source = source
        self.name = source.name
        self.counters = counters
        self.pending = pending
        self.deliver = deliver
        self.cursor = cursor
        self.clock = clock
        self.recent_seconds = recent_seconds
        self.max_json = 8 * source.max_line_bytes + 65_536
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._placed = False
        self._stopping = asyncio.Event()

    def argv(self, journalctl: str) -> list[str]:
        argv = [journalctl, "--follow", "--output=json", "--all", "--no-pager", "--quiet",
                f"--output-fields={FIELDS}"]
        if self.source.journal_directory is not None:
            argv.append(f"--directory={self.source.journal_directory}")
        if self.cursor is not None:
            argv.append(f"--after-cursor={self.cursor}")
        elif self.source.start_at == "beginning":
            argv.append("--no-tail")
        elif self._reads_recent():
            argv.append(f"--since=@{int(self.clock() - self.recent_seconds)}")
        else:
            argv.append("--lines=0")
        argv.append("--")
        argv.extend(self.source.journal_matches or ())
        return argv

    def _reads_recent(self) -> bool:
        return (self.source.start_at == "recent" and self.recent_seconds is not None
                and self.recent_seconds > 0)

    async def _place_at_end(self, journalctl: str) -> None:
        """start_at = "end" (or "recent" without a window) and no saved cursor: take the
        cursor of the journal's last entry now and save it, so that what is logged from
        here on is read even if arguard restarts before a matching entry arrives."""
        argv = [journalctl, "--lines=0", "--show-cursor", "--quiet", "--no-pager"]
        if self.source.journal_directory is not None:
            argv.append(f"--directory={self.source.journal_directory}")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
        except OSError:
            return
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            return
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        for text in output.decode("utf-8", errors="replace").splitlines():
            if text.startswith("-- cursor: "):
                self.cursor = text[len("-- cursor: "):].strip()
                self.pending.set_cursor(self.name, self.cursor)

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            started = time.monotonic()
            reason = await self._run_once()
            if self._stopping.is_set():
                break
            if time.monotonic() - started >= HEALTHY_RUN_SECONDS:
                backoff = BACKOFF_FIRST
            self.counters.fault(f"{self.name}: {reason}; restarting journalctl in "
                                f"{backoff:g} s")
            try:
                await asyncio.wait_for(self._stopping.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.restarts += 1

    async def _run_once(self) -> str:
        """Run journalctl until it ends; returns why it ended."""
        journalctl = shutil.which(JOURNALCTL)
        if journalctl is None:
            return f"{JOURNALCTL} not found in PATH"
        if self.cursor is None and self.source.start_at != "beginning" and \
                not self._reads_recent() and not self._placed:
            self._placed = True
            await self._place_at_end(journalctl)
        argv = self.argv(journalctl)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            return f"cannot start {journalctl}: {exc.strerror or exc}"
        self.process = process
        if self._stopping.is_set():
            process.terminate()
        stderr = asyncio.ensure_future(self._collect_stderr(process))
        try:
            await self._read(process)
            status = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            self.process = None
        message = (await stderr).strip()
        if "cursor" in message.lower() and self.cursor is not None:
            log.warning("%s: journalctl rejected the saved cursor (%s); continuing from the "
                        "end of the journal", self.name, message)
            self.cursor = None
            self.pending.set_cursor(self.name, None)
        return f"journalctl exited with status {status}" + (f": {message}" if message else "")

    @staticmethod
    async def _collect_stderr(process: asyncio.subprocess.Process) -> str:
        kept = b""
        assert process.stderr is not None
        while chunk := await process.stderr.read(4096):
            kept = (kept + chunk)[-STDERR_KEEP:]
        return kept.decode("utf-8", errors="replace")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        pending = b""
        skipping = False
        while chunk := await process.stdout.read(READ_BYTES):
            start = 0
            if skipping:
                newline = chunk.find(b"\n")
                if newline < 0:
                    continue
                skipping, start = False, newline + 1
            data = pending + chunk[start:] if pending else chunk[start:]
            last = data.rfind(b"\n")
            if last < 0:
                pending = data
            else:
                pending = data[last + 1:]
                self._deliver_entries(data[:last].split(b"\n"))
            if len(pending) > self.max_json:
                self.counters.text.lines += 1
                self.counters.text.cut += 1
                log.warning("%s: skipped a journal entry of more than %d bytes of JSON",
                            self.name, self.max_json)
                pending, skipping = b"", True

    def _deliver_entries(self, raw_entries: list[bytes]) -> None:
        now = self.clock()
        lines = []
        cursor = None
        for raw in raw_entries:
            try:
                entry = json.loads(raw)
            except ValueError:
                self.counters.fault(f"{self.name}: journalctl printed something that is not "
                                    f"JSON: {raw[:200]!r}")
                continue
            if not isinstance(entry, dict):
                continue
            cursor = entry.get("__CURSOR", cursor)
            line = self._line(entry, now)
            if line is not None:
                lines.append(line)
        if cursor is not None:
            self.cursor = cursor
            self.pending.set_cursor(self.name, cursor)
        self.counters.last_read = now
        self.deliver(lines)

    def _line(self, entry: dict, now: float) -> Line | None:
        message = entry.get("MESSAGE")
        if isinstance(message, str):
            raw = message.encode("utf-8", errors="surrogateescape")
        elif isinstance(message, list):
            try:
                raw = bytes(message)
            except (TypeError, ValueError):
                return None
        else:
            return None
        self.counters.bytes += len(raw)
        text = to_text(raw, self.source.max_line_bytes, self.counters.text)
        if text is None:
            return None
        program = _field_text(entry.get("SYSLOG_IDENTIFIER")) or _field_text(entry.get("_COMM"))
        stamp = entry.get("__REALTIME_TIMESTAMP")
        try:
            timestamp = int(stamp) / 1e6 if stamp is not None else None
        except (TypeError, ValueError):
            timestamp = None
        attested = _field_text(entry.get("_PID"))
        pid = _field_text(entry.get("SYSLOG_PID")) or attested
        return Line(text, LOCATION, now, program_name=program,
                    hostname=_field_text(entry.get("_HOSTNAME")), timestamp=timestamp, pid=pid,
                    attested_pid=int(attested) if attested and attested.isdecimal()
                    and attested.isascii() else None)

    async def stop(self) -> None:
        self._stopping.set()
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()

    def status(self) -> dict:
        process = self.process
        return {"cursor": self.cursor, "restarts": self.restarts,
                "pid": process.pid if process is not None and process.returncode is None
                else None}
