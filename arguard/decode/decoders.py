"""Decoder files: loading, validation, and matching a predecoded line against them.

Semantics (Wazuh's): root decoders are tried in load order, and the first root whose
`program_name` and `prematch` match takes the line. Its children are then tried in load order;
the first child whose `prematch` and `regex` both match wins, and later children with the same
name as the winner (siblings) add their fields too. The event's decoder is the root's name.

An ambiguous address is no address: a decoder with `ambiguous` (a pattern describing a line in
which attacker text could stand where the address is read, e.g. two `, client: ADDR, server:`
items in an nginx error line) takes a line whose prematch it matches and in which that pattern
is found, but decodes no address or port from it (`Decoded.ambiguous`, counted by the daemon
and logtest).
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import regex

from arguard.errors import ConfigError, Problem
from arguard.decode.jsonlog import ARRAY_STRUCTURES, NULL_FIELDS, JsonDecoding
from arguard.decode.sequences import SequenceMemory
from arguard.model import Line, Predecoded
from arguard.patterns import Pattern, compile_pattern, pattern_problem
from arguard.tomlfile import TomlFile

_KEYS = {"name", "parent", "program_name", "prematch", "prematch_offset", "regex",
         "regex_offset", "type", "ambiguous", "input", "cut", "children_field", "join",
         "json_offset", "json_null_field", "json_array_structure"}
_BOOL_KEYS = {"remember_source", "recall_source", "require_child", "json"}
_TABLE_KEYS = {"json_fields", "field_names"}
_JSON_OFFSETS = ("after_parent", "after_prematch")
# `fts` names Wazuh gives other names (`user` is dstuser)
_FTS_ALIASES = {"user": "dstuser", "data": "extra_data"}
_ROOT_ONLY_KEYS = ("priority", "input", "cut", "children_field", "join", "require_child")
_INPUTS = ("message", "line")
_REGEX_OFFSETS = ("after_parent", "after_prematch", "after_regex")
_ADDRESS_FIELDS = ("srcip", "dstip")
# What an ambiguous line does not get: the addresses and the ports that go with them.
_WITHHELD_WHEN_AMBIGUOUS = ("srcip", "dstip", "srcport", "dstport")
_PROGRAM_CACHE_LIMIT = 4096
# Recent decoding results kept (bounded: messages longer than the limit are not kept).
_RECENT_LIMIT = 4096
_RECENT_MESSAGE_LIMIT = 512
_NOT_DECODED: tuple = ()


@dataclass(slots=True)
class Decoder:
    name: str
    file: Path
    line: int | None
    parent: str | None = None
    program_name: Pattern | None = None
    prematch: Pattern | None = None
    prematch_after_parent: bool = False
    regex: Pattern | None = None
    regex_offset: str | None = None
    type: str | None = None
    ambiguous: Pattern | None = None
    remember_source: bool = False
    recall_source: bool = False
    priority: int = 0
    reads_line: bool = False
    cut: Pattern | None = None
    children_field: str | None = None
    join: str | None = None
    require_child: bool = False
    #: the fields of the first-time-seen key (`if_fts` rules)
    fts: tuple[str, ...] = ()
    #: Wazuh's JSON_Decoder (arguard/decode/jsonlog.py), and where its text starts
    json: JsonDecoding | None = None
    json_offset: str | None = None
    #: regex group → field name, for names that are not identifiers (`http.method`)
    field_names: dict[str, str] | None = None
    #: it works on other text than the message (`input`, `cut`); kept as a field, not a
    #: property, because every line asks it of every candidate root
    reshapes: bool = False
    children: list["Decoder"] = field(default_factory=list)


@dataclass(slots=True)
class Decoded:
    decoder: str
    child: str | None
    category: str
    fields: dict[str, str]
    ambiguous: bool = False
    fts: tuple[str, ...] = ()


_CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def normalise_address(value: str) -> str:
    """Canonical text of an IP literal (`::ffff:a.b.c.d` → `a.b.c.d`); other text unchanged."""
    if _CANONICAL_IPV4.fullmatch(value):
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _capture(pattern: Pattern, message: str, start: int, fields: dict[str, str],
             names: dict[str, str] | None = None) -> int | None:
    """Search from `start`; on a match add its non-empty named groups (renamed by `names`)
    and return its end."""
    match = pattern.search(message, start)
    if match is None:
        return None
    groups = match.groupdict()
    if names is not None:
        groups = {names.get(name, name): value for name, value in groups.items()}
    for name, value in groups.items():
        if value:
            fields[name] = normalise_address(value) if name in _ADDRESS_FIELDS else value
    return match.end()


def _apply_json(decoder: Decoder, message: str, parent_end: int, prematch_end: int,
                fields: dict[str, str]) -> tuple[int | None, bool]:
    """A JSON decoder on the message (or after its parent / its prematch): (end of the JSON
    object or None when there is none, whether its address was ambiguous)."""
    offset = decoder.json_offset
    start = parent_end if offset == "after_parent" else \
        prematch_end if offset == "after_prematch" else 0
    decoded = decoder.json.decode(message, start)
    if decoded is None:
        return None, False
    found, end, ambiguous = decoded
    for name, value in found.items():
        fields[name] = normalise_address(value) if name in _ADDRESS_FIELDS else value
    return end, ambiguous


class SourceMemory:
    """The last source address each logging process announced (`remember_source`), for that
    process's later messages that name none (`recall_source`): sshd says "Connection from
    ADDR port N" once (LogLevel VERBOSE) and then e.g. "fatal: Unable to negotiate a key
    exchange method [preauth]". Keyed by (host, program, pid), so only the same process's
    own earlier line is used; a newer announcement for the pid replaces the older one; entries
    expire after MAX_AGE seconds of line time (longer than any pre-auth connection lives) and
    at most MAX_ENTRIES are kept (least recently announced dropped first)."""

    MAX_ENTRIES = 8192
    MAX_AGE = 600.0

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, tuple[str, float | None]] = OrderedDict()
        #: the lines of `join` decoders' sequences (arguard/decode/sequences.py)
        self.sequences = SequenceMemory()

    def remember(self, key: tuple, address: str, when: float | None) -> None:
        entries = self._entries
        entries[key] = (address, when)
        entries.move_to_end(key)
        if len(entries) > self.MAX_ENTRIES:
            entries.popitem(last=False)

    def recall(self, key: tuple, when: float | None) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        address, seen = entry
        if when is not None and seen is not None and not 0 <= when - seen <= self.MAX_AGE:
            return None
        return address


def _process_key(pre: Predecoded) -> tuple | None:
    if pre.pid is None or pre.program_name is None:
        return None
    return (pre.hostname, pre.program_name, pre.pid)


def whole_line(pre: Predecoded, line: Line | None) -> str:
    """The line as read, for decoders with `input = "line"`: a journal entry (whose fields
    the source split) as journalctl's short format shows it, `HOST PROGRAM[PID]: MESSAGE`."""
    if line is None:
        return pre.message
    if line.program_name is None:
        return line.text
    process = line.program_name + (f"[{line.pid}]" if line.pid else "")
    return f"{line.hostname} {process}: {line.text}" if line.hostname else \
        f"{process}: {line.text}"


