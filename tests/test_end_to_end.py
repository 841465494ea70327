"""End to end on real kernels: arguard runs as a real process in a "server" namespace joined
to a "client" namespace by a veth pair, follows a temp auth.log and access.log with the
shipped rules, and drops attackers through the ipset backend.

Client addresses: 10.213.0.2 attacks, 10.213.0.3 is white-listed, 10.213.0.4 scans the web.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.daemon_process import failed_password, running_in, status, wait_for
from tests.netns import namespace_pair, python_in, require_netns, run_in, tcp_listener

SERVER, ATTACKER, FRIEND, SCANNER = "10.213.0.1", "10.213.0.2", "10.213.0.3", "10.213.0.4"
PORT = 2222
BLOCK_SECONDS = 4


def connect_from(ns: str, source: str, timeout: float = 0.5) -> str:
    """One TCP connection from `source` in the client namespace to the server's listener."""
    return python_in(ns, f"""
import json, socket
sock = socket.socket()
sock.settimeout({timeout})
sock.bind(({source!r}, 0))
try:
    sock.connect(({SERVER!r}, {PORT}))
    print(json.dumps("connected"))
except TimeoutError:
    print(json.dumps("timeout"))
except OSError as error:
    print(json.dumps(type(error).__name__))
finally:
    sock.close()
""")


def access_line(address: str, path: str, status_code: int) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    return (f'{address} - - [{stamp}] "GET {path} HTTP/1.1" {status_code} 162 "-" '
            f'"Mozilla/5.0 (scanner)"\n')


def append(path: Path, text: str) -> None:
    with open(path, "a") as log:
        log.write(text)


def active_targets(config: Path) -> set[str]:
    return {b["target"] for b in status(config)["blocks"]["active"]}


@pytest.fixture
def lab(tmp_path: Path, request):
    """Server and client namespaces, a listener, and a config whose blocks last
    BLOCK_SECONDS (or the test's indirect parameter)."""
    require_netns()
    seconds = getattr(request, "param", BLOCK_SECONDS)
    with namespace_pair([f"{SERVER}/24"], [f"{ATTACKER}/24", f"{FRIEND}/24",
                                            f"{SCANNER}/24"]) as (server, client):
        (tmp_path / "auth.log").write_text("")
        (tmp_path / "access.log").write_text("")
        config = write_config(tmp_path, extra=f"""
            [global]
            white_list = ["127.0.0.0/8", "::1", "{FRIEND}"]

            [[source]]
            path = "auth.log"

            [[source]]
            path = "access.log"

            [[command]]
            name = "firewall-drop"
            action = "ipset"
            expect = "srcip"
            timeout_allowed = true
            set_name = "arguard-e2e"

            [[active_response]]
            command = "firewall-drop"
            rules_id = [5712, 5763, 31151]
            timeout = {seconds}
            """)
        with tcp_listener(server, PORT):
            yield tmp_path, config, server, client


def test_brute_force_client_is_dropped_then_let_back_in(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config) as process:
        assert connect_from(client, ATTACKER) == "connected"
        append(directory / "auth.log", "".join(failed_password(ATTACKER, 50000 + i)
                                               for i in range(8)))
        wait_for(lambda: connect_from(client, ATTACKER) == "timeout",
                 what="the attacker's packets being dropped")
        assert connect_from(client, FRIEND) == "connected", "only the attacker is dropped"
        [block] = status(config)["blocks"]["active"]
        assert (block["target"], block["command"], block["rule_id"]) == \
            (ATTACKER, "firewall-drop", 5763)
        assert ATTACKER in run_in(server, "ipset", "list", "arguard-e2e")

        wait_for(lambda: connect_from(client, ATTACKER) == "connected",
                 deadline=BLOCK_SECONDS + 10, what="the block to expire")
        wait_for(lambda: not active_targets(config), what="status to show no block")
        assert process.terminate() == 0


def test_white_listed_client_is_never_blocked(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config):
        append(directory / "auth.log", "".join(failed_password(FRIEND, 51000 + i)
                                               for i in range(8)))
        wait_for(lambda: status(config)["rules"].get("5763") == 1,
                 what="the brute-force alert")
        assert connect_from(client, FRIEND) == "connected"
        assert active_targets(config) == set()
        responses = (directory / "log/active-responses.log").read_text()
        assert f"firewall-drop skip {FRIEND}" in responses and "white" in responses


def test_web_scan_is_dropped(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config):
        assert connect_from(client, SCANNER) == "connected"
        append(directory / "access.log", "".join(
            access_line(SCANNER, f"/probe-{i}.php", 404) for i in range(14)))
        wait_for(lambda: connect_from(client, SCANNER) == "timeout",
                 what="the scanner being dropped")
        [block] = status(config)["blocks"]["active"]
        assert (block["target"], block["rule_id"]) == (SCANNER, 31151)
        assert connect_from(client, ATTACKER) == "connected"


@pytest.mark.parametrize("lab", [12], indirect=True)
def test_restart_keeps_the_block_and_lifts_it_on_time(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config) as process:
        append(directory / "auth.log", "".join(failed_password(ATTACKER, 52000 + i)
                                               for i in range(8)))
        wait_for(lambda: connect_from(client, ATTACKER) == "timeout", what="the block")
        assert process.terminate() == 0
    assert connect_from(client, ATTACKER) == "timeout", "the block outlives the daemon"
    assert active_targets(config) == {ATTACKER}

    # the set is flushed while arguard is down (as a reboot would empty it): the restart
    # restores the block from SQLite, then lifts it when its time is up
    run_in(server, "ipset", "flush", "arguard-e2e")
    with running_in(server, directory, config) as restarted:
        assert active_targets(config) == {ATTACKER}
        assert ATTACKER in run_in(server, "ipset", "list", "arguard-e2e")
        assert connect_from(client, ATTACKER) == "timeout"
        wait_for(lambda: not active_targets(config), deadline=12 + 10,
                 what="arguard to lift the block after the restart")
        assert connect_from(client, ATTACKER) == "connected"
        assert restarted.terminate() == 0
