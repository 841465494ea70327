"""End to end with the firewalld action: a real firewalld (tests/firewalld.py) and arguard as a
real process in a "server" namespace, a veth pair to a "client" namespace; the verdict is read
from TCP connections, the blocks from firewalld over D-Bus."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.daemon_process import failed_password, running_in, status, wait_for
from tests.firewalld import private_firewalld
from tests.netns import connect, namespace_pair, tcp_listener

SERVER, ATTACKER, NEIGHBOUR = "10.214.0.1", "10.214.7.2", "10.214.7.5"
SSH = 22
BLOCK_SECONDS = 8


@pytest.fixture
def lab(tmp_path: Path, monkeypatch):
    with namespace_pair([f"{SERVER}/16"], [f"{ATTACKER}/16", f"{NEIGHBOUR}/16"]) \
            as (server, client), private_firewalld(tmp_path, server) as firewalld:
        (tmp_path / "auth.log").write_text("")
        config = write_config(tmp_path, extra=f"""
            [[source]]
            path = "auth.log"

            [[command]]
            name = "firewalld-drop"
            action = "firewalld"
            timeout_allowed = true

            [[active_response]]
            command = "firewalld-drop"
            rules_id = [5763]
            timeout = {BLOCK_SECONDS}
            """)
        # arguard (and its CLI) talk to this firewalld's bus
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", firewalld.env["DBUS_SYSTEM_BUS_ADDRESS"])
        with tcp_listener(server, SSH):
            yield tmp_path, config, server, client, firewalld


def reach(client: str, source: str) -> str:
    return connect(client, SERVER, SSH, timeout=0.5, source=source)


def test_a_brute_force_goes_to_the_drop_zone_survives_a_reload_and_lifts_on_time(lab):
    directory, config, server, client, firewalld = lab
    with running_in(server, directory, config) as process:
        assert reach(client, ATTACKER) == "connected"
        with open(directory / "auth.log", "a") as log:
            log.write("".join(failed_password(ATTACKER, 50000 + i) for i in range(8)))
        wait_for(lambda: firewalld.sources("drop") == {ATTACKER},
                 what="the attacker in firewalld's drop zone")
        assert reach(client, ATTACKER) == "timeout"
        assert reach(client, NEIGHBOUR) == "connected", "only the attacker is dropped"

        firewalld.reload()  # firewalld forgets its runtime sources; arguard puts them back
        wait_for(lambda: firewalld.sources("drop") == {ATTACKER},
                 what="the block put back after firewalld's reload")
        assert reach(client, ATTACKER) == "timeout"
        assert "firewalld reloaded; putting its blocks back" in process.stderr

        wait_for(lambda: reach(client, ATTACKER) == "connected",
                 deadline=BLOCK_SECONDS + 10, what="the block to be lifted")
        assert firewalld.sources("drop") == set()
        assert not status(config)["blocks"]["active"]
        assert process.terminate() == 0