class DecoderSet:
    def __init__(self, decoders: list[Decoder]):
        # higher `priority` first; load order among equal priorities (sorted() is stable)
        self.roots = sorted((d for d in decoders if d.parent is None),
                            key=lambda d: -d.priority)
        self._reads_lines = any(root.reads_line for root in self.roots)
        self._without_program = [d for d in self.roots if d.program_name is None]
        self._by_program: dict[str, list[Decoder]] = {}
        #: per root decoder (by identity), its children's prematch dispatch
        self._prematches = {id(root): ChildPrematches(root) for root in self.roots}
        self._recent: dict[tuple[str | None, str], tuple] = {}

    def __len__(self) -> int:
        return len(self.roots) + sum(len(r.children) for r in self.roots)

    def _candidates(self, program: str | None) -> list[Decoder]:
        if program is None:
            return self._without_program
        found = self._by_program.get(program)
        if found is None:
            found = [d for d in self.roots
                     if d.program_name is None or d.program_name.search(program)]
            if len(self._by_program) >= _PROGRAM_CACHE_LIMIT:
                self._by_program.clear()
            self._by_program[program] = found
        return found

    def decode(self, pre: Predecoded, memory: SourceMemory | None = None,
               line: Line | None = None, recent: bool = True) -> Decoded | None:
        """`memory`: the session's SourceMemory, for decoders that remember or recall a
        process's source address or join lines (None: those options are not applied);
        `line`: the line as read, for decoders with `input = "line"`; `recent`: reuse the
        result of a recent equal text (False: decode every line, the reference path)."""
        program, message = pre.program_name, pre.message
        whole = whole_line(pre, line) if self._reads_lines else None
        text = message if whole is None else whole
        if recent and len(text) <= _RECENT_MESSAGE_LIMIT:
            key = (program, text)
            found = self._recent.get(key)
            if found is None:
                found = self._decode_text(program, message, whole)
                if len(self._recent) >= _RECENT_LIMIT:
                    self._recent.clear()
                self._recent[key] = found
        else:
            found = self._decode_text(program, message, whole)
        if found is _NOT_DECODED:
            return None
        root, child, category, fields, ambiguous = found
        fields = dict(fields)
        fts = child.fts if child is not None else root.fts
        if memory is not None and (root.recall_source or
                                   (child is not None and child.remember_source)):
            # an ambiguous line has no address of its own to remember; the one its process
            # announced earlier is still that process's peer, so it may be recalled
            self._use_memory(memory, pre, root, child, fields)
        if memory is not None and root.join is not None and root.join in fields:
            memory.sequences.join((root.name, fields[root.join]), fields, pre.time)
        return Decoded(root.name, child.name if child else None, category, fields, ambiguous,
                       fts)

    def _decode_text(self, program: str | None, message: str, whole: str | None) -> tuple:
        """(root, child, category, fields, ambiguous) of the decoders alone — a function of
        the program name and the text (message, or whole line for `input = "line"`
        decoders) only, so recent results are reused (cron, systemd and PAM session lines
        repeat word for word) — or _NOT_DECODED."""
        views: dict[tuple[str, bool], str] | None = None
        for root in self._candidates(program):
            text = message
            if root.reshapes:
                if views is None:
                    views = {}
                text = _view(root, message, whole, views)
            parent_end = 0
            if root.prematch is not None:
                match = root.prematch.search(text)
                if match is None:
                    continue
                parent_end = match.end()
            fields: dict[str, str] = {}
            if root.regex is not None:
                start = parent_end if root.regex_offset == "after_prematch" else 0
                if _capture(root.regex, text, start, fields, root.field_names) is None and \
                        root.children_field is not None:
                    continue
            json_ambiguous = False
            if root.json is not None:
                _, json_ambiguous = _apply_json(root, text, parent_end, parent_end, fields)
            if root.children_field is not None:
                content = fields.pop(root.children_field, "")
                child, ambiguous = self._decode_children(root, content, 0, fields, program)
            else:
                child, ambiguous = self._decode_children(root, text, parent_end, fields,
                                                         program)
            ambiguous = ambiguous or json_ambiguous
            if child is None and root.require_child:
                continue
            if root.ambiguous is not None and root.ambiguous.search(text):
                ambiguous = True
            if ambiguous:
                for name in _WITHHELD_WHEN_AMBIGUOUS:
                    fields.pop(name, None)
            category = (child.type if child is not None and child.type else root.type) or "syslog"
            return root, child, category, fields, ambiguous
        return _NOT_DECODED

    @staticmethod
    def _use_memory(memory: SourceMemory, pre: Predecoded, root: Decoder,
                    child: Decoder | None, fields: dict[str, str]) -> None:
        key = _process_key(pre)
        if key is None:
            return
        address = fields.get("srcip")
        if address is not None:
            if child is not None and child.remember_source:
                memory.remember(key, address, pre.time)
        elif root.recall_source:
            recalled = memory.recall(key, pre.time)
            if recalled is not None:
                fields["srcip"] = recalled

    def _decode_children(self, root: Decoder, message: str, parent_end: int,
                         fields: dict[str, str], program: str | None
                         ) -> tuple[Decoder | None, bool]:
        """The child that takes the message (adding its fields), and whether the message is
        ambiguous for it. A child with its own `program_name` takes only lines of a program
        it matches."""
        children = root.children
        prematches = self._prematches[id(root)]
        index = 0
        while True:
            found = prematches.first(message, parent_end, index)
            if found is None:
                return None, False
            position, prematch_end = found
            child = children[position]
            if not _program_matches(child, program):
                index = position + 1
                continue
            child_fields: dict[str, str] = {}
            json_ambiguous = False
            if child.json is not None:
                end, json_ambiguous = _apply_json(child, message, parent_end, prematch_end,
                                                  child_fields)
            else:
                end = _apply_regex(child, message, parent_end, prematch_end, None, child_fields)
            if json_ambiguous or (child.ambiguous is not None and
                                  child.ambiguous.search(message)):
                fields.update(child_fields)
                return child, True
            if end is None:
                index = position + 1
                continue
            fields.update(child_fields)
            previous_end = end
            for sibling in prematches.siblings[position]:
                if not _program_matches(sibling, program):
                    continue
                sibling_fields: dict[str, str] = {}
                sibling_end = _apply(sibling, message, parent_end, previous_end, sibling_fields)
                if sibling_end is not None:
                    fields.update(sibling_fields)
                    previous_end = sibling_end
            return child, False


def _program_matches(decoder: Decoder, program: str | None) -> bool:
    return decoder.program_name is None or (program is not None and
                                            decoder.program_name.search(program) is not None)


def _view(root: Decoder, message: str, whole: str | None,
          views: dict[tuple[str, bool], str]) -> str:
    """The text a root decoder works on: the message or the whole line (`input`), with the
    first match of `cut` removed. Shared by the roots with the same input and cut."""
    text = whole if root.reads_line and whole is not None else message
    if root.cut is None:
        return text
    key = (root.cut.pattern, text is whole)
    view = views.get(key)
    if view is None:
        match = root.cut.search(text)
        view = text if match is None else text[:match.start()] + text[match.end():]
        views[key] = view
    return view


_GROUP_REFERENCES = re.compile(r"\(\?P|\(\?\(|\(\?<(?![=!])|\\[1-9]")


def _anchored(text: str) -> bool:
    """Whether a pattern can only match at the start of the string: it begins with `^` and
    has no top-level `|` (whose other branch could match anywhere)."""
    if not text.startswith("^"):
        return False
    depth, index, length = 0, 1, len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index += 1
            if index < length and text[index] == "^":
                index += 1
            if index < length and text[index] == "]":
                index += 1
            while index < length and text[index] != "]":
                index += 2 if text[index] == "\\" else 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
        index += 1
    return True


class ChildPrematches:
    """Finds the first child of a root decoder, from a given position in load order, whose
    prematch matches: with one regex call over all of them where their patterns allow it.

    The combined pattern is an alternation, tried at the search start, of each child's
    prematch in load order, each followed by an empty marker group: a backtracking engine
    explores an alternative completely before the next, so the marker that closes belongs to
    the first child whose prematch matches, and it closes where that prematch's own search
    would end. An anchored prematch (`^…`) is used as it is; any other is preceded by a lazy
    `.*?`, which turns the alternative into the same leftmost search. Children whose
    prematches have group names or references (which the alternation would renumber or
    clash on), `regex`-only syntax, or different start offsets are tried one by one."""

    def __init__(self, root: Decoder):
        self.children = root.children
        #: per child, the later children of the same name (Wazuh's sibling decoders)
        self.siblings = [tuple(later for later in self.children[position + 1:]
                               if later.name == child.name)
                         for position, child in enumerate(self.children)]
        self._combined: dict[int, re.Pattern | None] = {}
        self._can_combine = self._combinable(root)

    def _combinable(self, root: Decoder) -> bool:
        offsets = {child.prematch_after_parent for child in self.children}
        if len(offsets) > 1 and root.prematch is not None:
            return False
        for child in self.children:
            pattern = child.prematch
            if pattern is None:
                continue
            if not isinstance(pattern, re.Pattern) or _GROUP_REFERENCES.search(pattern.pattern):
                return False
        return True

    def _pattern(self, index: int) -> re.Pattern | None:
        if index in self._combined:
            return self._combined[index]
        alternatives = []
        for position in range(index, len(self.children)):
            prematch = self.children[position].prematch
            if prematch is None:
                alternatives.append(f"(?P<c{position}>)")
                break
            text = prematch.pattern
            prefix = "" if _anchored(text) else "(?s:.*?)"
            alternatives.append(f"{prefix}(?:{text})(?P<c{position}>)")
        try:
            combined = re.compile("|".join(alternatives), re.IGNORECASE)
        except (re.error, ValueError, OverflowError):
            combined = None
        self._combined[index] = combined
        return combined

    def first(self, message: str, parent_end: int, index: int) -> tuple[int, int] | None:
        """(position of the child, end of its prematch), or None if no child from `index` on
        has a matching prematch."""
        if index >= len(self.children):
            return None
        combined = self._pattern(index) if self._can_combine else None
        if combined is not None:
            start = parent_end if self.children[index].prematch_after_parent else 0
            match = combined.match(message, start)
            if match is None:
                return None
            marker = match.lastgroup
            return int(marker[1:]), match.end()
        for position in range(index, len(self.children)):
            child = self.children[position]
            if child.prematch is None:
                return position, parent_end
            match = child.prematch.search(message,
                                          parent_end if child.prematch_after_parent else 0)
            if match is not None:
                return position, match.end()
        return None


