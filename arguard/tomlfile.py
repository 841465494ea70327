"""Read a TOML file and find the line of a table or key, so that errors can name it.

tomllib gives values but no positions; operators need `file:line`, so we scan the text for
table headers (`[name]`, `[[name]]`) and for `key =` inside a table's span.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import regex

from arguard.errors import ConfigError, Problem

_HEADER = regex.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(?:#.*)?$")
_SYNTAX_POS = regex.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass
class TomlFile:
    path: Path
    text: str
    data: dict
    _headers: list[tuple[int, str, bool]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "TomlFile":
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError([Problem(path, None, f"cannot read: {exc.strerror}")]) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError([Problem(path, line, "not valid UTF-8")]) from None
        return cls.parse(path, text)

    @classmethod
    def parse(cls, path: Path, text: str) -> "TomlFile":
        """The file from its text (a copy kept elsewhere); problems still name `path`."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            pos = _SYNTAX_POS.search(msg)
            line = int(pos.group(1)) if pos else None
            msg = _SYNTAX_POS.sub("", msg).strip()
            raise ConfigError([Problem(path, line, f"TOML syntax error: {msg}")]) from None
        doc = cls(path, text, data)
        doc._index_headers()
        return doc

    @property
    def texts(self) -> tuple[tuple[Path, str], ...]:
        """As ConfigDocument.texts: this one file."""
        return ((self.path, self.text),)

    def _index_headers(self) -> None:
        for number, line in enumerate(self.text.splitlines(), start=1):
            match = _HEADER.match(line)
            if match:
                name = match.group(2).replace('"', "").replace("'", "").replace(" ", "")
                self._headers.append((number, name, match.group(1) == "[["))

    def table_line(self, name: str, index: int | None = None) -> int | None:
        """Line of `[name]`, or of the index-th `[[name]]`."""
        seen = 0
        for number, header, is_array in self._headers:
            if header != name:
                continue
            if index is None and not is_array:
                return number
            if index is not None and is_array:
                if seen == index:
                    return number
                seen += 1
        return None

    def key_line(self, table: str | None, key: str, index: int | None = None) -> int | None:
        """Line where `key = …` is set inside a table (top level when table is None)."""
        start = 0 if table is None else self.table_line(table, index)
        if table is not None and start is None:
            return None
        key_re = regex.compile(r"^\s*" + regex.escape(key) + r"\s*[=.]")
        lines = self.text.splitlines()
        for number in range(start + 1, len(lines) + 1):
            text = lines[number - 1]
            if number != start and _HEADER.match(text) and table is not None:
                # a sub-table such as [command.options] still belongs to the same entry
                header = _HEADER.match(text).group(2)
                if not header.startswith(table + "."):
                    break
            if table is None and _HEADER.match(text):
                break
            if key_re.match(text):
                return number
        return start or None

    def location(self, table: str | None, index: int | None, key: str) -> str:
        """`path:line` of a key, for messages that are not problems (warnings, the log)."""
        line = self.key_line(table, key, index)
        return f"{self.path}:{line}" if line else str(self.path)

    def problem(self, message: str, table: str | None = None, index: int | None = None,
                key: str | None = None) -> Problem:
        if key is not None:
            line = self.key_line(table, key, index)
        elif table is not None:
            line = self.table_line(table, index)
        else:
            line = None
        return Problem(self.path, line, message)
