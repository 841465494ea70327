"""Split a log line into its header (time, host, program) and the message after it.

Recognised headers:
- BSD syslog: `Nov 22 13:40:01 host prog[pid]: msg` (pid optional, year-less date)
- RFC 3339 / ISO 8601, as rsyslog writes on Debian 12+:
  `2026-11-22T13:40:01.123456+00:00 host prog[pid]: msg`
- BSD syslog without a host and with the program in brackets: `Mar  3 00:17:22 [sshd]: msg`
- RFC 5424: `<38>1 2026-11-22T13:40:01.123+00:00 host prog pid msgid [sd…] msg`
- lines from sources that split the fields themselves (the journal)
Solaris' message-id prefix (`[ID 800047 auth.info] `) is removed from the message, as Wazuh does.
Lines without such a header (web access and error logs) keep the whole text as the message;
their own timestamp (`[22/Nov/2026:13:40:01 +0000]`, `2026/11/22 13:40:01`,
`[Sun Nov 22 13:40:01.123 2026]`) is still read, so replaying them keeps their times.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime

from arguard.model import Line, Predecoded

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

# Greedy: the name's characters exclude "[" and ":", so only the longest run can be followed
# by "[pid]: " or ": ", and greedy finds it without trying the suffix after every character.
_PROGRAM = r"(?P<prog>[A-Za-z0-9_./()\-]+)(?:\[(?P<pid>\d+)\])?: "
_BSD = re.compile(
    r"(?P<ts>(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)?)"
    r" (?:(?P<host>[^\s:\[\]]+) )?" + _PROGRAM)
_BSD_BRACKETED = re.compile(
    r"(?P<ts>(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)?)"
    r" \[(?P<prog>[A-Za-z0-9_.\-]+)\]:? ")
_SD_ELEMENT = r'\[[^\]"]*(?:"(?:[^"\\]|\\.)*"[^\]"]*)*\]'
_RFC5424 = re.compile(
    r"(?:<\d{1,3}>)?1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))"
    r" (?P<host>\S+) (?P<prog>[^\s\[\]]+) (?P<pid>\S+) \S+ (?:-|(?:" + _SD_ELEMENT + r")+)"
    r" (?:\ufeff)?")
_SOLARIS_ID = re.compile(r"\[ID \d+ [A-Za-z0-9]+\.[A-Za-z]+\] ")
_ISO = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r" (?P<host>[^\s:\[\]]+) " + _PROGRAM)
_CLF_TIME = re.compile(r"\[(\d\d)/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-]\d{4})\]")
_NGINX_TIME = re.compile(r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d) ")
_APACHE_ERR_TIME = re.compile(
    r"\[[A-Za-z]{3} ([A-Za-z]{3}) (\d\d) (\d\d):(\d\d):(\d\d)(?:\.\d+)? (\d{4})\]")

# Allow this much clock skew before deciding a year-less date belongs to last year.
_FUTURE_SLACK = 2 * 86_400


class Predecoder:
    """Stateless apart from a small cache: consecutive lines usually share their header time."""

    def __init__(self, reference_time: float | None = None):
        self.reference_time = reference_time
        self._last_stamp: str | None = None
        self._last_time: float | None = None

    def predecode(self, line: Line) -> Predecoded:
        if line.program_name is not None:
            return Predecoded(
                message=line.text, program_name=line.program_name, hostname=line.hostname,
                pid=line.pid, time=line.timestamp,
                timestamp=_iso(line.timestamp) if line.timestamp is not None else None,
                header=True)
        text = line.text
        match = _BSD.match(text) or _BSD_BRACKETED.match(text)
        if match is not None:
            return self._header(match, text, self._bsd_time(match))
        if text[:1].isdigit():
            match = _ISO.match(text)
            if match is not None:
                return self._header(match, text, self._iso_time(match.group("ts")))
        if text[:1] in "<1":
            match = _RFC5424.match(text)
            if match is not None:
                return self._header(match, text, self._iso_time(match.group("ts")))
        return Predecoded(message=text, time=self._embedded_time(text))

    def _header(self, match: re.Match, text: str, when: float | None) -> Predecoded:
        names = match.re.groupindex
        host = match.group("host") if "host" in names else None
        pid = match.group("pid") if "pid" in names else None
        message = text[match.end():]
        if message.startswith("[ID "):
            solaris = _SOLARIS_ID.match(message)
            if solaris is not None:
                message = message[solaris.end():]
        return Predecoded(message, match.group("ts"), when, host, match.group("prog"),
                          None if pid == "-" else pid, True)

    def _bsd_time(self, match: re.Match) -> float | None:
        stamp = match.group("ts")
        if stamp == self._last_stamp:
            return self._last_time
        month = _MONTHS.get(match.group("mon").lower())
        if month is None:
            return None
        hour, minute, second = (int(x) for x in match.group("hms").split(":"))
        day = int(match.group("day"))
        now = self.reference_time if self.reference_time is not None else time.time()
        year = time.localtime(now).tm_year
        try:
            when = _local_epoch(year, month, day, hour, minute, second)
            if when > now + _FUTURE_SLACK:
                when = _local_epoch(year - 1, month, day, hour, minute, second)
        except ValueError:
            return None
        self._last_stamp, self._last_time = stamp, when
        return when

    def _iso_time(self, stamp: str) -> float | None:
        if stamp == self._last_stamp:
            return self._last_time
        try:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return None
        when = parsed.timestamp()
        self._last_stamp, self._last_time = stamp, when
        return when

    def _embedded_time(self, text: str) -> float | None:
        head = text[:512]
        match = _CLF_TIME.search(head)
        try:
            if match is not None:
                day, mon, year, hh, mm, ss, zone = match.groups()
                month = _MONTHS.get(mon.lower())
                if month is None:
                    return None
                offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (-1 if zone[0] == "-" else 1)
                return calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss))) - offset
            match = _NGINX_TIME.match(head)
            if match is not None:
                year, month, day, hh, mm, ss = (int(x) for x in match.groups())
                return _local_epoch(year, month, day, hh, mm, ss)
            match = _APACHE_ERR_TIME.match(head)
            if match is not None:
                mon, day, hh, mm, ss, year = match.groups()
                month = _MONTHS.get(mon.lower())
                if month is None:
                    return None
                return _local_epoch(int(year), month, int(day), int(hh), int(mm), int(ss))
        except (ValueError, OverflowError):
            return None
        return None


def _local_epoch(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    datetime(year, month, day, hour, minute, second)  # raises ValueError on impossible dates
    return time.mktime((year, month, day, hour, minute, second, 0, 0, -1))


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="microseconds")
