"""The `restore-file` action: put a watched file's known-good content back, then optionally
run a custom script (validate the configuration, reload the service).

The known-good state (content, mode, owner, mtime) is what the file integrity source kept
for the file (`keep_copies` on its [[integrity]] table: the file's content at its baseline,
or when `arguard integrity accept` was run); a file without one is refused. The target is
the alert's file path (`expect = "filename"`).

How it writes, so that nothing outside the watched tree is written and no symlink is
followed: the watched path is opened as a directory without following a symlink (O_NOFOLLOW),
and so is every directory from it down to the file's own, one `openat` at a time; a symlink
or a missing directory on the way refuses the restore. In the file's directory the content
goes to a new temp file (O_CREAT|O_EXCL|O_NOFOLLOW), gets the known-good owner, mode and
mtime, is fsynced, and is renamed over the file's name: a reader sees the old file or the
restored one, and a symlink an attacker put in the file's place is replaced by the regular
file, its target left untouched. A directory in the file's place is refused. A file already
in its known-good state is left alone (and the script does not run).

The file integrity source sees the restore as the file coming back to its known-good state,
which it records without reporting it (arguard.integrity.baseline), so a restore does not
trigger itself. Runs detached (in a worker thread) and once per alert: a restore has nothing
to lift, so its binding has no timeout.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from arguard.integrity.copies import Copies, CopyError
from arguard.integrity.files import shown
from arguard.model import KnownGood
from arguard.respond.actions.base import (NUMBER, STRING, STRINGS, ActionContext, ActionError,
                                          ActionType, Option)
from arguard.respond.actions.script import ScriptAction
from arguard.respond.targets import check_file
from arguard.store import Store

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_PREFIX = b".arguard-restore."


class RestoreFile:
    def __init__(self, command: Command, context: ActionContext):
        options = ACTION.options_of(command)
        self.command = command
        self.database = context.paths.database
        self.copies = Copies(context.paths.integrity_copies)
        self.then: ScriptAction | None = None
        if options["then"]:
            script = replace(command, name=f"{command.name}/then", action="script",
                             executable=options["then"], extra_args=tuple(options["then_args"]),
                             options=MappingProxyType({"exec_timeout": options["then_timeout"]}))
            self.then = ScriptAction(script, context.paths.ar_bin_dir)

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        if self.restore(target) and self.then is not None:
            self.then.add(target, None, alert)

    def delete(self, target: str) -> None:
        """Nothing to lift: a restore is not undone."""

    def check(self, target: str) -> bool:
        """Whether the file is in its known-good state now."""
        good = self._known_good(target)
        directory, name = _open_directory(good)
        try:
            return _is_known_good(directory, name, good)
        finally:
            os.close(directory)

    def list_targets(self) -> set[str] | None:
        return None

    def restore(self, target: str) -> bool:
        """Put the known-good state back; False when the file was in it already."""
        good = self._known_good(target)
        try:
            content = self.copies.read(good.sha256)
        except CopyError as exc:
            raise ActionError(str(exc)) from exc
        directory, name = _open_directory(good)
        try:
            if _is_known_good(directory, name, good):
                return False
            _replace(directory, name, good, content)
        finally:
            os.close(directory)
        return True

    def _known_good(self, target: str) -> KnownGood:
        refused = check_file(target).refused
        if refused:
            raise ActionError(f"not a file path: {target!r} ({refused})")
        good = None
        if Path(self.database).exists():
            store = Store(self.database)
            try:
                good = store.known_good(os.fsencode(target))
            finally:
                store.close()
        if good is None:
            raise ActionError(f"{target}: no known-good copy (not under an [[integrity]] path "
                              "with keep_copies, added after its baseline, or larger than "
                              "keep_copies; `arguard integrity accept` keeps one)")
        return good


def _open_directory(good: KnownGood) -> tuple[int, bytes]:
    """The file's directory, opened from the watched path down without following a symlink,
    and the file's name in it. A watched path that is itself the file: its directory."""
    if good.path == good.root:
        try:
            return (os.open(os.path.dirname(good.path), os.O_RDONLY | os.O_DIRECTORY
                            | os.O_CLOEXEC), os.path.basename(good.path))
        except OSError as exc:
            raise ActionError(f"cannot open the directory of {shown(good.path)}: "
                              f"{exc.strerror}") from exc
    if not good.path.startswith(good.root + b"/"):
        raise ActionError(f"{shown(good.path)} is not under {shown(good.root)}")
    parts = good.path[len(good.root) + 1:].split(b"/")
    walked = good.root
    try:
        fd = os.open(good.root, _DIRECTORY)
    except OSError as exc:
        raise ActionError(_refusal(walked, exc)) from exc
    try:
        for part in parts[:-1]:
            walked += b"/" + part
            try:
                following = os.open(part, _DIRECTORY, dir_fd=fd)
            except OSError as exc:
                raise ActionError(_refusal(walked, exc)) from exc
            os.close(fd)
            fd = following
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def _refusal(path: bytes, exc: OSError) -> str:
    if os.path.islink(path):
        return f"{shown(path)} is a symlink now; restore-file never writes through one"
    return f"cannot open {shown(path)}: {exc.strerror}"


def _is_known_good(directory: int, name: bytes, good: KnownGood) -> bool:
    """Whether `name` is a regular file with the known-good content, mode and owner."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=directory)
    except OSError:
        return False  # missing, a symlink, unreadable: not in its known-good state
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != good.size or \
                (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) != \
                (good.mode, good.uid, good.gid):
            return False
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest() == good.sha256
    finally:
        os.close(fd)


def _replace(directory: int, name: bytes, good: KnownGood, content: bytes) -> None:
    try:
        current = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise ActionError(f"cannot look at {shown(good.path)}: {exc.strerror}") from exc
    if current is not None and stat.S_ISDIR(current.st_mode):
        raise ActionError(f"{shown(good.path)} is a directory now; not replaced")
    temp = _TEMP_PREFIX + secrets.token_hex(6).encode()
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=directory)
    except OSError as exc:
        raise ActionError(f"cannot create a temp file beside {shown(good.path)}: "
                          f"{exc.strerror}") from exc
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, good.uid, good.gid)
            os.fchmod(fd, good.mode)  # after fchown, which may clear set-id bits
            os.utime(fd, ns=(good.mtime_ns, good.mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError as exc:
        try:
            os.unlink(temp, dir_fd=directory)
        except OSError:
            pass
        raise ActionError(f"cannot restore {shown(good.path)}: {exc.strerror}") from exc
    os.fsync(directory)


def _bare_name(name: str) -> str | None:
    if name and ("/" in name or name in (".", "..")):
        return "must be a bare file name inside paths.ar_bin_dir (no '/')"
    return None


ACTION = ActionType(
    summary="put a watched file's known-good content, mode and owner back (file integrity "
            "with keep_copies), atomically and never through a symlink; then optionally run "
            "a custom script",
    kinds=("file",),
    build=RestoreFile,
    options=(Option("then", STRING, "", "a custom executable (in paths.ar_bin_dir) run after "
                    "each restore, with Wazuh's JSON message (syscheck.path), e.g. to "
                    "validate the configuration and reload the service", check=_bare_name),
             Option("then_args", STRINGS, [], "its extra_args"),
             Option("then_timeout", NUMBER, 60, "seconds before the script's process group "
                    "is killed")),
    detached=True,
    default_expect="filename",
)
