"""The `firewalld` action: for hosts whose firewall is managed through firewalld, a blocked
address or prefix becomes a source of a firewalld zone — by default `drop`, whose target
drops everything from its sources — asked of firewalld over D-Bus (jeepney, a pure-Python
D-Bus client; never `firewall-cmd`, never a shell). What firewalld then reports:

    firewall-cmd --zone=drop --list-sources        203.0.113.5 2001:db8:1:2::/64
    nft list table inet firewalld                   ip saddr 203.0.113.5 goto filter_IN_drop …

Runtime entries by default: firewalld applies them at once and forgets them when it reloads
or restarts (its runtime is then rebuilt from its permanent configuration). The action
watches for both — firewalld's `Reloaded` signal, and a new owner of its bus name — and
tells the daemon (ActionContext.backend_reset), which reconciles the command: every block
its table still holds is put back. With `permanent = true` the source is also written to
firewalld's permanent configuration (/etc/firewalld/zones/ZONE.xml), so that firewalld
keeps it across reloads and reboots even while arguard is down; lifting removes both.

Timeouts: firewalld's sources have none. Blocks are lifted by arguard from its blocks table,
as every other action's are; a runtime block made while arguard is down stays until
firewalld reloads, a permanent one until arguard lifts it.

What arguard can tell apart: firewalld's sources carry no comment or owner, and a source
belongs to one zone at a time. In a zone shared with the admin (`drop`), arguard cannot tell
its sources from the admin's: reconciliation puts back the blocks its table holds, but
never removes a source it does not know (its own leftovers included: a source it added
before its database was deleted stays until removed by hand), and lifting a block removes
the source even when the admin had added the same one too. With `exclusive = true` (a zone
of arguard's own, e.g. `arguard` with target DROP) every source of the zone is arguard's:
reconciliation also removes the ones its table does not hold, as for the other firewall
actions. An address that is a source of another zone (the admin's `trusted`) is refused,
never moved. Ports cannot be limited: a zone's sources are whole hosts or networks.

Scale: firewalld writes one rule per source and applies every change as a transaction of
its own (milliseconds each); for thousands of blocks use the `nftables` action, whose
table coexists with firewalld's (docs/actions.md).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from arguard.respond.actions.base import (
    BOOLEAN,
    PREFIX_V4,
    PREFIX_V6,
    STRING,
    ActionContext,
    ActionError,
    ActionType,
    Option,
    network_target,
    parse_network,
)

if TYPE_CHECKING:
    from jeepney.io.blocking import DBusConnection

    from arguard.config import Command
    from arguard.model import Alert

log = logging.getLogger(__name__)

BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
CONFIG_PATH = PATH + "/config"
ZONE_INTERFACE = BUS_NAME + ".zone"
CONFIG_INTERFACE = BUS_NAME + ".config"
CONFIG_ZONE_INTERFACE = BUS_NAME + ".config.zone"
#: seconds a call may wait for firewalld (calls queue behind a reload, which takes seconds)
CALL_TIMEOUT = 30.0
#: how often the watcher looks whether its action is still in use (seconds)
WATCH_POLL = 10.0
#: firewalld's answers (the code before the colon of its error text) that mean "already so"
_ALREADY = {"ZONE_ALREADY_SET", "ALREADY_ENABLED"}
_NOT_THERE = {"UNKNOWN_SOURCE", "NOT_ENABLED"}


class FirewalldError(ActionError):
    """firewalld answered a call with an error: `code` is its error code (ZONE_CONFLICT…)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


