"""The `hosts-deny` action: deny addresses in a hosts_access(5) file (/etc/hosts.deny).

arguard keeps its entries in one marked block of whole-line comments per instance:

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

Owner: the markers name the instance (arguard.respond.owner). The untagged instance's block
is the one above, as arguard always wrote it; another instance has a block of its own,
`# BEGIN arguard:1a2b3c4d -- … state directory /srv/arguard` … `# END arguard:1a2b3c4d`,
and reads and rewrites only that one, so instances sharing the file keep each other's lines.

Matching is by parsed address, never by substring: lifting 1.2.3.4 leaves 1.2.3.45 alone
(Wazuh's host-deny removes every line containing the text). IPv6 addresses are written in
brackets, as hosts_access(5) requires. Every change rewrites the file atomically (a temp
file in the same directory, fsync, rename: arguard.respond.actions.atomicfile) with its mode
and owner kept, under an exclusive flock on a lock file beside it, so the daemon and the CLI
can edit concurrently; temp files a crash left are removed when the action is built. Lines
outside the block are kept byte for byte; a last line without a newline gets one, since
libwrap ignores an unterminated last line anyway. The block is added at the end of the file
when the first entry is added and removed with the last one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from arguard.respond.actions.atomicfile import remove_leftovers, write_atomically
from arguard.respond.actions.base import PATH, STRING, ActionError, ActionType, Address, \
    Option, parse_address
from arguard.respond.owner import UNTAGGED, Owner, tag_of_label

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

log = logging.getLogger(__name__)

BEGIN = b"# BEGIN arguard -- entries between these lines are managed by arguard\n"
END = b"# END arguard\n"
# A marker line: `# BEGIN LABEL …` or `# END LABEL …`, LABEL naming the owner.
_MARKER = re.compile(rb"# (?P<edge>BEGIN|END) (?P<label>arguard(?::[0-9a-f]{8})?)(?![^\s])")

# A daemon list as hosts_access(5) writes it: names (sshd, in.ftpd, ALL, sshd@host)
# separated by commas and/or blanks; no ':' (the field separator) and no '#'.
_DAEMONS = re.compile(r"[A-Za-z0-9_.@+-]+(?:[ ,]+[A-Za-z0-9_.@+-]+)*")
_ENTRY = re.compile(rb"(?P<daemons>[^:#\n][^:\n]*?)\s*:\s*"
                    rb"(?P<address>\[[0-9A-Fa-f:.]+\]|[0-9.]+)\s*")


def client_pattern(address: Address) -> str:
    """The address as hosts_access(5) matches it: IPv6 in brackets."""
    return f"[{address}]" if address.version == 6 else str(address)


def markers(owner: Owner, state_dir: Path | None = None) -> tuple[bytes, bytes]:
    """The BEGIN and END lines of the owner's block."""
    if not owner.tag:
        return BEGIN, END
    where = f" (state directory {state_dir})" if state_dir is not None \
        and str(state_dir).isprintable() else ""
    label = owner.label.encode()
    return (b"# BEGIN " + label + b" -- entries between these lines are managed by arguard"
            + where.encode(errors="replace") + b"\n", b"# END " + label + b"\n")


class HostsDenyAction:
    def __init__(self, command: Command, owner: Owner = UNTAGGED,
                 state_dir: Path | None = None):
        options = ACTION.options_of(command)
        self.path = Path(options["path"])
        self.daemon: str = options["daemon"]
        self._daemon_key = _normalise_daemons(self.daemon.encode())
        self.lock_path = self.path.parent / f".{self.path.name}.lock"
        self.owner = owner
        self.begin, self.end = markers(owner, state_dir)
        with self._locked():
            for leftover in remove_leftovers(self.path):
                log.warning("removed %s, left by a write that was interrupted", leftover)

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        address = parse_address(target)
        line = f"{self.daemon}: {client_pattern(address)}\n".encode()
        with self._locked():
            data = _read(self.path)
            before, block, after = self._split(data)
            if address in self._addresses(block):
                return
            if block is None:
                if before and not before.endswith(b"\n"):
                    before += b"\n"
                block = []
            write_atomically(self.path,
                             before + self.begin + b"".join(block) + line + self.end + after)

    def delete(self, target: str) -> None:
        address = parse_address(target)
        with self._locked():
            data = _read(self.path)
            before, block, after = self._split(data)
            if block is None:
                return
            kept = [line for line in block if self._entry(line) != address]
            if len(kept) != len(block):
                middle = self.begin + b"".join(kept) + self.end if kept else b""
                write_atomically(self.path, before + middle + after)

    def check(self, target: str) -> bool:
        address = parse_address(target)
        with self._locked():
            _, block, _ = self._split(_read(self.path))
        return address in self._addresses(block)

    def list_targets(self) -> set[str] | None:
        with self._locked():
            _, block, _ = self._split(_read(self.path))
        return {str(address) for address in self._addresses(block)}

    def _split(self, data: bytes) -> tuple[bytes, list[bytes] | None, bytes]:
        """(text before the owner's block, its lines or None when there is none, text
        after)."""
        lines = _lines(data)
        begins, ends = [], []
        for index, line in enumerate(lines):
            marker = _MARKER.match(line)
            if marker is not None and tag_of_label(marker["label"].decode()) == self.owner.tag:
                (begins if marker["edge"] == b"BEGIN" else ends).append(index)
        if not begins and not ends:
            return data, None, b""
        if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
            raise ActionError(f"{self.path}: the '# BEGIN {self.owner.label}' / "
                              f"'# END {self.owner.label}' block is damaged (missing, repeated "
                              "or out of order); fix it by hand")
        start, end = begins[0], ends[0]
        return (b"".join(lines[:start]), lines[start + 1:end], b"".join(lines[end + 1:]))

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


def _daemons_problem(daemons: str) -> str | None:
    return None if _DAEMONS.fullmatch(daemons) else "is not a hosts_access(5) daemon list"


ACTION = ActionType(
    summary="deny the address in a hosts_access(5) file, in a block of lines marked as "
            "arguard's",
    kinds=("ip",),
    build=lambda command, context: HostsDenyAction(command, context.owner,
                                                   context.paths.state_dir),
    options=(Option("path", PATH, "/etc/hosts.deny", "the hosts_access(5) file"),
             Option("daemon", STRING, "ALL", "the daemon list of the entries (e.g. sshd)",
                    check=_daemons_problem)),
)
