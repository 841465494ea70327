"""The configuration the daemon runs with, kept in its state directory, so that the operator
is never locked out by a configuration file that is broken on disk.

The daemon writes `config.last-good.json` (mode 0600) at start and after every reload that
succeeded: the text of each file it loaded (the main file, its conf.d fragments), the
[paths] it actually uses (a reload does not move them) and its owner tag. `arguard status`,
`block`, `unblock` and `reload` load the files on disk as before; when those are broken,
they name each problem (file:line) as a warning and use this copy instead — the running
daemon's configuration, or with the daemon down the one it last ran with. `status` says
whether the files on disk differ from it.

The copy is found through the state directory the broken files name: their [paths] table
is read on its own even when the rest of the file does not parse.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import regex

from arguard import modes
from arguard.config import Config, GlobalSettings, Paths, config_from_texts, load_config
from arguard.configfiles import FRAGMENTS_DIR
from arguard.errors import ConfigError

FILE_NAME = "config.last-good.json"
_PATHS_HEADER = regex.compile(r"^\s*\[\s*paths\s*\]\s*(?:#.*)?$")
_ANY_HEADER = regex.compile(r"^\s*\[")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    saved_at: float
    config: str | None
    files: tuple[tuple[Path, str], ...]
    paths: Paths
    owner_tag: str | None


def location(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def save(config: Config, paths: Paths, owner_tag: str | None, now: float) -> None:
    """Keep `config` (as loaded; running with `paths`) as the last good configuration;
    `owner_tag` None (a dry run has no kernel objects) keeps the one saved before."""
    target = location(paths.state_dir)
    if owner_tag is None:
        previous = read(paths.state_dir)
        owner_tag = None if previous is None else previous.owner_tag
    data = {"saved_at": now, "config": None if config.path is None else str(config.path),
            "files": [[str(path), text] for path, text in config.texts],
            "paths": {field.name: str(getattr(paths, field.name)) for field in fields(Paths)},
            "owner_tag": owner_tag}
    temporary = target.with_name(f".{FILE_NAME}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 modes.PRIVATE_FILE)
    try:
        os.fchmod(fd, modes.PRIVATE_FILE)
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)


def read(state_dir: Path) -> Snapshot | None:
    """The saved copy, None when there is none (or it cannot be read)."""
    path = location(state_dir)
    try:
        data = json.loads(path.read_text())
        return Snapshot(
            path=path, saved_at=float(data["saved_at"]), config=data["config"],
            files=tuple((Path(name), text) for name, text in data["files"]),
            paths=Paths(**{name: Path(value) for name, value in data["paths"].items()}),
            owner_tag=data.get("owner_tag"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def config_of(snapshot: Snapshot) -> Config:
    """The saved configuration, with the paths the daemon uses."""
    return replace(config_from_texts(list(snapshot.files)), paths=snapshot.paths)


def changed_files(snapshot: Snapshot) -> list[str]:
    """The files on disk that are not what the copy holds: changed, gone, or a conf.d
    fragment that is new."""
    changed = []
    saved = dict(snapshot.files)
    for path, text in snapshot.files:
        try:
            if path.read_text() != text:
                changed.append(f"{path} (changed)")
        except (OSError, UnicodeDecodeError):
            changed.append(f"{path} (gone or unreadable)")
    if snapshot.config is not None:
        fragments = Path(snapshot.config).parent / FRAGMENTS_DIR
        if fragments.is_dir():
            changed.extend(f"{path} (new)" for path in sorted(fragments.glob("*.toml"))
                           if path.is_file() and path not in saved)
    return changed


def paths_of_broken(config_path: Path) -> Paths:
    """The [paths] a configuration that does not load names (its main file and fragments,
    each [paths] table read on its own if the file around it does not parse); the
    defaults for what none of them sets."""
    base = config_path.parent
    found: dict[str, Any] = {}
    files = [config_path]
    fragments = base / FRAGMENTS_DIR
    if fragments.is_dir():
        files += sorted(p for p in fragments.glob("*.toml") if p.is_file())
    for path in files:
        table = _paths_table(path)
        names = {field.name for field in fields(Paths)}
        found.update({key: value for key, value in table.items()
                      if key in names and isinstance(value, str)})
    return Paths(**{key: base / value for key, value in found.items()})


def _paths_table(path: Path) -> dict:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    try:
        table = tomllib.loads(text).get("paths", {})
        return table if isinstance(table, dict) else {}
    except tomllib.TOMLDecodeError:
        pass
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if _PATHS_HEADER.match(line):
            end = next((i for i in range(start + 1, len(lines))
                        if _ANY_HEADER.match(lines[i])), len(lines))
            try:
                return tomllib.loads("\n".join(lines[start + 1:end]))
            except tomllib.TOMLDecodeError:
                return {}
    return {}


@dataclass(frozen=True)
class OperatorConfig:
    """The configuration an operator command works with, and what it should say about it."""

    config: Config
    #: the problems of the files on disk (empty when they load)
    problems: tuple[str, ...] = ()
    #: the copy used instead of the files on disk, or read to compare with them
    snapshot: Snapshot | None = None

    def warnings(self) -> list[str]:
        if not self.problems:
            return []
        if self.snapshot is not None:
            using = (f"using the configuration the daemon loaded (its copy {self.snapshot.path},"
                     f" saved {_clock(self.snapshot.saved_at)})")
        else:
            using = ("no copy of a configuration the daemon loaded was found; using only the "
                     "paths it names")
        return [*self.problems, f"the configuration on disk is broken; {using}"]

    def on_disk(self) -> dict[str, Any]:
        """What `status` says about the files on disk, compared with the daemon's copy."""
        if self.problems:
            return {"state": "broken", "problems": list(self.problems)}
        if self.snapshot is None:
            return {"state": "unknown"}
        changed = changed_files(self.snapshot)
        return {"state": "differs", "files": changed} if changed else {"state": "same"}


def operator_config(config_path: Path | None) -> OperatorConfig:
    """The files on disk when they load, else the daemon's copy, else only the paths they
    name."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        if config_path is None:
            raise
        problems = tuple(str(problem) for problem in error.problems)
        paths = paths_of_broken(config_path)
        snapshot = read(paths.state_dir)
        if snapshot is not None:
            try:
                return OperatorConfig(config_of(snapshot), problems, snapshot)
            except ConfigError:
                pass   # saved by another version of arguard, which read it differently
        bare = Config(path=config_path, paths=paths, global_=GlobalSettings(), sources=(),
                      commands=MappingProxyType({}), active_responses=())
        return OperatorConfig(bare, problems, None)
    return OperatorConfig(config, (), read(config.paths.state_dir))


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
