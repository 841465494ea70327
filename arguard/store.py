"""SQLite state: schema, migrations and every SQL statement arguard runs.

One database (WAL mode) in the state directory holds the timed blocks, the offender memory,
the read offsets of file sources, the journal cursors, the instance's owner tag, the file
integrity baseline with its known-good records, the recoveries of a damaged database
(arguard.storage), the offences behind each block (arguard explain), the keys `if_fts` rules
have seen and, on a fleet member, the outbox of decisions not yet sent, the last fleet
decision seen and what became of the decisions received (arguard.fleet).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote

from arguard import modes
from arguard.fleet.decision import FleetDecision
from arguard.model import Block, FileState, KnownGood, Offence

# Each entry upgrades the schema by one version; never edit a released entry, append one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE blocks (
        id          INTEGER PRIMARY KEY,
        target      TEXT    NOT NULL,
        kind        TEXT    NOT NULL CHECK (kind IN ('ip', 'user')),
        command     TEXT    NOT NULL,
        rule_id     INTEGER,
        alert_id    TEXT,
        created_at  REAL    NOT NULL,
        expires_at  REAL,
        offence     INTEGER NOT NULL DEFAULT 1,
        state       TEXT    NOT NULL CHECK (state IN ('active', 'lifted'))
    );
    CREATE UNIQUE INDEX blocks_one_active ON blocks (command, target) WHERE state = 'active';
    CREATE INDEX blocks_expiry ON blocks (expires_at) WHERE state = 'active';
    CREATE TABLE offenders (
        command     TEXT    NOT NULL,
        target      TEXT    NOT NULL,
        offences    INTEGER NOT NULL,
        last_seen   REAL    NOT NULL,
        PRIMARY KEY (command, target)
    );
    CREATE INDEX offenders_last_seen ON offenders (last_seen);
    CREATE TABLE offsets (
        path        TEXT    PRIMARY KEY,
        device      INTEGER NOT NULL,
        inode       INTEGER NOT NULL,
        offset      INTEGER NOT NULL,
        updated_at  REAL    NOT NULL
    );
    CREATE TABLE journal_cursor (
        source      TEXT    PRIMARY KEY,
        cursor      TEXT    NOT NULL,
        updated_at  REAL    NOT NULL
    );
    """,
    """
    CREATE TABLE instance (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        owner_tag   TEXT    NOT NULL
    );
    """,
    """
    CREATE TABLE integrity_files (
        dir         BLOB    NOT NULL,
        name        BLOB    NOT NULL,
        root        BLOB    NOT NULL,
        kind        TEXT    NOT NULL CHECK (kind IN ('file', 'symlink')),
        size        INTEGER NOT NULL,
        mode        INTEGER NOT NULL,
        uid         INTEGER NOT NULL,
        gid         INTEGER NOT NULL,
        inode       INTEGER NOT NULL,
        device      INTEGER NOT NULL,
        mtime_ns    INTEGER NOT NULL,
        ctime_ns    INTEGER NOT NULL,
        sha256      TEXT,
        PRIMARY KEY (dir, name)
    ) WITHOUT ROWID;
    CREATE INDEX integrity_files_root ON integrity_files (root, dir);
    CREATE TABLE integrity_roots (
        root          BLOB    PRIMARY KEY,
        baselined_at  REAL    NOT NULL,
        scan_started  REAL,
        scan_finished REAL
    );
    CREATE TABLE integrity_known_good (
        path        BLOB    PRIMARY KEY,
        root        BLOB    NOT NULL,
        size        INTEGER NOT NULL,
        mode        INTEGER NOT NULL,
        uid         INTEGER NOT NULL,
        gid         INTEGER NOT NULL,
        mtime_ns    INTEGER NOT NULL,
        sha256      TEXT    NOT NULL,
        kept_at     REAL    NOT NULL
    );
    CREATE INDEX integrity_known_good_root ON integrity_known_good (root);
    """,
    """
    CREATE TABLE recoveries (
        id          INTEGER PRIMARY KEY,
        at          REAL    NOT NULL,
        problem     TEXT    NOT NULL,
        moved_to    TEXT    NOT NULL,
        offsets     INTEGER NOT NULL,
        blocks      INTEGER NOT NULL,
        adopted     INTEGER             -- NULL until reconciliation has adopted
    );
    """,
    # Why a block is there (`arguard explain`): one row per offence that added or extended
    # it, with the alert's rule and the log lines behind it (a JSON list); deleted with the
    # block, and bounded (Store.record_offence).
    """
    CREATE TABLE offences (
        id          INTEGER PRIMARY KEY,
        block_id    INTEGER NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
        at          REAL    NOT NULL,
        verb        TEXT    NOT NULL CHECK (verb IN ('add', 'extend')),
        offence     INTEGER,
        rule_id     INTEGER,
        level       INTEGER,
        description TEXT,
        alert_id    TEXT,
        timeout     REAL,
        expires_at  REAL,
        lines       TEXT    NOT NULL DEFAULT '[]'
    );
    CREATE INDEX offences_block ON offences (block_id);
    """,
    # The keys `if_fts` rules have seen (a decoder's first-time-seen values), with when.
    """
    CREATE TABLE first_seen (
        key         TEXT    PRIMARY KEY,
        seen_at     REAL    NOT NULL
    ) WITHOUT ROWID;
    """,
    # A fleet member's own state (arguard.fleet): the outbox of decisions not yet sent, the
    # last fleet decision seen, and what became of the decisions received.
    """
    CREATE TABLE fleet_outbox (
        id          INTEGER PRIMARY KEY,
        uid         TEXT    NOT NULL UNIQUE,
        verb        TEXT    NOT NULL CHECK (verb IN ('add', 'delete')),
        command     TEXT    NOT NULL,
        target      TEXT    NOT NULL,
        created     REAL    NOT NULL,
        expires_at  REAL,
        offence     INTEGER NOT NULL,
        rule_id     INTEGER,
        alert_id    TEXT,
        recipients  TEXT
    );
    CREATE TABLE fleet_cursor (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        decision    INTEGER NOT NULL
    );
    CREATE TABLE fleet_received (
        decision    INTEGER PRIMARY KEY,
        origin      TEXT,
        verb        TEXT,
        command     TEXT,
        target      TEXT,
        outcome     TEXT    NOT NULL,
        reason      TEXT,
        received_at REAL    NOT NULL
    );
    CREATE INDEX fleet_received_block ON fleet_received (command, target);
    CREATE INDEX fleet_received_time ON fleet_received (received_at);
    """,
)
# Statements run when an existing database is upgraded to that version (never when a new one
# is created): a database older than owner tags belongs to an instance whose kernel objects
# are untagged (arguard.respond.owner).
UPGRADES: dict[int, str] = {
    2: "INSERT INTO instance (id, owner_tag) VALUES (1, '')",
}


