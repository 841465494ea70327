"""A real firewalld (Debian's python3-firewall, nftables backend) in a private network
namespace, on a private D-Bus system bus in the test's temp directory, with a minimal zone
configuration of the test's own: a firewalld reload, asked over D-Bus, deletes and remakes
firewalld's own table and leaves arguard's table and its blocks in place."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.netns import ActionProcess, exec_prefix, namespace, run_in

SYSTEM_PYTHON = "/usr/bin/python3"   # firewalld's python3-dbus and python3-gi live there


def _have_firewalld() -> str | None:
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import firewall.server.server, dbus"],
                          capture_output=True)
    if done.returncode != 0:
        return "firewalld's Python package (Debian python3-firewall) is not installed"
    if subprocess.run(["which", "dbus-daemon"], capture_output=True).returncode != 0:
        return "dbus-daemon is not installed"
    return None


@pytest.fixture
def firewalld(tmp_path: Path):
    missing = _have_firewalld()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    bus = tmp_path / "bus"
    (tmp_path / "bus.conf").write_text(textwrap.dedent(f"""\
        <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
         "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
        <busconfig><type>system</type><listen>unix:path={bus}</listen><auth>EXTERNAL</auth>
          <policy context="default"><allow user="*"/><allow own="*"/>
            <allow send_destination="*"/><allow receive_sender="*"/></policy>
        </busconfig>
        """))
    system, default = tmp_path / "system", tmp_path / "default"
    (default / "zones").mkdir(parents=True)
    system.mkdir()
    (system / "firewalld.conf").write_text("DefaultZone=public\nFirewallBackend=nftables\n"
                                           "IPv6_rpfilter=no\nRFC3964_IPv4=no\n")
    for zone, target in (("public", None), ("drop", "DROP"), ("block", "%%REJECT%%"),
                         ("trusted", "ACCEPT")):
        attribute = f' target="{target}"' if target else ""
        (default / "zones" / f"{zone}.xml").write_text(
            f'<?xml version="1.0" encoding="utf-8"?>\n<zone{attribute}><short>{zone}</short>'
            "</zone>\n")
    server = textwrap.dedent(f"""\
        from firewall import config
        config.FIREWALLD_LOGFILE = {str(tmp_path / "firewalld.log")!r}
        config.FIREWALLD_TEMPDIR = {str(tmp_path)!r}
        config.FIREWALLD_PIDFILE = {str(tmp_path / "firewalld.pid")!r}
        config.set_system_config_paths({str(system)!r})
        config.set_default_config_paths({str(default)!r})
        from firewall.server import server
        server.run_server(False)
        """)
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={bus}")
    dbus = subprocess.Popen(["dbus-daemon", "--config-file", str(tmp_path / "bus.conf"),
                             "--nofork"], stderr=subprocess.DEVNULL)
    with namespace("arguard-fwd") as ns:
        daemon = subprocess.Popen([*exec_prefix(ns), SYSTEM_PYTHON, "-c", server], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while "table inet firewalld" not in run_in(ns, "nft", "list", "tables"):
                assert daemon.poll() is None, (tmp_path / "firewalld.log").read_text()
                assert time.monotonic() < deadline, "firewalld did not start within 30 s"
                time.sleep(0.2)
            yield ns, env
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            dbus.terminate()
            dbus.wait(timeout=10)


def test_a_firewalld_reload_keeps_arguards_blocks(firewalld):
    ns, env = firewalld
    with ActionProcess(ns, "nftables", {}, name="firewall-drop") as action:
        action.add("203.0.113.5", 600)
        before = run_in(ns, "nft", "-a", "list", "table", "inet", "firewalld")
        reload = ("import dbus; bus = dbus.SystemBus(); dbus.Interface(bus.get_object("
                  "'org.fedoraproject.FirewallD1', '/org/fedoraproject/FirewallD1'), "
                  "'org.fedoraproject.FirewallD1').reload(); print('reloaded')")
        done = subprocess.run([SYSTEM_PYTHON, "-c", reload], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.stdout.strip() == "reloaded", done.stderr
        after = run_in(ns, "nft", "-a", "list", "table", "inet", "firewalld")
        assert before != after  # made again: new handles
        assert "203.0.113.5 timeout 10m" in run_in(ns, "nft", "list", "ruleset")
        assert action.check("203.0.113.5")
