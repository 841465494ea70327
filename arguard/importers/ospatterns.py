"""Translating Wazuh's pattern languages (OS_Match, OS_Regex, PCRE2) into arguard patterns.

arguard patterns are `regex`-module patterns, case-insensitive by default (see docs/formats.md).
The translation follows Wazuh's own matcher (src/os_regex in wazuh/wazuh), not its manual:

OS_Match: the pattern is split on `|` into literal alternatives; each may start with `^`
(compare at the start) and end with `$` (compare at the end); an empty alternative matches
every string; a leading `!` negates the whole pattern. Comparison is case-insensitive.

OS_Regex: split on `|` into alternatives, tried one after the other (the first alternative
that matches anywhere wins, even when a later one would match further left). Each may start
with `^` and end with `$`; elsewhere these are literal. Escapes: `\\d` digits, `\\w`
letters/digits/`-`/`@`/`_`, `\\s` the space only, `\\p` Wazuh's punctuation set, `\\t` tab,
`\\.` any character, `\\W` `\\D` `\\S` their complements, and `\\$ \\( \\) \\\\ \\| \\<` literal;
any other escape makes Wazuh reject the pattern. `+` and `*` are quantifiers only right after
an escape and match lazily (Wazuh moves on as soon as the rest of the pattern can continue),
except at the very end of an alternative, where they run to the end of the class. Every other
character, `.` `?` `[` `{` included, is literal. `( … )` capture (one level, no nesting); their
values are named by the decoder's `<order>`. Comparison is case-insensitive.

PCRE2 (`type="pcre2"`) is passed through, case-sensitive as in Wazuh, with its numbered groups
named by `<order>`.

A pattern searched from an offset (a decoder's `offset="after_…"`) is anchored with `\\G`
(the search start) instead of `^`, as Wazuh matches the rest of the line from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import regex

CASE_SENSITIVE = "(?-i)"
_WORD = "A-Za-z0-9@_-"
_PUNCTUATION = r"""!"#$%&'()*+,\-.:;<=>?\[\]{|}"""
_CLASSES = {
    "d": "[0-9]", "D": "[^0-9]",
    "w": f"[{_WORD}]", "W": f"[^{_WORD}]",
    "s": "[ ]", "S": "[^ ]",
    "p": f"[{_PUNCTUATION}]",
    "t": r"\t",
    ".": ".",
}
_LITERAL_ESCAPES = {"$": r"\$", "(": r"\(", ")": r"\)", "\\": r"\\", "|": r"\|", "<": "<"}


_SPECIAL = regex.compile(r"[.^$*+?{}\[\]\\|()]")


def escape(text: str) -> str:
    """A literal in a pattern, escaping only what is special (readable output)."""
    return _SPECIAL.sub(lambda match: "\\" + match.group(), text)


class PatternError(ValueError):
    """The pattern cannot be translated (Wazuh itself would reject it, or arguard lacks it)."""


@dataclass(frozen=True, slots=True)
class Translated:
    pattern: str
    negate: bool = False


def os_match(text: str, *, case_sensitive: bool = False, at_offset: bool = False) -> Translated:
    negate = text.startswith("!")
    if negate:
        text = text[1:]
    start = r"\G" if at_offset else "^"
    parts = []
    for alternative in text.split("|"):
        begin = alternative.startswith("^")
        body = alternative[1:] if begin else alternative
        end = body.endswith("$")
        body = body[:-1] if end else body
        parts.append((start if begin else "") + escape(body) + ("$" if end else ""))
    pattern = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
    return Translated(_case(pattern, case_sensitive), negate)


def os_regex(text: str, group_names: Sequence[str] = (), *, case_sensitive: bool = False,
             at_offset: bool = False, ordered: bool = False) -> Translated:
    """`ordered`: keep Wazuh's alternative order even where Python would pick a match further
    left (matters when captured values or the match end are used, as in decoders)."""
    start = r"\G" if at_offset else "^"
    alternatives = [_regex_alternative(alt, group_names, start) for alt in _split_regex(text)]
    if len(alternatives) == 1:
        pattern = alternatives[0][1]
    elif ordered and not all(anchored for anchored, _ in alternatives):
        pattern = "(?:" + "|".join(body if anchored else f"{start}.*?(?:{body})"
                                   for anchored, body in alternatives) + ")"
    else:
        pattern = "(?:" + "|".join(body for _, body in alternatives) + ")"
    pattern = _case(pattern, case_sensitive)
    _check(pattern)
    return Translated(pattern)


