"""Syslog headers, ISO headers, header-less web logs and journal entries."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from arguard.decode.predecode import Predecoder
from arguard.model import Line

NOW = time.mktime((2026, 11, 22, 15, 0, 0, 0, 0, -1))


def pre(text: str, **line_fields):
    return Predecoder(reference_time=NOW).predecode(Line(text, "test", NOW, **line_fields))


@pytest.mark.parametrize("text,program,pid,message", [
    ("Nov 22 13:40:01 host sshd[123]: Invalid user x from 192.0.2.1",
     "sshd", "123", "Invalid user x from 192.0.2.1"),
    ("Nov  2 03:04:05 host sshd-session[77]: Connection closed by 192.0.2.1 port 22",
     "sshd-session", "77", "Connection closed by 192.0.2.1 port 22"),
    ("Nov 22 13:40:01 host kernel: [  1.5] eth0 up", "kernel", None, "[  1.5] eth0 up"),
    ("Nov 22 13:40:01 host postfix/smtpd[9]: connect from x", "postfix/smtpd", "9",
     "connect from x"),
    ("Nov 22 13:40:01 host CRON[5]: pam_unix(cron:session): session opened", "CRON", "5",
     "pam_unix(cron:session): session opened"),
])
def test_bsd_syslog_header(text, program, pid, message):
    result = pre(text)
    assert (result.program_name, result.pid, result.message) == (program, pid, message)
    assert result.hostname == "host"
    assert datetime.fromtimestamp(result.time).year == 2026


def test_rfc3339_header_as_debian_rsyslog_writes_it():
    result = pre("2026-11-22T13:40:01.123456+00:00 web1 sshd[12]: Failed password for root")
    assert (result.hostname, result.program_name, result.pid) == ("web1", "sshd", "12")
    assert result.message == "Failed password for root"
    assert result.time == datetime(2026, 11, 22, 13, 40, 1, 123456, timezone.utc).timestamp()


def test_yearless_date_in_the_future_belongs_to_last_year():
    result = pre("Dec 31 23:59:59 host cron[1]: late")
    assert datetime.fromtimestamp(result.time).year == 2025


def test_journal_entry_keeps_its_fields():
    result = pre("Failed password for root from 192.0.2.1 port 22 ssh2", program_name="sshd",
                 hostname="srv", timestamp=1_795_000_000.5)
    assert (result.program_name, result.hostname, result.time) == ("sshd", "srv", 1_795_000_000.5)
    assert result.message == "Failed password for root from 192.0.2.1 port 22 ssh2"


@pytest.mark.parametrize("text,expected", [
    ('192.0.2.1 - - [22/Nov/2026:13:40:01 +0100] "GET / HTTP/1.1" 404 1 "-" "x"',
     datetime(2026, 11, 22, 12, 40, 1, tzinfo=timezone.utc).timestamp()),
    ("2026/11/22 13:40:01 [error] 1#0: *1 user \"x\" was not found",
     time.mktime((2026, 11, 22, 13, 40, 1, 0, 0, -1))),
    ("[Sun Nov 22 13:40:01.123456 2026] [auth_basic:error] [pid 1] [client 192.0.2.1:5]",
     time.mktime((2026, 11, 22, 13, 40, 1, 0, 0, -1))),
])
def test_headerless_lines_keep_the_whole_text_and_their_own_time(text, expected):
    result = pre(text)
    assert result.program_name is None and result.message == text
    assert result.time == expected


def test_text_that_only_looks_like_a_header_is_left_alone():
    result = pre("Nov 99 13:40:01 host sshd[1]: x")
    assert result.time is None


def test_headers_without_host_rfc5424_and_solaris_ids():
    from arguard.decode.predecode import Predecoder
    from arguard.model import Line

    predecoder = Predecoder()
    bracketed = predecoder.predecode(Line("Mar  3 00:17:22 [sshd]: User root from 192.0.2.1", "x", 0))
    assert (bracketed.program_name, bracketed.hostname, bracketed.message) == \
        ("sshd", None, "User root from 192.0.2.1")
    bare = predecoder.predecode(Line("Mar  3 00:17:22 [sshd] User root", "x", 0))
    assert (bare.program_name, bare.message) == ("sshd", "User root")

    rfc5424 = predecoder.predecode(Line(
        '<38>1 2019-07-08T17:40:17.5-04:00 h.example.com sshd 55555 - '
        '[timeQuality tzKnown="1"][x@1 t="[brackets]"] Failed unknown for y', "x", 0))
    assert (rfc5424.program_name, rfc5424.pid, rfc5424.hostname, rfc5424.message) == \
        ("sshd", "55555", "h.example.com", "Failed unknown for y")
    assert rfc5424.time == 1562622017.5
    no_pid = predecoder.predecode(Line("1 2019-07-08T17:40:17Z h sshd - - - msg", "x", 0))
    assert (no_pid.pid, no_pid.message) == (None, "msg")

    solaris = predecoder.predecode(Line(
        "Nov 22 13:40:01 sol sshd[123]: [ID 800047 auth.info] Failed password", "x", 0))
    assert (solaris.pid, solaris.message) == ("123", "Failed password")
