"""fail2ban's regex language → arguard decoder patterns (the `regex` module's syntax).

Tags: `<HOST>` (an address or a host name, as fail2ban with `usedns` other than `no`),
`<ADDR>`, `<IP4>`, `<IP6>`, `<DNS>`, `<SUBNET>` and the self-closing `<F-IP4/>` … forms
capture `srcip`; `<CIDR>` captures `cidr`; `<F-ID/>` `fid`, `<F-PORT/>` `fport`.
`<F-NAME>…</F-NAME>` captures a field: USER and ALT_USER → `srcuser` (ALT_USER only fills
it when USER gave nothing, as fail2ban), MLFID → `mlfid` (the key of joined lines), CONTENT
→ `content` (what a prefregex hands to the failregexes), NOFAIL → `helper`, MLFFORGET →
`end`, MLFGAINED → `success` (see arguard/decode/sequences.py), ID → `fid`, PORT → `fport`,
any other → its lower-cased name. Groups written as `(?P<ip4>…)`, `(?P<ip6>…)`,
`(?P<dns>…)` are fail2ban's address groups too and become `srcip`; `(?P<user>…)` becomes
`srcuser`. `(?i)` after the start becomes a local `(?i:…)` as fail2ban does. Patterns stay
case-sensitive, as in fail2ban. Not translatable: `<SKIPLINES>` and patterns that span
lines (`\\n`), which need fail2ban's `maxlines` buffer.

Dates: fail2ban takes the date out of a line before its regexes see it. `date_cut` turns a
filter's `datepattern` (or fail2ban's default date templates) into one pattern whose whole
match is that date, for the decoder's `cut`.
"""

from __future__ import annotations

import re
from _strptime import TimeRE

import regex

_IP4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_IP6 = r"(?:[0-9a-fA-F]{1,4}::?|:){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)"
_DNS = r"[\w\-.^_]*\w"
_IP4_GROUP = rf"(?:::f{{4,6}}:)?(?P<srcip>{_IP4})"
_IP6_GROUP = rf"(?P<srcip>{_IP6})"
_ADDR = rf"\[?(?:{_IP4_GROUP}|{_IP6_GROUP})\]?"
_HOST = rf"(?:{_ADDR}|(?P<srcip>{_DNS}))"
_CIDR = r"(?P<cidr>\d+)"
_SUBNET = rf"\[?(?:{_IP4_GROUP}|{_IP6_GROUP})(?:/{_CIDR})?\]?"
_FIXED_TAGS = {
    "IP4": _IP4_GROUP, "F-IP4/": _IP4_GROUP, "IP6": _IP6_GROUP, "F-IP6/": _IP6_GROUP,
    "ADDR": _ADDR, "F-ADDR/": _ADDR, "CIDR": _CIDR, "F-CIDR/": _CIDR,
    "SUBNET": _SUBNET, "F-SUBNET/": _SUBNET, "DNS": rf"(?P<srcip>{_DNS})",
    "F-DNS/": rf"(?P<srcip>{_DNS})", "F-ID/": r"(?P<fid>\S+)", "F-PORT/": r"(?P<fport>\w+)",
}
FIELD_NAMES = {"USER": "srcuser", "MLFID": "mlfid", "CONTENT": "content", "NOFAIL": "helper",
               "MLFFORGET": "end", "MLFGAINED": "success", "ID": "fid", "PORT": "fport"}
_TAG = re.compile(r"</?[\w\-]+/?>")
_CUSTOM = re.compile(r"^(/?)F-([A-Z0-9_\-]+)$")
_ALT = re.compile(r"^ALT_(.+?)(?:_\d+)?$")
_FAIL2BAN_GROUPS = re.compile(r"\(\?P<(ip4|ip6|dns|user)>")
# fail2ban's names of the groups its tags make, as back-references and conditions use them
_RENAMED = {"ip4": "srcip", "ip6": "srcip", "dns": "srcip", "user": "srcuser",
            "nofail": "helper", "mlfforget": "end", "mlfgained": "success"}
_REFERENCE = re.compile(r"\(\?(P=|\()(" + "|".join(_RENAMED) + r")\)")
_GLOBAL_FLAGS = re.compile(r"(?<!\\)\((?:\?:)?(\(\?[a-z]+)\)")


class Untranslatable(Exception):
    pass


