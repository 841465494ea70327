"""Compiling the patterns of decoder and rule files.

Patterns use the `regex` module's syntax and are case-insensitive by default, as Wazuh's
OS_Match/OS_Regex are; a pattern starting with `(?-i)` is case-sensitive.

A pattern that the standard `re` module also accepts is compiled with `re`: for the patterns
decoders use it matches the same text (`regex` in its default V0 mode is re-compatible) and
runs 1.5-4x faster, group extraction included. Patterns using `regex`-only syntax (Unicode
properties, a leading `(?-i)`, fuzzy matching, …) are compiled with `regex`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import regex

from arguard.errors import Problem
from arguard.tomlfile import TomlFile


@dataclass(frozen=True, slots=True)
class Condition:
    """A pattern searched in a value; with `negate`, the condition holds when it is absent."""

    pattern: "Pattern"
    negate: bool = False

    def holds(self, value: str | None) -> bool:
        if value is None:
            return self.negate
        return (self.pattern.search(value) is not None) != self.negate


Pattern = Union[re.Pattern, regex.Pattern]


def compile_pattern(text: str) -> Pattern:
    """Compile a pattern; raises regex.error (with .pos) when it is invalid."""
    try:
        return re.compile(text, re.IGNORECASE)
    except (re.error, ValueError, OverflowError):
        return regex.compile(text, regex.IGNORECASE)


def pattern_problem(doc: TomlFile, table: str, index: int, key: str, text: str,
                    exc: regex.error) -> Problem:
    position = f" at position {exc.pos}" if getattr(exc, "pos", None) is not None else ""
    return doc.problem(f"{key}: invalid pattern {text!r}: {exc.msg}{position}", table, index, key)


def parse_condition(doc: TomlFile, table: str, index: int, key: str, value: object,
                    problems: list[Problem]) -> Condition | None:
    """A condition written as a string or as `{ pattern = "…", negate = true }`."""
    negate = False
    if isinstance(value, dict):
        unknown = set(value) - {"pattern", "negate"}
        if unknown or not isinstance(value.get("pattern"), str) or not isinstance(
                value.get("negate", False), bool):
            problems.append(doc.problem(
                f"{key} must be a pattern string or {{ pattern = \"…\", negate = true }}",
                table, index, key))
            return None
        negate = value.get("negate", False)
        value = value["pattern"]
    if not isinstance(value, str):
        problems.append(doc.problem(f"{key} must be a pattern string", table, index, key))
        return None
    try:
        return Condition(compile_pattern(value), negate)
    except regex.error as exc:
        problems.append(pattern_problem(doc, table, index, key, value, exc))
        return None
