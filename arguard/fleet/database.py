"""The fleet's PostgreSQL database: its schema, migrations, and every SQL statement the fleet
runs there (SQLite's are in arguard.store). The only module that imports psycopg.

Tables, in the schema named by fleet.schema:
- `decisions`: every decision a host shared (block `add`, unblock `delete`), with its
  origin, command, target, created and absolute expiry, offence, rule and alert ids and
  recipients (NULL: every host). Each insert is NOTIFYed on `<schema>_decisions` with the
  row as JSON (`row_to_json`), so members hear of it at once; a member that was away reads
  the rows after the last id it saw (as columns: the same checks, no JSON in between).
  Inserts are serialised (an advisory lock taken before any id is drawn), so ids are
  committed in order and "everything after id N" never skips a row that commits late.
- `facts`: the compact facts of fleet-scoped correlation (rule, key, time; or a reset when
  the rule fired), NOTIFYed on `<schema>_facts`, kept until their timeframe is over.
- `members`: each host's name, when it was last connected and the last decision it saw.
- `version`: the schema version; `arguard fleet init` brings it up to date (idempotent,
  under an advisory lock, so two hosts running it at once do not collide).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import psycopg
from psycopg import sql

from arguard.config import Fleet
from arguard.fleet.decision import DECISION_COLUMNS, FleetDecision, Malformed, read_decision

#: libpq keepalive settings used unless the DSN sets its own: a database that vanishes
#: without closing the connection (a partition) is noticed within about 30 seconds
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}
#: decided rows kept this long after they stopped mattering (expired, or an unblock)
RETENTION_DAYS = 7

# Each entry upgrades the schema by one version; never edit a released entry, append one.
# {schema} is the schema's identifier; {decisions_channel} and {facts_channel} are the
# NOTIFY channels' names, {decisions_lock} and {facts_lock} the advisory locks' keys (both
# passed to the triggers as string literals).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {schema}.decisions (
        id          bigserial   PRIMARY KEY,
        uid         text        NOT NULL UNIQUE,
        origin      text        NOT NULL,
        verb        text        NOT NULL,
        command     text        NOT NULL,
        target      text        NOT NULL,
        created     timestamptz NOT NULL,
        expires     timestamptz,
        offence     integer     NOT NULL DEFAULT 1,
        rule_id     integer,
        alert_id    text,
        recipients  text[],
        stored      timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX decisions_block ON {schema}.decisions (command, target, id);
    CREATE INDEX decisions_expiry ON {schema}.decisions (expires) WHERE verb = 'add';

    CREATE TABLE {schema}.facts (
        id          bigserial   PRIMARY KEY,
        origin      text        NOT NULL,
        rule_id     integer     NOT NULL,
        key         text[]      NOT NULL,
        at          timestamptz NOT NULL,
        reset       boolean     NOT NULL DEFAULT false,
        expires     timestamptz NOT NULL
    );
    CREATE INDEX facts_expiry ON {schema}.facts (expires);

    CREATE TABLE {schema}.members (
        name        text        PRIMARY KEY,
        first_seen  timestamptz NOT NULL DEFAULT now(),
        last_seen   timestamptz NOT NULL DEFAULT now(),
        last_decision bigint    NOT NULL DEFAULT 0,
        version     text
    );

    -- Inserts into a table wait for its advisory lock (argument 0) before any id is drawn,
    -- so ids commit in order; each row inserted is NOTIFYed as JSON on channel argument 0.
    CREATE FUNCTION {schema}.in_order() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(TG_ARGV[0]::bigint);
        RETURN NULL;
    END $$;
    CREATE FUNCTION {schema}.notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify(TG_ARGV[0], row_to_json(NEW)::text);
        RETURN NULL;
    END $$;
    CREATE TRIGGER decisions_in_order BEFORE INSERT ON {schema}.decisions
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.in_order({decisions_lock});
    CREATE TRIGGER decisions_notify AFTER INSERT ON {schema}.decisions
        FOR EACH ROW EXECUTE FUNCTION {schema}.notify_row({decisions_channel});
    CREATE TRIGGER facts_in_order BEFORE INSERT ON {schema}.facts
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.in_order({facts_lock});
    CREATE TRIGGER facts_notify AFTER INSERT ON {schema}.facts
        FOR EACH ROW EXECUTE FUNCTION {schema}.notify_row({facts_channel});
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: the select list of a decision as `read_decision` takes it (times as epoch seconds)
_DECISION_SELECT = ", ".join(
    f"extract(epoch FROM d.{name})::float8" if name in ("created", "expires") else f"d.{name}"
    for name in DECISION_COLUMNS)


class FleetError(Exception):
    """The fleet's database cannot be used; the message says why, for the operator."""


