"""Alerts as JSON objects with Wazuh's alerts.json field names, and the alerts.json writer.

As in Wazuh (src/analysisd/format/json_extended.c, W_JSON_ParseGroups), a rule's compliance
groups (`pci_dss_11.5`, `gdpr_II_5.1.f`, …) are shown as `rule.pci_dss`, `rule.gdpr`, … and
not in `rule.groups`; a file integrity alert shows its fields as `syscheck` instead of `data`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime
from json.encoder import encode_basestring
from pathlib import Path

from arguard import modes
from arguard.faults import LastingFault, append_whole
from arguard.model import Alert, Event, RuleInfo
from arguard.syscheck import is_syscheck, syscheck_object

log = logging.getLogger(__name__)

#: how far back from the end of alerts.json an unfinished last line is looked for
TAIL_LOOK_BYTES = 1024 * 1024

_HOSTNAME = socket.gethostname()


class _SecondCache:
    """The formatted date, time and UTC offset of the last whole second seen: alerts come in
    bursts within one second, and formatting a datetime twice per alert was a tenth of the
    cost of writing one."""

    __slots__ = ("second", "prefix", "offset")

    def __init__(self) -> None:
        self.second: int | None = None
        self.prefix = ""
        self.offset = ""

    def format(self, when: float) -> str:
        second, micro = divmod(round(when * 1_000_000), 1_000_000)
        if second != self.second:
            moment = datetime.fromtimestamp(second).astimezone()
            self.second = second
            self.prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self.offset = moment.strftime("%z")
        return f"{self.prefix}.{micro // 1000:03d}{self.offset}"


_seconds = _SecondCache()

#: group prefix → the rule key it is shown under (Wazuh's add_group* functions, their order)
_COMPLIANCE = (("pci_dss_", "pci_dss"), ("cis_", "cis"), ("gdpr_", "gdpr"), ("gpg13_", "gpg13"),
               ("hipaa_", "hipaa"), ("nist_800_53_", "nist_800_53"), ("tsc_", "tsc"))


def rule_groups(groups: tuple[str, ...]) -> dict[str, list[str]]:
    """`groups` and the compliance lists as the alert's rule shows them: {"groups": plain
    groups, "pci_dss": ["11.5"], …}, compliance keys in the order they first appear."""
    result: dict[str, list[str]] = {"groups": []}
    for group in groups:
        for prefix, key in _COMPLIANCE:
            if group.startswith(prefix):
                result.setdefault(key, []).append(group[len(prefix):])
                break
        else:
            result["groups"].append(group)
    return result


def format_time(when: float) -> str:
    """Wazuh's alert timestamp form: 2026-11-22T13:40:01.123+0000."""
    return _seconds.format(when)


def predecoder_dict(event: Event) -> dict[str, str] | None:
    pre = event.pre
    if not pre.header:
        return None
    result = {}
    if pre.program_name is not None:
        result["program_name"] = pre.program_name
    if pre.timestamp is not None:
        result["timestamp"] = pre.timestamp
    if pre.hostname is not None:
        result["hostname"] = pre.hostname
    return result


def decoder_dict(event: Event) -> dict[str, str] | None:
    if event.decoder is None:
        return None
    if event.decoder_child is None:
        return {"name": event.decoder}
    return {"parent": event.decoder, "name": event.decoder}


def alert_to_dict(alert: Alert) -> dict:
    event = alert.event
    rule = alert.rule
    result: dict = {
        "timestamp": format_time(event.time),
        "rule": {
            "level": rule.level,
            "description": rule.description,
            "id": str(rule.id),
            "firedtimes": alert.firedtimes,
            **rule_groups(rule.groups),
        },
        "agent": {"id": "000", "name": event.pre.hostname or _HOSTNAME},
        "manager": {"name": _HOSTNAME},
        "id": alert.id,
        "full_log": event.line.text,
    }
    if rule.mitre:
        result["rule"]["mitre"] = {"id": list(rule.mitre)}
    predecoder = predecoder_dict(event)
    if predecoder:
        result["predecoder"] = predecoder
    if is_syscheck(event):
        result["syscheck"] = syscheck_object(event.fields)
    decoder = decoder_dict(event)
    if decoder:
        result["decoder"] = decoder
    if event.fields and not is_syscheck(event):
        result["data"] = dict(event.fields)
    result["location"] = event.line.location
    return result


_encode_object = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


