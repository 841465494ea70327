"""The `terminate-sessions` action: end every process of a local account.

Locking an account (`disable-account`) only stops the next login; an intruder who is logged
in keeps every shell and process started. This action ends them: where systemd-logind runs
(it answers on the system bus), it first asks logind to end the account's sessions
(`TerminateUser` over D-Bus, through jeepney, a pure-Python client: no loginctl, no shell),
waits up to `grace` seconds for the account's processes to go, then SIGKILLs whatever is
left. Without logind it sends SIGTERM to every process of the account found in /proc, waits
`grace` seconds, and SIGKILLs the rest. In both cases it then looks again until no process of
the account is left (one forked meanwhile is found too). A process belongs to the account
when its real or effective UID is the account's. Processes are pinned by pidfd before they
are signalled (arguard.respond.actions.processes), so a reused pid is never signalled.

It acts once per alert and keeps nothing to lift (`stateless`): bound after
`disable-account` in one response (`command = ["disable-account", "terminate-sessions"]`),
the account is locked first, then emptied. The guards are disable-account's
(account.AccountGuard): never root or a UID 0 account, never a UID below `min_uid`, never
the UID arguard or its parent runs as; white-listed names never reach it.

Each pid ended is recorded in active-responses.log with the signal that ended it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from arguard.respond.actions import processes
from arguard.respond.actions.account import AccountGuard, check_account_name
from arguard.respond.actions.base import BOOLEAN, INTEGER, PATH, ActionError, ActionType, Option

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

log = logging.getLogger(__name__)

LOGIND = "org.freedesktop.login1"
#: seconds to wait for logind's answer
LOGIND_TIMEOUT = 10.0


class TerminateSessions:
    def __init__(self, command: Command):
        options = ACTION.options_of(command)
        self.guard = AccountGuard(Path(options["passwd"]), options["min_uid"],
                                  "terminate the processes of")
        self.grace: float = options["grace"]
        self.logind: bool = options["logind"]

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> str:
        uid = self.guard.uid(target)
        found = processes.processes_of(uid)
        said = terminate_user(uid) if self.logind else None
        ended = processes.end(found, self.grace, lambda: processes.processes_of(uid),
                              asked_by="logind" if said == "asked" else None)
        done = f"ended {len(ended.by)} processes of UID {uid}: {ended.describe()}"
        if said is not None:
            done = f"logind: {said}; {done}"
        if ended.surviving:
            raise ActionError(f"{done}; still running after SIGKILL: "
                              + " ".join(map(str, ended.surviving)))
        return done

    def delete(self, target: str) -> None:
        check_account_name(target)

    def check(self, target: str) -> bool:
        return False

    def list_targets(self) -> set[str] | None:
        return None


def terminate_user(uid: int) -> str | None:
    """Ask logind to end every session of `uid`: "asked", what logind answered instead
    ("no session": the account has none), or None when no logind answers on the system
    bus (there is none, or nothing listens: the /proc path does the work alone)."""
    from jeepney import DBusAddress, HeaderFields, MessageFlag, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    try:
        connection = open_dbus_connection(bus="SYSTEM")
    except (OSError, ValueError, KeyError) as error:
        log.debug("no system bus (%s): ending processes through /proc", error)
        return None
    manager = DBusAddress("/org/freedesktop/login1", bus_name=LOGIND,
                          interface="org.freedesktop.login1.Manager")
    call = new_method_call(manager, "TerminateUser", "u", (uid,))
    call.header.flags |= MessageFlag.no_auto_start  # only a logind that runs
    try:
        with connection:
            reply = connection.send_and_get_reply(call, timeout=LOGIND_TIMEOUT)
    except (OSError, TimeoutError) as error:
        log.warning("logind did not answer TerminateUser(%d): %s", uid, error)
        return f"no answer ({error})"
    if reply.header.message_type != MessageType.error:
        return "asked"
    error_name = reply.header.fields.get(HeaderFields.error_name, "")
    if error_name in ("org.freedesktop.DBus.Error.ServiceUnknown",
                      "org.freedesktop.DBus.Error.NameHasNoOwner"):
        return None
    if error_name == "org.freedesktop.login1.NoSuchUser":
        return "no session"
    detail = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
    return f"refused ({error_name}{': ' + detail if detail else ''})"


ACTION = ActionType(
    summary="end every process of a local account: its logind sessions, then any process "
            "left (SIGTERM, SIGKILL after a grace); never root, never a UID below min_uid",
    kinds=("user",),
    build=lambda command, context: TerminateSessions(command),
    options=(Option("passwd", PATH, "/etc/passwd", "the passwd file the UIDs are read from"),
             Option("min_uid", INTEGER, 1000, "the lowest UID arguard may act on"),
             processes.grace_option("seconds between SIGTERM (or logind's request) and "
                                    "SIGKILL"),
             Option("logind", BOOLEAN, True, "ask systemd-logind to end the sessions first, "
                    "where it runs")),
    stateless=True,
    default_expect="user",
)
