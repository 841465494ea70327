"""The `hosts-deny` action: deny addresses in a hosts_access(5) file (/etc/hosts.deny).

arguard keeps its entries in one marked block of whole-line comments:

    # BEGIN arguard -- entries between these lines are managed by arguard
    ALL: 203.0.113.5
    ALL: [2001:db8::1]
    # END arguard

Only lines inside the block are arguard's: `list_targets()` reports them, `delete` removes
them, and a hand-written `ALL: 203.0.113.5` elsewhere in the file is never touched. A marker
on the entry line itself (`ALL: 1.2.3.4 # arguard`) would not be safe: classic libwrap only
skips lines that *start* with '#' and would read `#` and `arguard` as two more client
patterns, while some patched builds strip trailing comments; whole-line comments mean the
same to every build. Several commands may share one file; each owns the block lines that
start with its own daemon list.

Matching is by parsed address, never by substring: lifting 1.2.3.4 leaves 1.2.3.45 alone
(Wazuh's host-deny removes every line containing the text). IPv6 addresses are written in
brackets, as hosts_access(5) requires. Every change rewrites the file atomically (a temp
file in the same directory, fsync, rename) with its mode and owner kept, under an
exclusive flock on a lock file beside it, so the daemon and the CLI can edit concurrently.
Lines outside the block are kept byte for byte; a last line without a newline gets one,
since libwrap ignores an unterminated last line anyway. The block is added at the end of
the file when the first entry is added and removed with the last one.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from arguard.config import Command
from arguard.model import Alert
from arguard.respond.actions.base import ActionError

BEGIN = b"# BEGIN arguard -- entries between these lines are managed by arguard\n"
END = b"# END arguard\n"
_BEGIN_PREFIX = b"# BEGIN arguard"
_END_PREFIX = b"# END arguard"

# A daemon list as hosts_access(5) writes it: names (sshd, in.ftpd, ALL, sshd@host)
# separated by commas and/or blanks; no ':' (the field separator) and no '#'.
_DAEMONS = re.compile(r"[A-Za-z0-9_.@+-]+(?:[ ,]+[A-Za-z0-9_.@+-]+)*")
_ENTRY = re.compile(rb"(?P<daemons>[^:#\n][^:\n]*?)\s*:\s*"
                    rb"(?P<address>\[[0-9A-Fa-f:.]+\]|[0-9.]+)\s*")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address:
    """A plain IP literal, `::ffff:a.b.c.d` folded to IPv4; ActionError for anything else
    (hostnames, CIDRs, zone ids, blanks)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ActionError(f"not an IP address: {text!r}") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise ActionError(f"not a plain IP address (zone id): {text!r}")
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def client_pattern(address: Address) -> str:
    """The address as hosts_access(5) matches it: IPv6 in brackets."""
    return f"[{address}]" if address.version == 6 else str(address)


class HostsDenyAction:
    kind: Literal["ip", "user"] = "ip"

    def __init__(self, command: Command):
        self.path = Path(command.options.get("path", "/etc/hosts.deny"))
        self.daemon = str(command.options.get("daemon", "ALL"))
        if not _DAEMONS.fullmatch(self.daemon):
            raise ActionError(f"command {command.name!r}: daemon {self.daemon!r} is not a "
                              "hosts_access(5) daemon list")
        self._daemon_key = _normalise_daemons(self.daemon.encode())
        self.lock_path = self.path.parent / f".{self.path.name}.lock"

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        address = parse_address(target)
        line = f"{self.daemon}: {client_pattern(address)}\n".encode()
        with self._locked():
            data = _read(self.path)
            before, block, after = _split_block(data, self.path)
            if address in self._addresses(block):
                return
            if block is None:
                if before and not before.endswith(b"\n"):
                    before += b"\n"
                block = []
            write_atomically(self.path, before + BEGIN + b"".join(block) + line + END + after)

    def delete(self, target: str) -> None:
        address = parse_address(target)
        with self._locked():
            data = _read(self.path)
            before, block, after = _split_block(data, self.path)
            if block is None:
                return
            kept = [line for line in block if self._entry(line) != address]
            if len(kept) != len(block):
                middle = BEGIN + b"".join(kept) + END if kept else b""
                write_atomically(self.path, before + middle + after)

    def check(self, target: str) -> bool:
        address = parse_address(target)
        with self._locked():
            _, block, _ = _split_block(_read(self.path), self.path)
        return address in self._addresses(block)

    def list_targets(self) -> set[str] | None:
        with self._locked():
            _, block, _ = _split_block(_read(self.path), self.path)
        return {str(address) for address in self._addresses(block)}

    def _addresses(self, block: list[bytes] | None) -> set[Address]:
        return {a for a in map(self._entry, block or ()) if a is not None}

    def _entry(self, line: bytes) -> Address | None:
        """The address of a block line `DAEMONS: ADDRESS` with this command's daemons."""
        match = _ENTRY.fullmatch(line.rstrip(b"\r\n"))
        if match is None or _normalise_daemons(match["daemons"]) != self._daemon_key:
            return None
        try:
            return parse_address(match["address"].strip(b"[]").decode())
        except ActionError:
            return None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive flock on the lock file beside the file. flock locks belong to the open
        file description, so this serialises threads of one process as well as processes."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ActionError(f"cannot open lock file {self.lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _normalise_daemons(daemons: bytes) -> bytes:
    return b",".join(re.split(rb"[\s,]+", daemons.strip())).lower()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise ActionError(f"cannot read {path}: {exc.strerror}") from exc


def _lines(data: bytes) -> list[bytes]:
    """Lines with their b'\\n' kept (only b'\\n' ends a line, as for libwrap)."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _split_block(data: bytes, path: Path) -> tuple[bytes, list[bytes] | None, bytes]:
    """(text before the block, the block's lines or None when there is none, text after)."""
    lines = _lines(data)
    begins = [i for i, line in enumerate(lines) if line.startswith(_BEGIN_PREFIX)]
    ends = [i for i, line in enumerate(lines) if line.startswith(_END_PREFIX)]
    if not begins and not ends:
        return data, None, b""
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ActionError(f"{path}: the '# BEGIN arguard' / '# END arguard' block is damaged "
                          "(missing, repeated or out of order); fix it by hand")
    start, end = begins[0], ends[0]
    return (b"".join(lines[:start]), lines[start + 1:end], b"".join(lines[end + 1:]))


def write_atomically(path: Path, data: bytes, default_mode: int = 0o644) -> None:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync of
    the directory. The file's mode and owner are kept (`default_mode` for a new file). The
    caller holds whatever lock protects the file."""
    try:
        current = os.stat(path)
        mode, owner = stat.S_IMODE(current.st_mode), (current.st_uid, current.st_gid)
    except FileNotFoundError:
        mode, owner = default_mode, None
    except OSError as exc:
        raise ActionError(f"cannot stat {path}: {exc.strerror}") from exc
    directory = path.parent
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise ActionError(f"cannot create a temp file in {directory}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            created = os.fstat(handle.fileno())
            if owner is not None and owner != (created.st_uid, created.st_gid):
                os.fchown(handle.fileno(), *owner)
            os.fchmod(handle.fileno(), mode)  # after fchown, which may clear set-id bits
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        _unlink_quietly(temp)
        raise ActionError(f"cannot write {path}: {exc.strerror}") from exc
    _fsync_directory(directory)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
