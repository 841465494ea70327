"""Split a log line into its header (time, host, program) and the message after it.

The header layouts are those Wazuh's predecoder reads (analysisd/cleanevent.c), and a few more
that real hosts write:

- BSD syslog `Nov 22 13:40:01 host prog[pid]: msg`, with an optional `<PRI>` before it
  (`<13>Jan  1 00:00:00 host sshd[1]: …`, as a syslog relay writes it) and fractions of a second;
- year first: `2015 Dec 29 10:00:01 host prog: msg`;
- ISO 8601 / RFC 3339, as rsyslog and syslog-ng write it, with or without fractions and offset:
  `2026-11-22T13:40:01.123456+00:00 host prog[pid]: msg`;
- ISO with a space: macOS's unified log (`2021-04-21 10:16:09.404756-0700  host sshd[852]: …`,
  two spaces before the host) and proftpd/log4j (`2015-04-16 21:51:02,805 host proftpd[1] …`);
- RFC 5424: `<38>1 2026-11-22T13:40:01.123+00:00 host prog pid msgid [sd…] msg`.

After the time, one or two spaces, then (each optional):
- a facility.severity token, bare or in angle brackets (`<auth.info> host …`, `host auth.info
  sshd[1]: …`, as busybox and some syslog-ng templates write), which is skipped;
- the host (a name, an IPv4 or IPv6 address);
- an AIX facility prefix `auth|security:info `;
- the program: `prog:` (the space after `:` optional, as in Wazuh), `prog[pid]:`, or
  `prog[pid] ` without the colon; `[prog]:` without a host. A line whose host is followed by
  ": " has no host: the token is the program (Solaris).
Solaris' message id (`[ID 800047 auth.info] `) is removed from the message, as Wazuh does.
Without a time, `host prog[pid]: msg` is read too (journal entries as fail2ban and some
collectors render them); the pid is required there, so that ordinary text is not taken for a
header.

When the time and host are read but no program follows, the message is the text after the host
(Wazuh does the same), so an access log relayed through syslog without a tag still decodes; when
not even a host follows, it is the text after the time.

Wazuh's fixed layouts without a syslog header lose their time prefix the same way (the time is
read; no host or program): Apache 2.2's `[Fri Feb 11 18:06:35 2004] `, xferlog's `Mon Apr 17
18:27:14 2006 `, snort's `01/28-09:13:16.240702  `, suricata's `01/28/1979-09:13:16.240702  `
and squid's `1140804070.368 `. macOS ASL lines (`[Time …] [Facility …] [Sender sshd] [PID n]
[Message …] [Level n] [UID n] [GID n] [Host h]`) give program, message and host; the message
is read up to the fixed tail at the end of the line, so a `]` in it cannot cut it short.

Lines without such a header (web access and error logs) keep the whole text as the message;
their own timestamp (`[22/Nov/2026:13:40:01 +0000]`, `2026/11/22 13:40:01`, `[Sun Nov 22
13:40:01.123 2026]`, a leading `2026-11-22 13:40:01` as IIS writes it) is still read, so
replaying them keeps their times.

Times: an offset or `Z` is honoured; a time without one is local time; a year-less date takes
the reference year (now, or the replay's reference), the year before when that would put it
more than two days in the future.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime

from arguard.model import Line, Predecoded

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

_FACILITY_SEVERITY = (
    r"(?:auth|authpriv|kern|user|mail|daemon|syslog|lpr|news|uucp|cron|ftp|ntp|security|console"
    r"|solaris-cron|local[0-7])\.(?:emerg|panic|alert|crit|err|error|warn|warning|notice|info"
    r"|debug)")
# Wazuh's hostname_map: the characters of a host or program name. Greedy: the set excludes
# "[" and ":", so only the longest run can be followed by "[pid]" or ":", and greedy finds it
# without trying the suffix after every character.
_NAME = r"[A-Za-z0-9_.\-/@()]+"
_IPV6 = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?"
_TIME = (
    r"(?P<bsd>(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)?)"
    r"|(?P<year_first>(?P<year>\d{4}) (?P<ymon>[A-Z][a-z]{2}) {1,2}(?P<yday>\d{1,2})"
    r" (?P<yhms>\d\d:\d\d:\d\d))"
    r"|(?P<iso>\d{4}-\d\d-\d\d(?:T\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
    r"| \d\d:\d\d:\d\d(?:,\d+|\.\d+(?:Z|[+-]\d\d:?\d\d)?)))")
_TAIL = (
    r"(?:"
    r"\[(?P<bracketed>" + _NAME + r")\]:? "
    r"|(?:(?P<host>" + _IPV6 + "|" + _NAME + r") (?:" + _FACILITY_SEVERITY + r" )?)?"
    r"(?:[a-z]\w*\|\w+:\w+ )?"
    r"(?P<prog>" + _NAME + r")(?:\[(?P<pid>\d+)\](?:: ?| )|: ?)"
    r"|(?P<lone_host>" + _IPV6 + "|" + _NAME + r") "
    r")?")
_HEADER = re.compile(
    r"(?:<\d{1,3}>)?(?:" + _TIME + r") {1,2}(?:<?" + _FACILITY_SEVERITY + r">? )?" + _TAIL)
# The common case first, with no rare optional parts to try: a BSD time, a host and
# `prog[pid]: ` or `prog: ` (most lines of a busy auth.log); the groups are _HEADER's.
_COMMON_BSD = re.compile(
    r"(?P<bsd>(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d))"
    r" (?P<host>[A-Za-z0-9_.\-/@()]+) (?P<prog>" + _NAME + r")(?:\[(?P<pid>\d+)\])?: ")
_UNTIMED = re.compile(r"(?P<host>" + _NAME + r") (?P<prog>" + _NAME + r")\[(?P<pid>\d+)\]: ")
_SD_ELEMENT = r'\[[^\]"]*(?:"(?:[^"\\]|\\.)*"[^\]"]*)*\]'
_RFC5424 = re.compile(
    r"(?:<\d{1,3}>)?1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))"
    r" (?P<host>\S+) (?P<prog>[^\s\[\]]+) (?P<pid>\S+) \S+ (?:-|(?:" + _SD_ELEMENT + r")+)"
    r" (?:\ufeff)?")
_APACHE22 = re.compile(
    r"\[[A-Z][a-z]{2} (?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) (?P<hms>\d\d:\d\d:\d\d)"
    r" (?P<year>\d{4})\] ")
_XFERLOG = re.compile(
    r"[A-Z][a-z]{2} (?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) (?P<hms>\d\d:\d\d:\d\d)"
    r" (?P<year>\d{4}) (?=\d+ )")
_SNORT = re.compile(
    r"(?P<month>\d\d)/(?P<day>\d\d)(?:/(?P<year>\d{4}))?-(?P<hms>\d\d:\d\d:\d\d)\.\d{6} +")
_SQUID = re.compile(r"(?P<epoch>1\d{9}\.\d{3}) +(?=\d+ )")
_ASL = re.compile(
    r"\[Time (?P<year>\d{4})\.(?P<month>\d\d)\.(?P<day>\d\d) (?P<hms>\d\d:\d\d:\d\d) UTC\]"
    r" \[Facility [^\]]*\] \[Sender (?P<prog>" + _NAME + r")\] \[PID (?P<pid>\d+)\]"
    r" \[Message (?P<message>.*)\] \[Level \d+\] \[UID -?\d+\] \[GID -?\d+\]"
    r" \[Host (?P<host>" + _NAME + r")\]$")
_SOLARIS_ID = re.compile(r"\[ID \d+ [A-Za-z0-9]+\.[A-Za-z]+\] ")
_CLF_TIME = re.compile(r"\[(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-]\d{4})\]")
_NGINX_TIME = re.compile(r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d) ")
_APACHE_ERR_TIME = re.compile(
    r"\[[A-Za-z]{3} ([A-Za-z]{3}) (\d\d) (\d\d):(\d\d):(\d\d)(?:\.\d+)? (\d{4})\]")
_W3C_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) ")

_HOUR_CACHE_LIMIT = 4096
# Allow this much clock skew before deciding a year-less date belongs to last year.
_FUTURE_SLACK = 2 * 86_400


class Predecoder:
    """Stateless apart from a small cache: consecutive lines usually share their header time."""

    def __init__(self, reference_time: float | None = None):
        self.reference_time = reference_time
        self._last_stamp: str | None = None
        self._last_time: float | None = None
        self._hour_starts: dict[tuple[int, int, int, int], float] = {}

    def line_time(self, text: str) -> float | None:
        """The time a line's own timestamp gives (its header's, or one embedded in a web
        server's line), None when it has none."""
        return self.predecode(Line(text, "", 0.0)).time

    def predecode(self, line: Line) -> Predecoded:
        if line.program_name is not None:
            return Predecoded(
                message=line.text, program_name=line.program_name, hostname=line.hostname,
                pid=line.pid, time=line.timestamp,
                timestamp=_iso(line.timestamp) if line.timestamp is not None else None,
                header=True)
        text = line.text
        first = text[:1]
        if first.isalpha() or first.isdigit() or first == "<":
            if first in "<1":
                match = _RFC5424.match(text)
                if match is not None:
                    return self._rfc5424(match, text)
            match = _COMMON_BSD.match(text)
            if match is not None:
                return self._common_bsd(match, text)
            match = _HEADER.match(text)
            if match is not None:
                return self._header(match, text)
            match = _UNTIMED.match(text)
            if match is not None:
                return Predecoded(text[match.end():], None, None, match.group("host"),
                                  match.group("prog"), match.group("pid"), True)
            found = self._fixed_layout(text)
            if found is not None:
                return found
        elif first == "[":
            found = self._bracketed_layout(text)
            if found is not None:
                return found
        return Predecoded(message=text, time=self._embedded_time(text))

    def _fixed_layout(self, text: str) -> Predecoded | None:
        """xferlog, snort, suricata and squid: a time prefix, no host or program."""
        match = _XFERLOG.match(text)
        if match is not None:
            when = self._bsd_time(match.group(0), match.group("mon"), match.group("day"),
                                  match.group("hms"), int(match.group("year")))
            return Predecoded(text[match.end():], match.group(0).strip(), when)
        match = _SNORT.match(text)
        if match is not None:
            year = match.group("year")
            when = self._numeric_time(int(year) if year else None, int(match.group("month")),
                                      int(match.group("day")), match.group("hms"), local=True)
            return Predecoded(text[match.end():], match.group(0).strip(), when)
        match = _SQUID.match(text)
        if match is not None:
            return Predecoded(text[match.end():], match.group("epoch"),
                              float(match.group("epoch")))
        return None

    def _bracketed_layout(self, text: str) -> Predecoded | None:
        """Apache 2.2's error log time and macOS ASL lines."""
        match = _APACHE22.match(text)
        if match is not None:
            when = self._bsd_time(match.group(0), match.group("mon"), match.group("day").strip(),
                                  match.group("hms"), int(match.group("year")))
            return Predecoded(text[match.end():], match.group(0)[1:-2], when)
        if text.startswith("[Time "):
            match = _ASL.match(text)
            if match is not None:
                when = self._numeric_time(int(match.group("year")), int(match.group("month")),
                                          int(match.group("day")), match.group("hms"),
                                          local=False)
                return Predecoded(match.group("message"), None, when, match.group("host"),
                                  match.group("prog"), match.group("pid"), True)
        return None

    def _common_bsd(self, match: re.Match, text: str) -> Predecoded:
        stamp, mon, day, hms, host, program, pid = match.groups()
        when = self._last_time if stamp == self._last_stamp else \
            self._bsd_time(stamp, mon, day, hms, None)
        message = text[match.end():]
        if message.startswith("[ID "):
            solaris = _SOLARIS_ID.match(message)
            if solaris is not None:
                message = message[solaris.end():]
        return Predecoded(message, stamp, when, host, program, pid, True)

    def _header(self, match: re.Match, text: str) -> Predecoded:
        groups = match.groupdict()
        if groups["bsd"] is not None:
            stamp = groups["bsd"]
            when = self._bsd_time(stamp, groups["mon"], groups["day"], groups["hms"], None)
        elif groups["year_first"] is not None:
            stamp = groups["year_first"]
            when = self._bsd_time(stamp, groups["ymon"], groups["yday"], groups["yhms"],
                                  int(groups["year"]))
        else:
            stamp = groups["iso"]
            when = self._iso_time(stamp)
        program = groups["prog"] or groups["bracketed"]
        host = groups["host"] or groups["lone_host"]
        message = text[match.end():]
        if program is not None and message.startswith("[ID "):
            solaris = _SOLARIS_ID.match(message)
            if solaris is not None:
                message = message[solaris.end():]
        return Predecoded(message, stamp, when, host, program, groups["pid"], True)

    def _rfc5424(self, match: re.Match, text: str) -> Predecoded:
        pid = match.group("pid")
        stamp = match.group("ts")
        return Predecoded(text[match.end():], stamp, self._iso_time(stamp), match.group("host"),
                          match.group("prog"), None if pid == "-" else pid, True)

    def _bsd_time(self, stamp: str, mon: str, day: str, hms: str,
                  year: int | None) -> float | None:
        if stamp == self._last_stamp:
            return self._last_time
        month = _MONTHS.get(mon.lower())
        if month is None:
            return None
        hour, minute, second = (int(x) for x in hms.split(":"))
        if minute > 59 or second > 59:
            return None
        try:
            if year is not None:
                when = self._local_time(year, month, int(day), hour, minute, second)
            else:
                now = self.reference_time if self.reference_time is not None else time.time()
                year = time.localtime(now).tm_year
                when = self._local_time(year, month, int(day), hour, minute, second)
                if when > now + _FUTURE_SLACK:
                    when = self._local_time(year - 1, month, int(day), hour, minute, second)
        except (ValueError, OverflowError):
            return None
        self._last_stamp, self._last_time = stamp, when
        return when

    def _local_time(self, year: int, month: int, day: int, hour: int, minute: int,
                    second: int) -> float:
        """Local time to epoch, with one mktime per hour of log: clocks change only on the
        hour, so within one the rest is arithmetic."""
        key = (year, month, day, hour)
        start = self._hour_starts.get(key)
        if start is None:
            start = _local_epoch(year, month, day, hour, 0, 0)
            if len(self._hour_starts) >= _HOUR_CACHE_LIMIT:
                self._hour_starts.clear()
            self._hour_starts[key] = start
        return start + minute * 60 + second

    def _numeric_time(self, year: int | None, month: int, day: int, hms: str,
                      local: bool) -> float | None:
        hour, minute, second = (int(x) for x in hms.split(":"))
        try:
            if not local:
                datetime(year, month, day, hour, minute, second)
                return float(calendar.timegm((year, month, day, hour, minute, second)))
            if year is not None:
                return _local_epoch(year, month, day, hour, minute, second)
            now = self.reference_time if self.reference_time is not None else time.time()
            this_year = time.localtime(now).tm_year
            when = _local_epoch(this_year, month, day, hour, minute, second)
            if when > now + _FUTURE_SLACK:
                when = _local_epoch(this_year - 1, month, day, hour, minute, second)
            return when
        except (ValueError, OverflowError):
            return None

    def _iso_time(self, stamp: str) -> float | None:
        if stamp == self._last_stamp:
            return self._last_time
        try:
            when = datetime.fromisoformat(stamp).timestamp()
        except (ValueError, OverflowError, OSError):
            return None
        self._last_stamp, self._last_time = stamp, when
        return when

    def _embedded_time(self, text: str) -> float | None:
        head = text[:512]
        try:
            match = _CLF_TIME.search(head)
            if match is not None:
                day, mon, year, hh, mm, ss, zone = match.groups()
                month = _MONTHS.get(mon.lower())
                if month is None:
                    return None
                offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (-1 if zone[0] == "-" else 1)
                return calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss))) - offset
            for layout in (_NGINX_TIME, _W3C_TIME):
                match = layout.match(head)
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
