"""A private PostgreSQL cluster for the fleet's tests, never the host's own.

`initdb` makes a cluster in a fresh temp dir, and its server listens only on a Unix socket
in that dir (no TCP port at all), with password (SCRAM) authentication for user `arguard`.
PostgreSQL refuses to run as root, so as root the cluster belongs to the existing
unprivileged user `nobody` and its programs run through `setpriv` (no account is created);
as another user it simply runs as that user. The socket is a file, so the daemons of a
test can reach it from inside their own network namespaces.

Tests skip when no PostgreSQL server is installed (Debian: `apt-get install postgresql`),
except under CI (`CI=true`), where that is a failure.
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

USER = "arguard"
PASSWORD = "fleet-test-password"
DATABASE = "arguard"
#: the unprivileged account a root test runs the server as
UNPRIVILEGED = "nobody"


@functools.cache
def server_bin() -> Path | None:
    """The directory of initdb and pg_ctl: Debian keeps them out of PATH, under
    /usr/lib/postgresql/VERSION/bin (the newest installed version wins)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(re.sub(r"\D", "", path.parts[-3]) or 0))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


def _unavailable() -> str | None:
    if server_bin() is None:
        return "no PostgreSQL server installed (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'arguard[fleet]')"
    return None


def require_postgres() -> None:
    """Skip the test when no server can be run here; under CI, fail it instead."""
    reason = _unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)")
    pytest.skip(reason)


class PostgresCluster:
    """A cluster in its own temp dir; `start()`, `stop()` (as an operator would, or
    abruptly), `close()` removes everything."""

    def __init__(self, settings: dict[str, str] | None = None):
        require_postgres()
        self.directory = Path(tempfile.mkdtemp(prefix="arguard-pg-", dir="/tmp"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.settings = {"listen_addresses": "''", "fsync": "off",
                         "synchronous_commit": "off", "full_page_writes": "off",
                         "max_connections": "200", **(settings or {})}
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._as_user = ["setpriv", f"--reuid={account.pw_uid}",
                             f"--regid={account.pw_gid}", "--clear-groups"]
        self.directory.chmod(0o755)
        password_file = self.directory / "initdb.password"
        password_file.write_text(PASSWORD + "\n")
        if self._as_user:
            os.chown(password_file, pwd.getpwnam(UNPRIVILEGED).pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}",
                  "--auth-local=scram-sha-256", "--auth-host=reject", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        password_file.unlink()
        self.start()
        self.sql_admin(f"CREATE DATABASE {DATABASE}", database="postgres")

    @property
    def socket_dir(self) -> str:
        return str(self.directory)

    def dsn(self, database: str = DATABASE) -> str:
        """The DSN a fleet member uses (no password in it, as arguard requires)."""
        return f"postgresql://{USER}@/{database}?host={self.socket_dir}"

    def write_password(self, path: Path, password: str = PASSWORD) -> Path:
        path.write_text(password + "\n")
        path.chmod(0o600)
        return path

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run([*self._as_user, str(server_bin() / program), *args],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"{program} failed ({done.returncode}): "
                                 f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def start(self) -> None:
        options = " ".join([f"-k {self.socket_dir}"]
                           + [f"-c {key}={value}" for key, value in self.settings.items()])
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        done = subprocess.run([*self._as_user, str(server_bin() / "pg_ctl"), "-D",
                               str(self.data), "status"], capture_output=True)
        return done.returncode == 0

    def connect(self, database: str = DATABASE):
        import psycopg

        return psycopg.connect(self.dsn(database), password=PASSWORD, autocommit=True)

    def sql_admin(self, statement: str, *params, database: str = DATABASE) -> list[tuple]:
        """Run one statement as the cluster's superuser; its rows (if any)."""
        with self.connect(database) as connection:
            cursor = connection.execute(statement, params or None)
            return cursor.fetchall() if cursor.description is not None else []

    def close(self) -> None:
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
