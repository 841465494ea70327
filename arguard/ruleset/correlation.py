"""Correlation state: the recent events each frequency rule counts, and ignore windows.

Memory is bounded, and a flood cannot blind it:
- each frequency rule keeps at most `max_keys` correlation keys, each with at most F-1
  timestamps (64 for `different_*` rules), and a key leaves once its newest event is older
  than the timeframe;
- when a rule is full, the key to go is taken from the keys with the fewest events in their
  window (then the least recently seen): a flood of one-shot sources only ever pushes out other
  one-shot sources, never a source on its way to firing;
- IPv6 source and destination addresses are correlated per prefix (/64 by default), so an
  attacker who takes a new address of its own /64 for every attempt is still one source.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arguard.model import Event
    from arguard.ruleset.loader import Rule

DEFAULT_MAX_KEYS = 100_000
DEFAULT_IPV6_PREFIX = 64
_DIFFERENT_HISTORY = 64  # counted events kept per key for different_* rules
_ADDRESS_NAMES = ("srcip", "dstip")
_PREFIX_CACHE_LIMIT = 65_536


def correlation_value(event: "Event", name: str) -> str | None:
    fields = event.fields
    if name == "user":
        return fields.get("dstuser") or fields.get("srcuser") or fields.get("user")
    if name == "location":
        return event.line.location
    if name.startswith("field:"):
        return fields.get(name[6:])
    return fields.get(name)


class KeyMaker:
    """Correlation keys of events for rules: the values the rule's `same_*` names, IPv6
    addresses cut to their prefix."""

    def __init__(self, ipv6_prefix: int = DEFAULT_IPV6_PREFIX):
        self.ipv6_prefix = ipv6_prefix
        self._prefixes: dict[str, str] = {}

    def key(self, rule: "Rule", event: "Event") -> tuple[str, ...] | None:
        """The rule's correlation key for the event; None if a value it names is missing."""
        same = rule.same
        if not same:
            return ()
        if len(same) == 1:
            name = same[0]
            value = correlation_value(event, name)
            if value is None:
                return None
            if name in _ADDRESS_NAMES and ":" in value:
                value = self._prefix(value)
            return (value,)
        values = self.values(same, event)
        return None if None in values else values

    def values(self, names: tuple[str, ...], event: "Event") -> tuple[str | None, ...]:
        values = []
        for name in names:
            value = correlation_value(event, name)
            if value is not None and name in _ADDRESS_NAMES and ":" in value:
                value = self._prefix(value)
            values.append(value)
        return tuple(values)

    def _prefix(self, address: str) -> str:
        prefix = self._prefixes.get(address)
        if prefix is None:
            try:
                network = ipaddress.IPv6Network(f"{address}/{self.ipv6_prefix}", strict=False)
            except ValueError:
                return address
            prefix = str(network) if self.ipv6_prefix < 128 else address
            if len(self._prefixes) >= _PREFIX_CACHE_LIMIT:
                self._prefixes.clear()
            self._prefixes[address] = prefix
        return prefix


#: characters of a counted event's line kept in its window (the lines behind an alert, for
#: `arguard explain`); a longer line is kept cut
KEPT_LINE_CHARS = 1024


class Windows:
    """Per correlation key, the recent counted events of one frequency rule: (time, values
    of its different_* fields, its line)."""

    __slots__ = ("rule", "keys", "max_keys", "history", "_by_count", "_recent")

    def __init__(self, rule: "Rule", max_keys: int):
        self.rule = rule
        self.keys: dict[tuple, deque] = {}
        self.max_keys = max_keys
        self.history = _DIFFERENT_HISTORY if rule.different else max(rule.frequency - 1, 1)
        #: keys by the number of events in their window, each least recently seen first
        self._by_count: dict[int, OrderedDict[tuple, None]] = {}
        #: every key, least recently seen first, with its newest event's time: keys leave as
        #: soon as that is older than the timeframe
        self._recent: OrderedDict[tuple, float] = OrderedDict()

    def count(self, key: tuple, now: float, different: tuple | None) -> int:
        """The count this event would make (itself included)."""
        window = self.keys.get(key)
        if not window:
            return 1
        horizon = now - self.rule.timeframe
        if window[0][0] < horizon:
            before = len(window)
            while window and window[0][0] < horizon:
                window.popleft()
            self._moved(key, before, len(window))
        if different is None:
            return len(window) + 1
        return len({entry[1] for entry in window} | {different})

    def add(self, key: tuple, now: float, different: tuple | None, line: str) -> None:
        window = self.keys.get(key)
        if window is None:
            self._make_room()
            window = self.keys[key] = deque(maxlen=self.history)
            before = 0
        else:
            before = len(window)
            horizon = now - self.rule.timeframe
            while window and window[0][0] < horizon:
                window.popleft()
        window.append((now, different, line[:KEPT_LINE_CHARS]))
        self._moved(key, before, len(window))
        recent = self._recent
        recent[key] = now
        recent.move_to_end(key)
        horizon = now - self.rule.timeframe
        while recent:
            oldest, seen = next(iter(recent.items()))
            if seen >= horizon:
                break
            self.reset(oldest)

    def reset(self, key: tuple) -> tuple[str, ...]:
        """Start the key's count again; the lines it had counted, oldest first."""
        window = self.keys.pop(key, None)
        self._recent.pop(key, None)
        if window is None:
            return ()
        self._by_count[len(window)].pop(key, None)
        return tuple(entry[2] for entry in window)

    def _moved(self, key: tuple, before: int, after: int) -> None:
        by_count = self._by_count
        if before:
            by_count[before].pop(key, None)
        if after:
            bucket = by_count.get(after)
            if bucket is None:
                bucket = by_count[after] = OrderedDict()
            bucket[key] = None
        else:
            del self.keys[key]
            self._recent.pop(key, None)

    def _make_room(self) -> None:
        """Before a new key, if the rule is full: drop the least recently seen of the keys
        with the fewest events in their window."""
        keys = self.keys
        if len(keys) < self.max_keys:
            return
        for count in sorted(self._by_count):
            bucket = self._by_count[count]
            while bucket and len(keys) >= self.max_keys:
                key, _ = bucket.popitem(last=False)
                del keys[key]
                self._recent.pop(key, None)
            if len(keys) < self.max_keys:
                return

    def adopt(self, other: "Windows") -> None:
        self.keys = other.keys
        self._by_count = other._by_count
        self._recent = other._recent


class IgnoreTable:
    """Per correlation key, until when a rule's firing is ignored."""

    __slots__ = ("until", "max_keys")

    def __init__(self, max_keys: int):
        self.until: OrderedDict[tuple, float] = OrderedDict()
        self.max_keys = max_keys

    def ignored(self, key: tuple, now: float) -> bool:
        until = self.until.get(key)
        return until is not None and now < until

    def set(self, key: tuple, until: float, now: float) -> None:
        table = self.until
        table[key] = until
        table.move_to_end(key)
        while table:
            first_until = next(iter(table.values()))
            if len(table) > self.max_keys or first_until <= now:
                table.popitem(last=False)
            else:
                break
