"""Reading Wazuh's XML files, which are not well-formed XML.

Wazuh's own reader accepts several top-level elements per file, bare `&` and `<` inside
patterns (`\\<`, `a&b`) and `--` inside comments. We repair exactly those, wrap the file in a
root element, and parse with expat keeping each element's line number. Repairs never add or
remove newlines, so line numbers stay the file's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import regex

_DECLARATION = regex.compile(r"<\?xml[^>]*\?>")
_COMMENT = regex.compile(r"<!--.*?-->", regex.DOTALL)
_STRAY_AMPERSAND = regex.compile(r"&(?!(?:[A-Za-z]+|#[0-9]+|#x[0-9A-Fa-f]+);)")
# A `<` that starts no tag: escaped for OS_Regex (`\<`), or not followed by a tag name or `/`.
_STRAY_LESS_THAN = regex.compile(r"(?<=\\)<|<(?![A-Za-z_/])")
_ROOT = "wazuh-import-root"


class XmlError(ValueError):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line


@dataclass(slots=True)
class Node:
    tag: str
    attrs: dict[str, str]
    line: int
    text: str = ""   # as written: pattern elements keep their spaces
    children: list["Node"] = field(default_factory=list)

    @property
    def value(self) -> str:
        return self.text.strip()

    def all(self, tag: str) -> list["Node"]:
        return [child for child in self.children if child.tag == tag]


def _blank(match: regex.Match) -> str:
    """The matched text replaced by its newlines only (keeps line numbers)."""
    return "\n" * match.group().count("\n")


def repair(text: str) -> str:
    text = _DECLARATION.sub(_blank, text)
    text = _COMMENT.sub(_blank, text)
    text = _STRAY_AMPERSAND.sub("&amp;", text)
    return _STRAY_LESS_THAN.sub("&lt;", text)


def parse(text: str) -> Node:
    """Parse a Wazuh XML file into a tree under a synthetic root; raises XmlError."""
    root = Node(_ROOT, {}, 1)
    stack = [root]
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = Node(tag, dict(attrs), parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def data(chunk: str) -> None:
        stack[-1].text += chunk

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.buffer_text = True
    try:
        parser.Parse(f"<{_ROOT}>{repair(text)}</{_ROOT}>", True)
    except expat.ExpatError as exc:
        raise XmlError(exc.lineno, f"XML syntax error: {expat.errors.messages[exc.code]}")
    return root.children[0]


def parse_file(path: Path) -> Node:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise XmlError(None, f"cannot read: {exc.strerror}") from None
    return parse(raw.decode("utf-8", errors="replace"))