def describe(error: BaseException) -> str:
    """An operator's reading of a connection or query error: libpq's first line."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].removeprefix("connection failed: ")


def is_authentication_error(error: BaseException) -> bool:
    text = str(error)
    return "password authentication failed" in text or "no password supplied" in text \
        or "authentication failed" in text


class FleetDatabase:
    """Names and statements of one fleet schema; `connect()` gives a connection to it."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        schema = fleet.schema
        self.decisions_channel = f"{schema}_decisions"
        self.facts_channel = f"{schema}_facts"
        self._names = {
            "schema": sql.Identifier(schema),
            "decisions_channel": sql.Literal(self.decisions_channel),
            "facts_channel": sql.Literal(self.facts_channel),
            "decisions_lock": sql.Literal(str(_lock_key(f"{schema}.decisions"))),
            "facts_lock": sql.Literal(str(_lock_key(f"{schema}.facts"))),
        }

    def statement(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(**{k: v for k, v in self._names.items()
                                       if "{" + k + "}" in text})

    def connection_options(self) -> dict[str, Any]:
        """Keyword options for libpq beside the DSN: the password (from password_file),
        the timeout, keepalives (unless the DSN sets them) and the application name."""
        given = psycopg.conninfo.conninfo_to_dict(self.fleet.dsn)
        options: dict[str, Any] = {k: v for k, v in KEEPALIVES.items() if k not in given}
        options["connect_timeout"] = self.fleet.connect_timeout
        options.setdefault("application_name", f"arguard {self.fleet.name}"[:63])
        if self.fleet.password_file is not None:
            options["password"] = read_password(self.fleet.password_file)
        return options

    async def connect(self) -> Connection:
        """A connection in autocommit mode (FleetError when the database refuses it)."""
        try:
            options = self.connection_options()
        except psycopg.ProgrammingError as error:
            raise FleetError(f"fleet.dsn: {describe(error)}") from error
        try:
            raw = await psycopg.AsyncConnection.connect(self.fleet.dsn, autocommit=True,
                                                        **options)
        except psycopg.Error as error:
            raise FleetError(describe(error)) from error
        return Connection(self, raw)


def read_password(path: Path) -> str:
    """The first line of the password file (FleetError when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FleetError(f"fleet.password_file {path}: "
                         f"{getattr(error, 'strerror', None) or error}") from error
    password = text.splitlines()[0] if text else ""
    if not password:
        raise FleetError(f"fleet.password_file {path} is empty")
    return password


def _lock_key(name: str) -> int:
    """A stable advisory-lock key for a name (a signed 32-bit number)."""
    return zlib.crc32(f"arguard:{name}".encode()) - 2**31


class Connection:
    """One connection to the fleet's database, with the statements arguard runs on it."""

    def __init__(self, database: FleetDatabase, raw: psycopg.AsyncConnection):
        self.database = database
        self.raw = raw
        self.q = database.statement

    async def close(self) -> None:
        await self.raw.close()

    # --- the schema -------------------------------------------------------------------------

    async def migrate(self) -> tuple[int, int]:
        """Create or upgrade the schema; (version before, version after)."""
        async with self.raw.transaction():
            await self.raw.execute("SELECT pg_advisory_xact_lock(%s)",
                                   (_lock_key(f"{self.database.fleet.schema}.migrate"),))
            await self.raw.execute(self.q("CREATE SCHEMA IF NOT EXISTS {schema}"))
            await self.raw.execute(self.q(
                "CREATE TABLE IF NOT EXISTS {schema}.version (version integer NOT NULL)"))
            row = await (await self.raw.execute(
                self.q("SELECT version FROM {schema}.version"))).fetchone()
            before = 0 if row is None else row[0]
            if before > SCHEMA_VERSION:
                raise FleetError(f"schema {self.database.fleet.schema} is at version {before}, "
                                 f"newer than this arguard understands ({SCHEMA_VERSION})")
            for migration in MIGRATIONS[before:]:
                await self.raw.execute(self.q(migration))
            await self.raw.execute(self.q("DELETE FROM {schema}.version"))
            await self.raw.execute(self.q("INSERT INTO {schema}.version VALUES (%s)"),
                                   (SCHEMA_VERSION,))
        return before, SCHEMA_VERSION

    async def check_schema(self) -> None:
        """FleetError unless the schema exists at this arguard's version."""
        schema = self.database.fleet.schema
        try:
            row = await (await self.raw.execute(
                self.q("SELECT version FROM {schema}.version"))).fetchone()
        except psycopg.errors.UndefinedTable:
            raise FleetError(f"the database has no fleet schema {schema!r}: run "
                             "`arguard fleet init` once (with a role that may create it)")
        version = 0 if row is None else row[0]
        if version < SCHEMA_VERSION:
            raise FleetError(f"fleet schema {schema!r} is at version {version}, this arguard "
                             f"needs {SCHEMA_VERSION}: run `arguard fleet init`")
        if version > SCHEMA_VERSION:
            raise FleetError(f"fleet schema {schema!r} is at version {version}, newer than "
                             f"this arguard understands ({SCHEMA_VERSION}): upgrade arguard")

    # --- membership -------------------------------------------------------------------------

    async def join(self, name: str, last_decision: int, version: str) -> None:
        await self.raw.execute(self.q(
            "INSERT INTO {schema}.members (name, last_decision, version) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET last_seen = now(), "
            "last_decision = excluded.last_decision, version = excluded.version"),
            (name, last_decision, version))

    async def heartbeat(self, name: str, last_decision: int) -> int:
        """Say this member is alive and how far it has read; the newest decision id."""
        await self.raw.execute(self.q(
            "UPDATE {schema}.members SET last_seen = now(), last_decision = %s "
            "WHERE name = %s"), (last_decision, name))
        return await self.latest_decision()

    async def latest_decision(self) -> int:
        row = await (await self.raw.execute(
            self.q("SELECT COALESCE(MAX(id), 0) FROM {schema}.decisions"))).fetchone()
        return row[0]

    async def members(self) -> int:
        row = await (await self.raw.execute(
            self.q("SELECT COUNT(*) FROM {schema}.members"))).fetchone()
        return row[0]

    # --- decisions --------------------------------------------------------------------------

    async def store_decisions(self, decisions: Iterable[FleetDecision]) -> int:
        """Insert decisions (one transaction; a uid already stored is not stored again, so
        a resend after a lost reply is harmless); how many were new."""
        rows = [(d.uid, d.origin, d.verb, d.command, d.target, d.created, d.expires_at,
                 d.offence, d.rule_id, d.alert_id,
                 None if d.recipients is None else list(d.recipients)) for d in decisions]
        if not rows:
            return 0
        async with self.raw.transaction():
            cursor = self.raw.cursor()
            await cursor.execute(self.q(
                "INSERT INTO {schema}.decisions (uid, origin, verb, command, target, created, "
                "expires, offence, rule_id, alert_id, recipients) "
                "SELECT u, o, v, c, tg, to_timestamp(cr), to_timestamp(ex), n, ri, a, "
                "rc::text[] FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::text[], %s::float8[], %s::float8[], %s::int[], %s::int[], %s::text[], "
                "%s::text[]) AS r(u, o, v, c, tg, cr, ex, n, ri, a, rc) "
                "ON CONFLICT (uid) DO NOTHING"),
                _columns(rows, text_arrays=(10,)))
            return cursor.rowcount

    async def decisions_between(self, after: int, upto: int, name: str
                                ) -> list[tuple[int, FleetDecision | Malformed]]:
        """The decisions with `after` < id <= `upto` that concern host `name`, in id order,
        as (id, the decision read from its columns, checked): not its own, addressed to
        every host or to it, and without the blocks that are over (expired, or unblocked
        by a later decision). A range of ids, not a LIMIT, so that the work is bounded by
        the range whatever plan the server picks (before its first ANALYZE of 100 000 new
        rows it would filter every row after `after` for each page). Columns in binary."""
        cursor = self.raw.cursor(binary=True)
        await cursor.execute(self.q(
            f"SELECT {_DECISION_SELECT} FROM {{schema}}.decisions d "
            "WHERE d.id > %(after)s AND d.id <= %(upto)s AND d.origin <> %(name)s "
            "AND (d.recipients IS NULL OR %(name)s = ANY (d.recipients)) "
            "AND NOT (d.verb = 'add' AND (d.expires <= now() OR EXISTS ("
            "  SELECT 1 FROM {schema}.decisions l WHERE l.command = d.command "
            "  AND l.target = d.target AND l.id > d.id AND l.verb = 'delete'))) "
            "ORDER BY d.id"), {"after": after, "upto": upto, "name": name})
        return [(row[0], read_decision(row)) for row in await cursor.fetchall()]

    async def purge(self) -> tuple[int, int]:
        """Drop decisions that stopped mattering RETENTION_DAYS ago and facts whose time is
        over; (decisions, facts) dropped."""
        async with self.raw.transaction():
            decisions = await self.raw.execute(self.q(
                "DELETE FROM {schema}.decisions d WHERE d.stored < now() - %(keep)s * "
                "interval '1 day' AND (d.verb = 'delete' OR d.expires < now() - %(keep)s * "
                "interval '1 day' OR EXISTS (SELECT 1 FROM {schema}.decisions l WHERE "
                "l.command = d.command AND l.target = d.target AND l.id > d.id "
                "AND l.verb = 'delete'))"), {"keep": RETENTION_DAYS})
            facts = await self.raw.execute(self.q(
                "DELETE FROM {schema}.facts WHERE expires < now()"))
        return decisions.rowcount, facts.rowcount

    # --- facts (fleet-scoped correlation) -----------------------------------------------------

    async def store_facts(self, origin: str, facts: Iterable[tuple[int, tuple[str, ...],
                                                                 float, bool, float]]) -> None:
        """Insert facts of host `origin`: (rule id, key, at, reset, expires) each."""
        rows = [(origin, rule_id, "{" + ",".join(_array_item(k) for k in key) + "}", at,
                 reset, expires) for rule_id, key, at, reset, expires in facts]
        if not rows:
            return
        await self.raw.execute(self.q(
            "INSERT INTO {schema}.facts (origin, rule_id, key, at, reset, expires) "
            "SELECT o, r, k::text[], to_timestamp(a), x, to_timestamp(e) FROM unnest("
            "%s::text[], %s::int[], %s::text[], %s::float8[], %s::bool[], %s::float8[]) "
            "AS t(o, r, k, a, x, e)"), _columns(rows))

    async def facts_after(self, after: int, name: str) -> list[tuple[int, str]]:
        """The facts of other hosts after id `after` whose time is not over, as (id, JSON)."""
        cursor = await self.raw.execute(self.q(
            "SELECT f.id, row_to_json(f)::text FROM {schema}.facts f WHERE f.id > %s "
            "AND f.origin <> %s AND f.expires > now() ORDER BY f.id"), (after, name))
        return [(row[0], row[1]) for row in await cursor.fetchall()]

    async def latest_fact(self) -> int:
        row = await (await self.raw.execute(
            self.q("SELECT COALESCE(MAX(id), 0) FROM {schema}.facts"))).fetchone()
        return row[0]

    # --- push ---------------------------------------------------------------------------------

    async def listen(self) -> None:
        for channel in (self.database.decisions_channel, self.database.facts_channel):
            await self.raw.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def notifications(self) -> AsyncIterator[tuple[str, str]]:
        """(channel, payload) of each notification, as they come, until the connection
        fails (psycopg.Error)."""
        async for notify in self.raw.notifies():
            yield notify.channel, notify.payload


def _columns(rows: list[tuple], text_arrays: tuple[int, ...] = ()) -> list[list]:
    """Rows as one list per column (for unnest): one statement for a whole batch. Columns in
    `text_arrays` hold lists (or None), passed as array literals since unnest cannot take a
    two-dimensional array of rows with different lengths."""
    columns = [list(column) for column in zip(*rows)]
    for index in text_arrays:
        columns[index] = [None if value is None else
                          "{" + ",".join(_array_item(v) for v in value) + "}"
                          for value in columns[index]]
    return columns


def _array_item(text: str) -> str:
    """One element of a PostgreSQL array literal, quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def initialise(fleet: Fleet) -> tuple[int, int]:
    """`arguard fleet init`: create or upgrade the fleet's schema; (version before, after)."""
    connection = await FleetDatabase(fleet).connect()
    try:
        return await connection.migrate()
    except psycopg.Error as error:
        raise FleetError(describe(error)) from error
    finally:
        await connection.close()
