"""File changes as Wazuh's syscheck events: decoder names, decoded fields, `full_log` and the
alert's `syscheck` object, as Wazuh 4.14's analysisd makes them (src/analysisd/decoders/
syscheck.c: fim_process_alert, fim_generate_alert; src/analysisd/format/to_json.c).

An event's fields carry the names Wazuh's FIM decoder gives them (`file`, `sha256`,
`sha256_before`, `perm`, …), which is what Wazuh rules test (`<field name="file">`); the alert
shows them under the names of Wazuh's alerts.json (`syscheck.path`, `syscheck.sha256_after`,
…), and a rule may name a field either way (`field."syscheck.path"` is `field.file`).
"""

from __future__ import annotations

import grp
import pwd
import stat
import time
from functools import lru_cache

from arguard.model import Event, FileChange, FileState, Line, Predecoded

#: where Wazuh's FIM alerts come from (`location`)
LOCATION = "syscheck"
#: the event category of FIM events (Wazuh's decoder type OSSEC_RL): rule `category = "ossec"`
CATEGORY = "ossec"
#: Wazuh's FIM decoder per kind of change (FIM_NEW, FIM_MOD, FIM_DEL)
DECODERS = {"added": "syscheck_new_entry", "modified": "syscheck_integrity_changed",
            "deleted": "syscheck_deleted"}
DECODER_PREFIX = "syscheck_"

#: the alert's `syscheck` keys and the decoded fields they show, in to_json.c's order
_SHOWN = (("size_before", "size_before"), ("size_after", "size"),
          ("perm_before", "perm_before"), ("perm_after", "perm"),
          ("uid_before", "uid_before"), ("uid_after", "uid"),
          ("gid_before", "gid_before"), ("gid_after", "gid"),
          ("sha256_before", "sha256_before"), ("sha256_after", "sha256"),
          ("uname_before", "uname_before"), ("uname_after", "uname"),
          ("gname_before", "gname_before"), ("gname_after", "gname"),
          ("mtime_before", "mtime_before"), ("mtime_after", "mtime"),
          ("inode_before", "inode_before"), ("inode_after", "inode"))
#: `syscheck.NAME` in a rule → the decoded field it is
RULE_FIELD_ALIASES = {"syscheck.path": "file", "syscheck.mode": "mode",
                      "syscheck.event": "event_type",
                      "syscheck.changed_attributes": "changed_fields",
                      **{f"syscheck.{shown}": field for shown, field in _SHOWN}}

#: the comment lines of a modification, in fim_generate_alert's order:
#: (field, format with the values before and after)
_COMMENTS = (("size", "Size changed from '{}' to '{}'\n"),
             ("perm", "Permissions changed from '{}' to '{}'\n"),
             ("uid", "Ownership was '{}', now it is '{}'\n"),
             ("uname", "User name was '{}', now it is '{}'\n"),
             ("gid", "Group ownership was '{}', now it is '{}'\n"),
             ("gname", "Group name was '{}', now it is '{}'\n"),
             ("mtime", "Old modification time was: '{}', now it is '{}'\n"),
             ("inode", "Old inode was: '{}', now it is '{}'\n"),
             ("sha256", "Old sha256sum was: '{}'\nNew sha256sum is : '{}'\n"))
#: longest path full_log shows whole (longer ones: the first 719 characters, " [...] ",
#: the last 30)
_PATH_SHOWN = 756


