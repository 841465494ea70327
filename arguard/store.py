"""SQLite state: schema, migrations and every SQL statement arguard runs.

One database (WAL mode) in the state directory holds the timed blocks, the offender memory,
the read offsets of file sources and the journal cursors.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
)


class Store:
    """A connection to arguard.db with the schema brought up to date."""

    def __init__(self, path: Path | str, timeout: float = 10.0):
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

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
            self.db.execute(f"PRAGMA user_version = {number + 1}")
            self.db.execute("COMMIT")

    # --- blocks and offenders (active response) -------------------------------------------

    # --- offsets and journal cursors (sources) ---------------------------------------------
