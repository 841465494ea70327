"""End to end with the nftables backend: arguard runs as a real process in a "server"
namespace joined by a veth pair to a "client" namespace that holds many addresses; the
kernel's verdict is read from TCP connections, the ruleset with the real `nft` (read only,
except for the flush that stands in for a reboot).

Server 10.213.0.1/16 and fd00:213::1/48; attackers 10.213.7.2 and 10.213.7.5 (one /24),
fd00:213:0:7::2 and ::5 (one /64); a friend 10.213.9.3, white-listed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.daemon_process import arguard, failed_password, running_in, status, wait_for
from tests.netns import connect, namespace_pair, require_netns, run_in, tcp_listener

SERVER, SERVER6 = "10.213.0.1", "fd00:213::1"
ATTACKER, NEIGHBOUR, FRIEND = "10.213.7.2", "10.213.7.5", "10.213.9.3"
ATTACKER6, NEIGHBOUR6 = "fd00:213:0:7::2", "fd00:213:0:7::5"
SSH, WEB = 22, 80
BLOCK_SECONDS = 5


@pytest.fixture
def lab(tmp_path: Path):
    require_netns()
    if shutil.which("nft") is None:
        pytest.fail("the nft tool (Debian package nftables) is needed to read the ruleset")
    with namespace_pair([f"{SERVER}/16", f"{SERVER6}/48"],
                        [f"{a}/16" for a in (ATTACKER, NEIGHBOUR, FRIEND)]
                        + [f"{a}/48" for a in (ATTACKER6, NEIGHBOUR6)]) as (server, client):
        (tmp_path / "auth.log").write_text("")
        config = write_config(tmp_path, extra=f"""
            [global]
            white_list = ["127.0.0.0/8", "::1", "{FRIEND}"]

            [[source]]
            path = "auth.log"

            [[command]]
            name = "firewall-drop"
            action = "nftables"
            table = "arguard-e2e"
            timeout_allowed = true

            [[command]]
            name = "ssh-only"
            action = "nftables"
            table = "arguard-e2e"
            timeout_allowed = true
            ports = [{SSH}]

            [[active_response]]
            command = "firewall-drop"
            rules_id = [5763]
            timeout = {BLOCK_SECONDS}
            """)
        with tcp_listener(server, SSH), tcp_listener(server, WEB):
            yield tmp_path, config, server, client


def reach(client: str, source: str, port: int = SSH) -> str:
    return connect(client, SERVER6 if ":" in source else SERVER, port, timeout=0.5,
                   source=source)


def elements(server: str, set_name: str) -> dict:
    """value → the element as `nft -j` gives it (with its timeout and expiry)."""
    listed = json.loads(run_in(server, "nft", "-j", "list", "set", "inet", "arguard-e2e",
                               set_name))
    found = {}
    for item in listed["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            found[json.dumps(element["elem"]["val"])] = element["elem"]
    return found


def block(config: Path, *args: str):
    return arguard(config, "block", *args)


def test_brute_force_is_dropped_shown_by_nft_and_lifted_on_time(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config) as process:
        assert reach(client, ATTACKER) == "connected"
        with open(directory / "auth.log", "a") as log:
            log.write("".join(failed_password(ATTACKER, 50000 + i) for i in range(8)))
        wait_for(lambda: reach(client, ATTACKER) == "timeout",
                 what="the attacker's packets being dropped")
        assert reach(client, NEIGHBOUR) == "connected", "only the attacker is dropped"
        listing = run_in(server, "nft", "list", "ruleset")
        assert f"elements = {{ {ATTACKER} timeout {BLOCK_SECONDS}s expires" in listing
        assert elements(server, "firewall-drop-ip4")[json.dumps(ATTACKER)]["timeout"] \
            == BLOCK_SECONDS
        wait_for(lambda: reach(client, ATTACKER) == "connected",
                 deadline=BLOCK_SECONDS + 10, what="the block to expire")
        wait_for(lambda: not status(config)["blocks"]["active"], what="no active block")
        assert ATTACKER not in run_in(server, "nft", "list", "ruleset")
        assert process.terminate() == 0


def test_a_flushed_ruleset_is_restored_by_a_restart(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config) as process:
        assert block(config, ATTACKER, "--timeout", "60").returncode == 0
        assert reach(client, ATTACKER) == "timeout"
        assert process.terminate() == 0
    run_in(server, "nft", "flush", "ruleset")  # what a reboot does to the kernel's tables
    assert reach(client, ATTACKER) == "connected"
    with running_in(server, directory, config) as restarted:
        assert json.dumps(ATTACKER) in elements(server, "firewall-drop-ip4")
        assert reach(client, ATTACKER) == "timeout"
        assert restarted.terminate() == 0


def test_prefix_blocks_drop_every_address_in_them(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config):
        assert block(config, "10.213.7.0/24", "--timeout", "60").returncode == 0
        assert block(config, "fd00:213:0:7::/64", "--timeout", "60").returncode == 0
        for address in (ATTACKER, NEIGHBOUR, ATTACKER6, NEIGHBOUR6):
            assert reach(client, address) == "timeout", address
        assert reach(client, FRIEND) == "connected"
        assert {b["target"] for b in status(config)["blocks"]["active"]} == \
            {"10.213.7.0/24", "fd00:213:0:7::/64"}
        assert "10.213.7.0/24 timeout 1m expires" in run_in(server, "nft", "list", "ruleset")
        assert arguard(config, "unblock", "fd00:213:0:7::/64").returncode == 0
        # the block also dropped neighbour discovery: give it a moment to resolve again
        wait_for(lambda: reach(client, ATTACKER6) == "connected", what="the /64 let back in")


def test_a_port_limited_block_drops_ssh_and_lets_the_web_through(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config):
        assert block(config, ATTACKER, "--command", "ssh-only", "--timeout", "60") \
            .returncode == 0
        assert reach(client, ATTACKER, SSH) == "timeout"
        assert reach(client, ATTACKER, WEB) == "connected"
        assert "tcp dport 22 ip saddr @ssh-only-ip4" in run_in(server, "nft", "list", "ruleset")


def test_a_prefix_covering_a_white_listed_address_is_refused_with_the_reason(lab):
    directory, config, server, client = lab
    with running_in(server, directory, config):
        refused = block(config, "10.213.9.0/24", "--timeout", "60")
        assert refused.returncode != 0
        assert "covers white-listed 10.213.9.3" in refused.stdout + refused.stderr
        covering_server = block(config, "10.213.0.0/24")
        assert f"covers this host's own address {SERVER}" in covering_server.stdout \
            + covering_server.stderr
        assert reach(client, FRIEND) == "connected"
        assert status(config)["blocks"]["active"] == []
