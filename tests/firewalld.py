"""A real firewalld for tests: Debian's python3-firewall (not the firewalld package, whose
postinst would start the service on the host), run by the system Python inside a private
network namespace, on a private D-Bus system bus (a dbus-daemon with a configuration of the
test's own, its socket in the test's temp directory), with zone files the test writes.

`Firewalld.call` asks it over D-Bus with python3-dbus, as firewall-cmd does: what firewalld
itself reports, through a client other than the one arguard uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.netns import exec_prefix, run_in

SYSTEM_PYTHON = "/usr/bin/python3"   # firewalld's python3-dbus and python3-gi live there
BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"

#: zone name → its XML body; public lets TCP port 22 in, so that a test sees a connection
#: work before it is blocked
ZONES = {
    "public": '<zone><short>public</short><port protocol="tcp" port="22"/></zone>',
    "drop": '<zone target="DROP"><short>drop</short></zone>',
    "block": '<zone target="%%REJECT%%"><short>block</short></zone>',
    "trusted": '<zone target="ACCEPT"><short>trusted</short></zone>',
    "arguard": '<zone target="DROP"><short>arguard</short></zone>',
}


def require_firewalld() -> None:
    """Skip when python3-firewall or dbus-daemon is missing; under CI, fail."""
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import firewall.server.server, dbus"],
                          capture_output=True)
    missing = None
    if done.returncode != 0:
        missing = "firewalld's Python package (Debian python3-firewall) is not installed"
    elif subprocess.run(["which", "dbus-daemon"], capture_output=True).returncode != 0:
        missing = "dbus-daemon is not installed"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(missing)
    pytest.skip(missing)


class Firewalld:
    """firewalld in namespace `ns`, its configuration and bus under `directory`."""

    def __init__(self, directory: Path, ns: str):
        self.directory = directory
        self.ns = ns
        bus = directory / "bus"
        #: the environment of a process that talks to this firewalld (arguard included)
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={bus}")
        (directory / "bus.conf").write_text(textwrap.dedent(f"""\
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig><type>system</type><listen>unix:path={bus}</listen><auth>EXTERNAL</auth>
              <policy context="default"><allow user="*"/><allow own="*"/>
                <allow send_destination="*"/><allow receive_sender="*"/></policy>
            </busconfig>
            """))
        system, default = directory / "system", directory / "default"
        (default / "zones").mkdir(parents=True)
        system.mkdir()
        (system / "firewalld.conf").write_text("DefaultZone=public\nFirewallBackend=nftables\n"
                                               "IPv6_rpfilter=no\nRFC3964_IPv4=no\n")
        for zone, body in ZONES.items():
            (default / "zones" / f"{zone}.xml").write_text(
                f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n')
        self._server = textwrap.dedent(f"""\
            from firewall import config
            config.FIREWALLD_LOGFILE = {str(directory / "firewalld.log")!r}
            config.FIREWALLD_TEMPDIR = {str(directory)!r}
            config.FIREWALLD_PIDFILE = {str(directory / "firewalld.pid")!r}
            config.set_system_config_paths({str(system)!r})
            config.set_default_config_paths({str(default)!r})
            from firewall.server import server
            server.run_server(False)
            """)
        self._bus = subprocess.Popen(["dbus-daemon", "--config-file",
                                      str(directory / "bus.conf"), "--nofork"],
                                     stderr=subprocess.DEVNULL)
        self._daemon: subprocess.Popen | None = None

    def start(self) -> None:
        """Start firewalld; return once its table is in the namespace."""
        self._daemon = subprocess.Popen([*exec_prefix(self.ns), SYSTEM_PYTHON, "-c",
                                         self._server], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while "table inet firewalld" not in run_in(self.ns, "nft", "list", "tables"):
            assert self._daemon.poll() is None, (self.directory / "firewalld.log").read_text()
            assert time.monotonic() < deadline, "firewalld did not start within 30 s"
            time.sleep(0.2)

    def stop(self) -> None:
        if self._daemon is not None:
            self._daemon.terminate()
            self._daemon.wait(timeout=30)
            self._daemon = None

    def close(self) -> None:
        self.stop()
        self._bus.terminate()
        self._bus.wait(timeout=10)

    def call(self, method: str, *args: Any, interface: str = "zone", path: str = PATH) -> Any:
        """A firewalld method, on `interface` (relative to firewalld's: "zone", "config",
        "" for the main one), by name; its answer as plain JSON values. A path that is a
        method call `method:arg` (e.g. "getZoneByName:drop") is first asked of the config
        object, for a config object's methods."""
        full = BUS_NAME + (f".{interface}" if interface else "")
        code = textwrap.dedent(f"""\
            import dbus, json
            bus = dbus.SystemBus()
            path = {path!r}
            if ":" in path:
                lookup, name = path.split(":")
                path = dbus.Interface(bus.get_object({BUS_NAME!r}, {PATH + "/config"!r}),
                                      {BUS_NAME + ".config"!r}).get_dbus_method(lookup)(name)
            method = dbus.Interface(bus.get_object({BUS_NAME!r}, path),
                                    {full!r}).get_dbus_method({method!r})
            answer = method(*{list(args)!r}, timeout=60)
            print(json.dumps(answer))
            """)
        done = subprocess.run([SYSTEM_PYTHON, "-c", code], env=self.env, capture_output=True,
                              text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def sources(self, zone: str) -> set[str]:
        """The zone's runtime sources, as firewalld reports them."""
        return set(self.call("getSources", zone))

    def permanent_sources(self, zone: str) -> set[str]:
        return set(self.call("getSources", interface="config.zone",
                             path=f"getZoneByName:{zone}"))

    def reload(self) -> None:
        self.call("reload", interface="")


@contextmanager
def private_firewalld(directory: Path, ns: str) -> Iterator[Firewalld]:
    """A running firewalld in namespace `ns` (skipped, or failed under CI, when it cannot
    be run), stopped with its bus afterwards."""
    require_firewalld()
    firewalld = Firewalld(directory, ns)
    try:
        firewalld.start()
        yield firewalld
    finally:
        firewalld.close()
