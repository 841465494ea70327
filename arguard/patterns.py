"""Compiling the patterns of decoder and rule files.

Patterns use the `regex` module's syntax and are case-insensitive by default, as Wazuh's
OS_Match/OS_Regex are; a pattern starting with `(?-i)` is case-sensitive.

A pattern that the standard `re` module also accepts is compiled with `re`: for the patterns
decoders use it matches the same text (`regex` in its default V0 mode is re-compatible) and
runs 1.5-4x faster, group extraction included. Patterns using `regex`-only syntax (Unicode
properties, a leading `(?-i)`, fuzzy matching, …) are compiled with `regex`.

No pattern can stall the daemon. A pattern whose structure can backtrack exponentially on
some input — a quantifier around another unbounded one, or around alternatives that can
start with the same character (`(a+)+`, `(a|aa)*c$`) — is compiled with `regex` and every
match runs with a time limit (MATCH_TIME_LIMIT): a match that hits it counts as no match, is
counted on the pattern and logged once with its file and line. `check-config` warns about
such patterns (`risk`). Patterns without that structure backtrack at most polynomially, and
`re` runs them in milliseconds even on the longest line arguard reads.
"""

from __future__ import annotations

import logging
import re
import weakref
from dataclasses import dataclass
from typing import Callable, Union

import regex

from re import _constants as _sre, _parser as _sre_parse

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


log = logging.getLogger(__name__)

#: seconds one match of a risky pattern may take
MATCH_TIME_LIMIT = 0.05


class GuardedPattern:
    """A risky pattern: `regex` with a time limit on every match. Has the pattern methods the
    decoders and rules use; a match that runs out of time gives None."""

    def __init__(self, compiled: "regex.Pattern", risk: str, where: str | None):
        self.compiled = compiled
        self.pattern = compiled.pattern
        self.flags = compiled.flags
        self.groupindex = compiled.groupindex
        self.risk = risk
        self.where = where
        #: matches that ran out of time
        self.timeouts = 0
        _GUARDED.add(self)

    def search(self, string: str, pos: int = 0):
        try:
            return self.compiled.search(string, pos, timeout=MATCH_TIME_LIMIT)
        except TimeoutError:
            return self._timed_out()

    def match(self, string: str, pos: int = 0):
        try:
            return self.compiled.match(string, pos, timeout=MATCH_TIME_LIMIT)
        except TimeoutError:
            return self._timed_out()

    def _timed_out(self) -> None:
        self.timeouts += 1
        if self.timeouts == 1:
            log.warning("%s: pattern %r ran out of its %.0f ms on a line (%s); it counts as "
                        "no match there, and this is logged once", self.where or "pattern",
                        self.pattern, MATCH_TIME_LIMIT * 1000, self.risk)
        return None


Pattern = Union[re.Pattern, regex.Pattern, GuardedPattern]

_GUARDED: "weakref.WeakSet[GuardedPattern]" = weakref.WeakSet()


def guarded_patterns() -> list[GuardedPattern]:
    """The risky patterns of the rulesets loaded in this process, by file and line."""
    return sorted(_GUARDED, key=lambda pattern: pattern.where or "")


def compile_pattern(text: str, where: Callable[[], str] | None = None) -> Pattern:
    """Compile a pattern; raises regex.error (with .pos) when it is invalid. `where` gives the
    file and line that name a risky pattern in the log (asked only for those)."""
    try:
        compiled = re.compile(text, re.IGNORECASE)
    except (re.error, ValueError, OverflowError):
        compiled = None
    risk = backtracking_risk(text if compiled is not None else _as_re_syntax(text))
    if risk is None:
        return compiled if compiled is not None else regex.compile(text, regex.IGNORECASE)
    return GuardedPattern(regex.compile(text, regex.IGNORECASE), risk,
                          where() if where else None)


_REGEX_ONLY = re.compile(r"\\.|\(\?P<(\w+)>")