def translate_regex(text: str, use_dns: bool = True) -> str:
    """A fail2ban failregex/prefregex/ignoreregex → an arguard pattern (case-sensitive)."""
    if "\\n" in text or "\n" in text:
        raise Untranslatable("spans several lines (fail2ban's maxlines buffer): arguard "
                             "decodes one line at a time")
    opened: set[str] = set()

    def tag(match: re.Match) -> str:
        whole = match.group()
        name = whole[1:-1]
        if name == "SKIPLINES":
            raise Untranslatable("<SKIPLINES> joins several lines (fail2ban's maxlines "
                                 "buffer): arguard decodes one line at a time")
        if name == "HOST":
            return _HOST if use_dns else _ADDR
        if name in _FIXED_TAGS:
            return _FIXED_TAGS[name]
        custom = _CUSTOM.match(name)
        if custom is None:
            return whole
        closing, tag_name = custom.groups()
        if closing:
            return ")" if tag_name in opened else whole
        opened.add(tag_name)
        alternate = _ALT.match(tag_name)   # ALT_USER: the same group as USER
        return f"(?P<{field_name(alternate.group(1) if alternate else tag_name)}>"

    translated = _TAG.sub(tag, text)
    translated = _FAIL2BAN_GROUPS.sub(
        lambda m: "(?P<srcuser>" if m.group(1) == "user" else "(?P<srcip>", translated)
    translated = _REFERENCE.sub(lambda m: f"(?{m.group(1)}{_RENAMED[m.group(2)]})", translated)
    translated = _GLOBAL_FLAGS.sub(r"\1:", translated)
    prefix = "" if translated.startswith("(?i)") else "(?-i)"
    result = prefix + translated
    try:
        regex.compile(result)
    except regex.error as error:
        raise Untranslatable(f"does not compile ({error})") from None
    return result


def field_name(tag: str) -> str:
    return FIELD_NAMES.get(tag, tag.lower().replace("-", "_"))


def group_names(pattern: str) -> set[str]:
    return set(regex.compile(pattern).groupindex)


