"""Known-good copies of watched files (`keep_copies`), for the restore-file action.

One file per content, named by its sha256, in a directory of the state directory that only
root can enter (0700; files 0600). A copy is written atomically (temp file, fsync, rename)
and checked against its name when it is read back, so a copy damaged or changed behind
arguard's back is refused rather than restored. Copies no known-good record names any more
are removed (`prune`).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

_DIGEST = re.compile(r"[0-9a-f]{64}")


class CopyError(Exception):
    """A copy could not be kept or read back."""


class Copies:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _ready(self) -> Path:
        """The directory, created root-only when missing; refused when others could read
        or change it."""
        directory = self.directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(directory)
        except OSError as exc:
            raise CopyError(f"cannot use {directory}: {exc.strerror}") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise CopyError(f"{directory} is not a directory")
        if info.st_uid != os.geteuid():
            raise CopyError(f"{directory} is owned by uid {info.st_uid}, not by arguard's "
                            f"uid {os.geteuid()}")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(directory, 0o700)
        return directory

    def path(self, sha256: str) -> Path:
        if not _DIGEST.fullmatch(sha256):
            raise CopyError(f"not a sha256: {sha256!r}")
        return self.directory / sha256

    def keep(self, sha256: str, content: bytes) -> None:
        """Keep `content` (whose sha256 the caller computed) unless a copy of it exists."""
        if hashlib.sha256(content).hexdigest() != sha256:
            raise CopyError("the content does not match its sha256")
        directory = self._ready()
        target = self.path(sha256)
        if target.exists():
            return
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".copy.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except OSError as exc:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise CopyError(f"cannot write {target}: {exc.strerror}") from exc

    def read(self, sha256: str) -> bytes:
        """The content of the copy of `sha256`, checked."""
        target = self.path(sha256)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise CopyError(f"no known-good copy {target}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            content = handle.read()
        if hashlib.sha256(content).hexdigest() != sha256:
            raise CopyError(f"the known-good copy {target} was changed; not used")
        return content

    def prune(self, wanted: set[str]) -> int:
        """Remove the copies not in `wanted` (and temp files a crash left); how many."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        removed = 0
        for name in names:
            if name in wanted:
                continue
            if _DIGEST.fullmatch(name) or name.startswith(".copy."):
                try:
                    os.unlink(self.directory / name)
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed
