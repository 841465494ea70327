"""Which lines of a batch can matter, from one hyperscan scan of the whole batch.

A line matters when a root decoder can take it or, undecoded, a root rule can match it (a
rule that matches changes what later lines see even at level 0: `if_matched_sid`, frequency
windows). Each of those roots is a *gate*, and each gate gets one pattern that every line it
takes must contain: a superset of one of its conditions (a decoder's program name or
prematch, a rule's message condition or program name), rewritten so that hyperscan finds it
anywhere in the raw line. The rewriting only ever widens a pattern — anchors, lookarounds and
word boundaries dropped, back-references matching anything, long repeats unbounded, the
leading and trailing runs cut to what they must take, a non-ASCII character matching any
character — so a line that could reach a gate always contains its pattern. Lines without a hit
are not decoded and match no rule; they are counted and go no further. The rest take the full
path, which decides exactly as before.

A gate with nothing to require (a root decoder without program name or prematch, a root rule
without a message or program condition) opens every line: then there is no prefilter and the
reason is kept for `status`. Lines hyperscan cannot judge this way always take the full path:
a line with non-ASCII text (Python's case-insensitive matching folds some non-ASCII letters
onto ASCII ones), a line holding a newline, and a journal entry (its program name is not in
its text).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import accumulate
from operator import attrgetter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from re import _constants as _sre, _parser as _sre_parse

from arguard.patterns import _ZERO_WIDTH, _as_re_syntax

if TYPE_CHECKING:
    from arguard.decode.decoders import Decoder, DecoderSet
    from arguard.model import Line
    from arguard.ruleset.engine import Engine

try:
    import hyperscan
except ImportError as error:  # the pure-Python path runs every line
    hyperscan = None
    _IMPORT_ERROR = f"hyperscan cannot be imported ({error})"
else:
    _IMPORT_ERROR = ""

#: bounded repeats above this are written unbounded (hyperscan refuses very large ones)
_LARGEST_BOUND = 64
#: the literal characters, all alternatives together, looked for across a cut's seam
_SEAMED_SPLITS = 400
_NEVER = object()  # a gate that no undecoded line can pass


@dataclass(frozen=True)
class Gate:
    what: str  # "decoder NAME (file:line)" or "rule ID (file:line)"
    pattern: str | None  # the hyperscan pattern; None: the gate opens every line


class Prefilter:
    """One hyperscan database of the gates of a ruleset."""

    def __init__(self, gates: list[Gate]):
        self.gates = gates
        open_gates = [gate.what for gate in gates if gate.pattern is None]
        #: why every line takes the full path, or None when the prefilter is in use
        self.disabled: str | None = None
        if hyperscan is None:
            self.disabled = _IMPORT_ERROR
        elif open_gates:
            self.disabled = (f"{open_gates[0]} can take any line (no program name, prematch "
                             "or message condition to look for)")
        self._database = None
        self._scanned = self._skipped = self._resting = 0
        #: lines ruled out since the start
        self.ruled_out = 0
        #: rest when the scan does not pay (tests turn it off to scan every batch)
        self.rest = True
        if self.disabled is None:
            patterns = sorted({gate.pattern for gate in gates})
            database = hyperscan.Database()
            try:
                # each pattern runs on to the end of its line, so that hyperscan reports it
                # once a line (at the newline) however often the line holds it
                database.compile(expressions=[f"(?:{p})[^\\n]*\\n".encode() for p in patterns],
                                 ids=list(range(len(patterns))), elements=len(patterns),
                                 flags=[hyperscan.HS_FLAG_CASELESS] * len(patterns))
            except hyperscan.error as error:
                self.disabled = f"hyperscan cannot compile the gates' patterns ({error})"
            else:
                self._database = database

    def candidates(self, lines: list["Line"]) -> list[bool] | None:
        """Per line, whether it can matter; None: all of them (no prefilter, or a stretch of
        lines where it rules out too few to pay for the scan)."""
        if self._database is None:
            return None
        if self._resting:
            self._resting -= 1
            return None
        texts = list(map(_TEXT, lines))
        buffer = "\n".join(texts)
        if any(map(_PROGRAM, lines)) or not buffer.isascii() or \
                buffer.count("\n") != len(texts) - 1:
            return self._candidates_one_by_one(lines)
        flags = [False] * len(lines)
        # where each line's newline ends, in the buffer
        ends = [total + index for index, total in enumerate(accumulate(map(len, texts)), 1)]

        def on_match(pattern_id: int, start: int, end: int, match_flags: int,
                     context: object) -> None:
            flags[bisect_left(ends, end)] = True

        self._database.scan((buffer + "\n").encode("ascii"), match_event_handler=on_match)
        self._pay(flags)
        return flags

    def _candidates_one_by_one(self, lines: list["Line"]) -> list[bool]:
        """A batch with lines hyperscan cannot judge (journal entries, non-ASCII text,
        newlines): those are candidates, the others are scanned."""
        flags = [True] * len(lines)
        judged = [index for index, line in enumerate(lines)
                  if line.program_name is None and line.text.isascii()
                  and "\n" not in line.text]
        if judged:
            found = self.candidates([lines[index] for index in judged])
            if found is not None:
                for index, candidate in zip(judged, found):
                    flags[index] = candidate
        return flags

    def describe(self) -> str:
        """What `status` and the start-up log say about it."""
        if self.disabled is not None:
            return f"every line decoded: no prefilter, {self.disabled}"
        return (f"hyperscan prefilter of {len(self.gates)} gates, {self.ruled_out} lines "
                "ruled out")

    def _pay(self, flags: list[bool]) -> None:
        """Rest for a while when the scan rules out too few lines to pay for itself (a web
        log: every line is an access-log line), so that it costs nothing there."""
        skipped = flags.count(False)
        self.ruled_out += skipped
        self._scanned += len(flags)
        self._skipped += skipped
        if self._scanned >= _PROBE_LINES:
            if self.rest and self._skipped < self._scanned * _WORTH:
                self._resting = _REST_BATCHES
            self._scanned = self._skipped = 0


_TEXT = attrgetter("text")
_PROGRAM = attrgetter("program_name")
#: lines scanned before deciding whether the scan pays, the share of them it must rule out,
#: and the batches it then rests for when it does not
_PROBE_LINES = 4096
_WORTH = 0.05
_REST_BATCHES = 64


def build_prefilter(decoders: "DecoderSet", engine: "Engine") -> Prefilter:
    from arguard.ruleset.engine import _root_accepts

    gates: list[Gate] = []
    for root in decoders.roots:
        # the program name is matched on its own; the rest on the text, after `cut` across
        # the seam it leaves
        requirements = [(root.program_name.pattern, False)] if root.program_name else []
        if root.prematch is not None:
            requirements.append((root.prematch.pattern, root.cut is not None))
        if root.children_field is not None and root.regex is not None:
            requirements.append((root.regex.pattern, root.cut is not None))
        pattern = _best(requirements)
        if pattern is None and root.require_child:
            pattern = _any_child(root)
        gates.append(Gate(f"decoder {root.name} ({root.file}:{root.line})", pattern))
    for rule in engine.tree.roots:
        if not _root_accepts(rule, None, "syslog"):
            continue
        requirements = _rule_requirements(engine.checks[rule.id])
        if requirements is _NEVER:
            continue
        gates.append(Gate(f"rule {rule.id} ({rule.file}:{rule.line})",
                          _best([(text, False) for text in requirements])))
    return Prefilter(gates)


def _any_child(root: "Decoder") -> str | None:
    """For a root that takes a line only when one of its children does: a pattern each
    child's text requires, one of them found in every line it takes (None: some child can
    take any line). A child takes a line when its prematch matches and its regex (or, an
    ambiguous line, its `ambiguous` pattern) does; after a `cut`, across the seam."""
    alternatives = []
    for child in root.children:
        if child.prematch is not None:
            texts = [child.prematch.pattern]
        elif child.regex is not None:
            texts = [child.regex.pattern] + ([child.ambiguous.pattern] if child.ambiguous else [])
        else:
            return None
        for text in texts:
            pattern = _best([(text, root.cut is not None)])
            if pattern is None:
                return None
            alternatives.append(f"(?:{pattern})")
    return "|".join(alternatives) or None


def _rule_requirements(checks) -> list[str] | object:
    """Patterns an undecoded line must contain for the rule to match it, or _NEVER when a
    check needs a decoded field (an undecoded line has none)."""
    from arguard.ruleset.checks import MessageLiterals, MessagePattern, ValueLiterals, \
        ValuePattern

    requirements: list[str] = []
    for check in checks:
        if isinstance(check, MessageLiterals) and not check.negate:
            requirements.append("|".join(re.escape(literal)
                                         for _, literal in check.alternatives))
        elif isinstance(check, MessagePattern) and not check.condition.negate:
            requirements.append(check.condition.pattern.pattern)
        elif isinstance(check, ValueLiterals) and not check.negate:
            return _NEVER
        elif isinstance(check, ValuePattern) and not check.condition.negate:
            if check.source in ("field", "user"):
                return _NEVER
            if check.name in ("program_name", "hostname"):
                requirements.append(check.condition.pattern.pattern)
    return requirements


def _best(requirements: list[tuple[str, bool]]) -> str | None:
    """Of (pattern, across a cut's seam), the widened requirement most likely to rule lines
    out (the longest literal it must contain), or None when none can be written for
    hyperscan."""
    best, best_score = None, 0
    for text, seamed in requirements:
        widened = _seamed(text) if seamed else widen(text)
        if widened is None:
            continue
        pattern, score = widened
        if score > best_score:
            best, best_score = pattern, score
    return best


def widen(text: str) -> tuple[str, int] | None:
    """A hyperscan pattern that matches (somewhere in a line) every ASCII line in which the
    Python pattern `text` matches somewhere in a substring of the line, with the length of
    the shortest of the literals one of which it requires; None when there is none (it could
    match empty)."""
    items = _parsed(text)
    literals = _common_literals(items) if items is not None else ()
    written = _write(items) if literals else ""
    if not written:
        return None
    return written, min(map(len, literals))


def _seamed(text: str) -> tuple[str, int] | None:
    """A hyperscan pattern found in every ASCII line from which `cut` removed a piece so that
    the rest matches `text`: the longest literal a match requires may span the seam, so any
    split of each literal one of which a match requires, its two parts in order with anything
    between."""
    items = _parsed(text)
    literals = _common_literals(items) if items is not None else ()
    if not literals:
        return None
    # a piece of a literal is in the text wherever the literal is: pieces short enough to keep
    # the alternation small
    keep = max(3, min(16, _SEAMED_SPLITS // len(literals)))
    literals = tuple(sorted({literal[:keep] for literal in literals}))
    return "|".join(f"{re.escape(literal[:split])}{_ANY_CHARACTER}*{re.escape(literal[split:])}"
                    for literal in literals
                    for split in range(len(literal) + 1)), min(map(len, literals))


def _parsed(text: str) -> list | None:
    """The pattern's items (sre's parse, case-insensitive), trimmed; None if it cannot be
    read."""
    try:
        return _trim(list(_sre_parse.parse(_as_re_syntax(text), re.IGNORECASE)))
    except (re.error, ValueError, OverflowError, RecursionError):
        return None


def _trim(items: list) -> list:
    """Drop zero-width items at the ends and cut the runs at the ends to their minimum: a
    match of the rest is then found wherever one of the whole is."""
    items = [item for item in items if item[0] not in _ZERO_WIDTH]
    while items and _is_run(items[0]):
        low, _, body = items[0][1]
        items = _minimum(low, body) + items[1:]
        if low != 0:
            break
    while items and _is_run(items[-1]):
        low, _, body = items[-1][1]
        items = items[:-1] + _minimum(low, body)
        if low != 0:
            break
    return items


def _is_run(item) -> bool:
    return item[0] in _REPEATS and item[1][1] > 1


def _minimum(low: int, body) -> list:
    return [(_sre.MAX_REPEAT, (low, low, body))] if low else []


_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None))
_SPACE = r"\t\n\v\f\r \x1c-\x1f"  # Python's \s in ASCII (hyperscan's has no \x1c-\x1f)
_CATEGORY = {
    _sre.CATEGORY_DIGIT: ("0-9", False), _sre.CATEGORY_NOT_DIGIT: ("0-9", True),
    _sre.CATEGORY_SPACE: (_SPACE, False), _sre.CATEGORY_NOT_SPACE: (r"\t\n\v\f\r ", True),
    _sre.CATEGORY_WORD: ("A-Za-z0-9_", False), _sre.CATEGORY_NOT_WORD: ("A-Za-z0-9_", True),
}
_ANY_CHARACTER = r"[^\n]"


def _char(code: int) -> str:
    return re.escape(chr(code)) if 32 < code < 127 else f"\\x{code:02x}"


def _write(items) -> str:
    return "".join(_write_item(op, value) for op, value in items)


def _write_item(op, value) -> str:
    if op == _sre.LITERAL:
        return _char(value) if value < 128 else _ANY_CHARACTER
    if op == _sre.NOT_LITERAL:
        return f"[^\\n{_char(value)}]" if value < 128 else _ANY_CHARACTER
    if op == _sre.ANY:
        return _ANY_CHARACTER
    if op == _sre.IN:
        return _write_class(value)
    if op in _ZERO_WIDTH:
        return ""
    if op in (_sre.SUBPATTERN, getattr(_sre, "ATOMIC_GROUP", None)):
        body = value[-1] if op == _sre.SUBPATTERN else value
        return f"(?:{_write(list(body))})"
    if op == _sre.BRANCH:
        return "(?:" + "|".join(_write(list(branch)) for branch in value[1]) + ")"
    if op in _REPEATS:
        low, high, body = value
        low = min(low, _LARGEST_BOUND)
        inner = f"(?:{_write(list(body))})"
        if high == _sre.MAXREPEAT or high > _LARGEST_BOUND:
            return f"{inner}{{{low},}}"
        return f"{inner}{{{low},{high}}}"
    if op == _sre.GROUPREF_EXISTS:
        _, yes, no = value
        return f"(?:{_write(list(yes))}|{_write(list(no)) if no else ''})"
    return f"{_ANY_CHARACTER}*"  # a back-reference: whatever the group took


def _write_class(members) -> str:
    negate = bool(members) and members[0][0] == _sre.NEGATE
    parts: list[str] = []
    for kind, member in members[1:] if negate else members:
        if kind == _sre.LITERAL:
            if member >= 128:
                if not negate:
                    return _ANY_CHARACTER
                continue  # excluding fewer characters only widens
            parts.append(_char(member))
        elif kind == _sre.RANGE:
            low, high = member
            if high >= 128:
                if not negate:
                    return _ANY_CHARACTER
                high = 127
            if low <= high:
                parts.append(f"{_char(low)}-{_char(high)}")
        elif kind == _sre.CATEGORY and member in _CATEGORY:
            chars, negated = _CATEGORY[member]
            if negated != negate:
                return _ANY_CHARACTER if not negate else "[^\\n]"
            parts.append(chars)
        else:
            return _ANY_CHARACTER
    if negate:
        return "[^\\n" + "".join(parts) + "]"
    return "[" + "".join(parts) + "]" if parts else "[^\\x00-\\x7f]"


def _common_literals(items) -> tuple[str, ...]:
    """Literal texts one of which every match contains (case aside), the set with the
    longest shortest member; () when there is none."""
    best: tuple[str, ...] = ()
    run = ""

    def better(candidate: tuple[str, ...]) -> tuple[str, ...]:
        if candidate and (not best or min(map(len, candidate)) > min(map(len, best))):
            return candidate
        return best

    for op, value in items:
        letter = _one_letter(op, value)
        if letter is not None:
            run += letter
            best = better((run,))
            continue
        run = ""
        if op == _sre.SUBPATTERN:
            best = better(_common_literals(list(value[-1])))
        elif op == _sre.BRANCH:
            branches = [_common_literals(list(branch)) for branch in value[1]]
            if all(branches):
                best = better(tuple(sorted({text for branch in branches for text in branch})))
        elif op in _REPEATS and value[0] >= 1:
            best = better(_common_literals(list(value[2])))
    return best


def _one_letter(op, value) -> str | None:
    """The ASCII character an item takes, case aside (`a`, `[Aa]`), or None."""
    if op == _sre.LITERAL and value < 128:
        return chr(value).lower()
    if op == _sre.IN and value and all(kind == _sre.LITERAL and member < 128
                                       for kind, member in value):
        letters = {chr(member).lower() for _, member in value}
        if len(letters) == 1:
            return letters.pop()
    return None