class _Bus:
    """Calls to firewalld on the system bus ($DBUS_SYSTEM_BUS_ADDRESS), one connection,
    opened again once when it broke (the bus restarted)."""

    def __init__(self) -> None:
        self._connection: DBusConnection | None = None

    def call(self, path: str, interface: str, method: str, signature: str = "",
             *args: Any) -> tuple:
        from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call

        message = new_method_call(DBusAddress(path, bus_name=BUS_NAME, interface=interface),
                                  method, signature or None, args)
        for attempt in (1, 2):
            try:
                reply = self._open().send_and_get_reply(message, timeout=CALL_TIMEOUT)
                break
            except TimeoutError:
                raise ActionError(f"firewalld did not answer {method} within "
                                  f"{CALL_TIMEOUT:.0f} s") from None
            except OSError as error:
                self.close()
                if attempt == 2:
                    raise ActionError(f"cannot reach the D-Bus system bus: {error}") from None
        if reply.header.message_type == MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "")
            text = str(reply.body[0]) if reply.body else name
            if name == "org.freedesktop.DBus.Error.ServiceUnknown":
                raise FirewalldError("firewalld is not running (nobody owns "
                                     f"{BUS_NAME} on the system bus)", "NOT_RUNNING")
            code = text.split(":", 1)[0].strip() if name.startswith(BUS_NAME) else name
            raise FirewalldError(f"firewalld refused {method}: {text}", code)
        return tuple(reply.body)

    def _open(self) -> DBusConnection:
        if self._connection is None:
            from jeepney.io.blocking import open_dbus_connection

            try:
                self._connection = open_dbus_connection(bus="SYSTEM")
            except (OSError, RuntimeError) as error:
                raise ActionError(f"cannot connect to the D-Bus system bus: {error}") from None
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class FirewalldAction:
    def __init__(self, command: Command, context: ActionContext | None = None):
        options = ACTION.options_of(command)
        self.command = command.name
        self.zone: str = options["zone"]
        self.permanent: bool = options["permanent"]
        self.exclusive: bool = options["exclusive"]
        self._bus = _Bus()
        zones = self._runtime("getZones")[0]
        if self.zone not in zones:
            raise ActionError(f"firewalld has no zone {self.zone!r} (it has: "
                              f"{', '.join(sorted(zones))}); set option zone of command "
                              f"{self.command!r}")
        if context is not None and context.backend_reset is not None:
            _watch(self, context.backend_reset)

    # --- the Action contract -------------------------------------------------------------

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        source = _source(target)
        try:
            self._runtime("addSource", "ss", self.zone, source)
        except FirewalldError as error:
            if error.code == "ZONE_CONFLICT":
                raise ActionError(f"firewalld: {source} is a source of another zone "
                                  f"({self._zone_of(source)}); arguard does not move it to "
                                  f"{self.zone!r}") from None
            if error.code not in _ALREADY:
                raise
        if self.permanent:
            self._permanent("addSource", source)

    def delete(self, target: str) -> None:
        source = _source(target)
        if self.permanent:
            self._permanent("removeSource", source)
        try:
            self._runtime("removeSource", "ss", self.zone, source)
        except FirewalldError as error:
            if error.code not in _NOT_THERE:
                raise

    def check(self, target: str) -> bool:
        source = _source(target)
        present = bool(self._runtime("querySource", "ss", self.zone, source)[0])
        if present and self.permanent:
            present = bool(self._permanent("querySource", source)[0])
        return present

    def list_targets(self) -> set[str] | None:
        """The zone's sources when the zone is arguard's alone (`exclusive`); None for a
        shared zone, whose sources arguard cannot tell from the admin's."""
        if not self.exclusive:
            return None
        return {network_target(parse_network(source))
                for source in self._runtime("getSources", "s", self.zone)[0]
                if _is_address(source)}

    # --- calls ---------------------------------------------------------------------------

    def _runtime(self, method: str, signature: str = "", *args: Any) -> tuple:
        return self._bus.call(PATH, ZONE_INTERFACE, method, signature, *args)

    def _permanent(self, method: str, source: str) -> tuple:
        """A call on the zone's object in firewalld's permanent configuration, idempotent
        as the runtime calls are. The object is looked up each time: a reload makes new
        ones."""
        [path] = self._bus.call(CONFIG_PATH, CONFIG_INTERFACE, "getZoneByName", "s",
                                self.zone)
        try:
            return self._bus.call(path, CONFIG_ZONE_INTERFACE, method, "s", source)
        except FirewalldError as error:
            if error.code in _ALREADY | _NOT_THERE:
                return ()
            raise

    def _zone_of(self, source: str) -> str:
        try:
            return self._runtime("getZoneOfSource", "s", source)[0] or "unknown"
        except ActionError:
            return "unknown"


def _source(target: str) -> str:
    """A target as firewalld's source text: the address, or the network in CIDR form."""
    return network_target(parse_network(target))


def _is_address(source: str) -> bool:
    """Whether a zone's source is an address or network (not a MAC or `ipset:NAME`)."""
    try:
        parse_network(source)
    except ActionError:
        return False
    return True


def _watch(action: FirewalldAction, reset: Callable[[str, str], None]) -> None:
    """A daemon thread that calls reset(command, why) when firewalld reloads (its
    `Reloaded` signal) or starts again (a new owner of its bus name): its runtime is then
    its permanent configuration, without arguard's runtime sources. It listens on a
    connection of its own, and ends when the action is no longer in use."""
    from jeepney import MatchRule, message_bus
    from jeepney.io.blocking import open_dbus_connection

    command = action.command
    stopped = threading.Event()
    weakref.finalize(action, stopped.set)
    reloaded = MatchRule(type="signal", interface=BUS_NAME, member="Reloaded", path=PATH)
    restarted = MatchRule(type="signal", sender="org.freedesktop.DBus",
                          interface="org.freedesktop.DBus", member="NameOwnerChanged")
    restarted.add_arg_condition(0, BUS_NAME)
    try:
        connection = open_dbus_connection(bus="SYSTEM")
        for rule in (reloaded, restarted):
            connection.send_and_get_reply(message_bus.AddMatch(rule), timeout=CALL_TIMEOUT)
    except (OSError, RuntimeError, TimeoutError) as error:
        raise ActionError(f"cannot watch firewalld's reloads on the system bus: {error}") \
            from None

    def run() -> None:
        with connection, connection.filter(reloaded, bufsize=16) as reloads, \
                connection.filter(restarted, bufsize=16) as owners:
            while not stopped.is_set():
                try:
                    connection.recv_messages(timeout=WATCH_POLL)
                except TimeoutError:
                    continue
                except OSError as error:
                    log.warning("command %s: lost the D-Bus system bus (%s); firewalld "
                                "reloads are no longer noticed until arguard restarts",
                                command, error)
                    return
                why = None
                while reloads:
                    reloads.popleft()
                    why = "firewalld reloaded"
                while owners:
                    if owners.popleft().body[2]:
                        why = "firewalld started again"
                if why is not None and not stopped.is_set():
                    reset(command, why)

    threading.Thread(target=run, name=f"firewalld watch ({command})", daemon=True).start()


ACTION = ActionType(
    summary="blocked addresses and prefixes become sources of a firewalld zone (drop), "
            "over D-Bus",
    kinds=("ip",),
    build=lambda command, context: FirewalldAction(command, context),
    options=(Option("zone", STRING, "drop", "the firewalld zone the blocked sources go to "
                    "(its target says what they get: drop's is DROP)"),
             Option("permanent", BOOLEAN, False, "also write the sources to firewalld's "
                    "permanent configuration (kept across its reloads and reboots)"),
             Option("exclusive", BOOLEAN, False, "the zone is arguard's alone: "
                    "reconciliation also removes its sources that no block is known for"),
             PREFIX_V4, PREFIX_V6),
    networks=True,
)
