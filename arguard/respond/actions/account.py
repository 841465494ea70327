"""The `disable-account` action: lock a local account's password as `passwd -l` does.

Locking prefixes the hash field of the account's shadow line with one `!`; unlocking
removes exactly that one character, so the hash is restored as it was. Only the account's
own line changes; the others are kept byte for byte, and the file is replaced atomically
(temp file, fsync, rename: arguard.respond.actions.atomicfile) with its mode and owner
kept; temp files a crash left are removed when the action is built.

Shadow lock. shadow-utils (passwd, usermod, vipw) and glibc's `lckpwdf()` agree on one
lock: an fcntl write lock on `/etc/.pwd.lock`. For the real `/etc/shadow` arguard calls
`lckpwdf`/`ulckpwdf` from libc through ctypes, so it takes exactly the system's lock. For
any other shadow path (tests, chroots, a copy under a temp dir) it runs the same protocol
itself on `<shadow's directory>/.pwd.lock`: calling `lckpwdf` there would lock the host's
file instead of the one that guards the copy. Both are POSIX record locks, which belong to
the process, not the thread (and glibc's `lckpwdf` fails outright when the process already
holds it), so threads of arguard also queue on an in-process lock first.

Refusals (ActionError, AccountGuard: the same for `terminate-sessions`): names that are not
plain account names, root and any UID 0 account, UIDs below `min_uid` (default 1000; UIDs
come from the configured passwd file), the UID arguard or its parent process runs as,
accounts missing from passwd or shadow. White-listed account names (`[global]
white_list_users`) are refused by the policy before any action is asked.

Which locks are arguard's. The shadow file cannot say who added a `!`, so `list_targets()`
returns None and the policy's `blocks` table is the record: arguard only ever unlocks what
it locked. To keep that true, `add` on an account that is already locked does not adopt the
lock: it raises AccountAlreadyLocked, so no block is recorded and a later `delete` can never
unlock an account the administrator locked by hand.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import threading
import time
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from arguard.respond.actions.atomicfile import remove_leftovers, write_atomically
from arguard.respond.actions.base import INTEGER, PATH, ActionError, ActionType, Option
from arguard.respond.targets import check_user

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

log = logging.getLogger(__name__)

SYSTEM_SHADOW = Path("/etc/shadow")


class AccountAlreadyLocked(ActionError):
    """The account was locked before arguard acted; arguard leaves it (and its unlocking)
    to whoever locked it."""


def check_account_name(name: str) -> str:
    """`name` if it is a plain account name (arguard.respond.targets.check_user: no '/',
    '..', ':', blanks, control characters, leading '-'), else ActionError."""
    refused = check_user(name).refused
    if refused:
        raise ActionError(f"not a valid account name: {name!r} ({refused})")
    return name


class AccountGuard:
    """The accounts arguard may act on: found in `passwd`, not root nor any UID 0 account,
    no UID below `min_uid`, not the UID (real or effective) arguard or its parent process
    runs as. `verb` says what is refused ("lock", "terminate")."""

    def __init__(self, passwd: Path, min_uid: int, verb: str):
        self.passwd = passwd
        self.min_uid = min_uid
        self.verb = verb

    def uid(self, name: str) -> int:
        """The UID of account `name` if arguard may act on it, else ActionError saying why."""
        check_account_name(name)
        if name == "root":
            raise ActionError(f"refusing to {self.verb} root")
        uid = self._uid(name)
        refusing = f"refusing to {self.verb} {name!r}"
        if uid == 0:
            raise ActionError(f"{refusing}: UID 0")
        if uid < self.min_uid:
            raise ActionError(f"{refusing}: UID {uid} is below min_uid {self.min_uid}")
        if uid in (os.getuid(), os.geteuid()):
            raise ActionError(f"{refusing}: UID {uid} is the one arguard runs as")
        if uid in _parent_uids():
            raise ActionError(f"{refusing}: UID {uid} is the one arguard's parent process "
                              f"(pid {os.getppid()}) runs as")
        return uid

    def _uid(self, name: str) -> int:
        prefix = name.encode() + b":"
        for line in _read(self.passwd).split(b"\n"):
            if line.startswith(prefix):
                fields = line.split(b":")
                if len(fields) < 7 or not fields[2].isdigit():
                    raise ActionError(f"{self.passwd}: malformed entry for {name!r}")
                return int(fields[2])
        raise ActionError(f"unknown account {name!r} (not in {self.passwd})")


def _parent_uids() -> set[int]:
    """The real and effective UIDs of arguard's parent process (none when the parent is
    outside arguard's PID namespace)."""
    try:
        status = Path(f"/proc/{os.getppid()}/status").read_text()
    except OSError:
        return set()
    for line in status.splitlines():
        if line.startswith("Uid:"):
            real, effective = line.split()[1:3]
            return {int(real), int(effective)}
    return set()


