"""The main configuration file with the `conf.d/*.toml` fragments beside it, merged into one
document whose problems still name the file and line they come from.

Fragments are read in name order after the main file (importers write theirs there, so their
output loads as it is). Merging:
- `[[source]]`, `[[command]]`, `[[active_response]]` … (arrays of tables) are appended; a
  `[[source]]` identical to one already read is dropped (the same log is followed once), and a
  `[[command]]` whose name an earlier file already uses is an error naming both files;
- tables (`[global]`, `[paths]`, …) are merged key by key; a list value (`white_list`) set
  in several files is joined, any other key set in two files is an error naming both.
Relative paths in a fragment are relative to the main file's directory, like the main file's
own: a fragment is part of that configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arguard.errors import ConfigError, Problem
from arguard.tomlfile import TomlFile

FRAGMENTS_DIR = "conf.d"
_DEDUPLICATED_ARRAYS = {"source"}
_NAMED_ARRAYS = {"command": "name"}


class ConfigDocument:
    """Quacks like a TomlFile (`path`, `data`, `problem`) for the configuration loader."""

    def __init__(self, main: TomlFile, fragments: list[TomlFile]):
        self.path = main.path
        self.fragments = tuple(f.path for f in fragments)
        self.data: dict[str, Any] = {}
        self._main = main
        self._fragments = tuple(fragments)
        self._top: dict[str, TomlFile] = {}
        self._keys: dict[tuple[str, str], TomlFile] = {}
        self._entries: dict[str, list[tuple[TomlFile, int]]] = {}
        problems: list[Problem] = []
        for doc in (main, *fragments):
            self._merge(doc, problems)
        if problems:
            raise ConfigError(problems)

    @property
    def texts(self) -> tuple[tuple[Path, str], ...]:
        """Each file's path and text as read, the main file first."""
        return tuple((doc.path, doc.text) for doc in (self._main, *self._fragments))

    @classmethod
    def load(cls, path: Path) -> "ConfigDocument":
        main = TomlFile.load(path)
        directory = path.parent / FRAGMENTS_DIR
        fragments: list[TomlFile] = []
        problems: list[Problem] = []
        if directory.is_dir():
            for fragment in sorted(p for p in directory.iterdir()
                                   if p.suffix == ".toml" and p.is_file()):
                try:
                    fragments.append(TomlFile.load(fragment))
                except ConfigError as exc:
                    problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        return cls(main, fragments)

    def _merge(self, doc: TomlFile, problems: list[Problem]) -> None:
        for name, value in doc.data.items():
            known = self.data.get(name)
            if _is_array_of_tables(value) and (known is None or _is_array_of_tables(known)):
                self._append(doc, name, value, problems)
            elif isinstance(value, dict) and (known is None or isinstance(known, dict)):
                target = self.data.setdefault(name, {})
                for key, item in value.items():
                    self._set_key(doc, name, target, key, item, problems)
            elif name in self.data:
                problems.append(self._twice(doc, name, None, name))
            else:
                self.data[name] = value
                self._top[name] = doc

    def _append(self, doc: TomlFile, name: str, entries: list[dict],
                problems: list[Problem]) -> None:
        merged = self.data.setdefault(name, [])
        origins = self._entries.setdefault(name, [])
        identity = _NAMED_ARRAYS.get(name)
        for index, entry in enumerate(entries):
            if name in _DEDUPLICATED_ARRAYS and entry in merged:
                continue
            if identity is not None and isinstance(entry.get(identity), str):
                earlier = next((origins[i] for i, e in enumerate(merged)
                                if e.get(identity) == entry[identity]
                                and origins[i][0] is not doc), None)
                if earlier is not None:
                    first, first_index = earlier
                    here = doc.key_line(name, identity, index)
                    there = first.key_line(name, identity, first_index)
                    problems.append(Problem(doc.path, here, (
                        f"{name} {entry[identity]!r} is already defined in "
                        f"{_where(first.path, there)}")))
                    continue
            merged.append(entry)
            origins.append((doc, index))

    def _set_key(self, doc: TomlFile, table: str, target: dict, key: str, value: Any,
                 problems: list[Problem]) -> None:
        if key not in target:
            target[key] = value
            self._keys[(table, key)] = doc
        elif isinstance(value, list) and isinstance(target[key], list):
            target[key] = target[key] + [v for v in value if v not in target[key]]
        else:
            problems.append(self._twice(doc, table, key, f"{table}.{key}"))

    def _twice(self, doc: TomlFile, table: str | None, key: str | None, name: str) -> Problem:
        first = self._keys.get((table, key)) if key is not None else self._top.get(name)
        first = first or self._main
        here = doc.problem("", table if key is not None else None, None, key or name).line
        there = first.problem("", table if key is not None else None, None, key or name).line
        return Problem(doc.path, here, f"{name} is already set in {_where(first.path, there)}")

    def problem(self, message: str, table: str | None = None, index: int | None = None,
                key: str | None = None) -> Problem:
        """The problem, placed in the file (and at the line) that set the table or key."""
        doc: TomlFile = self._main
        if table is not None and index is not None:
            origins = self._entries.get(table, [])
            if index < len(origins):
                doc, index = origins[index]
        elif table is not None:
            found = self._keys.get((table, key)) if key is not None else None
            doc = found or next((d for (t, _), d in self._keys.items() if t == table),
                                self._main)
        elif key is not None:
            doc = self._top.get(key, self._main)
        return doc.problem(message, table, index, key)


def _is_array_of_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)