def _as_re_syntax(text: str) -> str:
    """The pattern without what only `regex` reads but does not change how it backtracks:
    `\\G` (the Wazuh importer's offset anchor), a group name's second use (regex allows it)
    and a leading `(?-i)`."""
    text = text.removeprefix("(?-i)")
    names: set[str] = set()

    def rewrite(match: re.Match) -> str:
        if match.group() == "\\G":
            return ""
        name = match.group(1)
        if name is None:
            return match.group()
        if name in names:
            return "(?:"
        names.add(name)
        return match.group()

    return _REGEX_ONLY.sub(rewrite, text)


def backtracking_risk(text: str) -> str | None:
    """Why a pattern (that `re` reads) may backtrack exponentially, or None."""
    try:
        parsed = _sre_parse.parse(text, re.IGNORECASE)
    except (re.error, ValueError, OverflowError, RecursionError):
        return "its structure cannot be checked"
    items = list(parsed)
    found = _risk_in(items)
    if found:
        return found
    anchored = bool(items) and items[0] == (_sre.AT, _sre.AT_BEGINNING)
    if _longest_chain(items) + (0 if anchored else 1) >= 3:
        return "runs that can take the same text one after another (n^3 on a long line)"
    return None


def _longest_chain(items: list) -> int:
    """The most unbounded runs in a row whose ends a match may have to try one by one — a
    run whose next character it could also take — each able to take the text the previous
    one took (nothing between them that the previous cannot take): a failing match tries
    every split of the text between them, n^k for k of them."""
    longest = 0
    nothing = (True, frozenset())

    def visit(sequence: list, chain, after):
        """The chain (characters of its last run, runs in it) after `sequence`, None when a
        character the last run cannot take ended it; `after`: the characters that may
        follow the sequence."""
        nonlocal longest
        for index, (op, value) in enumerate(sequence):
            rest, rest_nullable = _first(sequence[index + 1:])
            follow = _union(rest, after) if rest_nullable else rest
            if op in _ZERO_WIDTH:
                continue
            if op == _sre.SUBPATTERN:
                chain = visit(list(value[-1]), chain, follow)
            elif op == _sre.BRANCH:
                chain = _merge(*(visit(list(branch), chain, follow) for branch in value[1]))
            elif op in _REPEATS and _unbounded(value) and _overlaps(
                    chars := _chars_anywhere(list(value[2])), follow):
                continues = chain is not None and _overlaps(chain[0], chars)
                run = (chars, chain[1] + 1 if continues else 1)
                longest = max(longest, run[1])
                chain = run if value[0] >= 1 else _merge(chain, run)
            elif op in _REPEATS or op == getattr(_sre, "POSSESSIVE_REPEAT", None):
                through = visit(list(value[2]), chain, follow)
                chain = through if value[0] >= 1 else _merge(chain, through)
            elif chain is not None and not _overlaps(chain[0], _chars((op, value))):
                chain = None  # a character the run cannot take: the chain ends here
        return chain

    visit(items, None, nothing)
    return longest


def _overlaps(a, b) -> bool:
    """Whether two character sets share a character; None (unknown) shares with all."""
    return a is None or b is None or _sets_overlap(a, b)


def _first(items: list):
    """The characters the match of `items` can start with (None: unknown), and whether it
    can be empty."""
    total = (True, frozenset())
    for op, value in items:
        if op in _ZERO_WIDTH:
            continue
        if op == _sre.SUBPATTERN:
            chars, nullable = _first(list(value[-1]))
        elif op == _sre.BRANCH:
            firsts = [_first(list(branch)) for branch in value[1]]
            chars = _merge_chars(chars for chars, _ in firsts)
            nullable = any(nullable for _, nullable in firsts)
        elif op in _REPEATS or op == getattr(_sre, "POSSESSIVE_REPEAT", None):
            chars, nullable = _first(list(value[2]))
            nullable = nullable or value[0] == 0
        else:
            chars, nullable = _chars((op, value)), False
        total = _union(total, chars)
        if total is None or not nullable:
            return total, False
    return total, True


def _merge_chars(sets):
    total = (True, frozenset())
    for chars in sets:
        total = _union(total, chars)
    return total


def _merge(*chains):
    """The chain after one of several ways through the pattern: the longest, taking the
    characters of all."""
    present = [chain for chain in chains if chain is not None]
    if not present:
        return None
    return (_merge_chars(chain[0] for chain in present), max(chain[1] for chain in present))


