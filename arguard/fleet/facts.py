"""Fleet-wide correlation: a frequency rule with `scope = "fleet"` counts the events of
every host.

Only compact facts travel, never log lines: the rule, its correlation key (e.g. the source
address) and the time of each counted event, and a reset when a host fired the rule (its
count then restarts everywhere, so 3 + 3 + 2 failures on three hosts fire it once, on the
host that saw the 8th). A key travels as text: an IPv6 prefix (an int in the engine's keys)
as `/<prefix length>/<hex>`, a text value as itself (one that starts with "/" with a second
"/" in front), so neither can pass for the other. This host's facts wait in memory for the
fleet link (at most MAX_PENDING; a fact whose timeframe is over when the link comes back is
dropped, it could no longer count); the other hosts' are counted in this host's engine.
Facts are not kept across restarts, as correlation windows are not.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, deque
from collections.abc import Callable, Sequence

from arguard.fleet.decision import MEMBER_NAME, parse_time
from arguard.ruleset.engine import Engine
from arguard.ruleset.loader import Rule

log = logging.getLogger(__name__)

#: this host's facts kept while the fleet's database is unreachable
MAX_PENDING = 10_000
_MAX_KEY_ITEMS = 8
_MAX_KEY_TEXT = 256
_HEX = re.compile(r"[0-9a-f]{1,32}")


class SharedCorrelation:
    """The engine's SharedWindows on a fleet member: this host's facts out, the others' in.

    `engine` gives the daemon's current engine (a reload replaces it); `wake` is called
    when a fact is waiting (the link sends it)."""

    def __init__(self, name: str, engine: Callable[[], Engine]):
        self.name = name
        self.engine = engine
        self.wake: Callable[[], None] | None = None
        #: (rule id, key as sent, at, reset, expires) of this host's facts not yet sent
        self.pending: deque[tuple[int, tuple[str, ...], float, bool, float]] = \
            deque(maxlen=MAX_PENDING)
        self.counts: Counter[str] = Counter()
        self.latest = 0   # the id of the last fact read from the database

    # --- out (the engine calls these) ----------------------------------------------------

    def counted(self, rule: Rule, key: tuple[str | int, ...], at: float) -> None:
        self._queue(rule, key, at, False)

    def fired(self, rule: Rule, key: tuple[str | int, ...], at: float) -> None:
        self._queue(rule, key, at, True)

    def _queue(self, rule: Rule, key: tuple[str | int, ...], at: float, reset: bool) -> None:
        prefix = self.engine().keys.ipv6_prefix
        sent = tuple(_sent_item(item, prefix) for item in key)
        self.pending.append((rule.id, sent, at, reset, at + rule.timeframe))
        if self.wake is not None:
            self.wake()

    def take(self, now: float) -> list[tuple[int, tuple[str, ...], float, bool, float]]:
        """The facts to send, those whose timeframe is not over yet."""
        facts = [fact for fact in self.pending if fact[4] > now]
        self.pending.clear()
        self.counts["out"] += len(facts)
        return facts

    # --- in --------------------------------------------------------------------------------

    def receive(self, entries: Sequence[tuple[int, str]]) -> None:
        """Count the facts of other hosts ((id, JSON) pairs, in id order; each id once)."""
        engine = self.engine()
        for ident, text in entries:
            if ident <= self.latest:
                continue
            self.latest = ident
            fact = _parse_fact(text)
            if fact is None:
                self.counts["malformed"] += 1
                log.warning("fleet: fact #%d skipped, malformed", ident)
                continue
            origin, rule_id, sent, at, reset = fact
            if origin == self.name:
                continue
            key = _received_key(sent, engine.keys.ipv6_prefix)
            if key is None:
                counted = False
            elif reset:
                counted = engine.reset_remote(rule_id, key)
            else:
                counted = engine.count_remote(rule_id, key, at, f"(counted on {origin})")
            self.counts["in" if counted else "ignored"] += 1


def _sent_item(item: str | int, ipv6_prefix: int) -> str:
    if isinstance(item, int):
        return f"/{ipv6_prefix}/{item:x}"
    return "/" + item if item.startswith("/") else item


def _received_key(sent: tuple[str, ...], ipv6_prefix: int) -> tuple[str | int, ...] | None:
    """The engine's key of a key as sent; None if it holds an IPv6 prefix of another length
    than this host's (it could not match one of this host's keys) or an unreadable one."""
    key: list[str | int] = []
    for item in sent:
        if not item.startswith("/"):
            key.append(item)
        elif item.startswith("//"):
            key.append(item[1:])
        else:
            length, _, bits = item[1:].partition("/")
            if length != str(ipv6_prefix) or not _HEX.fullmatch(bits):
                return None
            key.append(int(bits, 16))
    return tuple(key)


def _parse_fact(text: str) -> tuple[str, int, tuple[str, ...], float, bool] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    origin, rule_id, key, at, reset = (data.get(k) for k in
                                       ("origin", "rule_id", "key", "at", "reset"))
    if not isinstance(origin, str) or not MEMBER_NAME.fullmatch(origin):
        return None
    if not isinstance(rule_id, int) or isinstance(rule_id, bool):
        return None
    if not isinstance(key, list) or len(key) > _MAX_KEY_ITEMS or not all(
            isinstance(k, str) and len(k) <= _MAX_KEY_TEXT for k in key):
        return None
    at = parse_time(at)
    if at is None or not isinstance(reset, bool):
        return None
    return origin, rule_id, tuple(key), at, reset