#: seconds a statement waits for a lock another process holds before it fails
LOCK_WAIT = 10.0


@dataclass(frozen=True)
class Recovery:
    """A damaged database that was moved aside, and what was carried over from it."""

    at: float
    problem: str
    moved_to: str
    offsets: int
    blocks: int
    #: blocks adopted from the backends; None until reconciliation has done it
    adopted: int | None = None


@dataclass
class Salvaged:
    """What could still be read from a damaged database."""

    owner_tag: str | None = None
    blocks: list[Block] = field(default_factory=list)
    offsets: list[tuple[str, int, int, int]] = field(default_factory=list)
    cursors: list[tuple[str, str]] = field(default_factory=list)


class Store:
    """A connection to arguard.db with the schema brought up to date. A new database file
    is created private (modes.DATABASE); SQLite gives its -wal and -shm files that mode."""

    def __init__(self, path: Path | str, timeout: float = LOCK_WAIT):
        self.path = Path(path)
        if str(path) != ":memory:":
            modes.create_private(self.path, modes.DATABASE)
        self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                  check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this "
                               f"arguard understands ({len(MIGRATIONS)})")
        for number in range(version, len(MIGRATIONS)):
            self.db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    self.db.execute(statement)
            if version > 0 and number + 1 in UPGRADES:
                self.db.execute(UPGRADES[number + 1])
            self.db.execute(f"PRAGMA user_version = {number + 1}")
            self.db.execute("COMMIT")

    # --- health ------------------------------------------------------------------------------

    def integrity_problem(self) -> str | None:
        """What SQLite's integrity check finds wrong (its first findings), None when the
        database is sound."""
        findings = [row[0] for row in self.db.execute("PRAGMA integrity_check(3)")]
        return None if findings == ["ok"] else "; ".join(findings)

    def changes(self) -> int:
        """Rows this connection has changed so far: a transaction that raised it wrote to
        the disk (one that changed nothing proves nothing about free space)."""
        return self.db.total_changes

    def check_writable(self) -> None:
        """Take the write lock once (waiting up to the timeout for another process that
        holds it) and give it back; sqlite3.OperationalError when it cannot be had."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("ROLLBACK")

    def carry_over(self, salvaged: Salvaged, recovery: Recovery) -> None:
        """Fill a fresh database with what was salvaged from the damaged one, and record
        the recovery."""
        with self.transaction():
            if salvaged.owner_tag is not None:
                self.record_owner_tag(salvaged.owner_tag)
            for block in salvaged.blocks:
                self.db.execute(
                    f"INSERT OR IGNORE INTO blocks ({self._BLOCK_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (block.target, block.kind, block.command, block.rule_id, block.alert_id,
                     block.created_at, block.expires_at, block.offence, "active"))
            self.save_positions({path: (device, inode, offset)
                                 for path, device, inode, offset in salvaged.offsets},
                                set(), dict(salvaged.cursors), recovery.at)
            self.db.execute(
                "INSERT INTO recoveries (at, problem, moved_to, offsets, blocks) "
                "VALUES (?, ?, ?, ?, ?)", (recovery.at, recovery.problem, recovery.moved_to,
                                           recovery.offsets, recovery.blocks))

    def record_adopted(self, count: int) -> None:
        """How many blocks the backends held that the last recovery adopted."""
        self.db.execute("UPDATE recoveries SET adopted = ? "
                        "WHERE id = (SELECT MAX(id) FROM recoveries)", (count,))

    def unfinished_recovery(self) -> Recovery | None:
        """The last recovery if its adoption was not done (the daemon stopped first)."""
        recoveries = self.recoveries(1)
        return recoveries[0] if recoveries and recoveries[0].adopted is None else None

    def recoveries(self, limit: int = 5) -> list[Recovery]:
        """The latest recoveries, newest first."""
        rows = self.db.execute("SELECT at, problem, moved_to, offsets, blocks, adopted "
                               "FROM recoveries ORDER BY id DESC LIMIT ?", (limit,))
        return [Recovery(*row) for row in rows]

    # --- the instance ------------------------------------------------------------------------

    def owner_tag(self) -> str | None:
        """The owner tag of the instance, None until one is recorded."""
        row = self.db.execute("SELECT owner_tag FROM instance WHERE id = 1").fetchone()
        return None if row is None else row[0]

    def record_owner_tag(self, tag: str) -> str:
        """Record the owner tag unless one is recorded already; the recorded one."""
        self.db.execute("INSERT OR IGNORE INTO instance (id, owner_tag) VALUES (1, ?)", (tag,))
        return self.owner_tag()

    # --- first time seen (if_fts rules) ----------------------------------------------------

    def first_seen(self, key: str, now: float) -> bool:
        """Record `key` (a decoder's first-time-seen values) as seen; True if it was new."""
        cursor = self.db.execute("INSERT OR IGNORE INTO first_seen (key, seen_at) VALUES (?, ?)",
                                 (key, now))
        return cursor.rowcount == 1

    # --- blocks and offenders (active response) -------------------------------------------
    # At most one row per (command, target) is 'active' (unique partial index); those rows
    # are addressed by that pair. Lifted rows are history, purged after a retention period.

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group statements into one commit (one WAL append instead of one per statement);
        inside an open transaction this simply joins it."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    _BLOCK_COLUMNS = ("target, kind, command, rule_id, alert_id, created_at, expires_at, "
                      "offence, state")

    @staticmethod
    def _block(row: tuple) -> Block:
        return Block(*row)

    def active_blocks_of(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Block]:
        """The active blocks among these (command, target) pairs, by pair: one query per
        command, however many targets (a batch of fleet decisions has thousands)."""
        targets: dict[str, set[str]] = {}
        for command, target in keys:
            targets.setdefault(command, set()).add(target)
        found: dict[tuple[str, str], Block] = {}
        for command, wanted in targets.items():
            for row in self.db.execute(
                    f"SELECT {self._BLOCK_COLUMNS} FROM blocks WHERE state = 'active' "
                    "AND command = ? AND target IN (SELECT value FROM json_each(?))",
                    (command, json.dumps(list(wanted)))):
                found[(row[2], row[0])] = self._block(row)
        return found

    def write_blocks(self, new: Iterable[Block], changed: Iterable[Block] = (),
                     lifted: Iterable[tuple[str, str]] = ()) -> None:
        """Record new active blocks (IntegrityError if a (command, target) is already
        active), then the expiry, offence, rule and alert of changed active ones, then mark
        the active blocks of the `lifted` (command, target) pairs lifted; in one commit."""
        with self.transaction():
            self.db.executemany(
                f"INSERT INTO blocks ({self._BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(b.target, b.kind, b.command, b.rule_id, b.alert_id, b.created_at,
                  b.expires_at, b.offence, b.state) for b in new])
            self.db.executemany(
                "UPDATE blocks SET expires_at = ?, offence = ?, rule_id = ?, alert_id = ? "
                "WHERE command = ? AND target = ? AND state = 'active'",
                [(b.expires_at, b.offence, b.rule_id, b.alert_id, b.command, b.target)
                 for b in changed])
            self.db.executemany(
                "UPDATE blocks SET state = 'lifted' "
                "WHERE command = ? AND target = ? AND state = 'active'", list(lifted))

    def active_block(self, command: str, target: str) -> Block | None:
        row = self.db.execute(
            f"SELECT {self._BLOCK_COLUMNS} FROM blocks "
            "WHERE command = ? AND target = ? AND state = 'active'", (command, target)).fetchone()
        return None if row is None else self._block(row)

    def active_blocks(self, command: str | None = None) -> list[Block]:
        """Active blocks, soonest expiry first, permanent ones last."""
        where, args = ("AND command = ?", (command,)) if command is not None else ("", ())
        rows = self.db.execute(
            f"SELECT {self._BLOCK_COLUMNS} FROM blocks WHERE state = 'active' {where} "
            "ORDER BY expires_at IS NULL, expires_at, id", args).fetchall()
        return [self._block(row) for row in rows]

    def active_block_commands(self) -> set[str]:
        return {row[0] for row in self.db.execute(
            "SELECT DISTINCT command FROM blocks WHERE state = 'active'")}

    def count_active_blocks_by_command(self) -> dict[str, int]:
        return dict(self.db.execute(
            "SELECT command, COUNT(*) FROM blocks WHERE state = 'active' GROUP BY command"))

    def count_active_blocks(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM blocks WHERE state = 'active'").fetchone()[0]

    def next_expiry(self) -> float | None:
        """The earliest expires_at among active timed blocks (served by blocks_expiry)."""
        return self.db.execute("SELECT MIN(expires_at) FROM blocks "
                               "WHERE state = 'active' AND expires_at IS NOT NULL").fetchone()[0]

    def expired_blocks(self, now: float, limit: int = 1000) -> list[Block]:
        rows = self.db.execute(
            f"SELECT {self._BLOCK_COLUMNS} FROM blocks WHERE state = 'active' "
            "AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?",
            (now, limit)).fetchall()
        return [self._block(row) for row in rows]

    def purge_lifted_blocks(self, created_before: float) -> int:
        """Drop the history of lifted blocks created before the given time."""
        return self.db.execute("DELETE FROM blocks WHERE state = 'lifted' AND created_at < ?",
                               (created_before,)).rowcount

    # --- offences: why a block is there ---------------------------------------------------

    def record_offence(self, command: str, target: str, offence: Offence,
                       per_block: int, total: int) -> None:
        """Record an offence of the active block of (command, target), keeping the newest
        `per_block` of the block and the newest `total` of all."""
        row = self.db.execute(
            "INSERT INTO offences (block_id, at, verb, offence, rule_id, level, description, "
            "alert_id, timeout, expires_at, lines) SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
            "FROM blocks WHERE command = ? AND target = ? AND state = 'active' RETURNING "
            "id, block_id",
            (offence.at, offence.verb, offence.offence, offence.rule_id, offence.level,
             offence.description, offence.alert_id, offence.timeout, offence.expires_at,
             json.dumps(list(offence.lines), ensure_ascii=False), command, target)).fetchone()
        if row is None:
            return
        offence_id, block_id = row
        self.db.execute("DELETE FROM offences WHERE block_id = ? AND id <= ("
                        "SELECT id FROM offences WHERE block_id = ? ORDER BY id DESC "
                        "LIMIT 1 OFFSET ?)", (block_id, block_id, per_block))
        self.db.execute("DELETE FROM offences WHERE id <= ?", (offence_id - total,))

    def blocks_of(self, target: str, lifted: int) -> list[tuple[int, Block]]:
        """The target's active blocks and its `lifted` most recent lifted ones, newest
        first, with their row ids."""
        rows = self.db.execute(
            f"SELECT id, {self._BLOCK_COLUMNS} FROM blocks WHERE target = ? AND "
            "state = 'active' ORDER BY id DESC", (target,)).fetchall()
        rows += self.db.execute(
            f"SELECT id, {self._BLOCK_COLUMNS} FROM blocks WHERE target = ? AND "
            "state = 'lifted' ORDER BY id DESC LIMIT ?", (target, lifted)).fetchall()
        return [(row[0], self._block(row[1:])) for row in rows]

    def network_blocks(self) -> list[tuple[int, Block]]:
        """Active blocks of networks (prefix blocks), with their row ids."""
        rows = self.db.execute(
            f"SELECT id, {self._BLOCK_COLUMNS} FROM blocks WHERE state = 'active' AND "
            "target LIKE '%/%' ORDER BY id DESC").fetchall()
        return [(row[0], self._block(row[1:])) for row in rows]

    def offences_of(self, block_id: int) -> list[Offence]:
        """A block's offences on record, oldest first."""
        rows = self.db.execute(
            "SELECT at, verb, offence, rule_id, level, description, alert_id, timeout, "
            "expires_at, lines FROM offences WHERE block_id = ? ORDER BY id", (block_id,))
        return [Offence(*row[:9], lines=tuple(json.loads(row[9]))) for row in rows]

    def bump_offender(self, command: str, target: str, now: float, forget: float) -> int:
        """Count one more offence and return the offence number (1 = first). A count whose
        last offence is more than `forget` seconds old starts again at 1."""
        return self.db.execute(
            "INSERT INTO offenders (command, target, offences, last_seen) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (command, target) DO UPDATE SET "
            "offences = CASE WHEN excluded.last_seen - last_seen > ? THEN 1 "
            "ELSE offences + 1 END, "
            "last_seen = MAX(last_seen, excluded.last_seen) RETURNING offences",
            (command, target, now, forget)).fetchone()[0]

    def offender(self, command: str, target: str) -> tuple[int, float] | None:
        """(offences, last_seen) for a target, or None when it has none on record."""
        row = self.db.execute("SELECT offences, last_seen FROM offenders "
                              "WHERE command = ? AND target = ?", (command, target)).fetchone()
        return None if row is None else (row[0], row[1])

    def forget_offenders(self, quiet_since: float) -> int:
        """Forget offenders whose last offence is older than `quiet_since`."""
        return self.db.execute("DELETE FROM offenders WHERE last_seen < ?",
                               (quiet_since,)).rowcount

    # --- offsets and journal cursors (sources) ---------------------------------------------
    # A file source's progress is one `offsets` row per file it has open: the followed path's
    # row is the current file; a file that was rotated away while still being read keeps a row
    # under its rotated name until it is finished. Rows are matched to files by device +
    # inode, never by name alone.

    def file_offsets(self) -> list[tuple[str, int, int, int]]:
        """Every saved (path, device, inode, offset)."""
        return self.db.execute("SELECT path, device, inode, offset FROM offsets").fetchall()

    def journal_cursor(self, source: str) -> str | None:
        row = self.db.execute("SELECT cursor FROM journal_cursor WHERE source = ?",
                              (source,)).fetchone()
        return None if row is None else row[0]

    def save_positions(self, offsets: dict[str, tuple[int, int, int]], forget: set[str],
                       cursors: dict[str, str | None], now: float) -> None:
        """Record source progress in one commit: `offsets` path -> (device, inode, offset),
        `forget` paths whose rows go, `cursors` source -> cursor (None forgets it)."""
        with self.transaction():
            if forget:
                self.db.executemany("DELETE FROM offsets WHERE path = ?",
                                    [(path,) for path in forget])
            if offsets:
                self.db.executemany(
                    "INSERT INTO offsets (path, device, inode, offset, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                    "device = excluded.device, inode = excluded.inode, "
                    "offset = excluded.offset, updated_at = excluded.updated_at",
                    [(path, device, inode, offset, now)
                     for path, (device, inode, offset) in offsets.items()])
            for source, cursor in cursors.items():
                if cursor is None:
                    self.db.execute("DELETE FROM journal_cursor WHERE source = ?", (source,))
                else:
                    self.db.execute(
                        "INSERT INTO journal_cursor (source, cursor, updated_at) "
                        "VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
                        "cursor = excluded.cursor, updated_at = excluded.updated_at",
                        (source, cursor, now))

    # --- file integrity (arguard.integrity) -------------------------------------------------
    # `integrity_files` is the last state seen of every watched file, one row per (directory,
    # name) as the file system's bytes, with the watched path (`root`) it belongs to;
    # `integrity_roots` says which watched paths have a baseline and when they were last
    # scanned; `integrity_known_good` the states `restore-file` puts back. Inode and device
    # numbers are unsigned 64-bit and stored as SQLite's signed integers.

    _FILE_COLUMNS = ("kind, size, mode, uid, gid, inode, device, mtime_ns, ctime_ns, sha256")

    @staticmethod
    def _file_state(row: tuple) -> FileState:
        kind, size, mode, uid, gid, inode, device, mtime_ns, ctime_ns, sha256 = row
        return FileState(kind, size, mode, uid, gid, _unsigned(inode), _unsigned(device),
                         mtime_ns, ctime_ns, sha256)

    def integrity_entries(self, directory: bytes, root: bytes) -> dict[bytes, FileState]:
        """The recorded files directly in `directory` that belong to `root`, by name."""
        rows = self.db.execute(
            f"SELECT name, {self._FILE_COLUMNS} FROM integrity_files WHERE dir = ? AND root = ?",
            (directory, root)).fetchall()
        return {row[0]: self._file_state(row[1:]) for row in rows}

    def integrity_entry(self, directory: bytes, name: bytes) -> tuple[bytes, FileState] | None:
        """(root, state) recorded for one file, or None."""
        row = self.db.execute(
            f"SELECT root, {self._FILE_COLUMNS} FROM integrity_files WHERE dir = ? AND name = ?",
            (directory, name)).fetchone()
        return None if row is None else (row[0], self._file_state(row[1:]))

    def integrity_directories(self, root: bytes, under: bytes | None = None) -> list[bytes]:
        """The directories that hold recorded files of `root` (those at or below `under`)."""
        if under is None:
            rows = self.db.execute("SELECT DISTINCT dir FROM integrity_files WHERE root = ?",
                                   (root,))
        else:
            rows = self.db.execute(
                "SELECT DISTINCT dir FROM integrity_files WHERE root = ? "
                "AND (dir = ? OR (dir > ? AND dir < ?))",
                (root, under, under + b"/", under + b"0"))
        return [row[0] for row in rows]

    def save_integrity(self, root: bytes, upserts: list[tuple[bytes, bytes, FileState]],
                       deletes: list[tuple[bytes, bytes]]) -> None:
        """Record the states of files of `root` ((dir, name, state)) and forget others
        ((dir, name)), in one commit."""
        with self.transaction():
            if deletes:
                self.db.executemany("DELETE FROM integrity_files WHERE dir = ? AND name = ?",
                                    deletes)
            if upserts:
                self.db.executemany(
                    f"INSERT OR REPLACE INTO integrity_files (dir, name, root, "
                    f"{self._FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(d, n, root, s.kind, s.size, s.mode, s.uid, s.gid, _signed(s.inode),
                      _signed(s.device), s.mtime_ns, s.ctime_ns, s.sha256)
                     for d, n, s in upserts])

    def integrity_roots(self) -> dict[bytes, tuple[float, float | None, float | None]]:
        """Every watched path with a baseline: (baselined_at, scan_started, scan_finished)."""
        return {row[0]: row[1:] for row in self.db.execute(
            "SELECT root, baselined_at, scan_started, scan_finished FROM integrity_roots")}

    def mark_integrity_scan(self, root: bytes, *, started: float | None = None,
                            finished: float | None = None) -> None:
        """Record a scan of `root` starting or finished; the first one finished is its
        baseline."""
        if started is not None:
            self.db.execute(
                "UPDATE integrity_roots SET scan_started = ? WHERE root = ?", (started, root))
        if finished is not None:
            self.db.execute(
                "INSERT INTO integrity_roots (root, baselined_at, scan_started, scan_finished) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (root) DO UPDATE SET "
                "scan_finished = excluded.scan_finished",
                (root, finished, started if started is not None else finished, finished))

    def forget_integrity_roots(self, keep: set[bytes]) -> int:
        """Forget the baseline and known-good records of every watched path not in `keep`
        (no longer configured); how many files were forgotten."""
        stale = [root for root in self.integrity_roots() if root not in keep]
        stale += [row[0] for row in self.db.execute(
            "SELECT DISTINCT root FROM integrity_files") if row[0] not in keep]
        forgotten = 0
        with self.transaction():
            for root in set(stale):
                forgotten += self.db.execute("DELETE FROM integrity_files WHERE root = ?",
                                             (root,)).rowcount
                self.db.execute("DELETE FROM integrity_roots WHERE root = ?", (root,))
                self.db.execute("DELETE FROM integrity_known_good WHERE root = ?", (root,))
        return forgotten

    def integrity_counts(self) -> dict[bytes, int]:
        """Recorded files per watched path."""
        return {row[0]: row[1] for row in self.db.execute(
            "SELECT root, COUNT(*) FROM integrity_files GROUP BY root")}

    _KNOWN_GOOD_COLUMNS = "path, root, size, mode, uid, gid, mtime_ns, sha256"

    def known_good(self, path: bytes) -> KnownGood | None:
        row = self.db.execute(f"SELECT {self._KNOWN_GOOD_COLUMNS} FROM integrity_known_good "
                              "WHERE path = ?", (path,)).fetchone()
        return None if row is None else KnownGood(*row)

    def save_known_good(self, records: list[KnownGood], now: float) -> None:
        with self.transaction():
            self.db.executemany(
                f"INSERT OR REPLACE INTO integrity_known_good ({self._KNOWN_GOOD_COLUMNS}, "
                "kept_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.path, r.root, r.size, r.mode, r.uid, r.gid, r.mtime_ns, r.sha256, now)
                 for r in records])

    def forget_known_good(self, root: bytes) -> int:
        """Forget the known-good records of one watched path (its keep_copies was turned
        off)."""
        return self.db.execute("DELETE FROM integrity_known_good WHERE root = ?",
                               (root,)).rowcount

    def known_good_digests(self) -> set[str]:
        """The contents some known-good record names (the copies to keep)."""
        return {row[0] for row in self.db.execute(
            "SELECT DISTINCT sha256 FROM integrity_known_good")}

    def known_good_counts(self) -> dict[bytes, int]:
        return {row[0]: row[1] for row in self.db.execute(
            "SELECT root, COUNT(*) FROM integrity_known_good GROUP BY root")}

    # --- the fleet (arguard.fleet) -----------------------------------------------------------
    # The outbox holds this host's decisions until the fleet's database has them (a resend
    # carries the same uid, so the database keeps one); the cursor is the id of the last
    # fleet decision this host has seen; fleet_received records what became of each one.

    _OUTBOX_COLUMNS = ("uid, verb, command, target, created, expires_at, offence, rule_id, "
                       "alert_id, recipients")

    def queue_fleet_decisions(self, decisions: Iterable[FleetDecision]) -> int:
        """Put decisions in the outbox; how many."""
        with self.transaction():
            return self.db.executemany(
                f"INSERT OR IGNORE INTO fleet_outbox ({self._OUTBOX_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.uid, d.verb, d.command, d.target, d.created, d.expires_at, d.offence,
                  d.rule_id, d.alert_id,
                  None if d.recipients is None else json.dumps(list(d.recipients)))
                 for d in decisions]).rowcount

    def fleet_outbox(self, origin: str, limit: int = 1000) -> list[tuple[int, FleetDecision]]:
        """The oldest decisions waiting in the outbox, with their outbox row ids."""
        rows = self.db.execute(f"SELECT id, {self._OUTBOX_COLUMNS} FROM fleet_outbox "
                               "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(row[0], FleetDecision(
            uid=row[1], verb=row[2], origin=origin, command=row[3], target=row[4],
            created=row[5], expires_at=row[6], offence=row[7], rule_id=row[8],
            alert_id=row[9], recipients=None if row[10] is None else tuple(json.loads(row[10]))))
            for row in rows]

    def drop_fleet_outbox(self, ids: Iterable[int]) -> None:
        """Forget outbox rows the fleet's database has stored."""
        with self.transaction():
            self.db.executemany("DELETE FROM fleet_outbox WHERE id = ?", [(i,) for i in ids])

    def fleet_outbox_depth(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM fleet_outbox").fetchone()[0]

    def fleet_cursor(self) -> int:
        """The id of the last fleet decision seen (0: none yet)."""
        row = self.db.execute("SELECT decision FROM fleet_cursor WHERE id = 1").fetchone()
        return 0 if row is None else row[0]

    def save_fleet_cursor(self, decision: int) -> None:
        self.db.execute("INSERT INTO fleet_cursor (id, decision) VALUES (1, ?) "
                        "ON CONFLICT (id) DO UPDATE SET decision = MAX(decision, excluded.decision)",
                        (decision,))

    def record_fleet_received(self, rows: Iterable[tuple[int, str | None, str | None,
                                                         str | None, str | None, str,
                                                         str | None]], now: float) -> None:
        """What became of received decisions: (decision id, origin, verb, command, target,
        outcome, reason) each."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO fleet_received (decision, origin, verb, command, "
                "target, outcome, reason, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in rows])

    def received_from_fleet(self, command: str, target: str) -> bool:
        """Whether a block of this command and target was applied from a fleet decision."""
        return self.db.execute(
            "SELECT 1 FROM fleet_received WHERE command = ? AND target = ? AND verb = 'add' "
            "AND outcome IN ('add', 'extend') LIMIT 1", (command, target)).fetchone() is not None

    def fleet_received_counts(self) -> dict[str, int]:
        """Received decisions per outcome."""
        return dict(self.db.execute(
            "SELECT outcome, COUNT(*) FROM fleet_received GROUP BY outcome").fetchall())

    def purge_fleet_received(self, before: float) -> int:
        return self.db.execute("DELETE FROM fleet_received WHERE received_at < ?",
                               (before,)).rowcount


_INT64 = 1 << 63


def _signed(number: int) -> int:
    return number - (1 << 64) if number >= _INT64 else number


def _unsigned(number: int) -> int:
    return number + (1 << 64) if number < 0 else number

def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=LOCK_WAIT)


def read_active_blocks(path: Path) -> list[Block]:
    """The active blocks of a database another process may be using, read without writing
    to it (none when there is no such file); sqlite3.Error when it cannot be read."""
    if not path.exists():
        return []
    with closing(_read_only(path)) as db:
        rows = db.execute(f"SELECT {Store._BLOCK_COLUMNS} FROM blocks WHERE state = 'active'")
        return [Block(*row) for row in rows]


def read_recoveries(path: Path, limit: int = 5) -> list[Recovery]:
    """Store.recoveries, read the same way (none from a database older than them)."""
    if not path.exists():
        return []
    with closing(_read_only(path)) as db:
        try:
            rows = db.execute("SELECT at, problem, moved_to, offsets, blocks, adopted "
                              "FROM recoveries ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            return []   # a database older than recoveries
        return [Recovery(*row) for row in rows]


def salvage(path: Path) -> Salvaged:
    """Read what can still be read from a damaged database, table by table: a table that
    cannot be read gives nothing, the others still count."""
    found = Salvaged()
    try:
        db = _read_only(path)
    except sqlite3.Error:
        return found
    with closing(db):
        def rows(sql: str) -> list[tuple]:
            try:
                return db.execute(sql).fetchall()
            except sqlite3.Error:
                return []

        tags = rows("SELECT owner_tag FROM instance WHERE id = 1")
        found.owner_tag = tags[0][0] if tags and isinstance(tags[0][0], str) else None
        found.blocks = [Block(*row) for row in rows(
            f"SELECT {Store._BLOCK_COLUMNS} FROM blocks WHERE state = 'active'")]
        found.offsets = rows("SELECT path, device, inode, offset FROM offsets")
        found.cursors = rows("SELECT source, cursor FROM journal_cursor")
    return found