_BOUNDED = 10  # a repeat of at most this many is not a risk
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT)


def _risk_in(items: list) -> str | None:
    for op, value in items:
        if op in _REPEATS or op == getattr(_sre, "POSSESSIVE_REPEAT", None):
            low, high, body = value
            body = list(body)
            if op in _REPEATS and _unbounded(value):
                items = _unwrapped(body)
                if _first_unbounded_repeat(items) is not None and not _separated(items):
                    return "a quantifier around another unbounded quantifier"
                if any(op == _sre.BRANCH and _overlap([list(b) for b in branches[1]])
                       for op, branches in items):
                    return "a quantifier around alternatives that can start alike"
            found = _risk_in(body)
            if found:
                return found
        elif op == _sre.SUBPATTERN:
            found = _risk_in(list(value[-1]))
            if found:
                return found
        elif op == _sre.BRANCH:
            for branch in value[1]:
                found = _risk_in(list(branch))
                if found:
                    return found
        # atomic groups do not backtrack; assertions (ASSERT, ASSERT_NOT) are matched on
        # their own, without backtracking into the pattern around them: neither is a risk
    return None


def _unbounded(repeat) -> bool:
    low, high, body = repeat
    return high == _sre.MAXREPEAT or high > _BOUNDED


def _unwrapped(body: list) -> list:
    """The items of a repeated body, through the groups that hold all of it."""
    items = body
    while len(items) == 1 and items[0][0] == _sre.SUBPATTERN:
        items = list(items[0][1][-1])
    return items


def _first_unbounded_repeat(items: list):
    """An unbounded repeat anywhere in `items` outside assertions, or None."""
    for op, value in items:
        if op in _REPEATS:
            if _unbounded(value):
                return value
            found = _first_unbounded_repeat(list(value[2]))
        elif op == _sre.SUBPATTERN:
            found = _first_unbounded_repeat(list(value[-1]))
        elif op == _sre.BRANCH:
            found = next((repeat for branch in value[1]
                          if (repeat := _first_unbounded_repeat(list(branch))) is not None),
                         None)
        else:
            continue
        if found is not None:
            return found
    return None


def _separated(items: list) -> bool:
    """Whether each turn of an outer repeat over `items` has one extent, so the match is
    linear: a single character in it that nothing else in it can take marks every turn
    (`(\\d+\\.)+`, `(?: [a-z]{1,4}(?:=\\S+)?)*`), or every run in it stops at a character
    the next item needs and the run cannot take (`(?:\\w+\\s+)*`, the unrolled loop
    `(?:\\\\.[^"\\\\]*)*`)."""
    items = [item for item in items if item[0] not in _ZERO_WIDTH]
    for index, item in enumerate(items):
        rest = items[:index] + items[index + 1:]
        own = _chars(item)
        if own is None and item[0] in _REPEATS and item[1][0] >= 1 and _min_width(rest):
            own = _run_chars(item[1])  # a run marks a turn when the rest is never empty
        rest_chars = _chars_anywhere(rest)
        if own is not None and rest_chars is not None and not _sets_overlap(own, rest_chars):
            return True
    for index, (op, value) in enumerate(items):
        if op in _REPEATS and _unbounded(value):
            run = _run_chars(value)
            following = items[(index + 1) % len(items)]
            needed = _chars(following)
            if needed is None and following[0] in _REPEATS and following[1][0] >= 1:
                needed = _run_chars(following[1])
            if run is None or needed is None or _sets_overlap(run, needed):
                return False
        elif _chars(items[index]) is None:
            return False
    return True


_ZERO_WIDTH = (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT)


def _min_width(items: list) -> int:
    """The fewest characters `items` can match."""
    width = 0
    for op, value in items:
        if op in _REPEATS or op == getattr(_sre, "POSSESSIVE_REPEAT", None):
            width += value[0] * _min_width(list(value[2]))
        elif op == _sre.SUBPATTERN:
            width += _min_width(list(value[-1]))
        elif op == _sre.BRANCH:
            width += min(_min_width(list(branch)) for branch in value[1])
        elif op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.IN, _sre.ANY):
            width += 1
    return width


