"""Target validation: what arguard may act on, in normal form, and why the rest is refused."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from arguard.config import parse_network
from arguard.respond.targets import Checked, OwnAddresses, Targets, check_user, normalise_address

WHITE = [parse_network(n) for n in ("192.0.2.10", "10.0.0.0/8", "2001:db8:1::/48")]
OWN = {ipaddress.ip_address("198.51.100.7"), ipaddress.ip_address("2001:db8:ff::7")}


@pytest.fixture
def targets() -> Targets:
    return Targets(WHITE, own_addresses=lambda: OWN)


@pytest.mark.parametrize("text, normal", [
    ("203.0.113.5", "203.0.113.5"),
    ("::ffff:203.0.113.5", "203.0.113.5"),
    ("::FFFF:cb00:7105", "203.0.113.5"),
    ("2001:DB8:0:0:0:0:0:5", "2001:db8::5"),
    ("2001:0db8::0005", "2001:db8::5"),
])
def test_addresses_are_normalised(targets, text, normal):
    assert targets.check_address(text) == Checked(normal)


@pytest.mark.parametrize("text", [
    "192.0.2.10", "10.1.2.3", "::ffff:10.1.2.3", "2001:db8:1:2::9", "2001:DB8:1::1",
])
def test_white_list_ipv4_ipv6_cidr_and_mapped(targets, text):
    assert targets.check_address(text).refused == "white-listed"


def test_white_list_is_exact_not_a_prefix(targets):
    assert targets.check_address("192.0.2.100").refused is None
    assert targets.check_address("192.0.2.1").refused is None


def test_white_list_comes_before_the_builtin_refusals():
    targets = Targets([parse_network("127.0.0.0/8")], own_addresses=lambda: OWN)
    assert targets.check_address("127.0.0.1").refused == "white-listed"


@pytest.mark.parametrize("text, reason", [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("0.0.0.0", "unspecified address"),
    ("::", "unspecified address"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("198.51.100.7", "own address"),
    ("2001:db8:ff::7", "own address"),
    ("0.0.0.0/0", "network, not an address"),
    ("203.0.113.0/24", "network, not an address"),
    ("::/0", "network, not an address"),
    ("attacker.example.com", "hostname, not an IP address"),
    ("localhost", "hostname, not an IP address"),
    ("", "empty target"),
    ("   ", "empty target"),
    (None, "empty target"),
    ("1.2.3", "not an IP address"),
    ("1.2.3.4.5", "not an IP address"),
    ("256.1.1.1", "not an IP address"),
    ("01.2.3.4", "not an IP address"),
    ("1.2.3.4; rm -rf /", "not an IP address"),
    ("1.2.3.4 5.6.7.8", "not an IP address"),
    ("[2001:db8::1]", "not an IP address"),
    ("2001:db8::1::2", "not an IP address"),
    ("fe80::1%eth0", "scoped address"),
    ("-1.2.3.4", "not an IP address"),
    ("1.2.3.4\n", None),
])
def test_bad_addresses_are_refused_with_a_reason(targets, text, reason):
    assert targets.check_address(text).refused == reason


@pytest.mark.parametrize("name", ["alice", "bob.smith", "svc_backup", "host$", "a-b", "_x"])
def test_good_user_names(name):
    assert check_user(name) == Checked(name)


@pytest.mark.parametrize("name, reason", [
    ("", "empty user name"),
    (None, "empty user name"),
    ("../etc/passwd", "'/' in user name"),
    ("a/b", "'/' in user name"),
    ("..", "'..' in user name"),
    ("a..b", "'..' in user name"),
    ("root:x", "':' in user name"),
    ("ali ce", "whitespace in user name"),
    ("alice\t", "whitespace in user name"),
    ("alice\nroot", "whitespace in user name"),
    ("bell\x07", "control character in user name"),
    ("-r", "user name starts with '-'"),
    ("x" * 33, "user name too long"),
    (".hidden", "not a valid user name"),
    ("a$b", "not a valid user name"),
    ("émile", "not a valid user name"),
    ("a;b", "not a valid user name"),
])
def test_bad_user_names_are_refused_with_a_reason(name, reason):
    assert check_user(name).refused == reason


def test_check_dispatches_on_kind(targets):
    assert targets.check("user", "127.0.0.1") == Checked("127.0.0.1")
    assert targets.check("ip", "alice").refused == "hostname, not an IP address"


def test_normalise_address():
    assert normalise_address("::ffff:1.2.3.4") == "1.2.3.4"
    assert normalise_address("not") is None


def test_own_addresses_are_cached_for_max_age_and_refreshable():
    now = [0.0]
    reads: list[float] = []

    def read():
        reads.append(now[0])
        return frozenset(OWN)

    own = OwnAddresses(max_age=60, clock=lambda: now[0], read=read)
    assert own() == OWN
    now[0] = 30
    own()
    now[0] = 61
    own()
    own.refresh()
    assert reads == [0.0, 61, 61]


def test_a_failed_read_keeps_the_previous_addresses():
    answers = iter([frozenset(OWN), OSError("netlink")])

    def read():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    own = OwnAddresses(read=read)
    own.refresh()
    own.refresh()
    assert own() == OWN


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_the_namespace_own_addresses_are_never_acted_on():
    """In a private network namespace with a veth carrying 198.51.100.7 and 2001:db8:ff::7,
    those addresses (read over netlink) are refused; a neighbour's address is not."""
    script = textwrap.dedent("""
        import json, subprocess
        from arguard.respond.targets import Targets
        run = lambda *a: subprocess.run(["ip", *a], check=True)
        run("link", "add", "ag0", "type", "veth", "peer", "name", "ag1")
        run("addr", "add", "198.51.100.7/24", "dev", "ag0")
        run("-6", "addr", "add", "2001:db8:ff::7/64", "dev", "ag0", "nodad")
        run("link", "set", "ag0", "up")
        targets = Targets([])
        print(json.dumps({t: targets.check_address(t).refused for t in
                          ["198.51.100.7", "2001:db8:ff::7", "::ffff:198.51.100.7",
                           "198.51.100.8"]}))
    """)
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", script],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {
        "198.51.100.7": "own address", "2001:db8:ff::7": "own address",
        "::ffff:198.51.100.7": "own address", "198.51.100.8": None,
    }