def pcre2(text: str, group_names: Sequence[str] = (), *, at_offset: bool = False) -> Translated:
    """PCRE2 syntax the `regex` module shares; numbered groups get the `<order>` names."""
    pattern = _name_pcre_groups(text, group_names)
    if at_offset and pattern.startswith("^"):
        pattern = r"\G" + pattern[1:]
    pattern = CASE_SENSITIVE + pattern
    _check(pattern)
    return Translated(pattern)


def translate(kind: str, text: str, group_names: Sequence[str] = (), *,
              at_offset: bool = False, ordered: bool = False) -> Translated:
    """`kind` is Wazuh's `type` attribute: osmatch, osregex or pcre2."""
    if kind == "osmatch":
        if group_names:
            raise PatternError("an osmatch pattern cannot capture <order> fields")
        return os_match(text, at_offset=at_offset)
    if kind == "osregex":
        return os_regex(text, group_names, at_offset=at_offset, ordered=ordered)
    if kind == "pcre2":
        return pcre2(text, group_names, at_offset=at_offset)
    raise PatternError(f"unknown pattern type {kind!r} (osmatch, osregex or pcre2)")


def _case(pattern: str, case_sensitive: bool) -> str:
    return CASE_SENSITIVE + pattern if case_sensitive else pattern


def _check(pattern: str) -> None:
    try:
        regex.compile(pattern, regex.IGNORECASE)
    except regex.error as exc:
        raise PatternError(f"the translated pattern {pattern!r} does not compile: {exc}")


def _split_regex(text: str) -> list[str]:
    """Split on unescaped `|`; Wazuh refuses a `|` inside parentheses."""
    parts, current, depth, index = [], [], 0, 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            current.append(text[index:index + 2])
            index += 2
            continue
        if char == "(":
            depth += 1
            if depth > 1:
                raise PatternError("nested parentheses (Wazuh allows one level)")
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise PatternError("unbalanced ')'")
        elif char == "|":
            if depth:
                raise PatternError("'|' inside parentheses (Wazuh splits only whole patterns)")
            parts.append("".join(current))
            current = []
            index += 1
            continue
        current.append(char)
        index += 1
    if depth:
        raise PatternError("unclosed '('")
    parts.append("".join(current))
    return parts


def _regex_alternative(text: str, group_names: Sequence[str], start: str) -> tuple[bool, str]:
    """One OS_Regex alternative → (anchored at its start, regex text)."""
    begin = text.startswith("^")
    if begin:
        text = text[1:]
    end = text.endswith("$") and not _escaped_at(text, len(text) - 1)
    if end:
        text = text[:-1]
    out: list[str] = [start] if begin else []
    group = 0
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text):
                raise PatternError("pattern ends with a lone backslash")
            letter = text[index + 1]
            index += 2
            if letter in _CLASSES:
                out.append(_CLASSES[letter])
                if index < len(text) and text[index] in "+*":
                    rest = text[index + 1:]
                    greedy = rest == "" or rest == ")"
                    out.append(text[index] + ("" if greedy else "?"))
                    index += 1
            elif letter in _LITERAL_ESCAPES:
                out.append(_LITERAL_ESCAPES[letter])
                if index < len(text) and text[index] in "+*":
                    rest = text[index + 1:]
                    out.append(text[index] + ("" if rest in ("", ")") else "?"))
                    index += 1
            else:
                raise PatternError(f"unknown escape \\{letter} (Wazuh rejects the pattern)")
            continue
        if char == "(":
            if group < len(group_names) and group_names[group]:
                out.append(f"(?P<{group_names[group]}>")
            else:
                out.append("(?:")
            group += 1
        elif char == ")":
            out.append(")")
        else:
            out.append(escape(char))
        index += 1
    if end:
        out.append("$")
    return begin, "".join(out)


def _escaped_at(text: str, position: int) -> bool:
    backslashes = 0
    while position - 1 - backslashes >= 0 and text[position - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


_PCRE_GROUP = regex.compile(r"\\.|\[(?:\\.|[^\]])*\]|\((?!\?)|\(\?P?<(?![=!])[^>]*>")


def _name_pcre_groups(text: str, group_names: Sequence[str]) -> str:
    if not group_names:
        return text
    count = 0

    def rename(match: regex.Match) -> str:
        nonlocal count
        token = match.group()
        if not token.startswith("("):
            return token
        name = group_names[count] if count < len(group_names) else None
        count += 1
        if name:
            return f"(?P<{name}>"
        return token if token == "(" else "("

    return _PCRE_GROUP.sub(rename, text)