def _run_chars(repeat):
    """The characters a repeat of one character class takes, or None."""
    body = list(repeat[2])
    return _chars(body[0]) if len(body) == 1 else None


def _chars_anywhere(items: list):
    """Every character some item in `items` can take, or None when unknown."""
    total = (True, frozenset())
    for op, value in items:
        if op in _ZERO_WIDTH:
            continue
        if op in _REPEATS or op == getattr(_sre, "POSSESSIVE_REPEAT", None):
            chars = _chars_anywhere(list(value[2]))
        elif op == _sre.SUBPATTERN:
            chars = _chars_anywhere(list(value[-1]))
        elif op == _sre.BRANCH:
            chars = (True, frozenset())
            for branch in value[1]:
                chars = _union(chars, _chars_anywhere(list(branch)))
        else:
            chars = _chars((op, value))
        total = _union(total, chars)
        if total is None:
            return None
    return total


def _union(a, b):
    if a is None or b is None:
        return None
    if a[0] is True and b[0] is True:
        return (True, a[1] | b[1])
    if a[0] is True:
        return ("not", b[1] - a[1])
    if b[0] is True:
        return ("not", a[1] - b[1])
    return ("not", a[1] & b[1])


_ANY = ("not", frozenset())


def _cased(char: str) -> set[str]:
    return {char, char.lower(), char.upper()}


def _chars(item):
    """The characters one item can match: (True, set) or ("not", set); None: unknown."""
    op, value = item
    if op == _sre.LITERAL:
        return (True, frozenset(_cased(chr(value))))
    if op == _sre.NOT_LITERAL:
        return ("not", frozenset(_cased(chr(value))))
    if op == _sre.ANY:
        return _ANY
    if op != _sre.IN:
        return None
    negate = False
    chars = (True, frozenset())
    for kind, member in value:
        if kind == _sre.NEGATE:
            negate = True
        elif kind == _sre.LITERAL:
            chars = _union(chars, (True, frozenset(_cased(chr(member)))))
        elif kind == _sre.RANGE and member[1] - member[0] < 256:
            chars = _union(chars, (True, frozenset(
                char for code in range(member[0], member[1] + 1) for char in _cased(chr(code)))))
        elif kind == _sre.CATEGORY and member in _CATEGORY_CHARS:
            chars = _union(chars, _CATEGORY_CHARS[member])
        else:
            return None
    if not negate:
        return chars
    return ("not", chars[1]) if chars[0] is True else None


_SPACE = frozenset(" \t\n\r\f\v")
_DIGITS = frozenset("0123456789")
_ASCII_NON_WORD = frozenset(chr(code) for code in range(128)
                            if not (chr(code).isalnum() or chr(code) == "_"))
#: \d as its ASCII digits, the others as the complement of an ASCII set: wider than
#: Unicode's classes where they differ, so overlaps are found, not missed
_CATEGORY_CHARS = {
    _sre.CATEGORY_DIGIT: (True, _DIGITS),
    _sre.CATEGORY_NOT_DIGIT: ("not", _DIGITS),
    _sre.CATEGORY_SPACE: (True, _SPACE),
    _sre.CATEGORY_NOT_SPACE: ("not", _SPACE),
    _sre.CATEGORY_WORD: ("not", _ASCII_NON_WORD),
    _sre.CATEGORY_NOT_WORD: ("not", frozenset(chr(code) for code in range(128))
                             - _ASCII_NON_WORD),
}


def _sets_overlap(a, b) -> bool:
    if a[0] is True and b[0] is True:
        return bool(a[1] & b[1])
    if a[0] is True:
        return bool(a[1] - b[1])
    if b[0] is True:
        return bool(b[1] - a[1])
    return True


def _overlap(branches: list[list]) -> bool:
    """Whether two alternatives can start with the same character (or one can be empty)."""
    firsts = []
    for branch in branches:
        first = _chars(branch[0]) if branch else None
        if first is None:
            return True
        firsts.append(first)
    return any(_sets_overlap(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1:])


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
        return Condition(compile_pattern(value, lambda: doc.location(table, index, key)), negate)
    except regex.error as exc:
        problems.append(pattern_problem(doc, table, index, key, value, exc))
        return None
