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

import socket
from collections import OrderedDict
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
        self._prefixes: dict[str, str | int] = {}

    def key(self, rule: "Rule", event: "Event") -> tuple[str | int, ...] | None:
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

    def values(self, names: tuple[str, ...], event: "Event") -> tuple[str | int | None, ...]:
        values = []
        for name in names:
            value = correlation_value(event, name)
            if value is not None and name in _ADDRESS_NAMES and ":" in value:
                value = self._prefix(value)
            values.append(value)
        return tuple(values)

    def _prefix(self, address: str) -> str | int:
        """The key of an IPv6 address's prefix: the packed address cut to the prefix, an int
        (never equal to the text of an IPv4 address; half the memory of a string, and
        inet_pton reads it ten times faster than ipaddress does: a flood of IPv6 sources is
        where both count)."""
        prefix = self._prefixes.get(address)
        if prefix is None:
            if self.ipv6_prefix >= 128:
                return address
            try:
                packed = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
            except (OSError, ValueError):  # not an address (ValueError: a NUL in it)
                return address
            prefix = packed >> (128 - self.ipv6_prefix)
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

    __slots__ = ("rule", "keys", "max_keys", "history", "_by_count")

    def __init__(self, rule: "Rule", max_keys: int):
        self.rule = rule
        #: per key, its counted events (time, values of `different`, line), oldest first: a
        #: list, not a deque, because most keys hold one event (a deque takes 600 bytes for it)
        self.keys: dict[tuple, list] = {}
        self.max_keys = max_keys
        self.history = _DIFFERENT_HISTORY if rule.different else max(rule.frequency - 1, 1)
        #: keys by the number of events in their window, each in the order of its last event
        #: (a key moves to the end of its new bucket at every event): so the head of each
        #: bucket is its least recently seen key, and the oldest head the least recently seen
        #: key of all, without a second ordered map of every key
        self._by_count: dict[int, OrderedDict[tuple, None]] = {}

    def count(self, key: tuple, now: float, different: tuple | None) -> int:
        """The count this event would make (itself included)."""
        window = self.keys.get(key)
        if not window:
            return 1
        horizon = now - self.rule.timeframe
        if different is None:
            return 1 + sum(1 for entry in window if entry[0] >= horizon)
        return len({entry[1] for entry in window if entry[0] >= horizon} | {different})

    def add(self, key: tuple, now: float, different: tuple | None, line: str) -> None:
        horizon = now - self.rule.timeframe
        window = self.keys.get(key)
        if window is None:
            self._make_room()
            window = self.keys[key] = []
            before = 0
        else:
            before = len(window)
            _expire(window, horizon)
        window.append((now, different, line[:KEPT_LINE_CHARS]))
        if len(window) > self.history:
            del window[0]
        self._moved(key, before, len(window))
        self._leave_older_than(horizon)

    def _leave_older_than(self, horizon: float) -> None:
        """Drop the keys whose newest event is older than the timeframe, least recently seen
        first."""
        keys = self.keys
        while True:
            oldest, seen = None, horizon
            for bucket in self._by_count.values():
                head = next(iter(bucket))
                last = keys[head][-1][0]
                if last < seen:
                    oldest, seen = head, last
            if oldest is None:
                return
            self.reset(oldest)

    def reset(self, key: tuple) -> tuple[str, ...]:
        """Start the key's count again; the lines it had counted, oldest first."""
        window = self.keys.pop(key, None)
        if window is None:
            return ()
        self._leave_bucket(key, len(window))
        return tuple(entry[2] for entry in window)

    def _leave_bucket(self, key: tuple, count: int) -> None:
        bucket = self._by_count[count]
        del bucket[key]
        if not bucket:
            del self._by_count[count]

    def _moved(self, key: tuple, before: int, after: int) -> None:
        if before:
            self._leave_bucket(key, before)
        bucket = self._by_count.get(after)
        if bucket is None:
            bucket = self._by_count[after] = OrderedDict()
        bucket[key] = None

    def _make_room(self) -> None:
        """Before a new key, if the rule is full: drop the least recently seen of the keys
        with the fewest events in their window."""
        keys = self.keys
        while len(keys) >= self.max_keys:
            fewest = min(self._by_count)
            key = next(iter(self._by_count[fewest]))
            del keys[key]
            self._leave_bucket(key, fewest)

    def adopt(self, other: "Windows") -> None:
        self.keys = other.keys
        self._by_count = other._by_count


def _expire(window: list, horizon: float) -> None:
    """Drop the events older than `horizon` (they are at the front)."""
    expired = 0
    while expired < len(window) and window[expired][0] < horizon:
        expired += 1
    del window[:expired]


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