def without_groups(pattern: str) -> str:
    """The pattern with its named groups made non-capturing (a fast gate for its decoder)."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


def gate(pattern: str) -> str | None:
    """A prematch for a translated pattern: the same pattern without its groups, in a form
    the standard `re` module compiles, so that a decoder's children are dispatched with one
    regex call (see ChildPrematches); None when the pattern needs its groups
    (back-references, conditions) or `regex`-only syntax."""
    body = without_groups(pattern.removeprefix("(?-i)"))
    anchor = "^" if body.startswith("^") else ""
    text = f"{anchor}(?-i:{body[len(anchor):]})"
    try:
        re.compile(text, re.IGNORECASE)
    except (re.error, ValueError, OverflowError):
        return None
    return text


# --- dates -----------------------------------------------------------------------------------

_STDLIB = TimeRE()
_DIRECTIVES = {key: re.sub(r"\(\?P<\w+>", "(?:", value) for key, value in _STDLIB.items()}
_DIRECTIVES.update({
    "d": r"(?:[1-2]\d|[0 ]?[1-9]|3[0-1])", "m": r"(?:0?[1-9]|1[0-2])", "Y": r"(?:\d{4})",
    "H": r"(?:[0-1]?\d|2[0-3])", "M": r"(?:[0-5]?\d)", "S": r"(?:[0-5]?\d|6[0-1])",
    "k": r" ?(?:[0-2]?\d)", "l": r" ?(?:1?\d)", "Z": r"(?:Z|[A-Z]{3,5})",
    "z": r"(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)",
    "ExZ": r"(?:[A-Z](?:[A-Z]{2,4})?)",
    "Exz": r"(?:(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\d(?::?\d{2})?|[A-Z](?:[A-Z]{2,4})?)",
    "Exd": r"(?:[1-2]\d|0[1-9]|3[0-1])", "Exm": r"(?:0[1-9]|1[0-2])",
    "ExH": r"(?:[0-1]\d|2[0-3])", "Exk": r" ?(?:[0-1]?\d|2[0-3])", "Exl": r" ?(?:1[0-2]|\d)",
    "ExM": r"(?:[0-5]\d)", "ExS": r"(?:[0-5]\d|6[0-1])", "ExY": r"(?:20\d\d)",
    "Exy": r"(?:\d{2})",
})
_DIRECTIVE = re.compile(r"%(%|Ex[A-Za-z]|[A-Za-z])")
_WORD_DIRECTIVES = re.compile(r"(?<!%)%[aAbBpc]")
_NO_BOUND_START = re.compile(r"^\(*(?:\(\?\w+\))?(?:\^|\(*\*\*|\((?:\?:)?\^)")
_NO_BOUND_END = re.compile(r"(?<!\\)(?:\$\)?|\\b|\\s|\*\*\)*)$")
_STARS = re.compile(r"^\(*(?:\(\?\w+\))?\(*\*\*|(?<!\\)\*\*\)*$")
# fail2ban's default date templates, in its order (datedetector.py).
DEFAULT_TEMPLATES = (
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:-|T|  ?)%ExH:?%ExM:?%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
)
_EPOCH = r"\d{10,11}\b(?:\.\d{3,6})?"
_LONG_EPOCH = r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"


def date_cut(datepattern: str | None) -> str | None:
    """The `cut` pattern for a filter's datepattern (None: fail2ban's defaults); None when
    the filter reads no date (`{NONE}`)."""
    lines = [line.strip() for line in (datepattern or "{DEFAULT}").split("\n") if line.strip()]
    alternatives: list[str] = []
    for line in lines:
        for alternative in _template(line):
            if alternative not in alternatives:
                alternatives.append(alternative)
    if not alternatives:
        return None
    return "(?-i)" + "|".join(f"(?:{a})" for a in alternatives)


def _defaults(line_begin_only: bool) -> list[str]:
    """fail2ban's default list: a line-begin anchored copy of each template not anchored
    yet (preferred), then the templates themselves."""
    anchored = [p for p in DEFAULT_TEMPLATES if not p.startswith(("{^LN-BEG}", "^"))]
    result = [_anchored_variant(p) for p in anchored]
    result += [t for p in DEFAULT_TEMPLATES if _is_line_begin(p) or not line_begin_only
               for t in _template(p)]
    return result


def _anchored_variant(pattern: str) -> str:
    if pattern == "EPOCH":
        return _template("{^LN-BEG}EPOCH")[0]
    if pattern == "TAI64N":
        return _template("{^LN-BEG}TAI64N")[0]
    return _template("{^LN-BEG}" + pattern)[0]


def _is_line_begin(pattern: str) -> bool:
    return pattern.startswith(("{^LN-BEG}", "^"))


def _template(line: str) -> list[str]:
    key = line.upper() if "%" not in line else line
    if key in ("{^LN-BEG}", "{DEFAULT}"):
        return _defaults(line_begin_only=key == "{^LN-BEG}")
    if key == "{NONE}":
        return []
    if "{DATE}" in key:
        return [t for p in DEFAULT_TEMPLATES if p not in ("EPOCH", "TAI64N")
                for t in _template(line.replace("{DATE}", _unbound(p)))]
    if key in ("EPOCH", "{^LN-BEG}EPOCH", "^EPOCH", "LEPOCH", "{^LN-BEG}LEPOCH", "^LEPOCH"):
        number = _LONG_EPOCH if "LEPOCH" in key else _EPOCH
        if key in ("EPOCH", "LEPOCH"):
            return [rf"(?:^|(?<=^\[)|(?<=\baudit\())(?:{number})(?=\b|\W|$)"]
        return [rf"(?<=^\W{{0,2}})(?:{number})(?=\b|\W|$)"]
    if key in ("TAI64N", "{^LN-BEG}TAI64N", "^TAI64N"):
        return [r"(?<=^\W{0,2})@[0-9a-f]{24}(?=\b|\W|$)" if key != "TAI64N" else
                r"(?=^|\b|\W)@[0-9a-f]{24}(?=\b|\W|$)"]
    if regex.search(r"(?<!\\)\{L?EPOCH\}", line, regex.I):
        pattern = regex.sub(r"(?<!\\)\{(L?)EPOCH\}",
                            lambda m: f"({_LONG_EPOCH if m.group(1) else _EPOCH})", line,
                            flags=regex.I)
        return [_with_bounds(pattern, begin=True, end=True, line_begin=False)]
    unbound = line.startswith("{UNB}")
    line_begin = not unbound and line.startswith("{^LN-BEG}")
    pattern = line.removeprefix("{UNB}").removeprefix("{^LN-BEG}")
    insensitive = bool(_WORD_DIRECTIVES.search(pattern))
    pattern = _DIRECTIVE.sub(lambda m: "%" if m.group(1) == "%" else
                             _DIRECTIVES.get(m.group(1), m.group()), pattern)
    result = _with_bounds(pattern, begin=not unbound, end=not unbound, line_begin=line_begin)
    return [f"(?i:{result})" if insensitive else result]


def _unbound(pattern: str) -> str:
    return pattern.removeprefix("{UNB}").removeprefix("{^LN-BEG}")


def _with_bounds(pattern: str, begin: bool, end: bool, line_begin: bool) -> str:
    """fail2ban's word/line boundaries around a date regex, then the date (the first
    unnamed group, or the whole pattern) as the whole match: what stands before it becomes a
    look-behind, what follows a look-ahead."""
    bound_begin = begin and not _NO_BOUND_START.search(pattern)
    bound_end = end and not _NO_BOUND_END.search(pattern)
    pattern = _STARS.sub(lambda m: m.group().replace("**", ""), pattern)
    before, date, after = _split_group(pattern)
    if bound_begin and line_begin:
        before = r"^\W{0,2}" + before
    elif bound_begin:
        date = r"(?=^|\b|\W)" + date if not before else date
    if bound_end:
        after += r"(?=\b|\W|$)"
    if before.startswith("^") and not before.strip("^"):
        return "^" + date + (f"(?={after})" if after else "")
    parts = (f"(?<={before})" if before else "") + date + (f"(?={after})" if after else "")
    return parts


def _split_group(pattern: str) -> tuple[str, str, str]:
    """(before, first unnamed group's content, after); the whole pattern when it has none."""
    depth, index, start = 0, 0, None
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[index + 1:index + 2] == "]":
                index += 1
        elif char == "(":
            if start is None and pattern[index + 1:index + 2] != "?":
                start, depth = index, 0
            if start is not None:
                depth += 1
        elif char == ")" and start is not None:
            depth -= 1
            if depth == 0:
                return pattern[:start], pattern[start + 1:index], pattern[index + 1:]
        index += 1
    if pattern.startswith("^"):
        return "^", pattern[1:], ""
    return "", pattern, ""