class AccountAction:
    def __init__(self, command: Command, lock_timeout: float = 15.0):
        """`lock_timeout`: how long to wait for the shadow lock (lckpwdf waits 15 s)."""
        options = ACTION.options_of(command)
        self.shadow = Path(options["shadow"])
        self.guard = AccountGuard(Path(options["passwd"]), options["min_uid"], "lock")
        self.lock_timeout = lock_timeout
        with self._shadow_lock():
            for leftover in remove_leftovers(self.shadow):
                log.warning("removed %s, left by a write that was interrupted", leftover)

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        name = check_account_name(target)
        self.guard.uid(name)
        with self._shadow_lock():
            data, index, fields = self._shadow_entry(name)
            if fields[1].startswith(b"!"):
                raise AccountAlreadyLocked(f"account {name!r} is already locked; "
                                           "arguard leaves it as it is")
            fields[1] = b"!" + fields[1]
            self._write(data, index, fields)

    def delete(self, target: str) -> None:
        name = check_account_name(target)
        with self._shadow_lock():
            data, index, fields = self._shadow_entry(name)
            if not fields[1].startswith(b"!"):
                return
            fields[1] = fields[1][1:]
            self._write(data, index, fields)

    def check(self, target: str) -> bool:
        name = check_account_name(target)
        with self._shadow_lock():
            _, _, fields = self._shadow_entry(name)
        return fields[1].startswith(b"!")

    def list_targets(self) -> set[str] | None:
        return None

    def _shadow_entry(self, name: str) -> tuple[bytes, int, list[bytes]]:
        """The shadow file, the index of the account's line and that line's fields."""
        data = _read(self.shadow)
        prefix = name.encode() + b":"
        for index, line in enumerate(data.split(b"\n")):
            if line.startswith(prefix):
                fields = line.split(b":")
                if len(fields) < 2:
                    raise ActionError(f"{self.shadow}: malformed entry for {name!r}")
                return data, index, fields
        raise ActionError(f"account {name!r} has no entry in {self.shadow}")

    def _write(self, data: bytes, index: int, fields: list[bytes]) -> None:
        lines = data.split(b"\n")
        lines[index] = b":".join(fields)
        write_atomically(self.shadow, b"\n".join(lines), default_mode=0o640)

    @contextmanager
    def _shadow_lock(self) -> Iterator[None]:
        process_lock = _process_lock(self.shadow)
        if not process_lock.acquire(timeout=self.lock_timeout):
            raise ActionError(f"timed out waiting for the lock on {self.shadow}")
        try:
            if Path(os.path.realpath(self.shadow)) == SYSTEM_SHADOW:
                with _lckpwdf():
                    yield
            else:
                with _pwd_lock(self.shadow.parent / ".pwd.lock", self.lock_timeout):
                    yield
        finally:
            process_lock.release()


_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(shadow: Path) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(shadow.parent, threading.Lock())


@contextmanager
def _lckpwdf() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.lckpwdf() != 0:
        errno = ctypes.get_errno()
        raise ActionError(f"cannot take the shadow lock (lckpwdf): {os.strerror(errno)}")
    try:
        yield
    finally:
        libc.ulckpwdf()


_LOCK_POLL = 0.05


@contextmanager
def _pwd_lock(path: Path, timeout: float) -> Iterator[None]:
    """lckpwdf's protocol on another lock file: a POSIX write lock on the whole file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ActionError(f"cannot open lock file {path}: {exc.strerror}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (BlockingIOError, PermissionError):
                if time.monotonic() >= deadline:
                    raise ActionError(f"timed out waiting for the lock on {path}") from None
                time.sleep(_LOCK_POLL)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ActionError(f"cannot read {path}: {exc.strerror}") from exc


ACTION = ActionType(
    summary="lock a local account's password as `passwd -l` does (never root, never a UID "
            "below min_uid)",
    kinds=("user",),
    build=lambda command, context: AccountAction(command),
    options=(Option("shadow", PATH, str(SYSTEM_SHADOW), "the shadow file"),
             Option("passwd", PATH, "/etc/passwd", "the passwd file the UIDs are read from"),
             Option("min_uid", INTEGER, 1000, "the lowest UID arguard may lock")),
    default_expect="dstuser",
)