def permissions(mode: int) -> str:
    """`rw-r--r--`, as Wazuh's agent_file_perm writes a file's mode (set-id and sticky bits
    as `s`/`t`, no file type)."""
    return "".join((
        "r" if mode & stat.S_IRUSR else "-", "w" if mode & stat.S_IWUSR else "-",
        "s" if mode & stat.S_ISUID else "x" if mode & stat.S_IXUSR else "-",
        "r" if mode & stat.S_IRGRP else "-", "w" if mode & stat.S_IWGRP else "-",
        "s" if mode & stat.S_ISGID else "x" if mode & stat.S_IXGRP else "-",
        "r" if mode & stat.S_IROTH else "-", "w" if mode & stat.S_IWOTH else "-",
        "t" if mode & stat.S_ISVTX else "x" if mode & stat.S_IXOTH else "-"))


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def state_fields(state: FileState, checks: frozenset[str]) -> dict[str, str]:
    """A file's attributes as Wazuh's FIM decoder fields (the `after` names), for the
    attributes among `checks`."""
    fields: dict[str, str] = {}
    if "size" in checks:
        fields["size"] = str(state.size)
    if "mode" in checks:
        fields["perm"] = permissions(state.mode)
    if "owner" in checks:
        fields["uid"] = str(state.uid)
        fields["gid"] = str(state.gid)
        fields["uname"] = user_name(state.uid)
        fields["gname"] = group_name(state.gid)
    if "mtime" in checks:
        fields["mtime"] = str(state.mtime_ns // 1_000_000_000)
    if "inode" in checks:
        fields["inode"] = str(state.inode)
    if "sha256" in checks and state.sha256 is not None:
        fields["sha256"] = state.sha256
    return fields


def changed_attributes(before: FileState, after: FileState,
                       checks: frozenset[str]) -> tuple[str, ...]:
    """What changed among `checks`, named and ordered as Wazuh's changed_attributes (an
    unknown sha256 on either side is no change: the content could not be compared)."""
    old, new = state_fields(before, checks), state_fields(after, checks)
    names = (("size", "size"), ("perm", "permission"), ("uid", "uid"), ("gid", "gid"),
             ("uname", "user_name"), ("gname", "group_name"), ("inode", "inode"),
             ("mtime", "mtime"), ("sha256", "sha256"))
    return tuple(name for field, name in names
                 if field in old and field in new and old[field] != new[field])


def change_fields(change: FileChange, checks: frozenset[str]) -> dict[str, str]:
    """The decoded fields of a change, with Wazuh's names."""
    fields = {"file": change.path, "mode": change.found_by, "event_type": change.event,
              "entry_type": "file"}
    shown = change.after if change.after is not None else change.before
    if shown is not None:
        fields |= state_fields(shown, checks)
    if change.event == "modified" and change.before is not None:
        fields |= {f"{name}_before": value
                   for name, value in state_fields(change.before, checks).items()}
    if change.changed:
        fields["changed_fields"] = ",".join(change.changed)
    return fields


def full_log(fields: dict[str, str]) -> str:
    """The text Wazuh writes as the alert's full_log (and matches rules' `match` on)."""
    path = fields["file"]
    if len(path) > _PATH_SHOWN:
        path = f"{path[:719]} [...] {path[-30:]}"
    text = f"File '{path}' {fields['event_type']}\nMode: {fields['mode']}\n"
    if "changed_fields" in fields:
        text += f"Changed attributes: {fields['changed_fields']}\n"
    if fields["event_type"] == "modified":
        for field, template in _COMMENTS:
            before, after = fields.get(f"{field}_before", ""), fields.get(field, "")
            if before != after:
                text += template.format(before, after)
    return text


def change_event(change: FileChange, checks: frozenset[str]) -> Event:
    """The event the rule engine sees for a change: decoded as Wazuh's syscheck decoders
    decode it."""
    fields = change_fields(change, checks)
    text = full_log(fields)
    line = Line(text=text, location=LOCATION, received=change.time)
    return Event(line, Predecoded(message=text), change.time, decoder=DECODERS[change.event],
                 category=CATEGORY, fields=fields)


def is_syscheck(event: Event) -> bool:
    return event.decoder is not None and event.decoder.startswith(DECODER_PREFIX)


def _alert_time(epoch: str) -> str:
    """An mtime as Wazuh's alert shows it: local time, `%FT%T%z` cut to 19 characters by
    to_json.c's buffer, so without the offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(int(epoch)))


def syscheck_object(fields: dict[str, str]) -> dict:
    """The alert's `syscheck` object (to_json.c): a `_before` value only where it differs
    from the one after, mtimes as dates, inodes as numbers."""
    result: dict = {"path": fields["file"], "mode": fields["mode"]}
    for shown, field in _SHOWN:
        value = fields.get(field)
        if not value:
            continue
        if field.endswith("_before") and value == fields.get(field[:-len("_before")]):
            continue
        if field.startswith("mtime"):
            result[shown] = _alert_time(value)
        elif field.startswith("inode"):
            result[shown] = int(value)
        else:
            result[shown] = value
    if "changed_fields" in fields:
        result["changed_attributes"] = fields["changed_fields"].split(",")
    result["event"] = fields["event_type"]
    return result
