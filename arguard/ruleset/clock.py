"""`time` and `weekday` rule conditions: the event's time of day and day of the week.

The event's time is its line's own time in `replay` and `logtest` and its arrival time when
following logs live (the pipeline's clock), read in the host's time zone or the one
`[ruleset] time_zone` names.

`time` is Wazuh's syntax (`validate_op.c`, OS_IsValidTime/OS_IsonTime): `HH:MM - HH:MM`, `HH -
HH`, with `am`/`pm` (`6 pm - 8:30 am`), `!` in front to negate; both ends are whole minutes
and included. A range whose start is later than its end wraps midnight, and then, as in
Wazuh, both of its ends are excluded (`6 pm - 8:30 am` holds from 18:01 to 08:29).

`weekday` is Wazuh's list of days (`monday`, `mon`, …, `weekdays`, `weekends`, separated by
spaces or commas), plus ranges (`monday - friday`, `fri-mon` wraps the week) and `!` in front
to negate (Wazuh rejects `!` there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

import regex

_HOUR = r"(\d{1,2})(?::(\d\d))?\s*([ap]m)?"
_TIME_RANGE = regex.compile(rf"\s*(!)?\s*{_HOUR}\s*-\s*{_HOUR}\s*", regex.IGNORECASE)
#: Wazuh's day names, longest form first (it tries them in this order, by prefix)
_DAYS = (("sunday", 0), ("sun", 0), ("monday", 1), ("mon", 1), ("tuesday", 2), ("tue", 2),
         ("wednesday", 3), ("wed", 3), ("thursday", 4), ("thu", 4), ("friday", 5), ("fri", 5),
         ("saturday", 6), ("sat", 6))
_GROUPS = {"weekdays": frozenset({1, 2, 3, 4, 5}), "weekends": frozenset({0, 6})}
_DAY_TOKEN = regex.compile(r"\s*(?:([a-z]+)\s*-\s*([a-z]+)|([a-z]+))\s*(?:,|\s|$)",
                           regex.IGNORECASE)


class EventClock:
    """Local minute of the day and day of the week (0 = Sunday, as Wazuh counts) of event
    times, in one time zone (None: the host's). The last minute asked is kept: events come
    in time order, many per minute."""

    __slots__ = ("zone", "_minute", "_local")

    def __init__(self, zone: tzinfo | None = None):
        self.zone = zone
        self._minute: int | None = None
        self._local = (0, 0)

    def local(self, when: float) -> tuple[int, int]:
        minute = int(when // 60)
        if minute != self._minute:
            if self.zone is None:
                moment = time.localtime(minute * 60)
                self._local = (moment.tm_hour * 60 + moment.tm_min, (moment.tm_wday + 1) % 7)
            else:
                moment = datetime.fromtimestamp(minute * 60, self.zone)
                self._local = (moment.hour * 60 + moment.minute, moment.isoweekday() % 7)
            self._minute = minute
        return self._local


def _minutes(hour: str, minute: str | None, half: str | None) -> int:
    value = int(hour)
    if value >= 24:
        raise ValueError(f"hour {hour} is not 0-23")
    if half is not None:
        if value > 12:
            raise ValueError(f"hour {hour} {half} is not 1-12")
        value = value % 12 + (12 if half.lower() == "pm" else 0)
    minutes = int(minute) if minute is not None else 0
    if minutes >= 60:
        raise ValueError(f"minute {minute} is not 0-59")
    return value * 60 + minutes


@dataclass(frozen=True, eq=False)
class TimeWindow:
    """A `time` condition: [low, high] in minutes of the day, or outside it (`negated`)."""

    low: int
    high: int
    negated: bool
    clock: EventClock = field(repr=False)

    def holds(self, when: float) -> bool:
        minute = self.clock.local(when)[0]
        return (self.low <= minute <= self.high) != self.negated


def parse_time(text: str, clock: EventClock) -> TimeWindow:
    """A `time` condition; raises ValueError saying what is wrong."""
    match = _TIME_RANGE.fullmatch(text)
    if match is None:
        raise ValueError(f"time {text!r} is not a range such as '6 pm - 8:30 am' or "
                         "'18:00 - 08:30'")
    negated = match.group(1) is not None
    first = _minutes(*match.group(2, 3, 4))
    second = _minutes(*match.group(5, 6, 7))
    if first > second:   # wraps midnight: outside [second, first], as Wazuh stores it
        return TimeWindow(second, first, True, clock)
    return TimeWindow(first, second, negated, clock)


@dataclass(frozen=True, eq=False)
class DayWindow:
    """A `weekday` condition: the days (0 = Sunday) it holds on."""

    days: frozenset[int]
    clock: EventClock = field(repr=False)

    def holds(self, when: float) -> bool:
        return self.clock.local(when)[1] in self.days


def _day(name: str) -> int:
    lowered = name.lower()
    for day_name, number in _DAYS:
        if lowered == day_name:
            return number
    raise ValueError(f"unknown day {name!r}")


def parse_weekday(text: str, clock: EventClock) -> DayWindow:
    """A `weekday` condition; raises ValueError saying what is wrong."""
    body = text.strip()
    negated = body.startswith("!")
    body = body.removeprefix("!").strip()
    days: set[int] = set()
    position = 0
    while position < len(body):
        match = _DAY_TOKEN.match(body, position)
        if match is None or match.end() == position:
            raise ValueError(f"weekday {text!r}: expected day names such as 'monday - "
                             "friday', 'sat, sun', 'weekdays' or 'weekends'")
        first, last, single = match.groups()
        if single is not None:
            group = _GROUPS.get(single.lower())
            days |= group if group is not None else {_day(single)}
        else:
            start, end = _day(first), _day(last)
            days |= {(start + step) % 7 for step in range((end - start) % 7 + 1)}
        position = match.end()
    if not days:
        raise ValueError(f"weekday {text!r} names no day")
    if negated:
        days = set(range(7)) - days
    return DayWindow(frozenset(days), clock)