class _RuleFragments:
    """The JSON text of each rule's part of an alert, before and after `firedtimes`: it is
    the same for every alert of the rule, and encoding it was most of an alert's cost."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[RuleInfo, str, str]] = {}

    def around_firedtimes(self, rule: RuleInfo) -> tuple[str, str]:
        cached = self._by_id.get(rule.id)
        if cached is None or cached[0] is not rule:
            head = _encode_object({"level": rule.level, "description": rule.description,
                                   "id": str(rule.id)})
            tail = ", " + _encode_object(rule_groups(rule.groups))[1:-1]
            if rule.mitre:
                tail += ", " + _encode_object({"mitre": {"id": list(rule.mitre)}})[1:-1]
            cached = (rule, head[:-1] + ', "firedtimes": ', tail + "}")
            self._by_id[rule.id] = cached
        return cached[1], cached[2]


def _string_object(values: dict[str, str]) -> str:
    """A JSON object of string values (decoded fields, predecoder and decoder parts), without
    the per-call overhead of json's encoder objects, which these small dicts are dominated by."""
    return "{" + ", ".join([encode_basestring(key) + ": " + encode_basestring(value)
                            for key, value in values.items()]) + "}"


_rule_fragments = _RuleFragments()
_MANAGER = _encode_object({"name": _HOSTNAME})


def alert_to_json(alert: Alert) -> str:
    """`alert_to_dict(alert)` as JSON text (same keys, same order), built from pieces: the
    rule's part is encoded once per rule, the rest per alert."""
    event = alert.event
    pre = event.pre
    head, tail = _rule_fragments.around_firedtimes(alert.rule)
    parts = ['{"timestamp": ', encode_basestring(format_time(event.time)),
             ', "rule": ', head, str(alert.firedtimes), tail,
             ', "agent": {"id": "000", "name": ', encode_basestring(pre.hostname or _HOSTNAME),
             '}, "manager": ', _MANAGER,
             ', "id": ', encode_basestring(alert.id),
             ', "full_log": ', encode_basestring(event.line.text)]
    predecoder = predecoder_dict(event)
    if predecoder:
        parts += ', "predecoder": ', _string_object(predecoder)
    syscheck = is_syscheck(event)
    if syscheck:
        parts += ', "syscheck": ', _encode_object(syscheck_object(event.fields))
    decoder = decoder_dict(event)
    if decoder:
        parts += ', "decoder": ', _string_object(decoder)
    if event.fields and not syscheck:
        parts += ', "data": ', _string_object(event.fields)
    parts += ', "location": ', encode_basestring(event.line.location), "}"
    return "".join(parts)


class AlertLog:
    """Appends one JSON alert per line, a batch at a time (`flush`, after each batch of
    lines): a batch is written whole or not at all, so a crash or a full disk never leaves
    half a line. Alerts that cannot be written (disk full, I/O error) are counted
    (`fault.lost`) and warned about once a minute; writing resumes by itself when space
    returns. `reopen()` after logrotate moved the file."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._pending: list[str] = []
        self.fault = LastingFault(log, str(path))

    def open(self) -> None:
        """Open (create) the file now: the daemon's start fails on a log it cannot write."""
        if self._fd is None:
            self._fd = modes.open_log(self.path)
            self._cut_unfinished_line()

    def _cut_unfinished_line(self) -> None:
        """A process killed while writing a batch leaves half a line at the end (the
        kernel stops a write at a fatal signal): it is removed, so that the next alert
        starts a line of its own. Its alert comes again, with the lines not committed."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        tail = os.pread(self._fd, min(size, TAIL_LOOK_BYTES), max(size - TAIL_LOOK_BYTES, 0))
        if not tail or tail.endswith(b"\n"):
            return
        newline = tail.rfind(b"\n")
        if newline < 0 and size > len(tail):
            os.write(self._fd, b"\n")   # a line longer than we look back: end it
            return
        keep = size - len(tail) + newline + 1
        os.ftruncate(self._fd, keep)
        log.warning("%s ended in an unfinished line (arguard was killed while writing it): "
                    "removed its %d bytes", self.path, size - keep)

    def write(self, alert: Alert) -> None:
        self._pending.append(alert_to_json(alert))

    def flush(self) -> None:
        if not self._pending:
            return
        data = ("\n".join(self._pending) + "\n").encode("utf-8", errors="surrogateescape")
        count = len(self._pending)
        self._pending.clear()
        try:
            self.open()
            assert self._fd is not None
            append_whole(self._fd, data)
        except OSError as error:
            self.fault.failed(error.strerror or error, count, "alerts not written")
            return
        self.fault.succeeded()

    def reopen(self) -> None:
        self.close()

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