def _apply(decoder: Decoder, message: str, parent_end: int, previous_regex_end: int | None,
           fields: dict[str, str]) -> int | None:
    """Try one child decoder; returns where its last pattern ended, or None if it failed."""
    prematch_end = parent_end
    if decoder.prematch is not None:
        match = decoder.prematch.search(message, parent_end if decoder.prematch_after_parent else 0)
        if match is None:
            return None
        prematch_end = match.end()
    if decoder.json is not None:
        return _apply_json(decoder, message, parent_end, prematch_end, fields)[0]
    return _apply_regex(decoder, message, parent_end, prematch_end, previous_regex_end, fields)


def _apply_regex(decoder: Decoder, message: str, parent_end: int, prematch_end: int,
                 previous_regex_end: int | None, fields: dict[str, str]) -> int | None:
    """The regex part of a child decoder whose prematch matched (ending at `prematch_end`)."""
    if decoder.regex is None:
        return prematch_end
    offset = decoder.regex_offset
    if offset == "after_parent":
        start = parent_end
    elif offset == "after_prematch":
        start = prematch_end
    elif offset == "after_regex":
        start = previous_regex_end if previous_regex_end is not None else parent_end
    else:
        start = 0
    return _capture(decoder.regex, message, start, fields, decoder.field_names)


