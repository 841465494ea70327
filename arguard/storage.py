"""Where the daemon keeps its state, made ready at start: directories with their modes and
proven writable, the database opened, checked and — when it is damaged — replaced.

Each fault is one line for the operator (StorageError), never a traceback:
- a state or log directory that cannot be written (read-only file system, wrong owner);
- a database another process keeps locked: waited for (store.LOCK_WAIT), then refused,
  naming the process when the kernel says which one holds it;
- a database that is not a database, or fails its integrity check: moved aside as
  `arguard.db.corrupt-<time>` (with its -wal file), the daemon starts on a fresh one with
  what could still be read from the old one (read offsets, journal cursors, active blocks,
  the owner tag), and reconciliation then adopts the blocks the backends hold for this
  instance (Responder.reconcile(adopt=True)).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from arguard import modes
from arguard.config import Paths
from arguard.store import LOCK_WAIT, Recovery, Salvaged, Store, salvage

log = logging.getLogger(__name__)

#: SQLite's names for a file that is not a sound database
DAMAGED = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}
LOCKED = {"SQLITE_BUSY", "SQLITE_LOCKED"}


class StorageError(Exception):
    """The state cannot be kept where the configuration says: one line for the operator."""


def prepare_directories(paths: Paths) -> None:
    """The state and log directories exist, have their modes and can be written."""
    for directory, mode, what in ((paths.state_dir, modes.STATE_DIR, "state directory"),
                                  (paths.log_dir, modes.LOG_DIR, "log directory")):
        try:
            modes.ensure_dir(directory, mode)
            probe, name = tempfile.mkstemp(dir=directory, prefix=".arguard-write-test-")
            os.close(probe)
            os.unlink(name)
        except OSError as error:
            raise StorageError(f"cannot write to the {what} {directory}: "
                               f"{error.strerror or error}") from None


def correct_file_modes(paths: Paths, databases: list[Path]) -> None:
    """Files left with a wrong mode (made under another umask, copied in): corrected."""
    for database in databases:
        for suffix in ("", "-wal", "-shm"):
            modes.correct(Path(f"{database}{suffix}"), modes.DATABASE)
    modes.correct(paths.lock_file, modes.LOCK)
    for log_file in (paths.alerts_log, paths.responses_log):
        modes.correct(log_file, modes.LOG_FILE)


def open_database(path: Path, owner_hint: str | None = None,
                  now: float | None = None) -> tuple[Store, Recovery | None]:
    """The database, checked; a damaged one is replaced (the Recovery says how).
    `owner_hint`: the owner tag to keep if the damaged file no longer says it."""
    store = None
    try:
        store = Store(path)
        problem = store.integrity_problem()
        if problem is None:
            store.check_writable()
            return store, None
    except sqlite3.DatabaseError as error:
        if store is not None:
            store.close()
        if getattr(error, "sqlite_errorname", None) not in DAMAGED:
            raise StorageError(_describe(path, error)) from None
        problem = str(error)
    except RuntimeError as error:   # a schema newer than this arguard
        raise StorageError(str(error)) from None
    else:
        store.close()
    return _replace(path, problem, owner_hint, time.time() if now is None else now)


def _replace(path: Path, problem: str, owner_hint: str | None,
             now: float) -> tuple[Store, Recovery]:
    moved = _aside_name(path, now)
    os.rename(path, moved)
    wal = Path(f"{path}-wal")
    if wal.exists():
        os.rename(wal, f"{moved}-wal")   # it may hold the last transactions
    Path(f"{path}-shm").unlink(missing_ok=True)
    salvaged = salvage(moved)
    _drop_empty_companions(moved)
    if salvaged.owner_tag is None:
        salvaged.owner_tag = owner_hint
    recovery = Recovery(at=now, problem=problem, moved_to=str(moved),
                        offsets=len(salvaged.offsets) + len(salvaged.cursors),
                        blocks=len(salvaged.blocks))
    store = Store(path)
    store.carry_over(salvaged, recovery)
    log.error("%s is damaged (%s): moved it aside to %s and started on a fresh database; "
              "recovered from it %d read positions and %d active blocks%s", path, problem,
              moved, recovery.offsets, recovery.blocks, _owner_note(salvaged))
    return store, recovery


def _drop_empty_companions(database: Path) -> None:
    """The -shm file (rebuilt from the others when needed) and an empty -wal beside a
    database moved aside."""
    Path(f"{database}-shm").unlink(missing_ok=True)
    wal = Path(f"{database}-wal")
    if wal.exists() and wal.stat().st_size == 0:
        wal.unlink()


def _owner_note(salvaged: Salvaged) -> str:
    if salvaged.owner_tag is None:
        return ""
    return f" (owner tag {salvaged.owner_tag or 'untagged'} kept)"


def _aside_name(path: Path, now: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    candidate = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.corrupt-{stamp}.{number}")
    return candidate


def _describe(path: Path, error: sqlite3.DatabaseError) -> str:
    name = getattr(error, "sqlite_errorname", "")
    if name in LOCKED:
        holders = ", ".join(lock_holders(path))
        return (f"{path} is locked by another process"
                + (f" ({holders})" if holders else "")
                + f" and stayed locked for {LOCK_WAIT:g} s; stop it, or retry later")
    return f"cannot use {path}: {error}"


def lock_holders(database: Path) -> list[str]:
    """`pid N (name)` of the processes holding a lock on the database or its -shm file
    (SQLite's locks are POSIX locks, which /proc/locks lists)."""
    inodes = set()
    for suffix in ("", "-shm"):
        try:
            info = os.stat(f"{database}{suffix}")
        except OSError:
            continue
        inodes.add(f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}")
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("->" before a waiting one)
        fields = [field for field in line.split() if field != "->"]
        if len(fields) >= 6 and fields[5] in inodes:
            pid = fields[4]
            if pid.isdigit() and int(pid) != os.getpid() and pid not in pids:
                pids.append(pid)
    return [f"pid {pid} ({_process_name(pid)})" for pid in pids]


def _process_name(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
