"""A file integrity baseline on real files and a real SQLite database in a temp dir."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from arguard.config import Integrity
from arguard.integrity.baseline import Baseline, Root, Roots
from arguard.integrity.copies import Copies
from arguard.model import FileChange
from arguard.store import Store


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_baseline(tmp_path: Path, *entries: Integrity, **options) -> tuple[Baseline, Roots]:
    """A Baseline on `tmp_path/arguard.db` with copies in `tmp_path/copies`; `tmp_path/state`
    is one of arguard's own directories."""
    roots = Roots(entries, never=(tmp_path / "state",))
    store = Store(tmp_path / "arguard.db")
    return Baseline(store, roots, Copies(tmp_path / "copies"), **options), roots


def watching(path: Path, **settings) -> Integrity:
    return Integrity(paths=(str(path),), **settings)


def root_of(roots: Roots, path: Path) -> Root:
    return roots.by_path[os.fsencode(path)]


def scan(baseline: Baseline, root: Root) -> list[FileChange]:
    """Every change one scan reports (the caller's delivery is immediate)."""
    return [change for batch in baseline.scan(root) for change in batch]


def reported(changes: list[FileChange]) -> set[tuple[str, str]]:
    return {(change.event, change.path) for change in changes}