def load_decoder_files(paths: list[Path]) -> DecoderSet:
    """Load decoder files in the given order; raises ConfigError with every problem found."""
    problems: list[Problem] = []
    decoders: list[Decoder] = []
    for path in paths:
        try:
            doc = TomlFile.load(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        decoders.extend(_load_file(doc, problems))
    roots: dict[str, list[Decoder]] = {}
    for decoder in decoders:
        if decoder.parent is None:
            roots.setdefault(decoder.name, []).append(decoder)
    for decoder in decoders:
        if decoder.parent is None:
            continue
        parents = roots.get(decoder.parent)
        if not parents:
            problems.append(Problem(decoder.file, decoder.line,
                                    f"decoder {decoder.name!r}: unknown parent decoder "
                                    f"{decoder.parent!r} (a parent must be a root decoder)"))
            continue
        for parent in parents:
            parent.children.append(decoder)
    if problems:
        raise ConfigError(problems)
    return DecoderSet(decoders)


def _load_file(doc: TomlFile, problems: list[Problem]) -> list[Decoder]:
    unknown_top = set(doc.data) - {"decoder"}
    for key in sorted(unknown_top):
        problems.append(doc.problem(f"unknown top-level key {key!r} (expected [[decoder]] tables)",
                                    key=key))
    entries = doc.data.get("decoder", [])
    if not isinstance(entries, list):
        problems.append(doc.problem("decoders must be written as [[decoder]] tables", key="decoder"))
        return []
    result = []
    for index, data in enumerate(entries):
        decoder = _load_decoder(doc, index, data, problems)
        if decoder is not None:
            result.append(decoder)
    return result


def _load_decoder(doc: TomlFile, index: int, data: dict,
                  problems: list[Problem]) -> Decoder | None:
    before = len(problems)

    def fail(message: str, key: str | None = None) -> None:
        problems.append(doc.problem(message, "decoder", index, key))

    for key, value in data.items():
        if key in _BOOL_KEYS:
            if not isinstance(value, bool):
                fail(f"decoder.{key} must be true or false", key)
        elif key == "priority":
            if not isinstance(value, int) or isinstance(value, bool):
                fail("decoder.priority must be an integer", key)
        elif key in _TABLE_KEYS:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                fail(f"decoder.{key} must be a table of strings", key)
        elif key == "fts":
            if not isinstance(value, list) or not value or \
                    not all(isinstance(v, str) and v for v in value):
                fail("decoder.fts must be a list of field names", key)
        elif key not in _KEYS:
            fail(f"unknown key {key!r} in [[decoder]]", key)
        elif not isinstance(value, str):
            fail(f"decoder.{key} must be a string", key)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        fail("decoder needs a 'name'")
        return None
    compiled: dict[str, Pattern] = {}
    for key in ("program_name", "prematch", "regex", "ambiguous", "cut"):
        text = data.get(key)
        if isinstance(text, str):
            try:
                compiled[key] = compile_pattern(
                    text, lambda key=key: doc.location("decoder", index, key))
            except regex.error as exc:
                problems.append(pattern_problem(doc, "decoder", index, key, text, exc))
    parent = data.get("parent")
    if parent is None and "program_name" not in data and "prematch" not in data \
            and not data.get("require_child"):
        fail(f"root decoder {name!r} needs program_name or prematch (it would match every "
             "line), or require_child")
    for key in _ROOT_ONLY_KEYS:
        if key in data and parent is not None:
            fail(f"{key} belongs on a root decoder", key)
    if data.get("input", "message") not in _INPUTS:
        fail("input must be \"message\" or \"line\"", "input")
    if "children_field" in data and "regex" not in data:
        fail("children_field names a field of the decoder's regex, which it does not have",
             "children_field")
    if data.get("prematch_offset", "after_parent") != "after_parent":
        fail("prematch_offset must be \"after_parent\"", "prematch_offset")
    if "prematch_offset" in data and parent is None:
        fail("prematch_offset needs a parent", "prematch_offset")
    offset = data.get("regex_offset")
    if offset is not None and offset not in _REGEX_OFFSETS:
        fail("regex_offset must be one of " + ", ".join(_REGEX_OFFSETS), "regex_offset")
    if data.get("recall_source") and parent is not None:
        fail("recall_source belongs on a root decoder", "recall_source")
    if offset is not None and "regex" not in data:
        fail("regex_offset without regex", "regex_offset")
    json_decoding = _json_options(data, parent, fail)
    fts = tuple(dict.fromkeys(_FTS_ALIASES.get(n.strip(), n.strip()) for n in data["fts"])) \
        if isinstance(data.get("fts"), list) else ()
    if len(problems) > before:
        return None
    return Decoder(
        name=name, file=doc.path, line=doc.table_line("decoder", index), parent=parent,
        program_name=compiled.get("program_name"), prematch=compiled.get("prematch"),
        prematch_after_parent="prematch_offset" in data, regex=compiled.get("regex"),
        regex_offset=offset, type=data.get("type"), ambiguous=compiled.get("ambiguous"),
        remember_source=data.get("remember_source", False),
        recall_source=data.get("recall_source", False),
        priority=data.get("priority", 0), reads_line=data.get("input") == "line",
        cut=compiled.get("cut"), reshapes=data.get("input") == "line" or "cut" in compiled,
        children_field=data.get("children_field"),
        join=data.get("join"), require_child=data.get("require_child", False),
        fts=fts, json=json_decoding,
        json_offset=data.get("json_offset"), field_names=data.get("field_names"),
    )


def _json_options(data: dict, parent: str | None, fail) -> JsonDecoding | None:
    """The JSON options of a decoder with `json = true`; the others are errors without it."""
    keys = ("json_offset", "json_null_field", "json_array_structure", "json_fields")
    if not data.get("json"):
        for key in keys:
            if key in data:
                fail(f"{key} needs json = true", key)
        return None
    if "regex" in data:
        fail("a decoder is either json or regex, not both", "regex")
    offset = data.get("json_offset")
    if offset is not None and offset not in _JSON_OFFSETS:
        fail("json_offset must be one of " + ", ".join(_JSON_OFFSETS), "json_offset")
    if offset == "after_parent" and parent is None:
        fail("json_offset = \"after_parent\" needs a parent", "json_offset")
    if offset == "after_prematch" and "prematch" not in data:
        fail("json_offset = \"after_prematch\" needs a prematch", "json_offset")
    null_field = data.get("json_null_field", "string")
    if null_field not in NULL_FIELDS:
        fail("json_null_field must be one of " + ", ".join(NULL_FIELDS), "json_null_field")
    structure = data.get("json_array_structure", "array")
    if structure not in ARRAY_STRUCTURES:
        fail("json_array_structure must be one of " + ", ".join(ARRAY_STRUCTURES),
             "json_array_structure")
    mapped = data.get("json_fields", {})
    return JsonDecoding(null_field, structure, dict(mapped) if isinstance(mapped, dict) else {})
