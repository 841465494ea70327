"""Joined lines: a root decoder with `join = "FIELD"` treats the lines it decodes with the same
value of FIELD (a connection or session id, or the process header `host sshd[123]:`) as one
sequence, as fail2ban's multi-line failures (`<F-MLFID>`) do.

Within a sequence:
- a line gets the fields that earlier lines of the sequence decoded and it does not (the
  address announced by `Connection from ADDR` reaches `Disconnecting: Too many authentication
  failures [preauth]`); a field the line decodes itself replaces the remembered value;
- a line whose child decoded the group `end` ends the sequence (nothing is remembered after it);
- a line that decoded `helper` only contributes fields: it keeps the field `helper`, which
  rules use to tell it from a failure. It counts as a failure after all (the field is removed)
  when the sequence has a failure still waiting for an address, or has named more than one
  `srcuser` (several accounts tried, then one succeeded);
- `success` marks a line as a helper and drops the failure waiting for an address;
- a line without a `srcip` after joining (its failure waits for an address) marks the
  sequence: the next line that brings the address is the failure, even a helper.
Sequences are forgotten MAX_AGE seconds (line time) after their last line; at most
MAX_ENTRIES are kept, the least recently seen dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

HELPER = "helper"


@dataclass(slots=True)
class _Sequence:
    fields: dict[str, str]
    users: set[str] = field(default_factory=set)
    waiting: bool = False
    seen: float | None = None


class SequenceMemory:
    MAX_ENTRIES = 8192
    MAX_AGE = 300.0

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, _Sequence] = OrderedDict()

    def _get(self, key: tuple, when: float | None) -> _Sequence | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if when is not None and entry.seen is not None and not (
                0 <= when - entry.seen <= self.MAX_AGE):
            del self._entries[key]
            return None
        return entry

    def _keep(self, key: tuple, entry: _Sequence) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self.MAX_ENTRIES:
            self._entries.popitem(last=False)

    def join(self, key: tuple, fields: dict[str, str], when: float | None) -> None:
        """Apply the sequence `key` to one line's decoded `fields` (changed in place)."""
        ends = fields.pop("end", None) is not None
        succeeds = fields.pop("success", None) is not None
        helper = succeeds or HELPER in fields
        user = fields.get("srcuser")
        entry = self._get(key, when)
        if entry is None:
            entry = _Sequence(dict(fields))
            if not ends:
                self._keep(key, entry)
        else:
            if succeeds:
                entry.waiting = False
            entry.fields.pop(HELPER, None)
            entry.fields.update(fields)
            fields.clear()
            fields.update(entry.fields)
            if ends:
                del self._entries[key]
            else:
                self._entries.move_to_end(key)
        entry.seen = when
        if user:
            entry.users.add(user)
        if entry.waiting or len(entry.users) > 1:
            entry.waiting = False
            helper = False
        if "srcip" not in fields:
            entry.waiting = True
        if helper:
            fields[HELPER] = fields.get(HELPER) or "yes"
        else:
            fields.pop(HELPER, None)
        entry.fields.pop(HELPER, None)
